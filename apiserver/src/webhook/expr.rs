//! CEL expressions of admission (webhooks' matchConditions, ValidatingAdmissionPolicy's
//! matchConditions, variables, validations and messageExpressions), over the variables
//! kube gives them: `object`, `oldObject`, `request`, and for policies `params`,
//! `namespaceObject` and `variables`. JSON becomes CEL values as kube converts it:
//! integers are `int`, null is `null`. Each expression's cost is estimated over the
//! values at hand before it runs (`schema::cel::cost`): over kube's per-call limit, or
//! past the budget of the evaluation (a webhook's conditions, a policy's binding), it does
//! not run and gives kube's error instead. Pure.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kube_cel::cel::{Context, Program, Value as Cel};
use kube_cel::KubeCelExt as _;
use serde_json::Value;

use crate::schema::cel::cost::{estimate, Scope, PER_CALL_LIMIT, RUNTIME_BUDGET};
use crate::schema::cel::shape::Shape;

/// kube's error for an expression over the per-call limit.
pub const CALL_LIMIT: &str = "operation cancelled: actual cost limit exceeded";
/// kube's error once an evaluation's budget is spent.
pub const OUT_OF_BUDGET: &str =
    "validation failed due to running out of cost budget, no further validation rules will be run";

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
    /// Bounds of the variables, for the cost estimate.
    shapes: Vec<(String, Shape)>,
    /// What is left of the budget.
    budget: Cell<u64>,
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
        let shape = |v: Option<&Value>| v.map_or_else(Shape::scalar, Shape::of_value);
        Env {
            ctx,
            shapes: vec![
                ("object".to_string(), shape(object)),
                ("oldObject".to_string(), shape(old)),
                ("request".to_string(), Shape::of_value(request)),
            ],
            budget: Cell::new(RUNTIME_BUDGET),
        }
    }

    /// Adds a variable (`params`, `namespaceObject`).
    pub fn with(mut self, name: &str, v: &Value) -> Env {
        self.ctx.add_variable_from_value(name, cel(v));
        self.shapes.push((name.to_string(), Shape::of_value(v)));
        self
    }

    /// Charges `p`'s estimated cost to the budget, or says why it may not run.
    fn charge(&self, p: &Program) -> Result<(), String> {
        let mut scope = Scope::new();
        for (name, shape) in &self.shapes {
            scope.push(name, shape.clone());
        }
        let cost = estimate(p.expression(), &mut scope).cost;
        if cost > PER_CALL_LIMIT {
            return Err(CALL_LIMIT.to_string());
        }
        let left = self.budget.get();
        if cost > left {
            self.budget.set(0);
            return Err(OUT_OF_BUDGET.to_string());
        }
        self.budget.set(left - cost);
        Ok(())
    }

    /// Evaluates a policy's `variables` in order (each may use those before it) and
    /// binds them as `variables.<name>`; a variable that fails to evaluate is left out,
    /// so an expression using it fails.
    pub fn with_variables(mut self, vars: &[(String, Program)]) -> Env {
        let mut done: HashMap<String, Cel> = HashMap::new();
        let mut shapes: BTreeMap<String, Shape> = BTreeMap::new();
        for (name, p) in vars {
            self.ctx
                .add_variable_from_value("variables", Cel::from(done.clone()));
            self.set_shape("variables", Shape::map(shapes.clone()));
            if self.charge(p).is_err() {
                continue;
            }
            if let Ok(v) = p.execute(&self.ctx) {
                let mut scope = Scope::new();
                for (n, s) in &self.shapes {
                    scope.push(n, s.clone());
                }
                shapes.insert(name.clone(), estimate(p.expression(), &mut scope).shape);
                done.insert(name.clone(), v);
            }
        }
        self.ctx
            .add_variable_from_value("variables", Cel::from(done));
        self.set_shape("variables", Shape::map(shapes));
        self
    }

    fn set_shape(&mut self, name: &str, shape: Shape) {
        self.shapes.retain(|(n, _)| n != name);
        self.shapes.push((name.to_string(), shape));
    }

    /// A boolean expression: Ok(true/false), or why it has no boolean value.
    pub fn test(&self, p: &Program) -> Result<bool, String> {
        self.charge(p)?;
        match p.execute(&self.ctx) {
            Ok(Cel::Bool(b)) => Ok(b),
            Ok(other) => Err(format!("expected a bool, got {:?}", other.type_of())),
            Err(e) => Err(e.to_string()),
        }
    }

    /// A string expression (a messageExpression); None if it is not one.
    pub fn text(&self, p: &Program) -> Option<String> {
        self.charge(p).ok()?;
        match p.execute(&self.ctx) {
            Ok(Cel::String(s)) => Some((*s).clone()),
            _ => None,
        }
    }
}

/// Compiles an expression, with the parser's words on failure.
pub fn compile(expr: &str) -> Result<Program, String> {
    crate::schema::cel::parse(expr)
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
