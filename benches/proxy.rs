//! Proxy rule programming at scale: N ClusterIP Services of one port with two endpoints
//! each, turned into a ruleset (pure) and applied with `nft` inside a network namespace
//! of the bench's own. Reports the time to build the ruleset, the first full sync, a full
//! resync over the existing table (what a restarted proxy does), and incremental syncs
//! after one endpoint of one Service changed (what an endpoint change costs; kube-proxy's
//! nftables mode makes these proportional to the change). Needs root and nft.
//!
//! `cargo bench --bench proxy` (PROXY_BENCH_SERVICES="1000,10000" to change the sizes,
//! PROXY_BENCH_CHANGES=50 the incremental samples).

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use proxy::model::{Endpoint, PortName, Proto, ServicePort};
use proxy::ruleset::{build, NodeView};
use proxy::transaction::{full, incremental};

const TABLE: &str = "flotilla-proxy-bench";

fn service(i: u32, generation: u32) -> ServicePort {
    let ep = |j: u32| Endpoint {
        // 10.128.0.0/9 holds 2 endpoints for each of up to 4 million Services.
        ip: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + i * 2 + j),
        // A new port per generation: every change is a real change.
        port: 8080 + (generation % 1000) as u16,
        ready: true,
        serving: true,
        terminating: false,
        local: false,
    };
    ServicePort {
        name: PortName {
            namespace: format!("ns-{}", i % 100),
            name: format!("svc-{i}"),
            port: "http".into(),
            proto: Proto::Tcp,
        },
        cluster_ips: vec![Ipv4Addr::from(
            u32::from(Ipv4Addr::new(10, 96, 0, 0)) + 10 + i,
        )],
        port: 80,
        node_port: None,
        external_ips: vec![],
        load_balancer_ips: vec![],
        affinity_seconds: None,
        external_local: false,
        internal_local: false,
        endpoints: vec![ep(0), ep(1)],
        created: format!("{i:08}"),
    }
}

fn nft(ns: &str, text: &str) -> Duration {
    let start = Instant::now();
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ip netns exec nft");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "nft: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    start.elapsed()
}

fn existing(ns: &str) -> proxy::transaction::Existing {
    let out = Command::new("ip")
        .args([
            "netns", "exec", ns, "nft", "-j", "list", "table", "ip", TABLE,
        ])
        .output()
        .unwrap();
    if !out.status.success() {
        return Default::default(); // no table yet
    }
    proxy::kernel::parse_listing(&String::from_utf8_lossy(&out.stdout)).unwrap()
}

/// The bench's network namespace, removed when dropped (also on a panic).
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let sizes: Vec<u32> = std::env::var("PROXY_BENCH_SERVICES")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let changes: usize = std::env::var("PROXY_BENCH_CHANGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let view = NodeView {
        cluster_cidr: Some("10.244.0.0/16".into()),
        nodeport_ips: vec![],
        sctp: true,
    };
    println!("| Services | build ms | first full sync ms | full resync ms | incremental p50 ms | incremental p99 ms | full lines | incremental lines |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for n in sizes {
        let ns = format!("fpbench-{}", std::process::id());
        let st = Command::new("ip")
            .args(["netns", "add", &ns])
            .status()
            .unwrap();
        assert!(st.success(), "ip netns add (root needed)");
        let _netns = Netns(ns.clone());
        let mut ports: Vec<ServicePort> = (0..n).map(|i| service(i, 0)).collect();
        let t = Instant::now();
        let (mut have, _) = build(&ports, &view);
        let build_time = t.elapsed();
        let first = full(TABLE, &have, &existing(&ns));
        if let Ok(dir) = std::env::var("PROXY_BENCH_DUMP") {
            std::fs::write(format!("{dir}/full-{n}.nft"), &first).unwrap();
        }
        let first_time = nft(&ns, &first);
        let t = Instant::now();
        let again = full(TABLE, &have, &existing(&ns));
        nft(&ns, &again);
        let resync_time = t.elapsed();
        let mut inc = Vec::new();
        let mut inc_lines = 0;
        for c in 0..changes {
            let i = (c as u32 * 7919) % n;
            ports[i as usize] = service(i, c as u32 + 1);
            let t = Instant::now();
            let (want, _) = build(&ports, &view);
            let text = incremental(TABLE, &have, &want);
            nft(&ns, &text);
            inc.push(t.elapsed());
            inc_lines = text.lines().count();
            have = want;
        }
        inc.sort();
        println!(
            "| {n} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} |",
            ms(build_time),
            ms(first_time),
            ms(resync_time),
            ms(pct(&inc, 0.5)),
            ms(pct(&inc, 0.99)),
            first.lines().count(),
            inc_lines
        );
    }
}
