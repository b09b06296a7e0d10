//! The zone index against the Kubernetes DNS specification, without I/O.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::{Name, RData, RecordType};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{Lookup, Params, Zone};
use crate::config::PodMode;

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(ns.into()),
        name: Some(name.into()),
        ..Default::default()
    }
}

fn port(name: &str, number: i32, proto: &str) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port: number,
        protocol: Some(proto.into()),
        ..Default::default()
    }
}

fn cluster_ip(ns: &str, name: &str, ips: &[&str], ports: Vec<ServicePort>) -> Arc<Service> {
    Arc::new(Service {
        metadata: meta(ns, name),
        spec: Some(ServiceSpec {
            cluster_ip: Some(ips[0].into()),
            cluster_ips: Some(ips.iter().map(|s| s.to_string()).collect()),
            ports: Some(ports),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn headless(ns: &str, name: &str) -> Arc<Service> {
    Arc::new(Service {
        metadata: meta(ns, name),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn external(ns: &str, name: &str, target: &str) -> Arc<Service> {
    Arc::new(Service {
        metadata: meta(ns, name),
        spec: Some(ServiceSpec {
            type_: Some("ExternalName".into()),
            external_name: Some(target.into()),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// (address, hostname, ready)
fn slice(ns: &str, svc: &str, eps: &[(&str, Option<&str>, Option<bool>)]) -> Arc<EndpointSlice> {
    let mut m = meta(ns, &format!("{svc}-abc"));
    m.labels = Some([("kubernetes.io/service-name".to_string(), svc.to_string())].into());
    Arc::new(EndpointSlice {
        metadata: m,
        address_type: "IPv4".into(),
        endpoints: eps
            .iter()
            .map(|(a, h, r)| Endpoint {
                addresses: vec![a.to_string()],
                hostname: h.map(str::to_string),
                conditions: Some(EndpointConditions {
                    ready: *r,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(8080),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
    })
}

fn params(pods: PodMode) -> Params {
    Params {
        apex: Name::from_ascii("cluster.local.").unwrap(),
        ttl: 30,
        pods,
        serial: 7,
        dns_ip: Some("10.96.0.10".parse().unwrap()),
    }
}

fn zone() -> Zone {
    let services = vec![
        cluster_ip(
            "default",
            "web",
            &["10.96.0.20", "fd00::20"],
            vec![
                port("http", 80, "TCP"),
                port("", 81, "TCP"),
                port("dns", 53, "UDP"),
            ],
        ),
        headless("default", "db"),
        external("default", "ext", "example.com"),
        external("default", "alias", "web.default.svc.cluster.local."),
        headless("other", "empty"),
    ];
    let slices = vec![
        slice(
            "default",
            "db",
            &[
                ("10.1.0.1", Some("db-0"), Some(true)),
                ("10.1.0.2", None, None),
                ("10.1.0.3", Some("db-2"), Some(false)),
            ],
        ),
        slice("default", "web", &[("10.1.1.1", None, Some(true))]),
    ];
    Zone::build(&params(PodMode::Insecure), &services, &slices)
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn answers(z: &Zone, n: &str, t: RecordType) -> Vec<RData> {
    match z.lookup(&name(n), t) {
        Lookup::Answer { answers, .. } => answers.into_iter().map(|r| r.data.clone()).collect(),
        other => panic!("{n} {t}: {other:?}"),
    }
}

fn ips(data: &[RData]) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = data
        .iter()
        .filter_map(|d| match d {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

#[test]
fn cluster_ip_services_answer_their_cluster_ips() {
    let z = zone();
    let a = answers(&z, "web.default.svc.cluster.local.", RecordType::A);
    assert_eq!(ips(&a), vec!["10.96.0.20".parse::<IpAddr>().unwrap()]);
    let aaaa = answers(&z, "WEB.Default.svc.cluster.local.", RecordType::AAAA);
    assert_eq!(ips(&aaaa), vec!["fd00::20".parse::<IpAddr>().unwrap()]);
    // Endpoints of a ClusterIP service are not published.
    assert_eq!(
        z.lookup(
            &name("10-1-1-1.web.default.svc.cluster.local."),
            RecordType::A
        ),
        Lookup::NxDomain
    );
}

#[test]
fn nxdomain_versus_nodata() {
    let z = zone();
    let nx = |n: &str| z.lookup(&name(n), RecordType::A);
    assert_eq!(nx("nope.default.svc.cluster.local."), Lookup::NxDomain);
    assert_eq!(nx("web.nope.svc.cluster.local."), Lookup::NxDomain);
    assert_eq!(nx("x.cluster.local."), Lookup::NxDomain);
    // Existing names without A records.
    assert_eq!(nx("default.svc.cluster.local."), Lookup::NoData);
    assert_eq!(nx("svc.cluster.local."), Lookup::NoData);
    assert_eq!(nx("empty.other.svc.cluster.local."), Lookup::NoData);
    assert_eq!(nx("dns-version.cluster.local."), Lookup::NoData);
    let single = zone();
    let v4_only = Zone::build(
        &params(PodMode::Insecure),
        &[cluster_ip("a", "v4", &["10.96.0.1"], vec![])],
        &[],
    );
    assert_eq!(
        v4_only.lookup(&name("v4.a.svc.cluster.local."), RecordType::AAAA),
        Lookup::NoData
    );
    assert!(single.contains(&name("anything.cluster.local.")));
    assert!(!single.contains(&name("example.com.")));
    assert_eq!(
        single.lookup(&name("example.com."), RecordType::A),
        Lookup::NotOurs
    );
}

#[test]
fn headless_publishes_ready_endpoints_and_hostnames() {
    let z = zone();
    let a = answers(&z, "db.default.svc.cluster.local.", RecordType::A);
    let want: Vec<IpAddr> = vec!["10.1.0.1".parse().unwrap(), "10.1.0.2".parse().unwrap()];
    assert_eq!(
        ips(&a),
        want,
        "unready 10.1.0.3 is left out; ready unset counts as ready"
    );
    assert_eq!(
        ips(&answers(
            &z,
            "db-0.db.default.svc.cluster.local.",
            RecordType::A
        )),
        vec!["10.1.0.1".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(
        ips(&answers(
            &z,
            "10-1-0-2.db.default.svc.cluster.local.",
            RecordType::A
        )),
        vec!["10.1.0.2".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(
        z.lookup(&name("db-2.db.default.svc.cluster.local."), RecordType::A),
        Lookup::NxDomain
    );
}

#[test]
fn publish_not_ready_addresses_includes_unready_endpoints() {
    let mut svc = (*headless("default", "db")).clone();
    svc.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
    let slices = vec![slice("default", "db", &[("10.1.0.3", None, Some(false))])];
    let z = Zone::build(&params(PodMode::Insecure), &[Arc::new(svc)], &slices);
    assert_eq!(
        ips(&answers(&z, "db.default.svc.cluster.local.", RecordType::A)),
        vec!["10.1.0.3".parse::<IpAddr>().unwrap()]
    );
}

#[test]
fn srv_for_named_ports() {
    let z = zone();
    match z.lookup(
        &name("_http._tcp.web.default.svc.cluster.local."),
        RecordType::SRV,
    ) {
        Lookup::Answer {
            answers,
            additionals,
            ..
        } => {
            assert_eq!(answers.len(), 1);
            let RData::SRV(srv) = &answers[0].data else {
                panic!()
            };
            assert_eq!(srv.port, 80);
            assert_eq!(srv.target, name("web.default.svc.cluster.local."));
            assert_eq!(additionals.len(), 2, "A and AAAA of the target");
        }
        other => panic!("{other:?}"),
    }
    let udp = answers(
        &z,
        "_dns._udp.web.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(udp.len(), 1);
    assert_eq!(
        z.lookup(
            &name("_dns._tcp.web.default.svc.cluster.local."),
            RecordType::SRV
        ),
        Lookup::NxDomain
    );
    // Headless: one per endpoint, targets the endpoint names, addresses in additional.
    match z.lookup(
        &name("_http._tcp.db.default.svc.cluster.local."),
        RecordType::SRV,
    ) {
        Lookup::Answer {
            answers,
            additionals,
            ..
        } => {
            let mut targets: Vec<String> = answers
                .iter()
                .map(|r| match &r.data {
                    RData::SRV(s) => format!("{} {}", s.port, s.target),
                    _ => panic!(),
                })
                .collect();
            targets.sort();
            assert_eq!(
                targets,
                vec![
                    "8080 10-1-0-2.db.default.svc.cluster.local.",
                    "8080 db-0.db.default.svc.cluster.local."
                ]
            );
            assert_eq!(additionals.len(), 2);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn external_name_is_a_cname() {
    let z = zone();
    match z.lookup(&name("ext.default.svc.cluster.local."), RecordType::A) {
        Lookup::Answer { answers, chase, .. } => {
            assert_eq!(answers.len(), 1);
            assert!(matches!(&answers[0].data, RData::CNAME(c) if c.0 == name("example.com.")));
            assert_eq!(chase, Some(name("example.com.")));
        }
        other => panic!("{other:?}"),
    }
    // An in-zone target is followed inside the zone.
    let a = answers(&z, "alias.default.svc.cluster.local.", RecordType::A);
    assert!(matches!(a[0], RData::CNAME(_)));
    assert_eq!(ips(&a), vec!["10.96.0.20".parse::<IpAddr>().unwrap()]);
    // Asked for the CNAME itself: only it, nothing to chase.
    match z.lookup(&name("ext.default.svc.cluster.local."), RecordType::CNAME) {
        Lookup::Answer { chase, answers, .. } => {
            assert_eq!(chase, None);
            assert_eq!(answers.len(), 1);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn cname_loops_end() {
    let services = vec![
        external("a", "x", "y.a.svc.cluster.local"),
        external("a", "y", "x.a.svc.cluster.local"),
    ];
    let z = Zone::build(&params(PodMode::Insecure), &services, &[]);
    match z.lookup(&name("x.a.svc.cluster.local."), RecordType::A) {
        Lookup::Answer { answers, .. } => assert_eq!(answers.len(), 2),
        other => panic!("{other:?}"),
    }
}

#[test]
fn ptr_for_cluster_ips_and_headless_endpoints() {
    let z = zone();
    let p = answers(&z, "20.0.96.10.in-addr.arpa.", RecordType::PTR);
    assert!(matches!(&p[0], RData::PTR(t) if t.0 == name("web.default.svc.cluster.local.")));
    let p = answers(&z, "1.0.1.10.in-addr.arpa.", RecordType::PTR);
    assert!(matches!(&p[0], RData::PTR(t) if t.0 == name("db-0.db.default.svc.cluster.local.")));
    let v6 = crate::records::reverse_name("fd00::20".parse().unwrap()).unwrap();
    assert_eq!(answers(&z, &v6.to_ascii(), RecordType::PTR).len(), 1);
    // Unknown reverse names fall through to the upstreams.
    assert_eq!(
        z.lookup(&name("9.9.9.9.in-addr.arpa."), RecordType::PTR),
        Lookup::NotOurs
    );
}

#[test]
fn apex_records_and_version() {
    let z = zone();
    let t = answers(&z, "dns-version.cluster.local.", RecordType::TXT);
    assert!(matches!(&t[0], RData::TXT(txt) if txt.to_string().contains("1.1.0")));
    assert!(matches!(
        answers(&z, "cluster.local.", RecordType::SOA)[0],
        RData::SOA(_)
    ));
    assert!(matches!(
        answers(&z, "cluster.local.", RecordType::NS)[0],
        RData::NS(_)
    ));
    assert_eq!(
        ips(&answers(&z, "ns.dns.cluster.local.", RecordType::A)),
        vec!["10.96.0.10".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(&z.soa().name, &name("cluster.local."));
}

#[test]
fn pods_insecure_and_disabled() {
    let z = zone();
    assert_eq!(
        ips(&answers(
            &z,
            "10-244-1-5.default.pod.cluster.local.",
            RecordType::A
        )),
        vec!["10.244.1.5".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(
        ips(&answers(
            &z,
            "fd00--5.any.pod.cluster.local.",
            RecordType::AAAA
        )),
        vec!["fd00::5".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(
        z.lookup(
            &name("10-244-1-5.default.pod.cluster.local."),
            RecordType::AAAA
        ),
        Lookup::NoData
    );
    assert_eq!(
        z.lookup(&name("web.default.pod.cluster.local."), RecordType::A),
        Lookup::NxDomain
    );
    let off = Zone::build(&params(PodMode::Disabled), &[], &[]);
    assert_eq!(
        off.lookup(
            &name("10-244-1-5.default.pod.cluster.local."),
            RecordType::A
        ),
        Lookup::NxDomain
    );
}

#[test]
fn odd_objects_lose_only_their_own_records() {
    let long = "x".repeat(70);
    let services = vec![
        cluster_ip("default", &long, &["10.96.0.1"], vec![]),
        cluster_ip(
            "default",
            "bad-ip",
            &["not-an-ip"],
            vec![port("p", 70000, "TCP")],
        ),
        cluster_ip("default", "ok", &["10.96.0.2"], vec![]),
        Arc::new(Service::default()),
    ];
    let z = Zone::build(&params(PodMode::Insecure), &services, &[]);
    assert_eq!(
        answers(&z, "ok.default.svc.cluster.local.", RecordType::A).len(),
        1
    );
    assert_eq!(
        z.lookup(&name("bad-ip.default.svc.cluster.local."), RecordType::A),
        Lookup::NxDomain
    );
}

#[test]
fn pods_verified_answers_only_existing_pods() {
    use k8s_openapi::api::core::v1::{Pod, PodIP, PodStatus};
    let pod = Arc::new(Pod {
        metadata: meta("default", "p"),
        status: Some(PodStatus {
            pod_ip: Some("10.244.1.5".into()),
            pod_ips: Some(vec![PodIP {
                ip: "10.244.1.5".into(),
            }]),
            ..Default::default()
        }),
        ..Default::default()
    });
    let z = Zone::build(&params(PodMode::Verified), &[], &[]).with_pods(&[pod]);
    assert_eq!(
        ips(&answers(
            &z,
            "10-244-1-5.default.pod.cluster.local.",
            RecordType::A
        )),
        vec!["10.244.1.5".parse::<IpAddr>().unwrap()]
    );
    let nx = |n: &str| z.lookup(&name(n), RecordType::A);
    assert_eq!(nx("10-244-1-5.other.pod.cluster.local."), Lookup::NxDomain);
    assert_eq!(
        nx("10-244-1-6.default.pod.cluster.local."),
        Lookup::NxDomain
    );
}
