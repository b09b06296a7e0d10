//! CRDs kube-apiserver 1.33 refuses, with its messages.

use super::{validate, validate_update};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{json, Value};

fn crontab() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "crontabs.stable.example.com"},
        "spec": {
            "group": "stable.example.com", "scope": "Namespaced",
            "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab",
                      "listKind": "CronTabList", "shortNames": ["ct"]},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        "replicas": {"type": "integer"}}},
                    "status": {"type": "object", "properties": {
                        "replicas": {"type": "integer"}}}}}},
                "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
                    "statusReplicasPath": ".status.replicas"}},
                "additionalPrinterColumns": [{"name": "Replicas", "type": "integer",
                    "jsonPath": ".spec.replicas"}]
            }]
        }
    })
}

fn errors(v: Value) -> Vec<String> {
    let crd: CustomResourceDefinition = serde_json::from_value(v).unwrap();
    validate(&crd).iter().map(|e| e.to_string()).collect()
}

fn with(path: &[&str], value: Value) -> Value {
    let mut v = crontab();
    let mut at = &mut v;
    for p in &path[..path.len() - 1] {
        at = match p.parse::<usize>() {
            Ok(i) => &mut at[i],
            Err(_) => &mut at[*p],
        };
    }
    at[path[path.len() - 1]] = value;
    v
}

#[test]
fn a_good_crd_passes() {
    assert_eq!(errors(crontab()), Vec::<String>::new());
}

#[test]
fn names_and_group() {
    let cases = [
        (
            with(&["metadata", "name"], json!("crontab.stable.example.com")),
            r#"metadata.name: Invalid value: "crontab.stable.example.com": must be spec.names.plural+"."+spec.group"#,
        ),
        (
            with(&["spec", "scope"], json!("Global")),
            r#"spec.scope: Unsupported value: "Global": supported values: "Cluster", "Namespaced""#,
        ),
        (
            with(&["spec", "names", "shortNames"], json!(["Ct"])),
            r#"spec.names.shortNames[0]: Invalid value: "Ct": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"#,
        ),
        (
            with(&["spec", "names", "listKind"], json!("CronTab")),
            r#"spec.names.listKind: Invalid value: "CronTab": kind and listKind may not be the same"#,
        ),
    ];
    for (v, want) in cases {
        assert_eq!(errors(v), vec![want.to_string()]);
    }
    let mut v = with(&["spec", "group"], json!("example"));
    v["metadata"]["name"] = json!("crontabs.example");
    assert_eq!(
        errors(v),
        vec![
            r#"spec.group: Invalid value: "example": should be a domain with at least one dot"#
                .to_string()
        ]
    );
}

#[test]
fn versions() {
    let v = with(&["spec", "versions", "0", "storage"], json!(false));
    assert_eq!(errors(v).len(), 1);
    let v = with(&["spec", "versions", "0", "schema"], json!(null));
    assert_eq!(
        errors(v),
        vec![
            "spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required"
                .to_string()
        ]
    );
    let v = with(
        &[
            "spec",
            "versions",
            "0",
            "schema",
            "openAPIV3Schema",
            "properties",
            "spec",
            "properties",
            "foo",
        ],
        json!({}),
    );
    assert_eq!(
        errors(v),
        vec!["spec.validation.openAPIV3Schema.properties[spec].properties[foo].type: Required value: must not be empty for specified object fields".to_string()]
    );
}

