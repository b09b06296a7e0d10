//! Kubernetes API semantics through a real apiserver on a real kvstore: errors as
//! `metav1.Status` that change nothing, graceful deletion, finalizers, bindings, status
//! subresources, generation, evictions under disruption budgets, writes fenced by a
//! leader's lease, pagination, and watch edge cases.

mod common;
#[path = "apiserver_semantics/eviction.rs"]
mod eviction;
#[path = "apiserver_semantics/fence.rs"]
mod fence;

use std::time::Duration;

use common::k8s::{Apiservers, Backend};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::{json, Value};

/// A raw request through the kube client (TLS and token included): status and JSON body.
async fn raw(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(kube::client::Body::from(body))
        .unwrap();
    let resp = client.send(req).await.expect("response");
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect_bytes().await.unwrap_or_default();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn cluster() -> (Backend, Apiservers, kube::Client) {
    let backend = Backend::flotilla().await;
    let a = Apiservers::start(1, &backend.urls()).await;
    let c = a.client(0).await;
    (backend, a, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_bad_requests_get_a_status_and_change_nothing() {
    let (_b, _a, c) = cluster().await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let base: ConfigMap =
        serde_json::from_value(json!({ "metadata": { "name": "a" }, "data": { "k": "v" } }))
            .unwrap();
    let before = cms.create(&PostParams::default(), &base).await.unwrap();
    let coll = "/api/v1/namespaces/default/configmaps";
    let item = "/api/v1/namespaces/default/configmaps/a";
    let j = "application/json";
    let ok = serde_json::to_vec(
        &json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "b" } }),
    )
    .unwrap();
    let cases: Vec<(&str, &str, &str, Vec<u8>, u16, &str)> = vec![
        ("POST", coll, j, b"{not json".to_vec(), 400, "BadRequest"),
        ("POST", coll, j, b"[1,2]".to_vec(), 400, "BadRequest"),
        ("POST", coll, j, vec![b' '; 4 << 20], 413, "RequestEntityTooLarge"),
        ("POST", coll, "text/plain", ok.clone(), 415, "UnsupportedMediaType"),
        ("POST", coll, j, br#"{"apiVersion":"apps/v1","kind":"ConfigMap","metadata":{"name":"b"}}"#.to_vec(), 400, "BadRequest"),
        ("POST", coll, j, br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"b"}}"#.to_vec(), 400, "BadRequest"),
        ("POST", coll, j, br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"B_"}}"#.to_vec(), 422, "Invalid"),
        ("POST", coll, j, br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"b","namespace":"other"}}"#.to_vec(), 400, "BadRequest"),
        ("POST", coll, j, br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}"#.to_vec(), 409, "AlreadyExists"),
        ("POST", "/api/v1/namespaces/nope/configmaps", j, ok.clone(), 404, "NotFound"),
        ("PUT", item, j, br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"other"}}"#.to_vec(), 400, "BadRequest"),
        ("PUT", item, j, br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","resourceVersion":"1"}}"#.to_vec(), 409, "Conflict"),
        ("PUT", coll, j, ok.clone(), 405, "MethodNotAllowed"),
        ("PATCH", item, "application/apply-patch+yaml", b"{}".to_vec(), 422, "Invalid"),
        ("PATCH", item, "application/xml", b"{}".to_vec(), 415, "UnsupportedMediaType"),
        ("GET", "/api/v1/namespaces/default/widgets", j, vec![], 404, "NotFound"),
        ("GET", "/api/v1/namespaces/default/configmaps?labelSelector=a%20b", j, vec![], 400, "BadRequest"),
        ("GET", "/api/v1/namespaces/default/configmaps?fieldSelector=spec.nodeName%3Dx", j, vec![], 400, "BadRequest"),
        ("GET", "/api/v1/namespaces/default/configmaps?limit=2&continue=garbage", j, vec![], 400, "BadRequest"),
        ("GET", "/api/v1/namespaces/default/configmaps?resourceVersionMatch=Exact", j, vec![], 400, "BadRequest"),
        ("DELETE", "/api/v1/namespaces/kube-system", j, vec![], 403, "Forbidden"),
    ];
    for (method, path, ct, body, code, reason) in cases {
        let (got, status) = raw(&c, method, path, ct, body).await;
        assert_eq!(
            (got, status["reason"].as_str()),
            (code, Some(reason)),
            "{method} {path}: {status}"
        );
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["code"], code);
    }
    let (_, status) = raw(
        &c,
        "POST",
        coll,
        j,
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"B_","labels":{"-x":"y"}}}"#
            .to_vec(),
    )
    .await;
    let fields: Vec<&str> = status["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["metadata.name", "metadata.labels"]);
    let after = cms.list(&ListParams::default()).await.unwrap();
    assert_eq!(after.items.len(), 1);
    assert_eq!(
        after.items[0].metadata.resource_version,
        before.metadata.resource_version
    );
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({ "metadata": { "name": name }, "spec": { "containers": [{ "name": "c", "image": "busybox" }] } })).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_binding_graceful_delete_finalizers_status_and_generation() {
    let (_b, a, c) = cluster().await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    pods.create(&PostParams::default(), &pod("p"))
        .await
        .unwrap();
    let binding = serde_json::to_vec(&json!({ "apiVersion": "v1", "kind": "Binding", "metadata": { "name": "p" }, "target": { "kind": "Node", "name": "n1" } })).unwrap();
    let path = "/api/v1/namespaces/default/pods/p/binding";
    assert_eq!(
        raw(&c, "POST", path, "application/json", binding.clone())
            .await
            .0,
        201
    );
    let (code, st) = raw(&c, "POST", path, "application/json", binding).await;
    assert_eq!(code, 409, "{st}");
    assert!(st["message"]
        .as_str()
        .unwrap()
        .contains("already assigned to node \"n1\""));
    let p = pods.get("p").await.unwrap();
    assert_eq!(p.spec.as_ref().unwrap().node_name.as_deref(), Some("n1"));
    let conds = p.status.as_ref().unwrap().conditions.clone().unwrap();
    assert!(conds
        .iter()
        .any(|c| c.type_ == "PodScheduled" && c.status == "True"));

    // A status write changes only status; an object write cannot change status.
    let mut st = p.clone();
    st.status.as_mut().unwrap().phase = Some("Running".into());
    st.spec.as_mut().unwrap().active_deadline_seconds = Some(99);
    let after = pods
        .replace_status("p", &PostParams::default(), &st)
        .await
        .unwrap();
    assert_eq!(
        after.status.as_ref().unwrap().phase.as_deref(),
        Some("Running")
    );
    assert_eq!(after.spec.as_ref().unwrap().active_deadline_seconds, None);
    let mut sp = after.clone();
    sp.status.as_mut().unwrap().phase = Some("Failed".into());
    let after = pods
        .replace("p", &PostParams::default(), &sp)
        .await
        .unwrap();
    assert_eq!(
        after.status.as_ref().unwrap().phase.as_deref(),
        Some("Running")
    );

    // A bound, running pod is deleted gracefully; grace period 0 finishes it.
    pods.delete("p", &DeleteParams::default()).await.unwrap();
    let p = pods.get("p").await.unwrap();
    assert!(p.metadata.deletion_timestamp.is_some());
    assert_eq!(p.metadata.deletion_grace_period_seconds, Some(30));
    pods.delete(
        "p",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(pods.get_opt("p").await.unwrap().is_none());
    // An unscheduled pod goes at once.
    pods.create(&PostParams::default(), &pod("q"))
        .await
        .unwrap();
    pods.delete("q", &DeleteParams::default()).await.unwrap();
    assert!(pods.get_opt("q").await.unwrap().is_none());

    // A finalizer holds deletion until it is removed.
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let held: ConfigMap = serde_json::from_value(
        json!({ "metadata": { "name": "held", "finalizers": ["example.com/hold"] } }),
    )
    .unwrap();
    cms.create(&PostParams::default(), &held).await.unwrap();
    cms.delete("held", &DeleteParams::default()).await.unwrap();
    let mut h = cms.get("held").await.unwrap();
    assert!(h.metadata.deletion_timestamp.is_some());
    h.metadata.finalizers = Some(vec![]);
    cms.replace("held", &PostParams::default(), &h)
        .await
        .unwrap();
    assert!(cms.get_opt("held").await.unwrap().is_none());

    // generation counts spec changes only.
    let deps: Api<Deployment> = Api::namespaced(c.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "d" },
        "spec": { "selector": { "matchLabels": { "a": "b" } }, "template": { "metadata": { "labels": { "a": "b" } }, "spec": { "containers": [{ "name": "c", "image": "nginx" }] } } }
    }))
    .unwrap();
    let d = deps.create(&PostParams::default(), &d).await.unwrap();
    assert_eq!(d.metadata.generation, Some(1));
    let mut d2 = d.clone();
    d2.metadata.labels = Some([("x".to_string(), "y".to_string())].into());
    let d2 = deps
        .replace("d", &PostParams::default(), &d2)
        .await
        .unwrap();
    assert_eq!(d2.metadata.generation, Some(1));
    let mut d3 = d2.clone();
    d3.spec.as_mut().unwrap().replicas = Some(3);
    assert_eq!(
        deps.replace("d", &PostParams::default(), &d3)
            .await
            .unwrap()
            .metadata
            .generation,
        Some(2)
    );
    // The selector is immutable.
    let mut d4 = deps.get("d").await.unwrap();
    d4.spec.as_mut().unwrap().selector.match_labels =
        Some([("a".to_string(), "c".to_string())].into());
    let err = deps
        .replace("d", &PostParams::default(), &d4)
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref e) if e.code == 422),
        "{err:?}"
    );
    // kube-rs would retry a 429 by itself; the refusals are what is checked.
    eviction::evictions(&a.client_with(0, false).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t70_pagination_selector_watches_bookmarks_timeouts_and_expiry() {
    let (backend, mut a, c) = cluster().await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    for i in 0..25 {
        let cm: ConfigMap =
            serde_json::from_value(json!({ "metadata": { "name": format!("c{i:02}") } })).unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    // Pages of 10 at one revision.
    let first = cms.list(&ListParams::default().limit(10)).await.unwrap();
    assert_eq!(first.items.len(), 10);
    assert_eq!(first.metadata.remaining_item_count, Some(15));
    let token = first.metadata.continue_.clone().unwrap();
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({ "metadata": { "name": "c99" } })).unwrap(),
    )
    .await
    .unwrap();
    let mut names: Vec<String> = first
        .items
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    let mut cont = Some(token);
    while let Some(t) = cont {
        let page = cms
            .list(&ListParams::default().limit(10).continue_token(&t))
            .await
            .unwrap();
        assert_eq!(
            page.metadata.resource_version,
            first.metadata.resource_version
        );
        names.extend(page.items.iter().map(|c| c.metadata.name.clone().unwrap()));
        cont = page.metadata.continue_.clone();
    }
    assert_eq!(
        names,
        (0..25).map(|i| format!("c{i:02}")).collect::<Vec<_>>(),
        "a paginated list is one snapshot"
    );

    // With a label selector, an object that starts matching is ADDED, one that stops is DELETED.
    let rv = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut w = cms
        .watch(&WatchParams::default().labels("sel=yes"), &rv)
        .await
        .unwrap()
        .boxed();
    let mut c3 = cms.get("c03").await.unwrap();
    c3.metadata.labels = Some([("sel".to_string(), "yes".to_string())].into());
    let c3 = cms
        .replace("c03", &PostParams::default(), &c3)
        .await
        .unwrap();
    let mut c3b = c3.clone();
    c3b.metadata.labels = Some([("sel".to_string(), "no".to_string())].into());
    cms.replace("c03", &PostParams::default(), &c3b)
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            WatchEvent::Added(o) => got.push(format!("ADDED {}", o.metadata.name.unwrap())),
            WatchEvent::Deleted(o) => got.push(format!("DELETED {}", o.metadata.name.unwrap())),
            WatchEvent::Bookmark(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, ["ADDED c03", "DELETED c03"]);
    // Bookmarks tell a watch that allows them (kube-rs asks by default) how far the
    // changes it did not select have gone.
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({ "metadata": { "name": "c98" } })).unwrap(),
    )
    .await
    .unwrap();
    let bookmark = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            if let Some(Ok(WatchEvent::Bookmark(b))) = w.next().await {
                return b.metadata.resource_version;
            }
        }
    })
    .await
    .expect("a bookmark within 15 s");
    assert!(bookmark.parse::<i64>().unwrap() > 0);
    drop(w);

    // The legacy watch of one object by its path sees only that object.
    let req = http::Request::get(format!("/api/v1/namespaces/default/configmaps/c05?watch=true&resourceVersion={rv}&timeoutSeconds=2"))
        .body(kube::client::Body::from(Vec::new()))
        .unwrap();
    let mut c5 = cms.get("c05").await.unwrap();
    c5.data = Some([("x".to_string(), "1".to_string())].into());
    cms.replace("c05", &PostParams::default(), &c5)
        .await
        .unwrap();
    let resp = c.send(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = String::from_utf8(resp.into_body().collect_bytes().await.unwrap().to_vec()).unwrap();
    let names: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["object"]["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .filter(|n| !n.is_empty())
        .collect();
    assert!(
        !names.is_empty() && names.iter().all(|n| n == "c05"),
        "{text}"
    );

    // timeoutSeconds ends the stream cleanly.
    let started = std::time::Instant::now();
    let mut w = cms
        .watch(&WatchParams::default().timeout(1), &rv)
        .await
        .unwrap()
        .boxed();
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("the stream ends")
    {
        ev.unwrap();
    }
    assert!(started.elapsed() < Duration::from_secs(10));

    // After compaction, a revision older than both the kvstore's history and the watch
    // cache's window (a restarted apiserver's starts at its start) is 410 Expired: for a
    // watch and for a continue token.
    let Backend::Flotilla(cluster) = &backend else {
        unreachable!()
    };
    let mut etcd = cluster.any_client().await;
    let cur = etcd
        .get("/registry/", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    etcd.compact(cur, None).await.unwrap();
    a.kill(0);
    a.spawn(0);
    a.wait_ready(0).await;
    let mut w = cms
        .watch(&WatchParams::default(), "2")
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    {
        WatchEvent::Error(e) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410, got {other:?}"),
    }
    let err = cms
        .list(
            &ListParams::default()
                .limit(10)
                .continue_token(first.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref e) if e.code == 410),
        "{err:?}"
    );
    // The cache still serves lists and new watches.
    assert_eq!(
        cms.list(&ListParams::default()).await.unwrap().items.len(),
        27
    );
    let _ = cms.delete("c00", &DeleteParams::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t80_without_quorum_writes_get_503_and_work_again_once_it_returns() {
    let (mut backend, a, _) = cluster().await;
    let c = a.client_with(0, false).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let Backend::Flotilla(cluster) = &mut backend else {
        unreachable!()
    };
    cluster.kill(0);
    cluster.kill(1);
    let body = serde_json::to_vec(
        &json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "lost" } }),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let (code, status) = raw(
        &c,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        body,
    )
    .await;
    assert!(code == 503 || code == 504, "{code} {status}");
    assert_eq!(status["kind"], "Status");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "answered in {:?}",
        started.elapsed()
    );
    cluster.spawn(0, "new");
    cluster.spawn(1, "new");
    let ok: ConfigMap = serde_json::from_value(json!({ "metadata": { "name": "back" } })).unwrap();
    common::wait_for(Duration::from_secs(30), "writes to work again", || {
        let cms = cms.clone();
        let ok = ok.clone();
        async move {
            cms.create(&PostParams::default(), &ok)
                .await
                .ok()
                .map(|_| ())
        }
    })
    .await;
}
