//! The rule generator against the real kernel: transactions from `ruleset::build` and
//! `transaction::{full, incremental}` applied with `nft` inside a network namespace of the
//! test's own, and real TCP connections through them to endpoints (busybox httpd) in a
//! second namespace. Needs root, nft, ip and busybox (`scripts/setup --test`); nothing
//! outside the two namespaces is touched, and dropping them removes everything.

use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use proxy::model::{Endpoint, PortName, Proto, ServicePort};
use proxy::ruleset::{build, NodeView, Ruleset};
use proxy::transaction::{full, incremental, Existing};

const TABLE: &str = "flotilla-proxy-test";

fn sh(args: &[&str]) -> std::process::Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn ok(args: &[&str]) -> String {
    let out = sh(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A node namespace linked by a veth pair to an endpoint namespace holding two servers,
/// 10.250.0.2:8080 ("a") and 10.250.0.3:8080 ("b"); the node is 10.250.0.1.
struct Net {
    node: String,
    ep: String,
    servers: Vec<Child>,
    _www: tempfile::TempDir,
}

impl Net {
    fn new() -> Net {
        let id = std::process::id() % 100_000;
        let (node, ep) = (format!("fpn-{id}"), format!("fpe-{id}"));
        let (vn, ve) = (format!("fvn{id}"), format!("fve{id}"));
        let mut net = Net {
            node: node.clone(),
            ep: ep.clone(),
            servers: vec![],
            _www: tempfile::tempdir().unwrap(),
        };
        ok(&["ip", "netns", "add", &node]);
        ok(&["ip", "netns", "add", &ep]);
        ok(&[
            "ip", "link", "add", &vn, "type", "veth", "peer", "name", &ve,
        ]);
        ok(&["ip", "link", "set", &vn, "netns", &node]);
        ok(&["ip", "link", "set", &ve, "netns", &ep]);
        for (ns, dev, addrs) in [
            (&node, &vn, &["10.250.0.1/24"][..]),
            (&ep, &ve, &["10.250.0.2/24", "10.250.0.3/24"][..]),
        ] {
            ok(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            for a in addrs {
                ok(&["ip", "-n", ns, "addr", "add", a, "dev", dev]);
            }
            ok(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        // Cluster IPs are routed somewhere, as on a real node (the DNAT decides).
        ok(&[
            "ip",
            "-n",
            &node,
            "route",
            "add",
            "default",
            "via",
            "10.250.0.254",
            "dev",
            &vn,
            "onlink",
        ]);
        ok(&[
            "ip",
            "-n",
            &ep,
            "route",
            "add",
            "default",
            "via",
            "10.250.0.1",
        ]);
        for name in ["a", "b"] {
            let dir = net._www.path().join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("index.html"), name).unwrap();
            let ip = if name == "a" {
                "10.250.0.2"
            } else {
                "10.250.0.3"
            };
            let child = Command::new("ip")
                .args(["netns", "exec", &ep, "busybox", "httpd", "-f", "-p"])
                .arg(format!("{ip}:8080"))
                .arg("-h")
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("busybox httpd");
            net.servers.push(child);
        }
        // The servers listen once a request from the endpoint namespace itself answers.
        for ip in ["10.250.0.2", "10.250.0.3"] {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if get_in(&ep, &format!("http://{ip}:8080/")).is_ok() {
                    break;
                }
                assert!(Instant::now() < deadline, "httpd on {ip} never answered");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        net
    }

    fn nft(&self, text: &str) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.node, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "nft refused the transaction: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn existing(&self) -> Existing {
        let out = sh(&[
            "ip", "netns", "exec", &self.node, "nft", "-j", "list", "table", "ip", TABLE,
        ]);
        if !out.status.success() {
            return Existing::default();
        }
        proxy::kernel::parse_listing(&String::from_utf8_lossy(&out.stdout)).unwrap()
    }

    /// GET from the node namespace (busybox nc: Debian's static busybox wget crashes in
    /// its resolver): the body, or the error text and how long it took.
    fn get(&self, url: &str) -> Result<String, (String, Duration)> {
        get_in(&self.node, url)
    }
}

fn get_in(ns: &str, url: &str) -> Result<String, (String, Duration)> {
    let hostport = url.trim_start_matches("http://").trim_end_matches('/');
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "80"));
    let start = Instant::now();
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "busybox", "nc", "-w", "3", host, port])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("busybox nc");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET / HTTP/1.0\r\n\r\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if out.status.success() && head.starts_with("HTTP/1.") => {
            Ok(body.trim().to_string())
        }
        _ => Err((
            format!("{}{}", String::from_utf8_lossy(&out.stderr), text),
            start.elapsed(),
        )),
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for c in &mut self.servers {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = sh(&["ip", "netns", "del", &self.node]);
        let _ = sh(&["ip", "netns", "del", &self.ep]);
    }
}

