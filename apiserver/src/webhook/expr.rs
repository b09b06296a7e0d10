//! CEL expressions of admission (webhooks' matchConditions, ValidatingAdmissionPolicy's
//! matchConditions, variables, validations and messageExpressions), over the variables
//! kube gives them: `object`, `oldObject`, `request`, and for policies `params`,
//! `namespaceObject` and `variables`. JSON becomes CEL values as kube converts it:
//! integers are `int`, null is `null`. Pure.

use std::collections::HashMap;
use std::sync::Arc;

use kube_cel::cel::{Context, Program, Value as Cel};
use kube_cel::KubeCelExt as _;
use serde_json::Value;

/// A JSON value as a CEL value.
pub fn cel(v: &Value) -> Cel {
    match v {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Cel::Int(i),
            (None, Some(u)) => Cel::UInt(u),
            _ => Cel::Float(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => Cel::String(Arc::new(s.clone())),
        Value::Array(a) => Cel::List(Arc::new(a.iter().map(cel).collect())),
        Value::Object(m) => {
            let map: HashMap<String, Cel> = m.iter().map(|(k, v)| (k.clone(), cel(v))).collect();
            Cel::from(map)
        }
    }
}

/// The variables of one evaluation.
pub struct Env {
    ctx: Context<'static>,
}

impl Env {
    /// kube's functions and `object`, `oldObject` and `request` (null when absent).
    pub fn new(object: Option<&Value>, old: Option<&Value>, request: &Value) -> Env {
        let mut ctx = Context::default();
        ctx.register_all();
        let null = Value::Null;
        ctx.add_variable_from_value("object", cel(object.unwrap_or(&null)));
        ctx.add_variable_from_value("oldObject", cel(old.unwrap_or(&null)));
        ctx.add_variable_from_value("request", cel(request));
        Env { ctx }
    }

    /// Adds a variable (`params`, `namespaceObject`).
    pub fn with(mut self, name: &str, v: &Value) -> Env {
        self.ctx.add_variable_from_value(name, cel(v));
        self
    }

    /// Evaluates a policy's `variables` in order (each may use those before it) and
    /// binds them as `variables.<name>`; a variable that fails to evaluate is left out,
    /// so an expression using it fails.
    pub fn with_variables(mut self, vars: &[(String, Program)]) -> Env {
        let mut done: HashMap<String, Cel> = HashMap::new();
        for (name, p) in vars {
            self.ctx
                .add_variable_from_value("variables", Cel::from(done.clone()));
            if let Ok(v) = p.execute(&self.ctx) {
                done.insert(name.clone(), v);
            }
        }
        self.ctx
            .add_variable_from_value("variables", Cel::from(done));
        self
    }

    /// A boolean expression: Ok(true/false), or why it has no boolean value.
    pub fn test(&self, p: &Program) -> Result<bool, String> {
        match p.execute(&self.ctx) {
            Ok(Cel::Bool(b)) => Ok(b),
            Ok(other) => Err(format!("expected a bool, got {:?}", other.type_of())),
            Err(e) => Err(e.to_string()),
        }
    }

    /// A string expression (a messageExpression); None if it is not one.
    pub fn text(&self, p: &Program) -> Option<String> {
        match p.execute(&self.ctx) {
            Ok(Cel::String(s)) => Some((*s).clone()),
            _ => None,
        }
    }
}

/// Compiles an expression, with the parser's words on failure.
pub fn compile(expr: &str) -> Result<Program, String> {
    Program::compile(expr).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_integers_compare_as_cel_ints() {
        let obj = json!({"spec": {"replicas": 3, "name": "x", "tags": ["a"]}});
        let env = Env::new(Some(&obj), None, &json!({"operation": "CREATE"}));
        let t = |e: &str| env.test(&compile(e).unwrap());
        assert_eq!(t("object.spec.replicas <= 5"), Ok(true));
        assert_eq!(t("object.spec.replicas > 5"), Ok(false));
        assert_eq!(
            t("oldObject == null && request.operation == 'CREATE'"),
            Ok(true)
        );
        assert_eq!(
            t("'a' in object.spec.tags && object.spec.name.startsWith('x')"),
            Ok(true)
        );
        assert_eq!(
            t("int('3') == 3 && string(object.spec.replicas) == '3'"),
            Ok(true)
        );
        assert!(t("object.spec.name").is_err());
        assert!(t("object.spec.missing == 1").is_err());
    }

    #[test]
    fn variables_build_on_each_other() {
        let obj = json!({"metadata": {"labels": {"env": "prod"}}});
        let vars = vec![
            (
                "env".to_string(),
                compile("object.metadata.labels.env").unwrap(),
            ),
            (
                "prod".to_string(),
                compile("variables.env == 'prod'").unwrap(),
            ),
        ];
        let env = Env::new(Some(&obj), None, &json!({})).with_variables(&vars);
        assert_eq!(env.test(&compile("variables.prod").unwrap()), Ok(true));
        assert_eq!(
            env.text(&compile("'env is ' + variables.env").unwrap())
                .as_deref(),
            Some("env is prod")
        );
    }
}
