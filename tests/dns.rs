//! `flotilla dns` end to end as processes: 3 kvstore members, an apiserver, and two DNS
//! servers on one host with their own ports (one the other's upstream, for another
//! zone), queried with `dig`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::k8s::{Apiservers, Backend, KillOnDrop};
use common::{free_port, wait_for, BIN};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};

fn dns(kubeconfig: &Path, log: &Path, port: u16, extra: &[&str]) -> Child {
    let f = std::fs::File::create(log).expect("log");
    Command::new(BIN)
        .arg("dns")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--secure-port",
            "0",
        ])
        .args(extra)
        .env(
            "RUST_LOG",
            std::env::var("FLOTILLA_TEST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(f.try_clone().expect("log"))
        .stderr(f)
        .spawn()
        .expect("spawn flotilla dns")
}

/// `dig @127.0.0.1 -p port <args>`: its stdout.
fn dig(port: u16, args: &[&str]) -> String {
    let out = Command::new("dig")
        .args(["@127.0.0.1", "-p", &port.to_string(), "+time=2", "+tries=1"])
        .args(args)
        .output()
        .expect("dig (dnsutils) is installed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until `dig ... +short` prints exactly `want` (sorted lines).
async fn short(port: u16, args: &[&str], want: &[&str]) {
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    let mut a = vec!["+short"];
    a.extend_from_slice(args);
    wait_for(
        Duration::from_secs(30),
        &format!("dig {args:?} = {want:?}"),
        || {
            let a = a.clone();
            let want = want.clone();
            async move {
                let mut got: Vec<String> = dig(port, &a).lines().map(str::to_string).collect();
                got.sort();
                (got == want).then_some(())
            }
        },
    )
    .await;
}

/// Waits until `dig` reports `status` (NOERROR, NXDOMAIN, SERVFAIL) and returns its output.
async fn status(port: u16, args: &[&str], status: &str) -> String {
    let needle = format!("status: {status}");
    wait_for(
        Duration::from_secs(30),
        &format!("dig {args:?} {needle}"),
        || async {
            let out = dig(port, args);
            out.contains(&needle).then_some(out)
        },
    )
    .await
}

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(ns.into()),
        name: Some(name.into()),
        ..Default::default()
    }
}

fn labels(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

async fn create_objects(client: &kube::Client) -> String {
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let web = services
        .create(
            &PostParams::default(),
            &Service {
                metadata: meta("default", "web"),
                spec: Some(ServiceSpec {
                    ports: Some(vec![ServicePort {
                        name: Some("http".into()),
                        port: 80,
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .expect("create web");
    let web_ip = web.spec.unwrap().cluster_ip.expect("a ClusterIP");
    services
        .create(
            &PostParams::default(),
            &Service {
                metadata: meta("default", "db"),
                spec: Some(ServiceSpec {
                    cluster_ip: Some("None".into()),
                    ports: Some(vec![ServicePort {
                        name: Some("pg".into()),
                        port: 5432,
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .expect("create db");
    services
        .create(
            &PostParams::default(),
            &Service {
                metadata: meta("default", "ext"),
                spec: Some(ServiceSpec {
                    type_: Some("ExternalName".into()),
                    external_name: Some("example.com".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .expect("create ext");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let ep = |ip: &str, host: Option<&str>, ready: bool| Endpoint {
        addresses: vec![ip.into()],
        hostname: host.map(str::to_string),
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut m = meta("default", "db-1");
    m.labels = labels(&[("kubernetes.io/service-name", "db")]);
    slices
        .create(
            &PostParams::default(),
            &EndpointSlice {
                metadata: m,
                address_type: "IPv4".into(),
                endpoints: vec![
                    ep("10.250.0.1", Some("db-0"), true),
                    ep("10.250.0.2", None, true),
                    ep("10.250.0.3", Some("db-2"), false),
                ],
                ports: Some(vec![EndpointPort {
                    name: Some("pg".into()),
                    port: Some(5432),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
            },
        )
        .await
        .expect("create the db slice");
    web_ip
}

#[tokio::test(flavor = "multi_thread")]
async fn dns_end_to_end() {
    let backend = Backend::flotilla().await;
    let api = Apiservers::start(1, &backend.urls()).await;
    let kc = api.kubeconfig(0).to_path_buf();
    let dir = api.dir.path().to_path_buf();
    let client = api.client(0).await;

    // B: the upstream, for zone upstream.test, whose own upstream never answers.
    let (pa, pb, dead) = (free_port(), free_port(), free_port());
    let _b = KillOnDrop(dns(
        &kc,
        &dir.join("dns-b.log"),
        pb,
        &[
            "--cluster-domain",
            "upstream.test",
            "--advertise-address",
            "127.0.0.1",
            "--identity",
            "b",
            "--upstream",
            &format!("127.0.0.1:{dead}"),
        ],
    ));
    let mut a = KillOnDrop(dns(
        &kc,
        &dir.join("dns-a.log"),
        pa,
        &[
            "--upstream",
            &format!("127.0.0.1:{pb}"),
            "--advertise-address",
            "127.0.0.1",
            "--identity",
            "a",
        ],
    ));

    let web_ip = create_objects(&client).await;

    // A and AAAA (NODATA) of a ClusterIP service, over UDP and TCP.
    short(pa, &["web.default.svc.cluster.local", "A"], &[&web_ip]).await;
    short(
        pa,
        &["+tcp", "web.default.svc.cluster.local", "A"],
        &[&web_ip],
    )
    .await;
    let out = status(pa, &["web.default.svc.cluster.local", "AAAA"], "NOERROR").await;
    assert!(out.contains("ANSWER: 0") && out.contains("SOA"), "{out}");
    assert!(out.contains(" aa"), "authoritative: {out}");
    // SRV of a named port, with the target's address in the additional section.
    short(
        pa,
        &["_http._tcp.web.default.svc.cluster.local", "SRV"],
        &["0 100 80 web.default.svc.cluster.local."],
    )
    .await;
    // PTR of the ClusterIP.
    short(pa, &["-x", &web_ip], &["web.default.svc.cluster.local."]).await;
    // Headless: ready endpoints only, hostnames, SRV per endpoint.
    short(
        pa,
        &["db.default.svc.cluster.local", "A"],
        &["10.250.0.1", "10.250.0.2"],
    )
    .await;
    short(
        pa,
        &["db-0.db.default.svc.cluster.local", "A"],
        &["10.250.0.1"],
    )
    .await;
    short(
        pa,
        &["_pg._tcp.db.default.svc.cluster.local", "SRV"],
        &[
            "0 50 5432 10-250-0-2.db.default.svc.cluster.local.",
            "0 50 5432 db-0.db.default.svc.cluster.local.",
        ],
    )
    .await;
    short(
        pa,
        &["-x", "10.250.0.1"],
        &["db-0.db.default.svc.cluster.local."],
    )
    .await;
    // ExternalName: a CNAME (its target cannot be resolved here, so only the CNAME).
    short(
        pa,
        &["ext.default.svc.cluster.local", "CNAME"],
        &["example.com."],
    )
    .await;
    // NXDOMAIN with the SOA; pods insecure; the version record.
    let out = status(pa, &["nope.default.svc.cluster.local", "A"], "NXDOMAIN").await;
    assert!(out.contains("SOA"), "{out}");
    short(
        pa,
        &["10-1-2-3.default.pod.cluster.local", "A"],
        &["10.1.2.3"],
    )
    .await;
    short(pa, &["dns-version.cluster.local", "TXT"], &["\"1.1.0\""]).await;

    // Forwarded to B (the other zone), and B's failing upstream is SERVFAIL.
    short(pa, &["web.default.svc.upstream.test", "A"], &[&web_ip]).await;
    status(pb, &["example.org", "A"], "SERVFAIL").await;
    status(pa, &["example.org", "A"], "SERVFAIL").await;

    // Registration: the kube-dns Service, A's slice with its port, its Lease.
    let svc: Api<Service> = Api::namespaced(client.clone(), "kube-system");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "kube-system");
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let kd = wait_for(Duration::from_secs(30), "the kube-dns Service", || async {
        svc.get_opt("kube-dns").await.ok().flatten()
    })
    .await;
    assert_eq!(kd.spec.unwrap().cluster_ip.as_deref(), Some("10.96.0.10"));
    let own = wait_for(Duration::from_secs(30), "A's EndpointSlice", || async {
        slices.get_opt("kube-dns-a").await.ok().flatten()
    })
    .await;
    let ports: Vec<(Option<String>, Option<i32>)> = own
        .ports
        .unwrap_or_default()
        .into_iter()
        .map(|p| (p.name, p.port))
        .collect();
    assert!(
        ports.contains(&(Some("dns".into()), Some(i32::from(pa)))),
        "{ports:?}"
    );
    assert_eq!(own.endpoints[0].addresses, vec!["127.0.0.1".to_string()]);
    assert!(leases.get_opt("kube-dns-a").await.unwrap().is_some());
    // B, on the same host, publishes its own slice with its own port.
    let other = wait_for(Duration::from_secs(30), "B's EndpointSlice", || async {
        slices.get_opt("kube-dns-b").await.ok().flatten()
    })
    .await;
    let port_b = other.ports.unwrap_or_default()[0].port;
    assert_eq!(port_b, Some(i32::from(pb)));

    // A slice of an instance that never renews a Lease is collected after 40 s.
    let mut ghost = meta("kube-system", "kube-dns-ghost");
    ghost.labels = labels(&[
        ("kubernetes.io/service-name", "kube-dns"),
        ("endpointslice.kubernetes.io/managed-by", "flotilla-dns"),
    ]);
    slices
        .create(
            &PostParams::default(),
            &EndpointSlice {
                metadata: ghost,
                address_type: "IPv4".into(),
                endpoints: vec![Endpoint {
                    addresses: vec!["127.0.0.9".into()],
                    ..Default::default()
                }],
                ports: None,
            },
        )
        .await
        .expect("create the ghost slice");
    wait_for(
        Duration::from_secs(90),
        "the ghost slice to be collected",
        || async { matches!(slices.get_opt("kube-dns-ghost").await, Ok(None)).then_some(()) },
    )
    .await;
    for live in ["kube-dns-a", "kube-dns-b"] {
        let got = slices.get_opt(live).await.unwrap();
        assert!(got.is_some(), "{live} renews its Lease and is kept");
    }

    // On SIGTERM, A deletes its own slice.
    let pid = a.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    wait_for(
        Duration::from_secs(20),
        "A's slice to be deleted",
        || async { matches!(slices.get_opt("kube-dns-a").await, Ok(None)).then_some(()) },
    )
    .await;
    let _ = a.0.wait();
}
