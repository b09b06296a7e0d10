//! Compatibility with a client not written here: Debian's etcdctl 3.4 against a 3-member
//! cluster, asserting on what it prints.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{etcdctl, etcdctl_ok, Cluster};

fn lines(s: &str) -> Vec<&str> {
    s.lines().filter(|l| !l.is_empty()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_etcdctl_kv_txn_watch_compaction() {
    let c = Cluster::start(3, &[]).await;
    let ep = c.endpoints();
    assert_eq!(etcdctl_ok(&ep, &["put", "foo", "bar"]).trim(), "OK");
    assert_eq!(lines(&etcdctl_ok(&ep, &["get", "foo"])), ["foo", "bar"]);
    for (k, v) in [("p/a", "1"), ("p/b", "2"), ("p/c", "3")] {
        etcdctl_ok(&ep, &["put", k, v]);
    }
    let out = etcdctl_ok(&ep, &["get", "p/", "--prefix", "--keys-only"]);
    assert_eq!(lines(&out), ["p/a", "p/b", "p/c"]);
    let out = etcdctl_ok(
        &ep,
        &[
            "get",
            "p/",
            "--prefix",
            "--limit=2",
            "--sort-by=KEY",
            "--order=DESCEND",
        ],
    );
    assert_eq!(lines(&out), ["p/c", "3", "p/b", "2"]);
    let json = etcdctl_ok(&ep, &["get", "foo", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let rev = v["header"]["revision"].as_i64().unwrap();
    let foo_rev = v["kvs"][0]["mod_revision"].as_i64().unwrap();
    etcdctl_ok(&ep, &["put", "foo", "baz"]);
    assert_eq!(
        lines(&etcdctl_ok(
            &ep,
            &["get", "foo", &format!("--rev={foo_rev}")]
        )),
        ["foo", "bar"]
    );
    assert_eq!(etcdctl_ok(&ep, &["del", "p/a"]).trim(), "1");

    // txn from stdin: compares, then success ops, then failure ops.
    let mut child = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", ep.join(",")))
        .arg("txn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"value(\"foo\") = \"baz\"\n\nput txn-key yes\n\nput txn-key no\n\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("SUCCESS"), "{text}");
    assert_eq!(
        lines(&etcdctl_ok(&ep, &["get", "txn-key"])),
        ["txn-key", "yes"]
    );

    // watch --rev replays history then follows; it is killed once it printed enough.
    let mut watch = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", ep.join(",")))
        .args(["watch", "foo", &format!("--rev={foo_rev}")])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(watch.stdout.take().unwrap());
    let mut got = Vec::new();
    let reading = std::thread::spawn(move || {
        let mut line = String::new();
        while got.len() < 6 && reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            got.push(line.trim().to_string());
            line.clear();
        }
        got
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !reading.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = watch.kill();
    let _ = watch.wait();
    let got = reading.join().unwrap();
    assert_eq!(got, ["PUT", "foo", "bar", "PUT", "foo", "baz"]);

    assert_eq!(
        etcdctl_ok(&ep, &["compaction", &rev.to_string()]).trim(),
        format!("compacted revision {rev}")
    );
    let out = etcdctl(&ep, &["get", "foo", &format!("--rev={}", rev - 1)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("required revision has been compacted"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_etcdctl_leases_members_endpoints_snapshot() {
    let c = Cluster::start(3, &[]).await;
    let ep = c.endpoints();
    let out = etcdctl_ok(&ep, &["lease", "grant", "60"]);
    // "lease 694d... granted with TTL(60s)"
    let id = out.split_whitespace().nth(1).unwrap().to_string();
    assert!(out.contains("granted with TTL(60s)"), "{out}");
    etcdctl_ok(&ep, &["put", "leased", "v", &format!("--lease={id}")]);
    let out = etcdctl_ok(&ep, &["lease", "keep-alive", "--once", &id]);
    assert!(out.contains("keepalived with TTL(60)"), "{out}");
    let out = etcdctl_ok(&ep, &["lease", "timetolive", &id, "--keys"]);
    assert!(
        out.contains("granted with TTL(60s)") && out.contains("attached keys([leased])"),
        "{out}"
    );
    let out = etcdctl_ok(&ep, &["lease", "list"]);
    assert!(out.contains("found 1 leases") && out.contains(&id), "{out}");
    assert!(etcdctl_ok(&ep, &["lease", "revoke", &id]).contains("revoked"));
    assert!(lines(&etcdctl_ok(&ep, &["get", "leased"])).is_empty());

    let out = etcdctl_ok(&ep, &["member", "list"]);
    assert_eq!(lines(&out).len(), 3, "{out}");
    for m in &c.members {
        assert!(
            out.contains(&m.name) && out.contains(&m.peer_url()) && out.contains(&m.client_url()),
            "{out}"
        );
    }
    let out = etcdctl_ok(
        &ep,
        &["member", "add", "n4", "--peer-urls=http://127.0.0.1:1"],
    );
    assert!(out.contains("added to cluster"), "{out}");
    let new_id = out.split_whitespace().nth(1).unwrap().to_string();
    let out = etcdctl_ok(&ep, &["member", "list"]);
    assert!(out.contains(&new_id) && out.contains("unstarted"), "{out}");
    let out = etcdctl_ok(&ep, &["member", "remove", &new_id]);
    assert!(out.contains("removed from cluster"), "{out}");
    assert_eq!(lines(&etcdctl_ok(&ep, &["member", "list"])).len(), 3);
    let out = etcdctl(&ep, &["member", "remove", "1234"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("member not found"));

    // etcdctl 3.4 prints health to stderr.
    let out = etcdctl(&ep, &["endpoint", "health"]);
    assert!(out.status.success());
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("is healthy").count(), 3, "{text}");
    let json = etcdctl_ok(&ep, &["endpoint", "status", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 3);
    let leaders: Vec<u64> = arr
        .iter()
        .map(|s| s["Status"]["leader"].as_u64().unwrap())
        .collect();
    assert!(leaders.iter().all(|l| *l == leaders[0] && *l != 0));
    assert!(arr
        .iter()
        .all(|s| s["Status"]["version"].as_str().unwrap().starts_with("3.5.")));

    // The same with `http://` endpoints, as users write them: etcdctl 3.4 then sends the
    // URL as the HTTP/2 :authority of `endpoint status` and `hashkv`.
    let urls: Vec<String> = c.members.iter().map(|m| m.client_url()).collect();
    assert!(urls.iter().all(|u| u.starts_with("http://")), "{urls:?}");
    let json = etcdctl_ok(&urls, &["endpoint", "status", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 3, "{json}");
    let out = etcdctl_ok(&urls, &["endpoint", "status"]);
    assert_eq!(lines(&out).len(), 3, "{out}");
    let out = etcdctl_ok(&urls, &["endpoint", "hashkv"]);
    assert_eq!(lines(&out).len(), 3, "{out}");
    let health = etcdctl(&urls, &["endpoint", "health"]);
    assert!(health.status.success());
    etcdctl_ok(&urls, &["put", "via-url", "v"]);
    assert_eq!(
        lines(&etcdctl_ok(&urls, &["get", "via-url"])),
        ["via-url", "v"]
    );
    assert_eq!(lines(&etcdctl_ok(&urls, &["member", "list"])).len(), 3);

    let snap = c.dir.path().join("backup.db");
    let out = etcdctl_ok(&ep[..1], &["snapshot", "save", snap.to_str().unwrap()]);
    assert!(out.contains("Snapshot saved at"), "{out}");
    assert!(std::fs::metadata(&snap).unwrap().len() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_etcdctl_check_perf_passes() {
    let c = Cluster::start(3, &[]).await;
    let out = etcdctl(&c.endpoints(), &["check", "perf", "--load=s"]);
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("PASS: Throughput"), "{text}");
    assert!(out.status.success(), "{text}");
}