#[test]
fn subresources_and_columns() {
    let v = with(
        &[
            "spec",
            "versions",
            "0",
            "subresources",
            "scale",
            "specReplicasPath",
        ],
        json!(".status.x"),
    );
    assert_eq!(
        errors(v),
        vec![r#"spec.subresources.scale.specReplicasPath: Invalid value: ".status.x": should be a json path under .spec"#.to_string()]
    );
    let v = with(
        &[
            "spec",
            "versions",
            "0",
            "additionalPrinterColumns",
            "0",
            "type",
        ],
        json!("float"),
    );
    assert_eq!(
        errors(v),
        vec![r#"spec.additionalPrinterColumns[0].type: Invalid value: "float": must be one of boolean,date,integer,number,string"#.to_string()]
    );
    let v = with(
        &[
            "spec",
            "versions",
            "0",
            "additionalPrinterColumns",
            "0",
            "jsonPath",
        ],
        json!("spec.x"),
    );
    assert_eq!(
        errors(v),
        vec![r#"spec.additionalPrinterColumns[0].JSONPath: Invalid value: "spec.x": must be a simple json path starting with ."#.to_string()]
    );
}

#[test]
fn group_and_scope_are_immutable() {
    let old: CustomResourceDefinition = serde_json::from_value(crontab()).unwrap();
    let mut new = old.clone();
    new.spec.scope = "Cluster".into();
    let e: Vec<String> = validate_update(&new, &old)
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(
        e,
        vec![r#"spec.scope: Invalid value: "Cluster": field is immutable"#.to_string()]
    );
}

#[test]
fn selectable_fields() {
    let at = ["spec", "versions", "0", "selectableFields"];
    assert_eq!(
        errors(with(&at, json!([{"jsonPath": ".spec.replicas"}]))),
        Vec::<String>::new()
    );
    let cases = [
        (
            json!([{"jsonPath": "spec.replicas"}]),
            r#"spec.versions[0].selectableFields[0].jsonPath: Invalid value: "spec.replicas": must be a simple json path starting with ."#,
        ),
        (
            json!([{"jsonPath": ".metadata.name"}]),
            r#"spec.versions[0].selectableFields[0].jsonPath: Invalid value: ".metadata.name": must not point to metadata fields"#,
        ),
        (
            json!([{"jsonPath": ".spec.color"}]),
            r#"spec.versions[0].selectableFields[0].jsonPath: Invalid value: ".spec.color": is an invalid path: the schema does not specify it"#,
        ),
        (
            json!([{"jsonPath": ".spec"}]),
            r#"spec.versions[0].selectableFields[0].jsonPath: Invalid value: ".spec": must point to a field of type string, boolean or integer, not "object""#,
        ),
        (
            json!([{"jsonPath": ".spec.replicas"}, {"jsonPath": ".spec.replicas"}]),
            r#"spec.versions[0].selectableFields[1].jsonPath: Duplicate value: ".spec.replicas""#,
        ),
    ];
    for (fields, want) in cases {
        assert_eq!(errors(with(&at, fields)), vec![want.to_string()]);
    }
    let nine: Vec<Value> = (0..9)
        .map(|_| json!({"jsonPath": ".spec.replicas"}))
        .collect();
    assert!(errors(with(&at, json!(nine)))[0]
        .starts_with("spec.versions[0].selectableFields: Too many: 9: must have at most 8 items"));
}

#[test]
fn conversion_is_validated_as_kube_validates_it() {
    let c = |conversion: Value| errors(with(&["spec", "conversion"], conversion));
    assert_eq!(c(json!({"strategy": "None"})), Vec::<String>::new());
    assert_eq!(
        c(
            json!({"strategy": "Webhook", "webhook": {"conversionReviewVersions": ["v1"],
            "clientConfig": {"url": "https://conv.example.com/convert"}}})
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        c(json!({"strategy": "Magic"})),
        [
            r#"spec.conversion.strategy: Unsupported value: "Magic": supported values: "None", "Webhook""#
        ]
    );
    assert_eq!(
        c(json!({"strategy": "Webhook", "webhook": {"conversionReviewVersions": ["v1"]}})),
        ["spec.conversion.webhookClientConfig: Required value: required when strategy is set to Webhook"]
    );
    assert_eq!(
        c(json!({"strategy": "None", "webhook": {"conversionReviewVersions": ["v1"],
            "clientConfig": {"url": "https://conv.example.com/"}}})),
        [
            "spec.conversion.webhookClientConfig: Forbidden: should not be set when strategy is not set to Webhook",
            "spec.conversion.conversionReviewVersions: Forbidden: should not be set when strategy is not set to Webhook",
        ]
    );
    assert_eq!(
        c(
            json!({"strategy": "Webhook", "webhook": {"conversionReviewVersions": ["v1beta1"],
            "clientConfig": {"url": "http://conv.example.com/"}}})
        ),
        [
            r#"spec.conversion.webhookClientConfig.url: Invalid value: "http://conv.example.com/": 'https' is the only allowed URL scheme"#,
            r#"spec.conversion.conversionReviewVersions: Invalid value: []string{"v1beta1"}: must include at least one of v1"#,
        ]
    );
}
