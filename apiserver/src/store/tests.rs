//! The registry's create, update, delete, graceful deletion, finalizers, conflicts,
//! allocations and watches, on the in-memory storage: no kvstore, no HTTP.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::storage::{Memory, Storage};
use super::{DeleteOptions, Store, Target, Write};
use crate::error::ApiError;
use crate::kinds::{Env, Kinds};

pub(super) fn store() -> (Store, Arc<Memory>) {
    store_with_window(100)
}

/// A store whose watch cache keeps `window` events.
fn store_with_window(window: usize) -> (Store, Arc<Memory>) {
    let kinds = Kinds::all();
    let memory = Arc::new(Memory::new());
    let store = Store {
        storage: memory.clone(),
        kinds: kinds.clone(),
        cache: super::cache::Cache::new(kinds, window),
        env: Env {
            service_ips: crate::kinds::service::alloc::Range::parse("10.96.0.0/24")
                .expect("a range"),
        },
        cache_wait: Duration::ZERO,
        metrics: Arc::new(crate::metrics::Metrics::default()),
    };
    (store, memory)
}

pub(super) fn target(
    s: &Store,
    group: &str,
    plural: &str,
    ns: Option<&str>,
    name: Option<&str>,
) -> Target {
    let version = if group.is_empty() { "v1" } else { "v1" };
    Target {
        kind: s.kinds.find(group, version, plural).expect("a served kind"),
        namespace: ns.map(String::from),
        name: name.map(String::from),
    }
}

pub(super) fn w() -> Write {
    Write::new("test", false)
}

