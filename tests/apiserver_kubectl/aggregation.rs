//! API aggregation through kubectl, over two apiservers: an APIService gives
//! `wardle.example.com/v1alpha1` to a Service whose endpoint is the test's extension
//! server (HTTPS, trusted through the caBundle, trusting only the apiservers'
//! front-proxy client certificate). Its availability, discovery, proxied reads with the
//! user in front-proxy headers, and what happens when its endpoints go.

use std::time::Duration;

use serde_json::{json, Value};

use super::common::extension::{extension_server, GROUP, VERSION};
use super::common::k8s::{kubectl, kubectl_ok, kubectl_stdin, Apiservers};
use super::common::wait_for;
use super::{json_of, stderr};

fn available(kc: &std::path::Path, name: &str) -> Option<(String, String)> {
    let o = kubectl(kc, &["get", "apiservice", name, "-o", "json"]);
    let v: Value = serde_json::from_slice(&o.stdout).ok()?;
    let c = v["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Available")?
        .clone();
    Some((
        c["status"].as_str()?.to_string(),
        c["reason"].as_str().unwrap_or("").to_string(),
    ))
}

pub async fn aggregated_api(a: &Apiservers) {
    let kc0 = a.kubeconfig(0).to_path_buf();
    let kc1 = a.kubeconfig(1).to_path_buf();
    let dir = tempfile::tempdir().unwrap();
    let (port, ca, seen) = extension_server(dir.path(), &a.front_proxy_ca()).await;
    let ca = serde_json::to_value(k8s_openapi::ByteString(ca)).unwrap();
    let name = format!("{VERSION}.{GROUP}");

    // What an extension server reads to trust the apiservers as its front proxy.
    let trust = json_of(
        &kc1,
        &[
            "get",
            "configmap",
            "-n",
            "kube-system",
            "extension-apiserver-authentication",
        ],
    );
    assert_eq!(
        trust["data"]["requestheader-allowed-names"], r#"["front-proxy-client"]"#,
        "{trust}"
    );
    assert_eq!(
        trust["data"]["requestheader-client-ca-file"].as_str(),
        std::fs::read_to_string(a.front_proxy_ca()).ok().as_deref(),
    );

    // One by one: kubectl validates a `kind: List` against OpenAPI v2 in protobuf, which
    // is not served.
    let objects = json!([
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "wardle"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api", "namespace": "wardle"},
         "spec": {"ports": [{"port": 443, "targetPort": port}]}},
        {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "api", "namespace": "wardle"},
         "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": port}]}]},
        {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": name},
         "spec": {"group": GROUP, "version": VERSION, "caBundle": ca,
                  "service": {"namespace": "wardle", "name": "api"},
                  "groupPriorityMinimum": 1000, "versionPriority": 15}}
    ]);
    for obj in objects.as_array().unwrap() {
        let o = kubectl_stdin(&kc0, &["apply", "-f", "-"], &obj.to_string());
        assert!(o.status.success(), "{}", stderr(&o));
    }

    // The availability check reaches the backend through the Service's endpoint.
    wait_for(Duration::from_secs(30), "the APIService available", || {
        let (kc1, name) = (kc1.clone(), name.clone());
        async move { (available(&kc1, &name)? == ("True".into(), "Passed".into())).then_some(()) }
    })
    .await;
    let table = kubectl_ok(&kc1, &["get", "apiservice", &name]);
    assert!(
        table.contains("SERVICE") && table.contains("wardle/api") && table.contains("True"),
        "{table}"
    );

    // Discovery: the group in /apis, its resources in kubectl's aggregated discovery.
    let raw = |path: &str| -> Value {
        serde_json::from_str(&kubectl_ok(&kc1, &["get", "--raw", path])).expect("JSON")
    };
    let groups = raw("/apis");
    assert!(
        groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == GROUP && g["preferredVersion"]["version"] == VERSION),
        "{groups}"
    );
    let resources = kubectl_ok(&kc1, &["api-resources", &format!("--api-group={GROUP}")]);
    assert!(
        resources.contains("flunders") && resources.contains("Flunder"),
        "{resources}"
    );

    // A read is proxied with the user in front-proxy headers and no client credentials.
    let list = raw(&format!(
        "/apis/{GROUP}/{VERSION}/namespaces/default/flunders"
    ));
    assert_eq!(list["items"][0]["metadata"]["name"], "first", "{list}");
    let s = seen.lock().unwrap().clone();
    assert!(s.user.as_deref().is_some_and(|u| !u.is_empty()), "{s:?}");
    assert!(s.groups.iter().any(|g| g == "system:masters"), "{s:?}");
    assert!(
        !s.authorization,
        "the client's token went to the backend: {s:?}"
    );
    let table = kubectl_ok(&kc0, &["get", "flunders", "-n", "default"]);
    assert!(table.contains("first"), "{table}");

    // Without endpoints the group version is unavailable, and requests say so.
    kubectl_ok(&kc0, &["delete", "endpoints", "api", "-n", "wardle"]);
    wait_for(
        Duration::from_secs(30),
        "the APIService unavailable",
        || {
            let (kc1, name) = (kc1.clone(), name.clone());
            async move {
                (available(&kc1, &name)? == ("False".into(), "MissingEndpoints".into()))
                    .then_some(())
            }
        },
    )
    .await;
    let o = kubectl(&kc1, &["get", "flunders", "first", "-n", "default"]);
    assert!(
        !o.status.success()
            && stderr(&o).contains("the server is currently unable to handle the request"),
        "{}",
        stderr(&o)
    );
    kubectl_ok(&kc0, &["delete", "apiservice", &name]);
    kubectl_ok(&kc0, &["delete", "namespace", "wardle", "--wait=false"]);
}
