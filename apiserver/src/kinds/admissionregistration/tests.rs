//! Webhook configurations kube-apiserver refuses, with its messages, and its defaults.

use super::*;
use serde_json::{json, Value};

fn config(hook: Value) -> ValidatingWebhookConfiguration {
    serde_json::from_value(json!({"metadata": {"name": "c"}, "webhooks": [hook]})).unwrap()
}

fn good() -> Value {
    json!({"name": "deny.flotilla.dev", "admissionReviewVersions": ["v1"],
           "sideEffects": "None",
           "clientConfig": {"url": "https://127.0.0.1:9443/validate"},
           "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                      "resources": ["configmaps"]}]})
}

fn errors(hook: Value) -> Vec<String> {
    ValidatingWebhookConfigurations::validate(&config(hook))
        .iter()
        .map(|e| e.to_string())
        .collect()
}

fn with(field: &str, v: Value) -> Value {
    let mut h = good();
    h[field] = v;
    h
}

#[test]
fn a_good_webhook_is_defaulted_as_kube_does() {
    assert_eq!(errors(good()), Vec::<String>::new());
    let mut c = config(good());
    ValidatingWebhookConfigurations::default(&mut c);
    let w = &c.webhooks.unwrap()[0];
    assert_eq!(w.failure_policy.as_deref(), Some("Fail"));
    assert_eq!(w.match_policy.as_deref(), Some("Equivalent"));
    assert_eq!(w.timeout_seconds, Some(10));
    assert_eq!(w.rules.as_ref().unwrap()[0].scope.as_deref(), Some("*"));
    assert!(w.namespace_selector.is_some() && w.object_selector.is_some());
}

#[test]
fn bad_webhooks_are_refused() {
    let cases = [
        (
            with("name", json!("deny")),
            r#"webhooks[0].name: Invalid value: "deny": should be a domain with at least three segments separated by dots"#,
        ),
        (
            with("sideEffects", json!("Some")),
            r#"webhooks[0].sideEffects: Unsupported value: "Some": supported values: "None", "NoneOnDryRun""#,
        ),
        (
            with("timeoutSeconds", json!(31)),
            "webhooks[0].timeoutSeconds: Invalid value: 31: the timeout value must be between 1 and 30 seconds",
        ),
        (
            with("clientConfig", json!({"url": "http://127.0.0.1/x"})),
            r#"webhooks[0].clientConfig.url: Invalid value: "http://127.0.0.1/x": 'https' is the only allowed URL scheme"#,
        ),
        (
            with("clientConfig", json!({})),
            "webhooks[0].clientConfig: Required value: exactly one of url or service is required",
        ),
        (
            with("admissionReviewVersions", json!(["v2"])),
            r#"webhooks[0].admissionReviewVersions: Invalid value: []string{"v2"}: must include at least one of v1, v1beta1"#,
        ),
        (
            with("matchConditions", json!([{"name": "a", "expression": "object.x <"}])),
            r#"webhooks[0].matchConditions[0].expression: Invalid value: "object.x <": compilation failed: "#,
        ),
    ];
    for (hook, want) in cases {
        let got = errors(hook);
        assert!(
            got.len() == 1 && got[0].starts_with(want),
            "want {want}, got {got:?}"
        );
    }
    let c: ValidatingWebhookConfiguration =
        serde_json::from_value(json!({"metadata": {"name": "c"}, "webhooks": [good(), good()]}))
            .unwrap();
    let errs: Vec<String> = ValidatingWebhookConfigurations::validate(&c)
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(
        errs,
        [r#"webhooks[1].name: Duplicate value: "deny.flotilla.dev""#]
    );
}