fn ep(last: u8) -> Endpoint {
    Endpoint {
        ip: Ipv4Addr::new(10, 250, 0, last),
        port: 8080,
        ready: true,
        serving: true,
        terminating: false,
        local: true,
    }
}

fn web(eps: Vec<Endpoint>) -> ServicePort {
    ServicePort {
        name: PortName {
            namespace: "default".into(),
            name: "web".into(),
            port: "http".into(),
            proto: Proto::Tcp,
        },
        cluster_ips: vec![Ipv4Addr::new(10, 96, 7, 7)],
        port: 80,
        node_port: Some(30080),
        external_ips: vec![],
        load_balancer_ips: vec![],
        affinity_seconds: None,
        external_local: false,
        internal_local: false,
        endpoints: eps,
        created: "0".into(),
    }
}

fn view() -> NodeView {
    NodeView {
        cluster_cidr: Some("10.244.0.0/16".into()),
        nodeport_ips: vec![Ipv4Addr::new(10, 250, 0, 1)],
        sctp: true,
    }
}

fn can_run() -> bool {
    let root = rustix_is_root();
    let tools = ["nft", "ip", "busybox"].iter().all(|t| {
        Command::new(t).arg("--version").output().is_ok()
            || Command::new(t).arg("--help").output().is_ok()
    });
    if !(root && tools) {
        eprintln!("skipped: needs root with nft, ip and busybox (scripts/setup --test)");
    }
    root && tools
}

fn rustix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

#[test]
fn rules_carry_real_connections_and_change_in_place() {
    if !can_run() {
        return;
    }
    let net = Net::new();

    // A full sync into an empty table: the cluster IP and the NodePort reach both
    // endpoints.
    let (two, conflicts) = build(&[web(vec![ep(2), ep(3)])], &view());
    assert!(conflicts.is_empty());
    net.nft(&full(TABLE, &two, &net.existing()));
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..30 {
        seen.insert(net.get("http://10.96.7.7/").expect("cluster IP"));
    }
    assert_eq!(seen, ["a", "b"].iter().map(|s| s.to_string()).collect());
    assert!(matches!(
        net.get("http://10.250.0.1:30080/").as_deref(),
        Ok("a" | "b")
    ));

    // An endpoint leaves: an incremental transaction, and only "a" answers.
    let (one, _) = build(&[web(vec![ep(2)])], &view());
    let t = incremental(TABLE, &two, &one);
    assert!(
        t.lines().count() < 15,
        "small change, small transaction:\n{t}"
    );
    net.nft(&t);
    for _ in 0..10 {
        assert_eq!(net.get("http://10.96.7.7/").as_deref(), Ok("a"));
    }

    // No ready endpoint: refused at once, not a timeout.
    let mut unready = ep(2);
    unready.ready = false;
    unready.serving = false;
    let (none, _) = build(&[web(vec![unready])], &view());
    net.nft(&incremental(TABLE, &one, &none));
    let (err, took) = net.get("http://10.96.7.7/").unwrap_err();
    assert!(took < Duration::from_secs(2), "rejected in {took:?}: {err}");
    assert!(err.contains("refused"), "{err}");
    let (err, _) = net.get("http://10.250.0.1:30080/").unwrap_err();
    assert!(err.contains("refused"), "{err}");
    // A cluster IP on a port no Service has is refused too.
    let (err, _) = net.get("http://10.96.7.7:81/").unwrap_err();
    assert!(err.contains("refused"), "{err}");

    // Session affinity: one client, one endpoint.
    let mut sticky = web(vec![ep(2), ep(3)]);
    sticky.affinity_seconds = Some(600);
    let (sticky, _) = build(&[sticky], &view());
    net.nft(&incremental(TABLE, &none, &sticky));
    let first = net.get("http://10.96.7.7/").unwrap();
    for _ in 0..15 {
        assert_eq!(net.get("http://10.96.7.7/").unwrap(), first);
    }

    // A full sync over a table someone changed: strays removed, affinity kept.
    net.nft(&format!(
        "add chain ip {TABLE} stray\nadd rule ip {TABLE} stray accept\n"
    ));
    let existing = net.existing();
    assert!(existing.chains.contains("stray"));
    net.nft(&full(TABLE, &sticky, &existing));
    assert!(!net.existing().chains.contains("stray"));
    assert_eq!(net.get("http://10.96.7.7/").unwrap(), first);

    // Back to no Services at all: the table holds only the skeleton.
    let (empty, _) = build(&[], &view());
    net.nft(&incremental(TABLE, &sticky, &empty));
    let left = net.existing();
    assert_eq!(
        left.chains.len(),
        Ruleset::default().chains.len() + empty.chains.len()
    );
    assert!(net.get("http://10.96.7.7/").is_err());
}
