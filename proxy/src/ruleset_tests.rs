use super::*;
use crate::model::Endpoint;

fn ep(ip: [u8; 4], port: u16, ready: bool, local: bool) -> Endpoint {
    Endpoint {
        ip: Ipv4Addr::from(ip),
        port,
        ready,
        serving: ready,
        terminating: false,
        local,
    }
}

fn port(name: &str, eps: Vec<Endpoint>) -> ServicePort {
    ServicePort {
        name: PortName {
            namespace: "default".into(),
            name: name.into(),
            port: "http".into(),
            proto: Proto::Tcp,
        },
        cluster_ips: vec![Ipv4Addr::new(10, 96, 0, 5)],
        port: 80,
        node_port: None,
        external_ips: vec![],
        load_balancer_ips: vec![],
        affinity_seconds: None,
        external_local: false,
        internal_local: false,
        endpoints: eps,
        created: format!("2026-01-01/{name}"),
    }
}

fn node() -> NodeView {
    NodeView {
        cluster_cidr: Some("10.244.0.0/16".into()),
        nodeport_ips: vec![Ipv4Addr::new(192, 0, 2, 1)],
        sctp: true,
    }
}

fn verdict<'a>(r: &'a Ruleset, map: &str, key: &str) -> Option<&'a str> {
    r.maps[map].elements.get(key).map(String::as_str)
}

#[test]
fn cluster_ip_dispatches_to_a_random_endpoint_and_dnats() {
    let p = port(
        "web",
        vec![
            ep([10, 244, 1, 2], 8080, true, false),
            ep([10, 244, 2, 2], 8080, true, false),
        ],
    );
    let (r, conflicts) = build(&[p.clone()], &node());
    assert!(conflicts.is_empty());
    let svc = service_chain(&p.name);
    assert_eq!(
        verdict(&r, "service-ips", "10.96.0.5 . tcp . 80"),
        Some(format!("goto {svc}").as_str())
    );
    assert!(r.sets["cluster-ips"].elements.contains("10.96.0.5"));
    let rules = &r.chains[&svc].rules;
    assert_eq!(
        rules[0],
        "ip daddr 10.96.0.5 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade"
    );
    let (e0, e1) = (
        endpoint_chain(&p.name, &p.endpoints[0]),
        endpoint_chain(&p.name, &p.endpoints[1]),
    );
    assert_eq!(rules[1], format!("numgen random mod 2 == 0 goto {e0}"));
    assert_eq!(rules[2], format!("goto {e1}"));
    assert_eq!(
        r.chains[&e0].rules,
        vec![
            "ip saddr 10.244.1.2 jump mark-for-masquerade".to_string(),
            "meta l4proto tcp dnat to 10.244.1.2:8080".to_string(),
        ]
    );
}

#[test]
fn no_endpoints_reject_at_once_and_get_no_service_chain() {
    let p = port("web", vec![ep([10, 244, 1, 2], 8080, false, false)]);
    let (r, _) = build(&[p.clone()], &node());
    assert_eq!(
        verdict(&r, "no-endpoint-services", "10.96.0.5 . tcp . 80"),
        Some("goto reject-chain")
    );
    assert_eq!(verdict(&r, "service-ips", "10.96.0.5 . tcp . 80"), None);
    assert!(!r.chains.contains_key(&service_chain(&p.name)));
}

#[test]
fn internal_local_without_local_endpoints_drops() {
    let mut p = port("web", vec![ep([10, 244, 2, 2], 8080, true, false)]);
    p.internal_local = true;
    let (r, _) = build(&[p], &node());
    assert_eq!(
        verdict(&r, "no-endpoint-services", "10.96.0.5 . tcp . 80"),
        Some("drop")
    );
}

#[test]
fn node_port_cluster_policy_masquerades_and_goes_to_the_service_chain() {
    let mut p = port("web", vec![ep([10, 244, 2, 2], 8080, true, false)]);
    p.node_port = Some(30080);
    p.external_ips = vec![Ipv4Addr::new(198, 51, 100, 7)];
    let (r, _) = build(&[p.clone()], &node());
    let ext = verdict(&r, "service-nodeports", "tcp . 30080")
        .unwrap()
        .to_string();
    assert_eq!(
        verdict(&r, "service-ips", "198.51.100.7 . tcp . 80"),
        Some(ext.as_str())
    );
    let chain = ext.trim_start_matches("goto ");
    assert_eq!(
        r.chains[chain].rules,
        vec![
            "jump mark-for-masquerade".to_string(),
            format!("goto {}", service_chain(&p.name))
        ]
    );
    assert!(r.sets["nodeport-ips"].elements.contains("192.0.2.1"));
}

