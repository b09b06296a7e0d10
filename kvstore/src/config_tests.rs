use super::*;
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    flags: KvFlags,
}

fn flags(args: &[&str]) -> KvFlags {
    let mut argv = vec!["kvstore"];
    argv.extend_from_slice(args);
    Cli::parse_from(argv).flags
}

#[test]
fn defaults_are_etcds() {
    let c = flags(&[]).validate().unwrap();
    assert_eq!(c.max_request_bytes, 1_572_864);
    assert_eq!(c.max_txn_ops, 128);
    assert_eq!(c.heartbeat, Duration::from_millis(100));
    assert_eq!(c.election, Duration::from_millis(1000));
    assert_eq!(c.data_dir, PathBuf::from("default.etcd"));
    assert_eq!(c.min_lease_ttl(), 2);
    assert_eq!(c.max_watchers_per_stream, 10_000);
    let e = flags(&["--max-watchers-per-stream", "0"])
        .validate()
        .unwrap_err();
    assert!(e.to_string().contains("max-watchers-per-stream"), "{e}");
}

#[test]
fn initial_cluster_must_name_this_member_with_its_urls() {
    let ok = flags(&[
        "--name",
        "n1",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:2380",
        "--initial-cluster",
        "n1=http://127.0.0.1:2380,n2=http://127.0.0.1:2381",
    ]);
    assert_eq!(ok.validate().unwrap().initial_cluster.len(), 2);
    let missing = flags(&[
        "--name",
        "n3",
        "--initial-cluster",
        "n1=http://127.0.0.1:2380",
    ]);
    assert!(missing.validate().unwrap_err().to_string().contains("n3"));
    let bad = flags(&["--initial-cluster", "default=https://x:1"]);
    assert!(bad.validate().is_err());
    let timeouts = flags(&["--heartbeat-interval", "300", "--election-timeout", "1000"]);
    assert!(timeouts
        .validate()
        .unwrap_err()
        .to_string()
        .contains("5 times"));
    // Out-of-range values are refused, never overflowed.
    let huge = flags(&["--heartbeat-interval", "18446744073709551615"]);
    assert!(huge.validate().unwrap_err().to_string().contains("5 times"));
    let long = flags(&["--election-timeout", "50001"]);
    assert!(long
        .validate()
        .unwrap_err()
        .to_string()
        .contains("too long"));
}

#[test]
fn https_urls_need_certificates() {
    let e = flags(&["--listen-client-urls", "https://127.0.0.1:2379"])
        .validate()
        .unwrap_err();
    assert!(e.to_string().contains("--cert-file"), "{e}");
    let e = flags(&["--cert-file", "a.crt"]).validate().unwrap_err();
    assert!(e.to_string().contains("key-file"), "{e}");
    let e = flags(&["--cert-file", "a", "--key-file", "b", "--client-cert-auth"])
        .validate()
        .unwrap_err();
    assert!(e.to_string().contains("trusted-ca-file"), "{e}");
    let peer = [
        "--initial-advertise-peer-urls",
        "https://127.0.0.1:2380",
        "--listen-peer-urls",
        "https://127.0.0.1:2380",
    ];
    let e = flags(&peer).validate().unwrap_err();
    assert!(e.to_string().contains("--peer-cert-file"), "{e}");
    let mut ok = peer.to_vec();
    ok.extend(["--peer-cert-file", "p.crt", "--peer-key-file", "p.key"]);
    let c = flags(&ok).validate().unwrap();
    assert!(c.listen_peer[0].tls && !c.listen_client[0].tls);
    assert!(c.peer_tls.is_some() && c.client_tls.is_none());
}

#[test]
fn max_request_bytes_is_capped_so_entries_fit_in_a_peer_message() {
    let cap = MAX_REQUEST_BYTES_CAP.to_string();
    assert!(flags(&["--max-request-bytes", &cap]).validate().is_ok());
    let over = (MAX_REQUEST_BYTES_CAP + 1).to_string();
    let e = flags(&["--max-request-bytes", &over])
        .validate()
        .unwrap_err();
    assert!(e.to_string().contains("peer message"), "{e}");
}

#[test]
fn ids_are_stable_and_order_independent() {
    let a = member_id(&["http://a:1".into(), "http://b:2".into()], "t");
    let b = member_id(&["http://b:2".into(), "http://a:1".into()], "t");
    assert_eq!(a, b);
    assert_ne!(a, member_id(&["http://a:1".into()], "t"));
    assert_eq!(cluster_id(&[1, 2], "t"), cluster_id(&[2, 1], "t"));
}

#[test]
fn corruption_checks_are_off_by_default_as_in_etcd() {
    let c = flags(&[]).validate().unwrap();
    assert!(!c.initial_corrupt_check);
    assert_eq!(c.corrupt_check_time, None);
    let c = flags(&[
        "--experimental-initial-corrupt-check",
        "--experimental-corrupt-check-time",
        "2s",
    ])
    .validate()
    .unwrap();
    assert!(c.initial_corrupt_check);
    assert_eq!(c.corrupt_check_time, Some(Duration::from_secs(2)));
    assert_eq!(
        flags(&["--experimental-corrupt-check-time", "0"])
            .validate()
            .unwrap()
            .corrupt_check_time,
        None
    );
    let e = flags(&["--experimental-corrupt-check-time", "often"])
        .validate()
        .unwrap_err();
    assert!(e.to_string().contains("corrupt-check-time"), "{e}");
}

#[test]
fn metrics_urls_are_guarded_as_the_client_port() {
    let c = flags(&["--listen-metrics-urls", "http://127.0.0.1:2381"])
        .validate()
        .unwrap();
    assert_eq!(c.listen_metrics.len(), 1);
    assert!(flags(&[]).validate().unwrap().listen_metrics.is_empty());
    let e = flags(&["--listen-metrics-urls", "https://127.0.0.1:2381"])
        .validate()
        .unwrap_err();
    assert!(e.to_string().contains("--client-cert-auth"), "{e}");
    let e = flags(&[
        "--listen-client-urls",
        "https://127.0.0.1:2379",
        "--cert-file",
        "/c",
        "--key-file",
        "/k",
        "--listen-metrics-urls",
        "http://127.0.0.1:2381",
    ])
    .validate()
    .unwrap_err();
    assert!(e.to_string().contains("must be https://"), "{e}");
}
