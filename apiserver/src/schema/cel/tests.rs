//! Rules as kube's CRD documentation writes them, failing with kube-apiserver's messages.

use super::*;
use serde_json::json;

fn schema() -> Props {
    serde_json::from_value(json!({
        "type": "object",
        "x-kubernetes-validations": [{"rule": "self.metadata.name != 'forbidden'"}],
        "properties": {
            "spec": {
                "type": "object",
                "x-kubernetes-validations": [
                    {"rule": "self.minReplicas <= self.replicas",
                     "message": "replicas should be greater than or equal to minReplicas"},
                    {"rule": "self.replicas <= 10",
                     "messageExpression": "'replicas ' + string(self.replicas) + ' is more than 10'"},
                    {"rule": "!has(self.paused) || self.replicas == 0", "reason": "FieldValueForbidden",
                     "fieldPath": ".paused", "message": "must not be set while replicas run"}
                ],
                "properties": {
                    "name": {"type": "string",
                             "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "Value is immutable"}]},
                    "memory": {"type": "string",
                               "x-kubernetes-validations": [{"rule": "quantity(self).isLessThan(quantity('1Gi'))"}]},
                    "replicas": {"type": "integer"},
                    "minReplicas": {"type": "integer"},
                    "paused": {"type": "boolean"}
                }
            }
        }
    }))
    .unwrap()
}

fn errors(obj: Value, old: Option<Value>) -> Vec<String> {
    let s = schema();
    let rules = compile(&s, "stable.example.com", "v1", "CronTab").expect("rules");
    rules
        .check(&s, &obj, old.as_ref())
        .iter()
        .map(|e| e.to_string())
        .collect()
}

fn obj(spec: Value) -> Value {
    json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab",
           "metadata": {"name": "c"}, "spec": spec})
}

#[test]
fn passing_rules_give_no_errors() {
    let o = obj(json!({"name": "a", "memory": "512Mi", "replicas": 2, "minReplicas": 1}));
    assert_eq!(errors(o.clone(), None), Vec::<String>::new());
    assert_eq!(errors(o.clone(), Some(o)), Vec::<String>::new());
}

#[test]
fn failures_have_kubes_messages() {
    let o = obj(json!({"replicas": 1, "minReplicas": 2}));
    assert_eq!(
        errors(o, None),
        [
            r#"spec: Invalid value: "object": replicas should be greater than or equal to minReplicas"#
        ]
    );
    let o = obj(json!({"replicas": 11, "minReplicas": 2}));
    assert_eq!(
        errors(o, None),
        [r#"spec: Invalid value: "object": replicas 11 is more than 10"#]
    );
    let o = obj(json!({"replicas": 1, "minReplicas": 0, "paused": true}));
    assert_eq!(
        errors(o, None),
        ["spec.paused: Forbidden: must not be set while replicas run"]
    );
    let o = obj(json!({"memory": "2Gi", "replicas": 1, "minReplicas": 0}));
    assert_eq!(
        errors(o, None),
        [
            r#"spec.memory: Invalid value: "string": failed rule: quantity(self).isLessThan(quantity('1Gi'))"#
        ]
    );
    let mut o = obj(json!({"replicas": 1, "minReplicas": 0}));
    o["metadata"]["name"] = json!("forbidden");
    assert_eq!(
        errors(o, None),
        [r#"<nil>: Invalid value: "object": failed rule: self.metadata.name != 'forbidden'"#]
    );
}

#[test]
fn transition_rules_run_on_updates_only() {
    let old = obj(json!({"name": "a", "replicas": 1, "minReplicas": 0}));
    let new = obj(json!({"name": "b", "replicas": 1, "minReplicas": 0}));
    assert_eq!(errors(new.clone(), None), Vec::<String>::new());
    assert_eq!(
        errors(new, Some(old)),
        [r#"spec.name: Invalid value: "string": Value is immutable"#]
    );
}

#[test]
fn schemas_without_rules_compile_to_nothing() {
    let s: Props = serde_json::from_value(json!({"type": "object",
        "properties": {"spec": {"type": "object"}}}))
    .unwrap();
    assert!(!has_rules(&s));
    assert!(compile(&s, "g.io", "v1", "K").is_none());
}

#[test]
fn rules_that_do_not_compile_are_refused_with_their_path() {
    let s: Props = serde_json::from_value(json!({"type": "object", "properties": {
        "spec": {"type": "object", "x-kubernetes-validations": [
            {"rule": "self.a <"}, {"rule": "true", "reason": "Nope"}]}}}))
    .unwrap();
    let errs: Vec<String> = compile_errors(&s, "spec.validation.openAPIV3Schema")
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[0].starts_with(
        r#"spec.validation.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule: Invalid value: "self.a <": compilation failed: "#
    ), "{errs:?}");
    assert_eq!(
        errs[1],
        r#"spec.validation.openAPIV3Schema.properties[spec].x-kubernetes-validations[1].reason: Unsupported value: "Nope": supported values: "FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired", "FieldValueDuplicate""#
    );
}
