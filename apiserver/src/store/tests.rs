//! The registry's create, update, delete, graceful deletion, finalizers, conflicts and
//! allocations, on the in-memory storage: no kvstore, no cache feed, no HTTP.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::storage::{Memory, Storage};
use super::{DeleteOptions, Store, Target, Write};
use crate::error::ApiError;
use crate::kinds::{Env, Kinds};

fn store() -> (Store, Arc<Memory>) {
    let kinds = Kinds::all();
    let memory = Arc::new(Memory::new());
    let etcd = crate::etcd::Etcd::new(&["http://127.0.0.1:9".into()], Duration::from_secs(1))
        .expect("an etcd client that is never used");
    let store = Store {
        storage: memory.clone(),
        etcd: Arc::new(etcd),
        kinds: kinds.clone(),
        cache: super::cache::Cache::new(kinds, 100),
        env: Env {
            service_ips: crate::kinds::service::alloc::Range::parse("10.96.0.0/24")
                .expect("a range"),
        },
        cache_wait: Duration::ZERO,
        metrics: Arc::new(crate::metrics::Metrics::default()),
    };
    (store, memory)
}

fn target(s: &Store, group: &str, plural: &str, ns: Option<&str>, name: Option<&str>) -> Target {
    let version = if group.is_empty() { "v1" } else { "v1" };
    Target {
        kind: s.kinds.find(group, version, plural).expect("a served kind"),
        namespace: ns.map(String::from),
        name: name.map(String::from),
    }
}

fn w() -> Write {
    Write::new("test", false)
}

async fn create(s: &Store, t: &Target, body: Value) -> Result<Value, ApiError> {
    let out = s
        .create(t, &serde_json::to_vec(&body).unwrap(), &w())
        .await?;
    Ok(serde_json::from_slice(&out).unwrap())
}

async fn namespace(s: &Store, name: &str) {
    let t = target(s, "", "namespaces", None, None);
    create(s, &t, json!({"metadata": {"name": name}}))
        .await
        .unwrap();
}

fn pod(name: &str) -> Value {
    json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
}

