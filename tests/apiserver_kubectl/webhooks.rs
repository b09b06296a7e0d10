//! Admission webhooks through kubectl, over two apiservers of one store: a small HTTPS
//! webhook server in the test (its certificate from a CA of its own, given as the
//! caBundle) mutates ConfigMaps (a label and a warning) and refuses some by name; a
//! webhook that does not answer in time follows its failurePolicy; a
//! ValidatingAdmissionPolicy with params refuses Deployments. The configurations are
//! applied through one replica and act on the other.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{json, Value};

use super::common::k8s::{kubectl, kubectl_ok, kubectl_stdin, Apiservers};
use super::common::wait_for;
use super::common::webhook::{hook, webhook_server};
use super::{json_of, stderr};

fn configmap(name: &str, labels: Value) -> String {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "labels": labels}, "data": {"a": "b"}})
    .to_string()
}

fn label(kc: &Path, what: &str) -> Option<String> {
    json_of(kc, &["get", what])["metadata"]["labels"]["injected-by"]
        .as_str()
        .map(str::to_string)
}

pub async fn admission_webhooks(a: &Apiservers) {
    let kc0 = a.kubeconfig(0).to_path_buf();
    let kc1 = a.kubeconfig(1).to_path_buf();
    let dir = tempfile::tempdir().unwrap();
    let (port, ca, calls) = webhook_server(dir.path()).await;
    let ca = serde_json::to_value(k8s_openapi::ByteString(ca)).unwrap();
    let url = |path: &str| format!("https://127.0.0.1:{port}{path}");

    let mutating = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "inject-label"},
        "webhooks": [hook("inject.flotilla.dev", url("/mutate"), &ca, "configmaps", json!({
            "objectSelector": {"matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]},
            "matchConditions": [{"name": "not-skipped-by-name",
                                 "expression": "!object.metadata.name.startsWith('skip-')"}]
        }))]
    });
    let validating = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "deny-names"},
        "webhooks": [
            hook("deny.flotilla.dev", url("/validate"), &ca, "configmaps", json!({})),
            hook("slow-fail.flotilla.dev", url("/slow"), &ca, "secrets", json!({
                "timeoutSeconds": 1, "failurePolicy": "Fail",
                "objectSelector": {"matchLabels": {"mode": "fail"}}})),
            hook("slow-ignore.flotilla.dev", url("/slow"), &ca, "secrets", json!({
                "timeoutSeconds": 1, "failurePolicy": "Ignore",
                "objectSelector": {"matchLabels": {"mode": "ignore"}}})),
        ]
    });
    for c in [&mutating, &validating] {
        let o = kubectl_stdin(&kc0, &["apply", "-f", "-"], &c.to_string());
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let v = json_of(
        &kc1,
        &["get", "validatingwebhookconfiguration", "deny-names"],
    );
    assert_eq!(
        v["webhooks"][0]["failurePolicy"], "Fail",
        "kube's defaults: {v}"
    );
    assert_eq!(v["webhooks"][0]["timeoutSeconds"], 10, "{v}");

    // The other replica calls the webhooks as soon as its cache has the configurations.
    let first = wait_for(
        Duration::from_secs(10),
        "the mutating webhook in effect",
        || {
            let kc1 = kc1.clone();
            async move {
                let n = format!("probe-{}", uuid_ish());
                let o = kubectl_stdin(&kc1, &["create", "-f", "-"], &configmap(&n, json!({})));
                assert!(o.status.success(), "{}", stderr(&o));
                label(&kc1, &format!("cm/{n}")).is_some().then_some(o)
            }
        },
    )
    .await;
    assert!(
        stderr(&first).contains("Warning: mutated by the test webhook"),
        "the webhook's warning reaches kubectl: {}",
        stderr(&first)
    );

    // Refused by name, in kube's words and with the webhook's code.
    let o = kubectl_stdin(
        &kc1,
        &["create", "-f", "-"],
        &configmap("forbidden-x", json!({})),
    );
    assert!(
        !o.status.success()
            && stderr(&o).contains(
                r#"admission webhook "deny.flotilla.dev" denied the request: the name is forbidden"#
            ),
        "{}",
        stderr(&o)
    );
    let raw = kubectl(&kc1, &["get", "cm", "forbidden-x"]);
    assert!(!raw.status.success(), "a refused object is not stored");

    // Selectors and matchConditions keep the webhook away.
    let o = kubectl_stdin(
        &kc1,
        &["create", "-f", "-"],
        &configmap("c-skip", json!({"skip": "yes"})),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(label(&kc1, "cm/c-skip"), None);
    let o = kubectl_stdin(
        &kc1,
        &["create", "-f", "-"],
        &configmap("skip-by-name", json!({})),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(label(&kc1, "cm/skip-by-name"), None);

    // Updates go through it too: removing the label brings it back.
    let o = kubectl_stdin(
        &kc0,
        &["create", "-f", "-"],
        &configmap("c1", json!({"app": "x"})),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(label(&kc0, "cm/c1").as_deref(), Some("webhook"));
    kubectl_ok(&kc0, &["label", "cm", "c1", "injected-by-"]);
    assert_eq!(label(&kc0, "cm/c1").as_deref(), Some("webhook"));

    // A server-side dry run reaches webhooks without side effects, and stores nothing.
    let dry = kubectl_stdin(
        &kc0,
        &["create", "--dry-run=server", "-o", "json", "-f", "-"],
        &configmap("dry", json!({})),
    );
    let dry: Value = serde_json::from_slice(&dry.stdout).unwrap_or_default();
    assert_eq!(dry["metadata"]["labels"]["injected-by"], "webhook", "{dry}");
    assert!(!kubectl(&kc0, &["get", "cm", "dry"]).status.success());

    // A webhook that does not answer within timeoutSeconds: Fail refuses, Ignore passes.
    let secret = |name: &str, mode: &str| {
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": name, "labels": {"mode": mode}},
               "stringData": {"k": "v"}})
        .to_string()
    };
    let o = kubectl_stdin(&kc0, &["create", "-f", "-"], &secret("s-fail", "fail"));
    let e = stderr(&o);
    assert!(
        !o.status.success()
            && e.contains(r#"failed calling webhook "slow-fail.flotilla.dev""#)
            && e.contains("context deadline exceeded"),
        "{e}"
    );
    let started = std::time::Instant::now();
    let o = kubectl_stdin(&kc0, &["create", "-f", "-"], &secret("s-ignore", "ignore"));
    assert!(o.status.success(), "{}", stderr(&o));
    // The webhook answers after 10 s: passing well before means its 1 s timeout cut it.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the 1 s timeout held"
    );
    assert!(calls.load(Ordering::SeqCst) >= 6);

    // ValidatingAdmissionPolicy: CEL over the object, with params from a ConfigMap the
    // binding names; refused with the validation's reason (Forbidden, 403).
    let limits = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "limits"}, "data": {"max": "3"}})
    .to_string();
    assert!(kubectl_stdin(&kc0, &["create", "-f", "-"], &limits)
        .status
        .success());
    let policy = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "max-replicas"},
        "spec": {"paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
            "matchConstraints": {"resourceRules": [{"operations": ["CREATE", "UPDATE"],
                "apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments"]}]},
            "variables": [{"name": "max", "expression": "int(params.data.max)"}],
            "validations": [{"expression": "object.spec.replicas <= variables.max",
                "messageExpression": "'replicas must be at most ' + params.data.max",
                "reason": "Forbidden"}]}
    });
    let binding = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": "max-replicas-binding"},
        "spec": {"policyName": "max-replicas", "validationActions": ["Deny"],
            "paramRef": {"name": "limits", "namespace": "default",
                         "parameterNotFoundAction": "Deny"}}
    });
    for o in [&policy, &binding] {
        let out = kubectl_stdin(&kc0, &["apply", "-f", "-"], &o.to_string());
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let deployment = |name: &str, replicas: u32| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
        .to_string()
    };
    let refused = wait_for(Duration::from_secs(10), "the policy in effect", || {
        let kc1 = kc1.clone();
        let d = deployment("big", 5);
        async move {
            let o = kubectl_stdin(&kc1, &["create", "-f", "-"], &d);
            (!o.status.success()).then(|| stderr(&o))
        }
    })
    .await;
    assert!(
        refused.contains("ValidatingAdmissionPolicy 'max-replicas' with binding 'max-replicas-binding' denied request: replicas must be at most 3"),
        "{refused}"
    );
    let o = kubectl_stdin(&kc1, &["create", "-f", "-"], &deployment("small", 2));
    assert!(o.status.success(), "{}", stderr(&o));
    kubectl_ok(
        &kc0,
        &[
            "delete",
            "validatingadmissionpolicybinding",
            "max-replicas-binding",
        ],
    );

    // Deleting the configurations takes the webhooks away.
    kubectl_ok(
        &kc0,
        &["delete", "validatingwebhookconfiguration", "deny-names"],
    );
    kubectl_ok(
        &kc0,
        &["delete", "mutatingwebhookconfiguration", "inject-label"],
    );
    wait_for(Duration::from_secs(10), "the webhooks gone", || {
        let kc1 = kc1.clone();
        async move {
            let o = kubectl_stdin(
                &kc1,
                &["apply", "-f", "-"],
                &configmap("forbidden-y", json!({})),
            );
            o.status.success().then_some(())
        }
    })
    .await;
    assert_eq!(label(&kc1, "cm/forbidden-y"), None);

    // DELETE and the scale subresource reach validating webhooks too: the object being
    // deleted (oldObject), and the Scale (autoscaling/v1) a scale writes.
    let o = kubectl_stdin(&kc0, &["create", "-f", "-"], &deployment("forbidden-d", 1));
    assert!(o.status.success(), "{}", stderr(&o));
    let mut on_delete = hook(
        "deny-delete.flotilla.dev",
        url("/validate"),
        &ca,
        "configmaps",
        json!({}),
    );
    on_delete["rules"][0]["operations"] = json!(["DELETE"]);
    let mut on_scale = hook(
        "deny-scale.flotilla.dev",
        url("/validate"),
        &ca,
        "deployments/scale",
        json!({}),
    );
    on_scale["rules"][0]["apiGroups"] = json!(["apps"]);
    on_scale["rules"][0]["operations"] = json!(["UPDATE"]);
    let guard = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "guard-deletes-and-scale"}, "webhooks": [on_delete, on_scale]
    });
    let o = kubectl_stdin(&kc0, &["apply", "-f", "-"], &guard.to_string());
    assert!(o.status.success(), "{}", stderr(&o));
    let refused = wait_for(
        Duration::from_secs(10),
        "the delete webhook in effect",
        || {
            let kc1 = kc1.clone();
            async move {
                let o = kubectl(&kc1, &["delete", "cm", "forbidden-y"]);
                (!o.status.success()).then(|| stderr(&o))
            }
        },
    )
    .await;
    assert!(
        refused.contains(r#"admission webhook "deny-delete.flotilla.dev" denied the request: the name is forbidden"#),
        "{refused}"
    );
    assert!(kubectl(&kc1, &["get", "cm", "forbidden-y"])
        .status
        .success());
    let o = kubectl(&kc1, &["scale", "deploy", "forbidden-d", "--replicas=2"]);
    assert!(
        !o.status.success()
            && stderr(&o)
                .contains(r#"admission webhook "deny-scale.flotilla.dev" denied the request"#),
        "{}",
        stderr(&o)
    );
    let d = json_of(&kc1, &["get", "deploy", "forbidden-d"]);
    assert_eq!(d["spec"]["replicas"], 1, "{d}");
    kubectl_ok(&kc0, &["scale", "deploy", "small", "--replicas=3"]);
    kubectl_ok(
        &kc0,
        &[
            "delete",
            "validatingwebhookconfiguration",
            "guard-deletes-and-scale",
        ],
    );
    kubectl_ok(&kc0, &["delete", "deploy", "forbidden-d", "small"]);
}

/// A short name suffix unique within the test run.
fn uuid_ish() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::SeqCst).to_string()
}
