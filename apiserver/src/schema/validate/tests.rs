//! Cases with the messages kube-apiserver 1.33 gives for the same schema and object.

use super::validate;
use crate::schema::Props;
use serde_json::{json, Value};

fn schema(v: Value) -> Props {
    serde_json::from_value(v).expect("a schema")
}

/// The CronTab of Kubernetes' CRD walkthrough, with a few more constraints.
fn crontab() -> Props {
    schema(json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["cronSpec"],
                "properties": {
                    "cronSpec": {"type": "string", "pattern": "^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$"},
                    "image": {"type": "string", "maxLength": 10, "minLength": 2},
                    "replicas": {"type": "integer", "minimum": 1, "maximum": 10},
                    "ratio": {"type": "number", "multipleOf": 0.5, "exclusiveMaximum": true, "maximum": 2},
                    "policy": {"type": "string", "enum": ["Allow", "Forbid"]},
                    "port": {"x-kubernetes-int-or-string": true},
                    "when": {"type": "string", "format": "date-time"},
                    "note": {"type": "string", "nullable": true},
                    "tags": {"type": "array", "maxItems": 2, "minItems": 1, "uniqueItems": true,
                             "items": {"type": "string"}},
                    "labels": {"type": "object", "maxProperties": 1,
                               "additionalProperties": {"type": "integer"}}
                }
            }
        }
    }))
}

fn errors(s: &Props, v: Value) -> Vec<String> {
    validate(s, &v, "").iter().map(|e| e.to_string()).collect()
}

#[test]
fn a_valid_object_has_no_errors() {
    let v = json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab",
        "metadata": {"name": "x"},
        "spec": {"cronSpec": "* * * * */5", "image": "my-image", "replicas": 3, "ratio": 1.5,
                 "policy": "Allow", "port": "http", "when": "2024-01-02T03:04:05Z", "note": null,
                 "tags": ["a"], "labels": {"a": 1}}});
    assert_eq!(errors(&crontab(), v), Vec::<String>::new());
    let v = json!({"spec": {"cronSpec": "1 2 3 4 5", "port": 8080, "replicas": 2.0}});
    assert_eq!(errors(&crontab(), v), Vec::<String>::new());
}

#[test]
fn types_as_kube_reports_them() {
    let cases = [
        (
            json!({"spec": {"cronSpec": "* * * * *", "replicas": "3"}}),
            r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#,
        ),
        (
            json!({"spec": {"cronSpec": "* * * * *", "replicas": 1.5}}),
            r#"spec.replicas: Invalid value: "number": spec.replicas in body must be of type integer: "number""#,
        ),
        (
            json!({"spec": {"cronSpec": "* * * * *", "port": true}}),
            r#"spec.port: Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean""#,
        ),
        (
            json!({"spec": {"cronSpec": "* * * * *", "image": null}}),
            r#"spec.image: Invalid value: "null": spec.image in body must be of type string: "null""#,
        ),
        (
            json!({"spec": "no"}),
            r#"spec: Invalid value: "string": spec in body must be of type object: "string""#,
        ),
        (
            json!({"spec": {"cronSpec": "* * * * *", "tags": [1]}}),
            r#"spec.tags[0]: Invalid value: "integer": spec.tags[0] in body must be of type string: "integer""#,
        ),
        (
            json!({"spec": {"cronSpec": "* * * * *", "labels": {"a": "b"}}}),
            r#"spec.labels.a: Invalid value: "string": spec.labels.a in body must be of type integer: "string""#,
        ),
    ];
    for (v, want) in cases {
        assert_eq!(errors(&crontab(), v), vec![want.to_string()]);
    }
}

