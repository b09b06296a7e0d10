//! Writes fenced by a leader's lease (`apiserver::store::fence`): a request naming the
//! acquisition it holds (`Flotilla-Fence: <namespace>/<lease>@<revision>`) writes only
//! while nobody acquired the Lease again; renewals keep the fence, a new holder moves it,
//! and a refused write (create, update, binding, delete) changes nothing and is counted.

use k8s_openapi::api::coordination::v1::Lease;

use super::*;

/// A raw request with a fence header: status and JSON body.
async fn fenced(
    client: &kube::Client,
    fence: &str,
    method: &str,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .header("flotilla-fence", fence)
        .body(kube::client::Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap();
    let resp = client.send(req).await.expect("response");
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect_bytes().await.unwrap_or_default();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn rv<K: kube::Resource>(o: &K) -> String {
    o.meta().resource_version.clone().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t65_a_leases_fence_refuses_the_writes_of_a_deposed_leader() {
    let (_b, _a, c) = cluster().await;
    let leases: Api<Lease> = Api::namespaced(c.clone(), "default");
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "leader"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15, "acquireTime": "2026-01-01T00:00:00.000000Z"}
    }))
    .unwrap();
    let mut lease = leases.create(&PostParams::default(), &lease).await.unwrap();
    let a = format!("default/leader@{}", rv(&lease));
    let coll = "/api/v1/namespaces/default/configmaps";
    let cm = |name: &str, v: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"v": v}});

    // The holder writes; a renewal (same holder, same acquireTime) keeps its fence.
    assert_eq!(fenced(&c, &a, "POST", coll, cm("x", "1")).await.0, 201);
    lease.spec.as_mut().unwrap().renew_time =
        Some(serde_json::from_value(json!("2026-01-01T00:00:02.000000Z")).unwrap());
    let lease = leases
        .replace("leader", &PostParams::default(), &lease)
        .await
        .unwrap();
    let (code, _) = fenced(&c, &a, "PUT", &format!("{coll}/x"), cm("x", "2")).await;
    assert_eq!(code, 200);
    pods.create(&PostParams::default(), &pod("fp"))
        .await
        .unwrap();

    // Another replica takes the lease: every write under the old fence is a 409 that
    // changes nothing.
    let mut taken = lease.clone();
    let spec = taken.spec.as_mut().unwrap();
    spec.holder_identity = Some("b".into());
    spec.acquire_time = Some(serde_json::from_value(json!("2026-01-01T00:00:20.000000Z")).unwrap());
    let taken = leases
        .replace("leader", &PostParams::default(), &taken)
        .await
        .unwrap();
    let b = format!("default/leader@{}", rv(&taken));
    let (code, body) = fenced(&c, &a, "PUT", &format!("{coll}/x"), cm("x", "3")).await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["reason"], "Conflict");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("no longer holds the lease default/leader"),
        "{body}"
    );
    assert_eq!(cms.get("x").await.unwrap().data.unwrap()["v"], "2");
    assert_eq!(fenced(&c, &a, "POST", coll, cm("y", "1")).await.0, 409);
    assert!(cms.get_opt("y").await.unwrap().is_none());
    assert_eq!(
        fenced(&c, &a, "DELETE", &format!("{coll}/x"), json!({}))
            .await
            .0,
        409
    );
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "fp", "annotations": {"who": "a"}}, "target": {"kind": "Node", "name": "n1"}});
    let bind = "/api/v1/namespaces/default/pods/fp/binding";
    assert_eq!(fenced(&c, &a, "POST", bind, binding.clone()).await.0, 409);
    assert_eq!(pods.get("fp").await.unwrap().spec.unwrap().node_name, None);

    // The new holder writes; its binding's annotations land on the pod, as kube's do.
    assert_eq!(fenced(&c, &b, "POST", bind, binding).await.0, 201);
    let p = pods.get("fp").await.unwrap();
    assert_eq!(p.spec.unwrap().node_name.as_deref(), Some("n1"));
    assert_eq!(p.metadata.annotations.unwrap()["who"], "a");
    assert_eq!(
        fenced(&c, &b, "DELETE", &format!("{coll}/x"), json!({}))
            .await
            .0,
        200
    );

    // Deleting the lease moves the fence too; a fence that names no lease is refused, and
    // a malformed one is a 400. Reads ignore fences.
    leases
        .delete("leader", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(fenced(&c, &b, "POST", coll, cm("z", "1")).await.0, 409);
    let (code, body) = fenced(&c, "default/leader", "POST", coll, cm("z", "1")).await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(fenced(&c, &b, "GET", coll, Value::Null).await.0, 200);
    assert!(cms.get_opt("z").await.unwrap().is_none());
    // Each refusal is counted for the operator.
    let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let metrics = c.request_text(req).await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == "flotilla_apiserver_fenced_writes_refused_total 5"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("fenced"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
