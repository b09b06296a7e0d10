//! A CRD with two versions converted by a webhook (ConversionReview v1 over HTTPS, the
//! test's server trusted through the caBundle), over two apiservers: objects written in
//! either version read in both, lists and patches go through the webhook, a failing
//! webhook gives kube's error, and a Webhook strategy without a client is refused.

use std::time::Duration;

use serde_json::{json, Value};

use super::common::k8s::{kubectl, kubectl_stdin, Apiservers};
use super::common::wait_for;
use super::common::webhook::webhook_server;
use super::{json_of, stderr};

const GROUP: &str = "conv.flotilla.dev";

fn crd(url: &str, ca: &Value) -> Value {
    let version = |name: &str, field: &str, storage: bool| {
        json!({"name": name, "served": true, "storage": storage,
               "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                   "spec": {"type": "object", "properties": {field: {"type": "string"}}}}}}})
    };
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("schedules.{GROUP}")},
        "spec": {
            "group": GROUP, "scope": "Namespaced",
            "names": {"plural": "schedules", "singular": "schedule", "kind": "Schedule"},
            "versions": [version("v1", "cronSpec", true), version("v2", "schedule", false)],
            "conversion": {"strategy": "Webhook", "webhook": {
                "conversionReviewVersions": ["v1"],
                "clientConfig": {"url": url, "caBundle": ca}}}
        }
    })
}

fn schedule(version: &str, name: &str, field: &str, value: &str) -> String {
    json!({"apiVersion": format!("{GROUP}/{version}"), "kind": "Schedule",
           "metadata": {"name": name}, "spec": {field: value}})
    .to_string()
}

pub async fn conversion_webhook(a: &Apiservers) {
    let kc0 = a.kubeconfig(0).to_path_buf();
    let kc1 = a.kubeconfig(1).to_path_buf();
    let dir = tempfile::tempdir().unwrap();
    let (port, ca, calls) = webhook_server(dir.path()).await;
    let ca = serde_json::to_value(k8s_openapi::ByteString(ca)).unwrap();
    let url = |path: &str| format!("https://127.0.0.1:{port}{path}");

    // A Webhook strategy needs a client to call.
    let mut bad = crd(&url("/convert"), &ca);
    bad["spec"]["conversion"]["webhook"]
        .as_object_mut()
        .unwrap()
        .remove("clientConfig");
    let o = kubectl_stdin(&kc0, &["apply", "-f", "-"], &bad.to_string());
    assert!(
        stderr(&o).contains(
            "spec.conversion.webhookClientConfig: Required value: required when strategy is set to Webhook"
        ),
        "{}",
        stderr(&o)
    );

    let o = kubectl_stdin(
        &kc0,
        &["apply", "-f", "-"],
        &crd(&url("/convert"), &ca).to_string(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v1 = format!("schedules.v1.{GROUP}");
    let v2 = format!("schedules.v2.{GROUP}");
    // Written in the storage version through one replica, read in v2 through the other.
    wait_for(Duration::from_secs(10), "the CRD served", || {
        let kc0 = kc0.clone();
        async move {
            let o = kubectl_stdin(
                &kc0,
                &["apply", "-f", "-"],
                &schedule("v1", "a", "cronSpec", "*/5 * * * *"),
            );
            o.status.success().then_some(())
        }
    })
    .await;
    let got = wait_for(Duration::from_secs(10), "a read in v2", || {
        let (kc1, v2) = (kc1.clone(), v2.clone());
        async move {
            let o = kubectl(&kc1, &["get", &format!("{v2}/a"), "-o", "json"]);
            o.status
                .success()
                .then(|| serde_json::from_slice::<Value>(&o.stdout).unwrap())
        }
    })
    .await;
    assert_eq!(got["apiVersion"], format!("{GROUP}/v2"), "{got}");
    assert_eq!(got["spec"], json!({"schedule": "*/5 * * * *"}), "{got}");

    // Written in v2: stored converted, so v1 reads its own field.
    let o = kubectl_stdin(
        &kc1,
        &["apply", "-f", "-"],
        &schedule("v2", "b", "schedule", "0 * * * *"),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let b = json_of(&kc0, &["get", &format!("{v1}/b")]);
    assert_eq!(b["spec"], json!({"cronSpec": "0 * * * *"}), "{b}");

    // A list in v2 is converted in one review, and a merge patch applies to the v2 form.
    let before = calls.load(std::sync::atomic::Ordering::SeqCst);
    let list = json_of(&kc1, &["get", &v2]);
    let schedules: Vec<&Value> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["spec"]["schedule"])
        .collect();
    assert_eq!(
        schedules,
        [&json!("*/5 * * * *"), &json!("0 * * * *")],
        "{list}"
    );
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst) - before,
        1,
        "one review for the list"
    );
    let o = kubectl(
        &kc1,
        &[
            "patch",
            &format!("{v2}/a"),
            "--type=merge",
            "-p",
            r#"{"spec":{"schedule":"@hourly"}}"#,
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let a1 = json_of(&kc0, &["get", &format!("{v1}/a")]);
    assert_eq!(a1["spec"], json!({"cronSpec": "@hourly"}), "{a1}");

    // A webhook that fails makes reads in the other version fail as in kube; the storage
    // version needs no conversion.
    let failing = crd(&url("/convert-fail"), &ca);
    let o = kubectl_stdin(&kc0, &["apply", "-f", "-"], &failing.to_string());
    assert!(o.status.success(), "{}", stderr(&o));
    let err = wait_for(
        Duration::from_secs(10),
        "the failing webhook in use",
        || {
            let (kc1, v2) = (kc1.clone(), v2.clone());
            async move {
                let o = kubectl(&kc1, &["get", &format!("{v2}/a")]);
                (!o.status.success()).then(|| stderr(&o))
            }
        },
    )
    .await;
    assert!(
        err.contains(&format!(
            "conversion webhook for {GROUP}/v1, Kind=Schedule failed: no conversion today"
        )),
        "{err}"
    );
    let o = kubectl(&kc1, &["get", &format!("{v1}/a")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = kubectl(&kc0, &["delete", "crd", &format!("schedules.{GROUP}")]);
    assert!(o.status.success(), "{}", stderr(&o));
}
