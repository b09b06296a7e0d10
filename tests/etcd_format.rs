//! Backups in etcd's format, both ways, with Debian's etcd 3.4 and etcdctl: a Flotilla
//! snapshot passes `etcdctl snapshot status`, restores with `etcdctl snapshot restore`
//! and etcd serves the same data from it; an etcd snapshot restores with `flotilla
//! snapshot-restore` and Flotilla serves the same data from it. "The same" is everything a
//! client can read: every key with its revisions, version, value and lease, the header
//! revision, the compacted revision and a read of history after it, leases, users and
//! roles.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::k8s::{EtcdCluster, KillOnDrop};
use common::{etcdctl_ok, free_port, wait_for, Cluster};
use etcd_client::{Client, Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};

/// Writes a history with every kind of row: puts over several revisions, a Txn of two
/// puts, a delete, a key under a lease, a compaction, then more puts; a user and a role.
/// Returns the revision compacted at.
async fn populate(kv: &mut Client) -> i64 {
    for i in 0..20 {
        kv.put(format!("k/{i:02}"), format!("v{i}"), None)
            .await
            .unwrap();
    }
    kv.put("k/00", "again", None).await.unwrap();
    kv.delete("k/01", None).await.unwrap();
    let lease = kv.lease_grant(3600, None).await.unwrap().id();
    kv.put("leased", "x", Some(PutOptions::new().with_lease(lease)))
        .await
        .unwrap();
    kv.txn(
        Txn::new()
            .when([Compare::version("k/02", CompareOp::Greater, 0)])
            .and_then([TxnOp::put("t/a", "1", None), TxnOp::put("t/b", "2", None)]),
    )
    .await
    .unwrap();
    let compact_at = kv
        .get("k/03", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    kv.compact(compact_at, None).await.unwrap();
    kv.put("k/03", "after", None).await.unwrap();
    kv.put("k/04", "after", None).await.unwrap();
    kv.delete("k/05", None).await.unwrap();
    kv.user_add("alice", "secret", None).await.unwrap();
    kv.role_add("reader").await.unwrap();
    kv.role_grant_permission("reader", etcd_client::Permission::read("k/").with_prefix())
        .await
        .unwrap();
    kv.user_grant_role("alice", "reader").await.unwrap();
    compact_at
}

/// What a client reads back.
#[derive(Debug, PartialEq)]
struct Observed {
    revision: i64,
    kvs: Vec<(Vec<u8>, Vec<u8>, i64, i64, i64, i64)>,
    /// The key space at the compacted revision (readable) and below it (not).
    at_compaction: Vec<(Vec<u8>, Vec<u8>)>,
    below_compaction: String,
    leases: Vec<(i64, i64)>,
    users: Vec<String>,
    roles: Vec<(String, Vec<(Vec<u8>, Vec<u8>)>)>,
}

async fn observe(kv: &mut Client, compact_at: i64) -> Observed {
    let all = kv
        .get("", Some(GetOptions::new().with_all_keys()))
        .await
        .unwrap();
    let kvs = all
        .kvs()
        .iter()
        .map(|k| {
            (
                k.key().to_vec(),
                k.value().to_vec(),
                k.create_revision(),
                k.mod_revision(),
                k.version(),
                k.lease(),
            )
        })
        .collect();
    let at = kv
        .get(
            "",
            Some(GetOptions::new().with_all_keys().with_revision(compact_at)),
        )
        .await
        .unwrap();
    let below = kv
        .get(
            "",
            Some(
                GetOptions::new()
                    .with_all_keys()
                    .with_revision(compact_at - 1),
            ),
        )
        .await
        .map(|_| "readable".to_string())
        .unwrap_or_else(|e| e.to_string());
    let mut leases = Vec::new();
    for l in kv.leases().await.unwrap().leases() {
        let ttl = kv.lease_time_to_live(l.id(), None).await.unwrap();
        leases.push((l.id(), ttl.granted_ttl()));
    }
    leases.sort();
    let mut users: Vec<String> = kv.user_list().await.unwrap().users().to_vec();
    users.sort();
    let mut roles = Vec::new();
    for r in kv.role_list().await.unwrap().roles() {
        let perms = kv
            .role_get(r.clone())
            .await
            .unwrap()
            .permissions()
            .iter()
            .map(|p| (p.key().to_vec(), p.range_end().to_vec()))
            .collect();
        roles.push((r.clone(), perms));
    }
    roles.sort();
    Observed {
        revision: all.header().unwrap().revision(),
        kvs,
        at_compaction: at
            .kvs()
            .iter()
            .map(|k| (k.key().to_vec(), k.value().to_vec()))
            .collect(),
        below_compaction: below,
        leases,
        users,
        roles,
    }
}

/// One etcd member on a data directory `etcdctl snapshot restore` made.
fn etcd_on(dir: &Path, name: &str, peer: u16, client: u16) -> KillOnDrop {
    let log = std::fs::File::create(dir.with_extension("log")).unwrap();
    let child: Child = Command::new("etcd")
        .args(["--name", name])
        .arg("--data-dir")
        .arg(dir)
        .args([
            "--listen-client-urls",
            &format!("http://127.0.0.1:{client}"),
        ])
        .args([
            "--advertise-client-urls",
            &format!("http://127.0.0.1:{client}"),
        ])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args([
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
        ])
        .args([
            "--initial-cluster",
            &format!("{name}=http://127.0.0.1:{peer}"),
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("etcd is installed");
    KillOnDrop(child)
}

async fn connected(endpoint: String) -> Client {
    wait_for(
        Duration::from_secs(30),
        "the restored member to serve",
        || {
            let ep = endpoint.clone();
            async move {
                let mut c = common::connect_once(&ep).await?;
                c.get("k/00", None).await.ok()?;
                Some(c)
            }
        },
    )
    .await
}

/// etcdctl's offline commands dial nothing; this endpoint is never used.
fn offline() -> Vec<String> {
    vec!["http://127.0.0.1:1".to_string()]
}

fn status_json(file: &Path) -> serde_json::Value {
    let out = etcdctl_ok(
        &offline(),
        &["snapshot", "status", "-w", "json", file.to_str().unwrap()],
    );
    serde_json::from_str(out.trim()).expect("snapshot status JSON")
}

/// `etcdctl snapshot restore` of `file` into `data`, and etcd serving it.
async fn restore_into_etcd(file: &Path, data: &Path) -> (KillOnDrop, Client, String) {
    let (peer, client) = (free_port(), free_port());
    etcdctl_ok(
        &offline(),
        &[
            "snapshot",
            "restore",
            file.to_str().unwrap(),
            "--name",
            "e1",
            "--data-dir",
            data.to_str().unwrap(),
            "--initial-cluster",
            &format!("e1=http://127.0.0.1:{peer}"),
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
        ],
    );
    let etcd = etcd_on(data, "e1", peer, client);
    let url = format!("http://127.0.0.1:{client}");
    let c = connected(url.clone()).await;
    (etcd, c, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_a_flotilla_snapshot_restores_into_etcd() {
    let c = Cluster::start(1, &[]).await;
    let mut kv = c.client(0).await;
    let compact_at = populate(&mut kv).await;
    let want = observe(&mut kv, compact_at).await;
    let file = c.dir.path().join("flotilla.db");
    etcdctl_ok(
        &c.endpoints(),
        &["snapshot", "save", file.to_str().unwrap()],
    );

    let status = status_json(&file);
    assert_eq!(status["revision"], want.revision, "{status}");
    assert!(status["totalKey"].as_i64().unwrap() > 20, "{status}");

    let (_etcd, mut e, _) = restore_into_etcd(&file, &c.dir.path().join("etcd-restored")).await;
    let got = observe(&mut e, compact_at).await;
    assert_eq!(got, want);
    // etcd goes on from there.
    let r = e.put("k/new", "1", None).await.unwrap();
    assert_eq!(r.header().unwrap().revision(), want.revision + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_an_etcd_snapshot_restores_into_flotilla() {
    let etcd = EtcdCluster::start(1).await;
    let mut kv = common::connect(&etcd.urls()).await;
    // The harness's own probe key is part of the data too.
    let compact_at = populate(&mut kv).await;
    let want = observe(&mut kv, compact_at).await;
    let file = etcd.dir.path().join("etcd.db");
    etcdctl_ok(&etcd.urls(), &["snapshot", "save", file.to_str().unwrap()]);

    let (r, log) = Cluster::restored_from(&file).await;
    assert!(
        log.contains("alice"),
        "the user whose bcrypt password cannot come over is named: {log}"
    );
    let mut f = r.client(0).await;
    let got = observe(&mut f, compact_at).await;
    assert_eq!(got, want);
    let w = f.put("k/new", "1", None).await.unwrap();
    assert_eq!(w.header().unwrap().revision(), want.revision + 1);

    // A file without its SHA-256 (a copy of a live database) needs --skip-hash-check.
    let bare = etcd.dir.path().join("bare.db");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&bare, &bytes[..bytes.len() - 32]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let restore = |extra: &[&str]| {
        Command::new(common::BIN)
            .args(["snapshot-restore"])
            .arg(&bare)
            .args(["--name", "x"])
            .arg("--data-dir")
            .arg(dir.path().join("x"))
            .args(["--initial-advertise-peer-urls", "http://127.0.0.1:1"])
            .args(["--initial-cluster", "x=http://127.0.0.1:1"])
            .args(extra)
            .output()
            .unwrap()
    };
    let refused = restore(&[]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("snapshot missing hash"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(restore(&["--skip-hash-check"]).status.success());
}

/// A ConfigMap's name, resourceVersion and data, for every one in `ns`.
async fn config_maps(client: &kube::Client, ns: &str) -> Vec<(String, String, String)> {
    use k8s_openapi::api::core::v1::ConfigMap;
    let api: kube::Api<ConfigMap> = kube::Api::namespaced(client.clone(), ns);
    let mut out: Vec<_> = api
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|c| {
            (
                c.metadata.name.unwrap_or_default(),
                c.metadata.resource_version.unwrap_or_default(),
                format!("{:?}", c.data),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_kubernetes_data_moves_from_etcd_to_flotilla_and_back() {
    use common::k8s::Apiservers;
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
    use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
    let etcd = EtcdCluster::start(1).await;
    let on_etcd = Apiservers::start(1, &etcd.urls()).await;
    let client = on_etcd.client(0).await;
    let ns: Api<Namespace> = Api::all(client.clone());
    ns.create(
        &PostParams::default(),
        &serde_json::from_value(serde_json::json!({"metadata": {"name": "moving"}})).unwrap(),
    )
    .await
    .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "moving");
    for i in 0..20 {
        let cm = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("cm-{i:02}")}, "data": {"i": i.to_string()}}))
        .unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    let patch = serde_json::json!({"data": {"patched": "yes"}});
    cms.patch("cm-03", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    cms.delete("cm-04", &DeleteParams::default()).await.unwrap();
    let want = config_maps(&client, "moving").await;
    assert_eq!(want.len(), 19);
    drop(on_etcd);

    // etcd -> Flotilla.
    let file = etcd.dir.path().join("k8s.db");
    etcdctl_ok(&etcd.urls(), &["snapshot", "save", file.to_str().unwrap()]);
    let (flotilla, _) = Cluster::restored_from(&file).await;
    let urls: Vec<String> = flotilla.members.iter().map(|m| m.client_url()).collect();
    let on_flotilla = Apiservers::start(1, &urls).await;
    let client = on_flotilla.client(0).await;
    assert_eq!(
        config_maps(&client, "moving").await,
        want,
        "same objects, same resourceVersions"
    );
    // Writes go on from there: a newer resourceVersion than any before.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "moving");
    let made = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "cm-new"}})).unwrap(),
        )
        .await
        .unwrap();
    let rv = |s: &str| s.parse::<i64>().unwrap();
    let newest = want.iter().map(|(_, v, _)| rv(v)).max().unwrap();
    assert!(rv(made.metadata.resource_version.as_deref().unwrap()) > newest);
    let want = config_maps(&client, "moving").await;
    drop(on_flotilla);

    // And back: Flotilla -> etcd.
    let file = flotilla.dir.path().join("back.db");
    etcdctl_ok(
        &flotilla.endpoints(),
        &["snapshot", "save", file.to_str().unwrap()],
    );
    let (_etcd2, _, url) = restore_into_etcd(&file, &flotilla.dir.path().join("etcd-back")).await;
    let on_etcd = Apiservers::start(1, &[url]).await;
    let client = on_etcd.client(0).await;
    assert_eq!(
        config_maps(&client, "moving").await,
        want,
        "back on etcd, unchanged"
    );
}