pub(super) async fn create(s: &Store, t: &Target, body: Value) -> Result<Value, ApiError> {
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

/// Starts the cache feed on the model and waits until the cache holds its revision.
async fn feed(s: &Store, m: &Arc<Memory>) -> tokio::task::JoinHandle<()> {
    let storage: Arc<dyn Storage> = m.clone();
    let h = tokio::spawn(super::cache::run(
        s.cache.clone(),
        storage,
        Duration::from_millis(50),
    ));
    caught_up(s, m).await;
    h
}

async fn caught_up(s: &Store, m: &Memory) {
    let want = m.revision();
    assert!(
        s.cache.wait_for(want, Duration::from_secs(5)).await,
        "the cache reaches revision {want}"
    );
}

/// The next `n` lines of a watch as (type, name), or what went wrong.
async fn lines(
    rx: &mut tokio::sync::mpsc::Receiver<bytes::Bytes>,
    n: usize,
) -> Vec<(String, String)> {
    let mut out = vec![];
    for _ in 0..n {
        let l = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a watch line within 5 s")
            .expect("an open watch");
        let v: Value = serde_json::from_slice(&l).unwrap();
        let name = match v["object"]["metadata"]["name"].as_str() {
            Some(n) => n.to_string(),
            None => v["object"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        };
        out.push((v["type"].as_str().unwrap_or_default().to_string(), name));
    }
    out
}

fn from(rv: i64) -> super::watch::WatchOptions {
    super::watch::WatchOptions {
        list: super::list::ListOptions {
            resource_version: Some(rv.to_string()),
            ..Default::default()
        },
        bookmarks: false,
    }
}

#[tokio::test]
async fn watches_from_the_cache_and_from_storage_report_each_change_once() {
    // A window of 3 events: a watch from further back is served by a storage watch.
    let (s, memory) = store_with_window(3);
    let s = Arc::new(s);
    let feed = feed(&s, &memory).await;
    namespace(&s, "w").await;
    let start = memory.revision();
    let cms = target(&s, "", "configmaps", Some("w"), None);
    let cm = |n: &str| json!({"metadata": {"name": n}, "data": {"k": "1"}});
    create(&s, &cms, cm("a")).await.unwrap();
    create(&s, &cms, cm("b")).await.unwrap();
    let a = target(&s, "", "configmaps", Some("w"), Some("a"));
    let mut next: Value = serde_json::from_slice(&s.get(&a, None).await.unwrap()).unwrap();
    next["data"]["k"] = "2".into();
    s.update(&a, &serde_json::to_vec(&next).unwrap(), None, &w())
        .await
        .unwrap();
    let b = target(&s, "", "configmaps", Some("w"), Some("b"));
    s.delete(&b, &DeleteOptions::default()).await.unwrap();
    let before_c = memory.revision();
    create(&s, &cms, cm("c")).await.unwrap();
    caught_up(&s, &memory).await;

    let all = vec![
        ("ADDED".to_string(), "a".to_string()),
        ("ADDED".into(), "b".into()),
        ("MODIFIED".into(), "a".into()),
        ("DELETED".into(), "b".into()),
        ("ADDED".into(), "c".into()),
    ];
    // From the start: older than the window, so from storage.
    let mut rx = s.watch(&cms, from(start)).await.unwrap();
    assert_eq!(lines(&mut rx, 5).await, all);
    // From just before c: from the cache.
    let mut recent = s.watch(&cms, from(before_c)).await.unwrap();
    assert_eq!(lines(&mut recent, 1).await, all[4..].to_vec());
    // Both go on with what comes next, once each.
    create(&s, &cms, cm("d")).await.unwrap();
    let d = vec![("ADDED".to_string(), "d".to_string())];
    assert_eq!(lines(&mut rx, 1).await, d);
    assert_eq!(lines(&mut recent, 1).await, d);

    // Once that history is compacted, a watch from it is told so (410 Gone).
    memory.compact(memory.revision());
    let mut gone = s.watch(&cms, from(start)).await.unwrap();
    let l = lines(&mut gone, 1).await;
    assert_eq!(l[0].0, "ERROR");
    assert!(l[0].1.contains("too old resource version"), "{l:?}");
    feed.abort();
}

/// The model, except that its watches never carry a deletion's previous value (as etcd
/// when that value is no longer at hand).
struct WithoutPrev(Arc<Memory>);

struct WithoutPrevStream(Box<dyn super::storage::WatchStream>);

#[async_trait::async_trait]
impl super::storage::WatchStream for WithoutPrevStream {
    async fn next(&mut self) -> Option<super::storage::WatchMessage> {
        use super::storage::WatchMessage;
        match self.0.next().await? {
            WatchMessage::Events(ev) => Some(WatchMessage::Events(
                ev.into_iter()
                    .map(|mut e| {
                        if e.deleted {
                            e.prev = None;
                        }
                        e
                    })
                    .collect(),
            )),
            m => Some(m),
        }
    }
    async fn request_progress(&mut self) {
        self.0.request_progress().await
    }
}

#[async_trait::async_trait]
impl Storage for WithoutPrev {
    async fn range(
        &self,
        start: &[u8],
        end: &[u8],
        revision: i64,
        limit: i64,
    ) -> Result<super::storage::Range, super::storage::StorageError> {
        self.0.range(start, end, revision, limit).await
    }
    async fn txn(
        &self,
        txn: super::storage::Txn,
    ) -> Result<super::storage::TxnResult, super::storage::StorageError> {
        self.0.txn(txn).await
    }
    async fn current_revision(&self) -> Result<i64, super::storage::StorageError> {
        self.0.current_revision().await
    }
    async fn watch(
        &self,
        spec: super::storage::WatchSpec,
    ) -> Result<Box<dyn super::storage::WatchStream>, super::storage::StorageError> {
        Ok(Box::new(WithoutPrevStream(self.0.watch(spec).await?)))
    }
}

#[tokio::test]
async fn a_deletion_without_its_object_ends_a_storage_watch_with_an_error() {
    let (mut s, memory) = store_with_window(1);
    s.storage = Arc::new(WithoutPrev(memory.clone()));
    let s = Arc::new(s);
    let feed = feed(&s, &memory).await;
    namespace(&s, "w").await;
    let start = memory.revision();
    let cms = target(&s, "", "configmaps", Some("w"), None);
    create(&s, &cms, json!({"metadata": {"name": "a"}}))
        .await
        .unwrap();
    create(&s, &cms, json!({"metadata": {"name": "b"}}))
        .await
        .unwrap();
    let a = target(&s, "", "configmaps", Some("w"), Some("a"));
    s.delete(&a, &DeleteOptions::default()).await.unwrap();
    caught_up(&s, &memory).await;
    // Older than the window of one event: a storage watch, which cannot report the
    // deletion of `a` and says so instead of skipping it.
    let mut rx = s.watch(&cms, from(start)).await.unwrap();
    let l = lines(&mut rx, 3).await;
    assert_eq!(
        l[..2],
        [("ADDED".into(), "a".into()), ("ADDED".into(), "b".into())]
    );
    assert_eq!(l[2].0, "ERROR");
    assert!(l[2].1.contains("PrevKv=nil"), "{l:?}");
    feed.abort();
}