#[test]
fn external_local_keeps_the_client_address_and_uses_local_endpoints() {
    let mut p = port(
        "web",
        vec![
            ep([10, 244, 1, 2], 8080, true, true),
            ep([10, 244, 2, 2], 8080, true, false),
        ],
    );
    p.node_port = Some(30080);
    p.external_local = true;
    let (r, _) = build(&[p.clone()], &node());
    let ext = verdict(&r, "service-nodeports", "tcp . 30080").unwrap();
    let rules = &r.chains[ext.trim_start_matches("goto ")].rules;
    assert_eq!(
        rules[0],
        format!("ip saddr 10.244.0.0/16 goto {}", service_chain(&p.name))
    );
    let local = rules.last().unwrap().trim_start_matches("goto ");
    assert_eq!(r.chains[local].rules.len(), 1);
    assert!(r.chains[local].rules[0].starts_with("goto ep-"));
    assert!(!rules.iter().any(|x| x == "jump mark-for-masquerade"));
}

#[test]
fn external_local_without_local_endpoints_drops_node_port_traffic() {
    let mut p = port("web", vec![ep([10, 244, 2, 2], 8080, true, false)]);
    p.node_port = Some(30080);
    p.external_local = true;
    let (r, _) = build(&[p], &node());
    assert_eq!(
        verdict(&r, "no-endpoint-nodeports", "tcp . 30080"),
        Some("drop")
    );
    assert!(verdict(&r, "service-ips", "10.96.0.5 . tcp . 80").is_some());
}

#[test]
fn affinity_pins_clients_through_a_dynamic_set() {
    let mut p = port("web", vec![ep([10, 244, 1, 2], 8080, true, false)]);
    p.affinity_seconds = Some(60);
    let (r, _) = build(&[p.clone()], &node());
    let svc = &r.chains[&service_chain(&p.name)].rules;
    assert!(svc[1].starts_with("ip saddr @affinity-"), "{}", svc[1]);
    let e = &r.chains[&endpoint_chain(&p.name, &p.endpoints[0])].rules;
    assert!(e[1].starts_with("update @affinity-") && e[1].ends_with("{ ip saddr }"));
    let set = r
        .sets
        .iter()
        .find(|(n, _)| n.starts_with("affinity-"))
        .unwrap()
        .1;
    assert!(set.dynamic);
    assert!(set.decl.contains("timeout 60s"));
}

#[test]
fn a_contested_external_ip_goes_to_the_older_service() {
    let mut old = port("old", vec![ep([10, 244, 1, 2], 8080, true, false)]);
    old.external_ips = vec![Ipv4Addr::new(198, 51, 100, 7)];
    old.created = "2026-01-01/a".into();
    let mut new = port("new", vec![ep([10, 244, 1, 3], 8080, true, false)]);
    new.cluster_ips = vec![Ipv4Addr::new(10, 96, 0, 6)];
    new.external_ips = vec![Ipv4Addr::new(198, 51, 100, 7)];
    new.created = "2026-02-01/b".into();
    let (r, conflicts) = build(&[new.clone(), old], &node());
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].port, new.name);
    assert_eq!(conflicts[0].reason, "PortConflict");
    // The newer Service keeps its own cluster IP.
    assert!(verdict(&r, "service-ips", "10.96.0.6 . tcp . 80").is_some());
}

#[test]
fn sctp_without_kernel_support_is_a_conflict_not_a_rule() {
    let mut p = port("s", vec![ep([10, 244, 1, 2], 9, true, false)]);
    p.name.proto = Proto::Sctp;
    let mut n = node();
    n.sctp = false;
    let (r, conflicts) = build(&[p], &n);
    assert_eq!(conflicts[0].reason, "UnsupportedProtocol");
    assert!(r.maps["service-ips"].elements.is_empty());
}

#[test]
fn names_are_valid_nft_identifiers() {
    let p = port("web", vec![ep([10, 244, 1, 2], 8080, true, false)]);
    let (r, _) = build(&[p], &node());
    for n in r.chains.keys().chain(r.sets.keys()).chain(r.maps.keys()) {
        assert!(n.len() < 256);
        assert!(n.chars().next().unwrap().is_ascii_alphabetic());
        assert!(
            n.chars()
                .all(|c| c.is_ascii_alphanumeric() || "/-_.".contains(c)),
            "{n}"
        );
    }
}
