//! The kvstore with etcd's TLS flags: clients and peers must present a certificate from
//! the trusted CA (`--client-cert-auth`, `--peer-client-cert-auth`). Debian's etcdctl 3.4
//! with `--cacert/--cert/--key` works; no certificate, a stranger's certificate, or plain
//! HTTP on the TLS port does not; members replicate over mTLS.

mod common;

use std::time::Duration;

use common::{etcdctl, Cluster, Tls};
use kvstore::raft::calls::{PeerCall, PeerReply};
use kvstore::raft::network::Peers;

fn with(tls: &[String], args: &[&str]) -> Vec<String> {
    let mut v = tls.to_vec();
    v.extend(args.iter().map(|s| s.to_string()));
    v
}

fn run(ep: &[String], args: &[String]) -> std::process::Output {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    etcdctl(ep, &refs)
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn peer_answers(url: &str, tls: &Tls, identity: Option<&Tls>) -> bool {
    let client = proto::tls::ClientTls::load(
        Some(&tls.ca),
        identity.map(|t| (t.member_cert.as_path(), t.member_key.as_path())),
    )
    .unwrap();
    let peers = Peers::new(Some(client));
    matches!(
        peers
            .call(url, &PeerCall::ClusterInfo, Duration::from_secs(3))
            .await,
        Ok(PeerReply::ClusterInfo(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_and_peers_need_a_certificate_from_the_trusted_ca() {
    let c = Cluster::start_tls(3, &[]).await;
    let tls = c.tls.clone().unwrap();
    let ep: Vec<String> = c.members.iter().map(|m| m.client_url()).collect();
    let mine = tls.etcdctl_args();

    // etcdctl with the client certificate, against every member.
    let out = run(&ep, &with(&mine, &["put", "foo", "bar"]));
    assert!(out.status.success(), "{}", text(&out));
    for m in &c.members {
        let out = run(
            &[m.client_url()],
            &with(&mine, &["get", "foo", "--print-value-only"]),
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "bar",
            "{}",
            text(&out)
        );
    }
    // Replication over the TLS peer port: every member applied the same history.
    let rev = c
        .any_client()
        .await
        .get("foo", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    c.assert_same_hash(rev).await;

    let short = ["--dial-timeout=2s", "--command-timeout=3s"].map(String::from);
    // Trusting the server is not enough: the server wants a client certificate.
    let ca_only = vec![format!("--cacert={}", tls.ca.display())];
    let out = run(
        &ep[..1],
        &with(&[ca_only.clone(), short.to_vec()].concat(), &["get", "foo"]),
    );
    assert!(
        !out.status.success(),
        "no client certificate: {}",
        text(&out)
    );

    // A certificate from another CA is refused.
    let stranger = Tls::issue(&c.dir.path().join("stranger"), "root");
    let theirs = vec![
        format!("--cacert={}", tls.ca.display()),
        format!("--cert={}", stranger.client_cert.display()),
        format!("--key={}", stranger.client_key.display()),
    ];
    let out = run(
        &ep[..1],
        &with(&[theirs, short.to_vec()].concat(), &["get", "foo"]),
    );
    assert!(
        !out.status.success(),
        "a stranger's certificate: {}",
        text(&out)
    );

    // Plain HTTP/2 on the TLS port gets nothing.
    let plain = vec![format!("http://127.0.0.1:{}", c.members[0].client_port)];
    let out = run(&plain, &with(&short, &["get", "foo"]));
    assert!(
        !out.status.success(),
        "plain text on the TLS port: {}",
        text(&out)
    );

    // The peer port: a member's certificate gets an answer; a stranger's, or none, does not.
    let peer = c.members[0].peer_url();
    assert!(peer_answers(&peer, &tls, Some(&tls)).await);
    assert!(!peer_answers(&peer, &tls, Some(&stranger)).await);
    assert!(!peer_answers(&peer, &tls, None).await);

    // Still serving after all that.
    let out = run(&ep, &with(&mine, &["get", "foo", "--print-value-only"]));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "bar",
        "{}",
        text(&out)
    );
}