#[tokio::test]
async fn create_sets_server_fields_and_refuses_a_taken_name() {
    let (s, memory) = store();
    let pods = target(&s, "", "pods", Some("team"), None);
    // No namespace yet: 404 on the namespace, nothing written.
    let e = create(&s, &pods, pod("a")).await.unwrap_err();
    assert_eq!(e.code(), 404, "{e}");
    assert_eq!(memory.revision(), 0);
    namespace(&s, "team").await;
    let p = create(&s, &pods, pod("a")).await.unwrap();
    assert!(p["metadata"]["uid"].is_string() && p["metadata"]["creationTimestamp"].is_string());
    assert_eq!(
        p["metadata"]["resourceVersion"],
        memory.revision().to_string()
    );
    let e = create(&s, &pods, pod("a")).await.unwrap_err();
    assert_eq!(e.code(), 409);
    assert_eq!(e.to_string(), "pods \"a\" already exists");
    // generateName draws a fresh name each time.
    let g = json!({"metadata": {"generateName": "web-"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    let one = create(&s, &pods, g.clone()).await.unwrap();
    let two = create(&s, &pods, g).await.unwrap();
    assert_ne!(one["metadata"]["name"], two["metadata"]["name"]);
    assert!(one["metadata"]["name"]
        .as_str()
        .unwrap()
        .starts_with("web-"));
}

#[tokio::test]
async fn a_stale_resource_version_is_a_conflict_and_status_writes_keep_the_spec() {
    let (s, _) = store();
    namespace(&s, "team").await;
    let coll = target(&s, "apps", "deployments", Some("team"), None);
    let d = json!({"metadata": {"name": "web"}, "spec": {"replicas": 1,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
    let created = create(&s, &coll, d).await.unwrap();
    assert_eq!(created["metadata"]["generation"], 1);
    let one = target(&s, "apps", "deployments", Some("team"), Some("web"));
    let mut next = created.clone();
    next["spec"]["replicas"] = 3.into();
    let out: Value = serde_json::from_slice(
        &s.update(&one, &serde_json::to_vec(&next).unwrap(), None, &w())
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(out["metadata"]["generation"], 2, "a spec change counts");
    // The same body again carries the old resourceVersion: 409.
    let e = s
        .update(&one, &serde_json::to_vec(&next).unwrap(), None, &w())
        .await
        .unwrap_err();
    assert_eq!(e.code(), 409, "{e}");
    // A status write changes only the status.
    let mut st = out.clone();
    st["spec"]["replicas"] = 9.into();
    st["status"] = json!({"replicas": 3});
    let out: Value = serde_json::from_slice(
        &s.update(
            &one,
            &serde_json::to_vec(&st).unwrap(),
            Some("status"),
            &w(),
        )
        .await
        .unwrap(),
    )
    .unwrap();
    assert_eq!(out["spec"]["replicas"], 3);
    assert_eq!(out["status"]["replicas"], 3);
    assert_eq!(out["metadata"]["generation"], 2);
}

#[tokio::test]
async fn graceful_deletion_and_finalizers_hold_an_object_until_released() {
    let (s, _) = store();
    namespace(&s, "team").await;
    let pods = target(&s, "", "pods", Some("team"), None);
    let mut running = pod("run");
    running["spec"]["nodeName"] = "n1".into();
    create(&s, &pods, running).await.unwrap();
    let one = target(&s, "", "pods", Some("team"), Some("run"));
    let d = s.delete(&one, &DeleteOptions::default()).await.unwrap();
    assert!(!d.finished, "a pod on a node gets its grace period");
    assert_eq!(d.object["metadata"]["deletionGracePeriodSeconds"], 30);
    assert!(d.object["metadata"]["deletionTimestamp"].is_string());
    let now = DeleteOptions {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    assert!(s.delete(&one, &now).await.unwrap().finished);
    assert!(s.read(&one.key()).await.unwrap().is_none());

    // A finalizer keeps a deleted object until an update removes it.
    let mut held = pod("held");
    held["metadata"]["finalizers"] = json!(["example.com/keep"]);
    create(&s, &pods, held).await.unwrap();
    let h = target(&s, "", "pods", Some("team"), Some("held"));
    let d = s.delete(&h, &DeleteOptions::default()).await.unwrap();
    assert!(!d.finished);
    let mut cur = s.read(&h.key()).await.unwrap().unwrap().value;
    cur["metadata"]["finalizers"] = json!([]);
    s.update(&h, &serde_json::to_vec(&cur).unwrap(), None, &w())
        .await
        .unwrap();
    assert!(
        s.read(&h.key()).await.unwrap().is_none(),
        "gone with its last finalizer"
    );
}

#[tokio::test]
async fn namespaces_are_marked_terminating_and_system_ones_are_kept() {
    let (s, _) = store();
    namespace(&s, "default").await;
    namespace(&s, "team").await;
    let e = s
        .delete(
            &target(&s, "", "namespaces", None, Some("default")),
            &DeleteOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), 403, "{e}");
    let d = s
        .delete(
            &target(&s, "", "namespaces", None, Some("team")),
            &DeleteOptions::default(),
        )
        .await
        .unwrap();
    assert!(!d.finished, "held by the kubernetes finalizer");
    assert_eq!(d.object["status"]["phase"], "Terminating");
    // Nothing new may be created in it.
    let e = create(&s, &target(&s, "", "pods", Some("team"), None), pod("x"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), 403, "{e}");
}

#[tokio::test]
async fn service_ips_and_node_ports_are_claimed_once_and_released_on_delete() {
    let (s, memory) = store();
    namespace(&s, "team").await;
    let svcs = target(&s, "", "services", Some("team"), None);
    let svc = |name: &str, ip: &str, node_port: i64| {
        json!({"metadata": {"name": name}, "spec": {"type": "NodePort", "clusterIP": ip,
            "ports": [{"port": 80, "nodePort": node_port}]}})
    };
    let a = create(&s, &svcs, svc("a", "10.96.0.10", 30080))
        .await
        .unwrap();
    assert_eq!(a["spec"]["clusterIPs"], json!(["10.96.0.10"]));
    assert!(memory
        .get("/registry/ipallocations/10.96.0.10")
        .await
        .unwrap()
        .is_some());
    // The same IP, or the same node port, for another service: 422 naming the field.
    let e = create(&s, &svcs, svc("b", "10.96.0.10", 0))
        .await
        .unwrap_err();
    assert_eq!(e.code(), 422);
    assert!(
        e.to_string().contains("provided IP is already allocated"),
        "{e}"
    );
    let e = create(&s, &svcs, svc("b", "", 30080)).await.unwrap_err();
    assert!(
        e.to_string().contains("provided port is already allocated"),
        "{e}"
    );
    // Random ones are drawn from what is free.
    let c = create(&s, &svcs, svc("c", "", 0)).await.unwrap();
    let ip = c["spec"]["clusterIP"].as_str().unwrap();
    assert!(ip.starts_with("10.96.0.") && ip != "10.96.0.10");
    let np = c["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert!((30000..=32767).contains(&np) && np != 30080);
    // Deleting `a` releases both in the same write.
    let one = target(&s, "", "services", Some("team"), Some("a"));
    assert!(
        s.delete(&one, &DeleteOptions::default())
            .await
            .unwrap()
            .finished
    );
    assert!(memory
        .get("/registry/ipallocations/10.96.0.10")
        .await
        .unwrap()
        .is_none());
    create(&s, &svcs, svc("b", "10.96.0.10", 30080))
        .await
        .unwrap();
}
