//! A custom kind decoding, defaulting, pruning, validating and counting generations as
//! kube-apiserver does for a CronTab.

use super::*;
use serde_json::json;

fn crd(established: bool) -> CustomResourceDefinition {
    let conditions = if established {
        json!([{"type": "Established", "status": "True"}])
    } else {
        json!([])
    };
    serde_json::from_value(json!({
        "metadata": {"name": "crontabs.stable.example.com"},
        "spec": {
            "group": "stable.example.com", "scope": "Namespaced",
            "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab",
                      "listKind": "CronTabList", "shortNames": ["ct"], "categories": ["all"]},
            "versions": [
                {"name": "v1", "served": true, "storage": true,
                 "subresources": {"status": {}},
                 "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                     "spec": {"type": "object", "properties": {
                         "cronSpec": {"type": "string"},
                         "replicas": {"type": "integer", "default": 1, "minimum": 0}}},
                     "status": {"type": "object", "properties": {"ready": {"type": "integer"}}}}}}},
                {"name": "v0", "served": false, "storage": false,
                 "schema": {"openAPIV3Schema": {"type": "object"}}}
            ]
        },
        "status": {"conditions": conditions,
                   "acceptedNames": {"plural": "crontabs", "kind": "CronTab", "shortNames": ["ct"]}}
    }))
    .unwrap()
}

fn kind() -> Arc<dyn Strategy> {
    build(&crd(true), &Default::default())
        .pop()
        .expect("one served version")
}

#[test]
fn served_versions_under_accepted_names_once_established() {
    assert!(build(&crd(false), &Default::default()).is_empty());
    let kinds = build(&crd(true), &Default::default());
    assert_eq!(kinds.len(), 1);
    let i = kinds[0].info();
    assert_eq!(
        (
            i.group,
            i.version,
            i.kind,
            i.list_kind,
            i.plural,
            i.singular
        ),
        (
            "stable.example.com",
            "v1",
            "CronTab",
            "CronTabList",
            "crontabs",
            "crontab"
        )
    );
    assert!(i.namespaced && i.status && !i.generation);
    assert_eq!(i.short_names, &["ct"]);
    assert_eq!(i.schema_name, "com.example.stable.v1.CronTab");
    assert!(i.subresource("status").is_some());
}

#[test]
fn decode_prunes_and_defaults() {
    let k = kind();
    let body = json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab",
        "metadata": {"name": "c", "namespace": "default", "bogus": 1},
        "spec": {"cronSpec": "* * * * *", "unknownField": true}});
    let bytes = serde_json::to_vec(&body).unwrap();
    let v = k.decode(&bytes).unwrap();
    assert_eq!(v["spec"], json!({"cronSpec": "* * * * *", "replicas": 1}));
    assert!(v["metadata"].get("bogus").is_none());
    assert_eq!(
        k.unknown_fields(&bytes),
        vec![
            "metadata.bogus".to_string(),
            "spec.unknownField".to_string()
        ]
    );
    let wrong =
        serde_json::to_vec(&json!({"apiVersion": "stable.example.com/v2", "kind": "CronTab"}))
            .unwrap();
    assert!(k.decode(&wrong).is_err());
}

#[test]
fn validation_has_kubes_messages() {
    let k = kind();
    let obj = json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab",
        "metadata": {"name": "c", "namespace": "default"}, "spec": {"replicas": -1}});
    let err = k.validate(&obj, None).unwrap_err().to_string();
    assert_eq!(
        err,
        r#"CronTab.stable.example.com "c" is invalid: spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0"#
    );
}

#[test]
fn generation_counts_all_but_metadata_and_status() {
    let k = kind();
    let mut obj = json!({"metadata": {"name": "c"}, "spec": {"a": 1}, "status": {"ready": 1}});
    k.prepare_create(&mut obj).unwrap();
    assert_eq!(obj["metadata"]["generation"], 1);
    assert!(obj.get("status").is_none());
    let old = obj.clone();
    let mut same = old.clone();
    same["metadata"]["labels"] = json!({"x": "y"});
    k.prepare_update(&mut same, &old).unwrap();
    assert_eq!(same["metadata"]["generation"], 1);
    let mut changed = old.clone();
    changed["other"] = json!(true);
    k.prepare_update(&mut changed, &old).unwrap();
    assert_eq!(changed["metadata"]["generation"], 2);
}

#[test]
fn selectable_fields_are_field_selector_values() {
    let mut c = crd(true);
    c.spec.versions[0].selectable_fields = Some(
        serde_json::from_value(json!([{"jsonPath": ".spec.cronSpec"},
            {"jsonPath": ".spec.replicas"}, {"jsonPath": ".spec.suspended"}]))
        .unwrap(),
    );
    let k = build(&c, &Default::default()).pop().unwrap();
    assert_eq!(
        k.info().selectable_fields(),
        [
            "metadata.name",
            "metadata.namespace",
            "spec.cronSpec",
            "spec.replicas",
            "spec.suspended"
        ]
    );
    let obj = json!({"metadata": {"name": "c", "namespace": "ns"},
        "spec": {"cronSpec": "* * * * *", "replicas": 3}});
    assert_eq!(
        k.fields(&obj),
        [
            ("metadata.name", "c".to_string()),
            ("metadata.namespace", "ns".to_string()),
            ("spec.cronSpec", "* * * * *".to_string()),
            ("spec.replicas", "3".to_string()),
            ("spec.suspended", String::new()),
        ]
    );
}
