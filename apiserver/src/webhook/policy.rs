//! ValidatingAdmissionPolicy, as kube-apiserver's plugin of that name evaluates it:
//! each binding whose policy exists, where both the policy's matchConstraints and the
//! binding's matchResources match, with its params (by name, or each object its selector
//! picks), the policy's matchConditions, then its variables and validations in CEL. A
//! failed validation is, by the binding's validationActions, the request's refusal
//! (`ValidatingAdmissionPolicy 'p' with binding 'b' denied request: <message>`, the code
//! of the validation's reason, 422 Invalid by default) and/or a warning. An expression
//! that cannot be evaluated follows the policy's failurePolicy. Audit is accepted and
//! records nothing (no audit annotations yet).

use k8s_openapi::api::admissionregistration::v1::{
    MatchResources, ParamRef, ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use kube_cel::cel::Program;
use serde_json::Value;

use super::expr::{self, Env};
use crate::error::ApiError;

/// One validation of a policy, compiled.
struct Check {
    expression: String,
    program: Result<Program, String>,
    message: Option<String>,
    message_program: Option<Program>,
    reason: String,
}

/// A binding with its policy, ready to evaluate.
pub struct Bound {
    policy: String,
    binding: String,
    constraints: MatchResources,
    narrowing: Option<MatchResources>,
    /// (apiVersion, kind) of the params.
    param_kind: Option<(String, String)>,
    param_ref: Option<ParamRef>,
    conditions: Vec<(String, Result<Program, String>)>,
    variables: Vec<(String, Program)>,
    checks: Vec<Check>,
    deny: bool,
    warn: bool,
    ignore_failures: bool,
}

/// Every binding of an existing policy, in binding name order.
pub fn bind(
    policies: &[ValidatingAdmissionPolicy],
    bindings: &[ValidatingAdmissionPolicyBinding],
) -> Vec<Bound> {
    let mut out = Vec::new();
    for b in bindings {
        let Some(bs) = &b.spec else { continue };
        let name = bs.policy_name.as_deref().unwrap_or("");
        let Some(p) = policies
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
        else {
            continue;
        };
        let Some(ps) = &p.spec else { continue };
        let Some(constraints) = ps.match_constraints.clone() else {
            continue;
        };
        let actions = bs.validation_actions.as_deref().unwrap_or(&[]);
        out.push(Bound {
            policy: name.to_string(),
            binding: b.metadata.name.clone().unwrap_or_default(),
            constraints,
            narrowing: bs.match_resources.clone(),
            param_kind: ps.param_kind.as_ref().map(|k| {
                (
                    k.api_version.clone().unwrap_or_default(),
                    k.kind.clone().unwrap_or_default(),
                )
            }),
            param_ref: bs.param_ref.clone(),
            conditions: ps
                .match_conditions
                .iter()
                .flatten()
                .map(|c| (c.name.clone(), expr::compile(&c.expression)))
                .collect(),
            variables: ps
                .variables
                .iter()
                .flatten()
                .filter_map(|v| Some((v.name.clone(), expr::compile(&v.expression).ok()?)))
                .collect(),
            checks: ps
                .validations
                .iter()
                .flatten()
                .map(|v| Check {
                    expression: v.expression.clone(),
                    program: expr::compile(&v.expression),
                    message: v.message.clone().filter(|m| !m.is_empty()),
                    message_program: v
                        .message_expression
                        .as_deref()
                        .filter(|m| !m.is_empty())
                        .and_then(|m| expr::compile(m).ok()),
                    reason: v.reason.clone().unwrap_or_else(|| "Invalid".into()),
                })
                .collect(),
            deny: actions.iter().any(|a| a == "Deny"),
            warn: actions.iter().any(|a| a == "Warn"),
            ignore_failures: ps.failure_policy.as_deref() == Some("Ignore"),
        });
    }
    out
}

fn code_of(reason: &str) -> u16 {
    match reason {
        "Unauthorized" => 401,
        "Forbidden" => 403,
        "RequestEntityTooLarge" => 413,
        _ => 422,
    }
}

/// What evaluating one binding found.
pub enum Outcome {
    Allowed,
    /// A validation failed (its reason and message).
    Failed {
        reason: String,
        message: String,
    },
    /// Something could not be evaluated.
    Error(String),
}

impl Bound {
    pub fn constraints(&self) -> (&MatchResources, Option<&MatchResources>) {
        (&self.constraints, self.narrowing.as_ref())
    }

    pub fn param_kind(&self) -> Option<&(String, String)> {
        self.param_kind.as_ref()
    }

    pub fn param_ref(&self) -> Option<&ParamRef> {
        self.param_ref.as_ref()
    }

    /// Evaluates the policy for one set of params (None: it takes none).
    pub fn evaluate(
        &self,
        obj: Option<&Value>,
        old: Option<&Value>,
        request: &Value,
        params: Option<&Value>,
        namespace: Option<&Value>,
    ) -> Outcome {
        let mut env = Env::new(obj, old, request);
        env = env.with("params", params.unwrap_or(&Value::Null));
        if let Some(ns) = namespace {
            env = env.with("namespaceObject", ns);
        }
        for (name, p) in &self.conditions {
            let p = match p {
                Ok(p) => p,
                Err(e) => return Outcome::Error(format!("matchCondition {name:?}: {e}")),
            };
            match env.test(p) {
                Ok(true) => {}
                Ok(false) => return Outcome::Allowed,
                Err(e) => return Outcome::Error(format!("matchCondition {name:?}: {e}")),
            }
        }
        let env = env.with_variables(&self.variables);
        for c in &self.checks {
            let p = match &c.program {
                Ok(p) => p,
                Err(e) => {
                    return Outcome::Error(format!(
                        "expression '{}' resulted in error: {e}",
                        c.expression
                    ))
                }
            };
            match env.test(p) {
                Ok(true) => {}
                Ok(false) => {
                    let message = c
                        .message_program
                        .as_ref()
                        .and_then(|m| env.text(m))
                        .filter(|m| !m.trim().is_empty())
                        .or_else(|| c.message.clone())
                        .unwrap_or_else(|| format!("failed expression: {}", c.expression));
                    return Outcome::Failed {
                        reason: c.reason.clone(),
                        message,
                    };
                }
                Err(e) => {
                    return Outcome::Error(format!(
                        "expression '{}' resulted in error: {e}",
                        c.expression
                    ))
                }
            }
        }
        Outcome::Allowed
    }

    /// What a failure means for the request: its refusal (Deny) and/or a warning (Warn).
    pub fn judge(
        &self,
        outcome: Outcome,
        warnings: &crate::store::Warnings,
    ) -> Result<(), ApiError> {
        let (reason, message) = match outcome {
            Outcome::Allowed => return Ok(()),
            Outcome::Failed { reason, message } => (reason, message),
            Outcome::Error(e) if self.ignore_failures => {
                tracing::warn!(policy = %self.policy, binding = %self.binding, error = %e, "policy evaluation failed; failurePolicy Ignore");
                return Ok(());
            }
            Outcome::Error(e) => ("Invalid".to_string(), e),
        };
        if self.warn {
            warnings.push(format!(
                "Validation failed for ValidatingAdmissionPolicy '{}' with binding '{}': {message}",
                self.policy, self.binding
            ));
        }
        if self.deny {
            return Err(ApiError::Denied {
                code: code_of(&reason),
                reason,
                message: format!(
                    "ValidatingAdmissionPolicy '{}' with binding '{}' denied request: {message}",
                    self.policy, self.binding
                ),
            });
        }
        Ok(())
    }

    /// The refusal when the params a binding names do not exist and it says Deny.
    pub fn missing_params(&self) -> Result<(), ApiError> {
        let deny = self
            .param_ref
            .as_ref()
            .and_then(|p| p.parameter_not_found_action.as_deref())
            == Some("Deny");
        if !deny {
            return Ok(());
        }
        Err(ApiError::Denied {
            code: 422,
            reason: "Invalid".into(),
            message: format!(
                "ValidatingAdmissionPolicy '{}' with binding '{}' denied request: failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction",
                self.policy, self.binding
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bound(validations: Value, actions: Value) -> Bound {
        let p: ValidatingAdmissionPolicy = serde_json::from_value(json!({
            "metadata": {"name": "max-replicas"},
            "spec": {"failurePolicy": "Fail",
                "matchConstraints": {"resourceRules": [{"operations": ["CREATE"],
                    "apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments"]}]},
                "variables": [{"name": "replicas", "expression": "object.spec.replicas"}],
                "validations": validations}
        }))
        .unwrap();
        let b: ValidatingAdmissionPolicyBinding = serde_json::from_value(json!({
            "metadata": {"name": "max-replicas-binding"},
            "spec": {"policyName": "max-replicas", "validationActions": actions}
        }))
        .unwrap();
        bind(&[p], &[b]).pop().expect("bound")
    }

    fn deploy(replicas: i64) -> Value {
        json!({"metadata": {"name": "d"}, "spec": {"replicas": replicas}})
    }

    #[test]
    fn a_failed_validation_denies_in_kubes_words() {
        let b = bound(
            json!([{"expression": "variables.replicas <= 5"}]),
            json!(["Deny"]),
        );
        let w = crate::store::Warnings::default();
        let ok = b.evaluate(Some(&deploy(3)), None, &json!({}), None, None);
        assert!(b.judge(ok, &w).is_ok());
        let bad = b.evaluate(Some(&deploy(7)), None, &json!({}), None, None);
        let e = b.judge(bad, &w).unwrap_err();
        assert_eq!(e.code(), 422);
        assert_eq!(
            e.to_string(),
            "ValidatingAdmissionPolicy 'max-replicas' with binding 'max-replicas-binding' denied request: failed expression: variables.replicas <= 5"
        );
    }

    #[test]
    fn messages_reasons_and_warn() {
        let b = bound(
            json!([{"expression": "object.spec.replicas <= 5", "reason": "Forbidden",
                    "messageExpression": "'replicas ' + string(object.spec.replicas) + ' > 5'"}]),
            json!(["Warn"]),
        );
        let w = crate::store::Warnings::default();
        let bad = b.evaluate(Some(&deploy(9)), None, &json!({}), None, None);
        assert!(b.judge(bad, &w).is_ok(), "Warn only warns");
        assert_eq!(
            w.take(),
            ["Validation failed for ValidatingAdmissionPolicy 'max-replicas' with binding 'max-replicas-binding': replicas 9 > 5"]
        );
        let d = bound(
            json!([{"expression": "object.spec.replicas <= 5", "reason": "Forbidden"}]),
            json!(["Deny"]),
        );
        let bad = d.evaluate(Some(&deploy(9)), None, &json!({}), None, None);
        assert_eq!(d.judge(bad, &w).unwrap_err().code(), 403);
    }

    #[test]
    fn params_and_errors() {
        let b = bound(
            json!([{"expression": "object.spec.replicas <= params.data.max"}]),
            json!(["Deny"]),
        );
        let w = crate::store::Warnings::default();
        let params = json!({"data": {"max": 4}});
        let r = b.evaluate(Some(&deploy(3)), None, &json!({}), Some(&params), None);
        assert!(b.judge(r, &w).is_ok());
        let r = b.evaluate(Some(&deploy(5)), None, &json!({}), Some(&params), None);
        assert!(b.judge(r, &w).is_err());
        // No params: the expression errors, and failurePolicy Fail refuses.
        let r = b.evaluate(Some(&deploy(1)), None, &json!({}), None, None);
        let e = b.judge(r, &w).unwrap_err().to_string();
        assert!(e.contains("resulted in error"), "{e}");
    }
}