#[test]
fn values_as_kube_reports_them() {
    let cases = [
        (json!({"spec": {}}), "spec.cronSpec: Required value"),
        (json!({"spec": {"cronSpec": "every minute"}}),
         r#"spec.cronSpec: Invalid value: "every minute": spec.cronSpec in body should match '^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$'"#),
        (json!({"spec": {"cronSpec": "* * * * *", "replicas": 0}}),
         "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1"),
        (json!({"spec": {"cronSpec": "* * * * *", "replicas": 11}}),
         "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10"),
        (json!({"spec": {"cronSpec": "* * * * *", "ratio": 2.0}}),
         "spec.ratio: Invalid value: 2: spec.ratio in body should be less than 2"),
        (json!({"spec": {"cronSpec": "* * * * *", "ratio": 0.7}}),
         "spec.ratio: Invalid value: 0.7: spec.ratio in body should be a multiple of 0.5"),
        (json!({"spec": {"cronSpec": "* * * * *", "image": "a-very-long-image"}}),
         "spec.image: Too long: may not be more than 10 bytes"),
        (json!({"spec": {"cronSpec": "* * * * *", "image": "a"}}),
         r#"spec.image: Invalid value: "a": spec.image in body should be at least 2 chars long"#),
        (json!({"spec": {"cronSpec": "* * * * *", "policy": "Maybe"}}),
         r#"spec.policy: Unsupported value: "Maybe": supported values: "Allow", "Forbid""#),
        (json!({"spec": {"cronSpec": "* * * * *", "when": "tomorrow"}}),
         r#"spec.when: Invalid value: "tomorrow": spec.when in body must be of type date-time: "tomorrow""#),
        (json!({"spec": {"cronSpec": "* * * * *", "tags": []}}),
         "spec.tags: Invalid value: 0: spec.tags in body should have at least 1 items"),
        (json!({"spec": {"cronSpec": "* * * * *", "tags": ["a", "b", "c"]}}),
         "spec.tags: Too many: 3: must have at most 2 items"),
        (json!({"spec": {"cronSpec": "* * * * *", "tags": ["a", "a"]}}),
         r#"spec.tags: Invalid value: "": spec.tags in body shouldn't contain duplicates"#),
        (json!({"spec": {"cronSpec": "* * * * *", "labels": {"a": 1, "b": 2}}}),
         "spec.labels: Too many: 2: must have at most 1 items"),
    ];
    for (v, want) in cases {
        assert_eq!(errors(&crontab(), v), vec![want.to_string()]);
    }
}

#[test]
fn every_error_is_reported() {
    let v = json!({"spec": {"replicas": "x", "policy": 3}});
    assert_eq!(
        errors(&crontab(), v),
        vec![
            r#"spec.policy: Invalid value: "integer": spec.policy in body must be of type string: "integer""#.to_string(),
            r#"spec.policy: Unsupported value: 3: supported values: "Allow", "Forbid""#.to_string(),
            r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#.to_string(),
            "spec.cronSpec: Required value".to_string(),
        ]
    );
}

#[test]
fn required_at_the_root_and_status_paths() {
    let s = schema(json!({"type": "object", "required": ["spec"],
        "properties": {"spec": {"type": "object"}}}));
    assert_eq!(
        errors(&s, json!({})),
        vec!["spec: Required value".to_string()]
    );
    let status = schema(json!({"type": "object", "properties": {"phase": {"type": "string"}}}));
    let e: Vec<String> = validate(&status, &json!({"phase": 1}), "status")
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(
        e,
        vec![r#"status.phase: Invalid value: "integer": status.phase in body must be of type string: "integer""#.to_string()]
    );
}

#[test]
fn junctions_report_only_that_they_failed() {
    let s = schema(
        json!({"type": "object", "properties": {"spec": {"type": "object",
        "anyOf": [{"required": ["a"]}, {"required": ["b"]}],
        "oneOf": [{"required": ["a"]}, {"required": ["c"]}],
        "not": {"required": ["d"]},
        "properties": {"a": {"type": "string"}, "b": {"type": "string"},
                       "c": {"type": "string"}, "d": {"type": "string"}}}}}),
    );
    assert_eq!(
        errors(&s, json!({"spec": {"a": "x"}})),
        Vec::<String>::new()
    );
    assert_eq!(
        errors(&s, json!({"spec": {"c": "x", "d": "y"}})),
        vec![
            r#"<nil>: Invalid value: "": "spec" must validate at least one schema (anyOf)"#
                .to_string(),
            r#"<nil>: Invalid value: "": "spec" must not validate the schema (not)"#.to_string(),
        ]
    );
    assert_eq!(
        errors(&s, json!({"spec": {"a": "x", "c": "y"}})),
        vec![r#"<nil>: Invalid value: "": "spec" must validate one and only one schema (oneOf). Found 2 valid alternatives"#.to_string()]
    );
}

#[test]
fn a_bad_pattern_is_an_error_not_a_panic() {
    let s =
        schema(json!({"type": "object", "properties": {"x": {"type": "string", "pattern": "a("}}}));
    let e = errors(&s, json!({"x": "a"}));
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with(
            r#"x: Invalid value: "a": x in body should match 'a(, but pattern is invalid: "#
        ),
        "{e:?}"
    );
}
