//! CRD schemas kube-apiserver 1.33 refuses, with its messages.

use super::{check, violations};
use crate::schema::Props;
use serde_json::{json, Value};

const P: &str = "spec.validation.openAPIV3Schema";

fn errors(v: Value, status: bool) -> Vec<String> {
    let s: Props = serde_json::from_value(v).unwrap();
    check(&s, P, status).iter().map(|e| e.to_string()).collect()
}

fn one(v: Value, want: &str) {
    assert_eq!(errors(v, false), vec![want.to_string()]);
}

#[test]
fn a_structural_schema_passes() {
    let s = json!({"type": "object", "properties": {
        "metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}}},
        "spec": {"type": "object", "properties": {
            "replicas": {"type": "integer", "default": 1, "minimum": 0},
            "port": {"x-kubernetes-int-or-string": true,
                     "anyOf": [{"type": "integer"}, {"type": "string"}]},
            "any": {"x-kubernetes-preserve-unknown-fields": true},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "items": {"type": "array", "x-kubernetes-list-type": "map",
                      "x-kubernetes-list-map-keys": ["name"],
                      "items": {"type": "object", "required": ["name"],
                                "properties": {"name": {"type": "string"}}}},
            "mode": {"type": "string", "anyOf": [{"enum": ["a"]}, {"pattern": "^b"}]}
        }},
        "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}
    }});
    assert_eq!(errors(s.clone(), true), Vec::<String>::new());
    let parsed: Props = serde_json::from_value(s).unwrap();
    assert!(violations(&parsed, P).is_empty());
}

#[test]
fn untyped_fields_are_not_structural() {
    one(
        json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {"foo": {}}}}}),
        "spec.validation.openAPIV3Schema.properties[spec].properties[foo].type: Required value: must not be empty for specified object fields",
    );
    one(
        json!({"type": "object", "properties": {"l": {"type": "array", "items": {}}}}),
        "spec.validation.openAPIV3Schema.properties[l].items.type: Required value: must not be empty for specified array items",
    );
    one(
        json!({"type": "object", "properties": {"l": {"type": "array"}}}),
        "spec.validation.openAPIV3Schema.properties[l].items: Required value: must be specified",
    );
    one(
        json!({}),
        "spec.validation.openAPIV3Schema.type: Required value: must not be empty at the root",
    );
    one(
        json!({"type": "string"}),
        r#"spec.validation.openAPIV3Schema.type: Invalid value: "string": must be object at the root"#,
    );
}

#[test]
fn junctions_must_not_specify_structure() {
    one(
        json!({"type": "object", "properties": {"a": {"type": "string", "anyOf": [{"type": "string"}]}}}),
        "spec.validation.openAPIV3Schema.properties[a].anyOf[0].type: Forbidden: must be empty to be structural",
    );
    // As kube, completeness is checked from the root's junctions down.
    one(
        json!({"type": "object", "properties": {"a": {"type": "object"}},
               "oneOf": [{"properties": {"a": {"properties": {"b": {}}}}}]}),
        "spec.validation.openAPIV3Schema.properties[a].properties[b]: Required value: because it is defined in spec.validation.openAPIV3Schema.oneOf[0].properties[a].properties[b]",
    );
}

#[test]
fn metadata_at_the_root_names_only_name_and_generate_name() {
    one(
        json!({"type": "object", "properties": {"metadata": {"type": "object",
            "properties": {"labels": {"type": "object"}}}}}),
        "spec.validation.openAPIV3Schema.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified",
    );
    one(
        json!({"type": "object", "properties": {"kind": {"type": "integer"}}}),
        r#"spec.validation.openAPIV3Schema.properties[kind].type: Invalid value: "integer": must be string"#,
    );
}

#[test]
fn unsupported_keywords() {
    one(
        json!({"type": "object", "properties": {"a": {"type": "string", "$ref": "#/x"}}}),
        "spec.validation.openAPIV3Schema.properties[a].$ref: Forbidden: $ref is not supported",
    );
    one(
        json!({"type": "object", "properties": {"a": {"type": "array", "uniqueItems": true, "items": {"type": "string"}}}}),
        "spec.validation.openAPIV3Schema.properties[a].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
    );
    one(
        json!({"type": "object", "properties": {"a": {"type": "object",
            "properties": {"b": {"type": "string"}}, "additionalProperties": {"type": "string"}}}}),
        "spec.validation.openAPIV3Schema.properties[a].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive",
    );
    one(
        json!({"type": "object", "properties": {"a": {"type": "thing"}}}),
        r#"spec.validation.openAPIV3Schema.properties[a].type: Unsupported value: "thing": supported values: "array", "boolean", "integer", "number", "object", "string""#,
    );
    one(
        json!({"type": "object", "properties": {"a": {"type": "string", "x-kubernetes-preserve-unknown-fields": false}}}),
        "spec.validation.openAPIV3Schema.properties[a].x-kubernetes-preserve-unknown-fields: Invalid value: false: must be true or undefined",
    );
    one(
        json!({"type": "object", "properties": {"metadata": {"type": "object", "default": {}}}}),
        "spec.validation.openAPIV3Schema.properties[metadata].default: Forbidden: must not be set in top-level metadata",
    );
}

#[test]
fn list_types() {
    one(
        json!({"type": "object", "properties": {"a": {"type": "array", "x-kubernetes-list-type": "map",
            "items": {"type": "object", "properties": {"k": {"type": "string"}}}}}}),
        "spec.validation.openAPIV3Schema.properties[a].x-kubernetes-list-map-keys: Required value: must not be empty if x-kubernetes-list-type is map",
    );
    one(
        json!({"type": "object", "properties": {"a": {"type": "array", "x-kubernetes-list-type": "bag",
            "items": {"type": "string"}}}}),
        r#"spec.validation.openAPIV3Schema.properties[a].x-kubernetes-list-type: Unsupported value: "bag": supported values: "atomic", "set", "map""#,
    );
}

#[test]
fn defaults_must_be_valid_and_pruned() {
    one(
        json!({"type": "object", "properties": {"r": {"type": "integer", "default": "one"}}}),
        r#"spec.validation.openAPIV3Schema.properties[r].default: Invalid value: "string":  in body must be of type integer: "string""#,
    );
    one(
        json!({"type": "object", "properties": {"o": {"type": "object", "default": {"x": 1},
            "properties": {"y": {"type": "integer"}}}}}),
        r#"spec.validation.openAPIV3Schema.properties[o].default: Invalid value: map[string]interface {}{"x":1}: must not have unknown fields"#,
    );
}

#[test]
fn the_root_with_a_status_subresource() {
    assert_eq!(
        errors(json!({"type": "object", "properties": {"a": {"type": "string"}},
            "anyOf": [{"required": ["a"]}]}), true),
        vec!["spec.validation.openAPIV3Schema: Invalid value: v1.JSONSchemaProps{...}: only [Description Type Format Title Maximum ExclusiveMaximum Minimum ExclusiveMinimum MaxLength MinLength Pattern MaxItems MinItems UniqueItems MultipleOf Required Items Properties ExternalDocs Example XPreserveUnknownFields XValidations] fields are allowed at the root of the schema if the status subresource is enabled".to_string()]
    );
    assert_eq!(
        errors(json!({"type": "object", "nullable": true}), false),
        vec!["spec.validation.openAPIV3Schema.nullable: Forbidden: nullable cannot be true at the root".to_string()]
    );
}
