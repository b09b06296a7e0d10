//! A pod's DNS, as the kubelet computes it (`pkg/kubelet/network/dns/dns.go`): the
//! `/etc/resolv.conf` its containers see, from its `dnsPolicy` and `dnsConfig` and the
//! node's `--cluster-dns`, `--cluster-domain` and `--resolv-conf`; and its hostname and
//! the `/etc/hosts` the kubelet writes for it (`pkg/kubelet/kubelet_pods.go`). Pure: the
//! caller reads the host's resolv.conf, writes the files and records the warnings as
//! events.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{PodDNSConfigOption, PodSpec};

/// The kube limits (`pkg/apis/core/validation`: derived from libc's).
pub const MAX_NAMESERVERS: usize = 3;
pub const MAX_SEARCH_PATHS: usize = 32;
pub const MAX_SEARCH_LIST_CHARS: usize = 2048;
/// A search domain longer than this (a DNS-1123 subdomain's limit) makes some libcs abort;
/// the kubelet drops it.
const MAX_SEARCH_DOMAIN: usize = 253;
/// The kubelet reads at most this much of a resolv.conf.
const MAX_RESOLV_CONF: usize = 10 * 1024 * 1024;
/// A pod's hostname is one DNS label.
const MAX_HOSTNAME: usize = 63;

/// What the node knows about DNS (the kubelet's flags of the same names).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeDns {
    /// `--cluster-dns`.
    pub cluster_dns: Vec<IpAddr>,
    /// `--cluster-domain` (empty: none).
    pub cluster_domain: String,
    /// `--resolv-conf` (empty: none, the kubelet's "no DNS" setting).
    pub resolv_conf: String,
}

/// A resolver configuration: what a resolv.conf says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DnsConfig {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// A warning the kubelet records as an event: on the pod, and also on the node when
/// `node` says so.
#[derive(Debug, Clone, PartialEq)]
pub struct Warning {
    pub reason: &'static str,
    pub message: String,
    pub node: bool,
}

impl DnsConfig {
    /// The file, as the CRI runtimes write it: search, nameservers, options.
    pub fn render(&self) -> String {
        let mut s = String::new();
        if !self.searches.is_empty() {
            s.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        for ns in &self.servers {
            s.push_str(&format!("nameserver {ns}\n"));
        }
        if !self.options.is_empty() {
            s.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        s
    }
}

/// Parses a resolv.conf as the kubelet does: nameservers accumulate, the last `search`
/// wins (trailing dots trimmed, `.` dropped), options accumulate, a later one of the same
/// name replacing the earlier.
pub fn parse_resolv_conf(text: &str) -> DnsConfig {
    let text = &text[..floor_boundary(text, MAX_RESOLV_CONF)];
    let mut c = DnsConfig::default();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.first() {
            Some(&"nameserver") if f.len() >= 2 => c.servers.push(f[1].to_string()),
            Some(&"search") => {
                c.searches = f[1..]
                    .iter()
                    .filter(|s| **s != ".")
                    .map(|s| s.trim_end_matches('.').to_string())
                    .collect()
            }
            Some(&"options") => {
                for o in &f[1..] {
                    set_option(&mut c.options, o);
                }
            }
            _ => {}
        }
    }
    c
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Sets option `o` (`name` or `name:value`), replacing one of the same name in place.
fn set_option(options: &mut Vec<String>, o: &str) {
    let name = o.split(':').next().unwrap_or(o);
    match options
        .iter_mut()
        .find(|x| x.split(':').next().unwrap_or(x) == name)
    {
        Some(x) => *x = o.to_string(),
        None => options.push(o.to_string()),
    }
}

fn omit_duplicates(v: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    v.into_iter().filter(|s| seen.insert(s.clone())).collect()
}

/// The pod's resolver configuration, as the kubelet's GetPodDNS: `host` is the content of
/// `--resolv-conf` (ignored when that flag is empty), `node_ips` the node's addresses.
/// Returns it with the warnings to record.
pub fn pod_dns(
    spec: &PodSpec,
    namespace: &str,
    node: &NodeDns,
    host: &str,
    node_ips: &[IpAddr],
) -> (DnsConfig, Vec<Warning>) {
    let mut warnings = Vec::new();
    let mut c = if node.resolv_conf.is_empty() {
        DnsConfig::default()
    } else {
        parse_resolv_conf(host)
    };
    let host_network = spec.host_network.unwrap_or(false);
    // The kubelet's getPodDNSType.
    let cluster = match spec.dns_policy.as_deref() {
        Some("None") => None,
        Some("ClusterFirstWithHostNet") => Some(true),
        Some("Default") => Some(false),
        // ClusterFirst, also when unset or unknown (the apiserver rejects others).
        _ => Some(!host_network),
    };
    match cluster {
        None => c = DnsConfig::default(),
        Some(true) if !node.cluster_dns.is_empty() => {
            c.servers = node.cluster_dns.iter().map(|ip| ip.to_string()).collect();
            if !node.cluster_domain.is_empty() {
                let d = &node.cluster_domain;
                let mut s = vec![
                    format!("{namespace}.svc.{d}"),
                    format!("svc.{d}"),
                    d.clone(),
                ];
                s.append(&mut c.searches);
                c.searches = omit_duplicates(s);
            }
            c.options = vec!["ndots:5".into()];
        }
        Some(cluster) => {
            if cluster {
                let msg = "kubelet does not have ClusterDNS IP configured and cannot create \
                           Pod using \"ClusterFirst\" policy. Falling back to \"Default\" policy.";
                warnings.push(Warning {
                    reason: "MissingClusterDNS",
                    message: msg.into(),
                    node: true,
                });
            }
            // Default; with no --resolv-conf, the local machine's resolver ("no DNS").
            if node.resolv_conf.is_empty() {
                for ip in node_ips {
                    c.servers
                        .push(if ip.is_ipv6() { "::1" } else { "127.0.0.1" }.into());
                }
                if c.servers.is_empty() {
                    c.servers.push("127.0.0.1".into());
                }
                c.searches = vec![".".into()];
            }
        }
    }
    if let Some(d) = &spec.dns_config {
        c.servers.extend(d.nameservers.iter().flatten().cloned());
        c.servers = omit_duplicates(std::mem::take(&mut c.servers));
        c.searches.extend(d.searches.iter().flatten().cloned());
        c.searches = omit_duplicates(std::mem::take(&mut c.searches));
        c.options = merge_options(&c.options, d.options.as_deref().unwrap_or_default());
    }
    fit_limits(&mut c, &mut warnings);
    (c, warnings)
}

/// The kubelet's mergeDNSOptions: dnsConfig's options override those of the same name.
/// (The kubelet goes through a Go map, so its order is random; here it is the base's, then
/// the new ones'.)
fn merge_options(base: &[String], extra: &[PodDNSConfigOption]) -> Vec<String> {
    let mut out = Vec::new();
    for o in base {
        set_option(&mut out, o);
    }
    for o in extra {
        let name = o.name.clone().unwrap_or_default();
        let o = match o.value.as_deref() {
            Some(v) if !v.is_empty() => format!("{name}:{v}"),
            _ => name,
        };
        set_option(&mut out, &o);
    }
    out
}

/// The kubelet's formDNSConfigFitsLimits: at most 3 nameservers; at most 32 search
/// domains, none longer than 253 characters, at most 2048 characters in all (cut from the
/// end); each trim is a DNSConfigForming warning naming what is applied.
fn fit_limits(c: &mut DnsConfig, warnings: &mut Vec<Warning>) {
    if c.servers.len() > MAX_NAMESERVERS {
        c.servers.truncate(MAX_NAMESERVERS);
        warnings.push(Warning {
            reason: "DNSConfigForming",
            message: format!(
                "Nameserver limits were exceeded, some nameservers have been omitted, the \
                 applied nameserver line is: {}",
                c.servers.join(" ")
            ),
            node: false,
        });
    }
    let mut exceeded = false;
    if c.searches.len() > MAX_SEARCH_PATHS {
        c.searches.truncate(MAX_SEARCH_PATHS);
        exceeded = true;
    }
    let before = c.searches.len();
    c.searches.retain(|s| s.len() <= MAX_SEARCH_DOMAIN);
    exceeded |= c.searches.len() != before;
    while c.searches.join(" ").len() > MAX_SEARCH_LIST_CHARS {
        c.searches.pop();
        exceeded = true;
    }
    if exceeded {
        warnings.push(Warning {
            reason: "DNSConfigForming",
            message: format!(
                "Search Line limits were exceeded, some search paths have been omitted, the \
                 applied search line is: {}",
                c.searches.join(" ")
            ),
            node: false,
        });
    }
}

/// The pod's hostname and domain, as the kubelet's GeneratePodHostNameAndDomain:
/// `spec.hostname` or the pod's name, cut to 63 characters (then trailing `-`/`.` dropped);
/// with a `spec.subdomain` and a cluster domain, `<subdomain>.<ns>.svc.<domain>`.
pub fn hostname_and_domain(
    name: &str,
    namespace: &str,
    spec: &PodSpec,
    cluster_domain: &str,
) -> (String, String) {
    let mut host = match spec.hostname.as_deref() {
        Some(h) if !h.is_empty() => h.to_string(),
        _ => name.to_string(),
    };
    if host.len() > MAX_HOSTNAME {
        host.truncate(floor_boundary(&host, MAX_HOSTNAME));
        while host.ends_with('-') || host.ends_with('.') {
            host.pop();
        }
    }
    let domain = match spec.subdomain.as_deref() {
        Some(s) if !s.is_empty() && !cluster_domain.is_empty() => {
            format!("{s}.{namespace}.svc.{cluster_domain}")
        }
        _ => String::new(),
    };
    (host, domain)
}

/// The hosts file the kubelet writes for a pod not on the host's network
/// (managedHostsFileContent): localhost lines, the pod's IPs with its names, hostAliases.
pub fn hosts_file(pod_ips: &[String], host: &str, domain: &str, spec: &PodSpec) -> String {
    let mut s = String::from(
        "# Kubernetes-managed hosts file.\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    for ip in pod_ips {
        if domain.is_empty() {
            s.push_str(&format!("{ip}\t{host}\n"));
        } else {
            s.push_str(&format!("{ip}\t{host}.{domain}\t{host}\n"));
        }
    }
    let aliases = spec.host_aliases.as_deref().unwrap_or_default();
    if !aliases.is_empty() {
        s.push_str("\n# Entries added by HostAliases.\n");
        for a in aliases {
            s.push_str(&format!(
                "{}\t{}\n",
                a.ip,
                a.hostnames.clone().unwrap_or_default().join("\t")
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{HostAlias, PodDNSConfig};

    const HOST: &str = "# generated\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n\
                        search corp.example. lab.example\noptions timeout:2 edns0\n";

    fn node(dns: &[&str]) -> NodeDns {
        NodeDns {
            cluster_dns: dns.iter().map(|s| s.parse().unwrap()).collect(),
            cluster_domain: "cluster.local".into(),
            resolv_conf: "/etc/resolv.conf".into(),
        }
    }

    fn spec(policy: Option<&str>, host_network: bool) -> PodSpec {
        PodSpec {
            dns_policy: policy.map(String::from),
            host_network: Some(host_network),
            ..Default::default()
        }
    }

    fn run(s: &PodSpec, n: &NodeDns) -> (DnsConfig, Vec<Warning>) {
        pod_dns(s, "team-a", n, HOST, &["192.168.1.5".parse().unwrap()])
    }

    fn host_dns() -> DnsConfig {
        DnsConfig {
            servers: vec!["10.0.0.2".into(), "10.0.0.3".into()],
            searches: vec!["corp.example".into(), "lab.example".into()],
            options: vec!["timeout:2".into(), "edns0".into()],
        }
    }

    #[test]
    fn parse_host_file() {
        assert_eq!(parse_resolv_conf(HOST), host_dns());
        let c = parse_resolv_conf(
            "search a b\nsearch c . d.\noptions ndots:1 x\noptions ndots:3\nnameserver\n",
        );
        assert_eq!(c.searches, ["c", "d"]);
        assert_eq!(c.options, ["ndots:3", "x"]);
        assert!(c.servers.is_empty());
    }

    #[test]
    fn cluster_first() {
        let n = node(&["10.96.0.10"]);
        for p in [None, Some("ClusterFirst"), Some("Bogus")] {
            let (c, w) = run(&spec(p, false), &n);
            assert!(w.is_empty());
            assert_eq!(
                c.render(),
                "search team-a.svc.cluster.local svc.cluster.local cluster.local corp.example \
                 lab.example\nnameserver 10.96.0.10\noptions ndots:5\n"
            );
        }
        // No cluster domain: the host's search line alone.
        let mut n2 = n.clone();
        n2.cluster_domain.clear();
        let (c, _) = run(&spec(None, false), &n2);
        assert_eq!(c.searches, ["corp.example", "lab.example"]);
        assert_eq!(c.options, ["ndots:5"]);
        // A host search domain equal to a cluster one is not repeated.
        let (c, _) = pod_dns(
            &spec(None, false),
            "ns",
            &n,
            "search cluster.local x\n",
            &[],
        );
        assert_eq!(
            c.searches,
            [
                "ns.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "x"
            ]
        );
    }

    #[test]
    fn host_network_falls_back_unless_with_host_net() {
        let n = node(&["10.96.0.10", "10.96.0.11"]);
        let (c, w) = run(&spec(Some("ClusterFirst"), true), &n);
        assert_eq!((c, w), (host_dns(), vec![]));
        let (c, _) = run(&spec(Some("ClusterFirstWithHostNet"), true), &n);
        assert_eq!(c.servers, ["10.96.0.10", "10.96.0.11"]);
        assert_eq!(c.options, ["ndots:5"]);
        let (c, _) = run(&spec(Some("ClusterFirstWithHostNet"), false), &n);
        assert_eq!(c.searches[0], "team-a.svc.cluster.local");
    }

    #[test]
    fn default_policy_is_the_hosts() {
        let (c, w) = run(&spec(Some("Default"), false), &node(&["10.96.0.10"]));
        assert_eq!((c, w), (host_dns(), vec![]));
        // No --resolv-conf: the local resolver, per node IP family.
        let mut n = node(&[]);
        n.resolv_conf.clear();
        let (c, _) = pod_dns(
            &spec(Some("Default"), false),
            "ns",
            &n,
            HOST,
            &["10.1.1.1".parse().unwrap(), "fd00::1".parse().unwrap()],
        );
        assert_eq!(
            c.render(),
            "search .\nnameserver 127.0.0.1\nnameserver ::1\n"
        );
    }

    #[test]
    fn missing_cluster_dns_falls_back_with_a_warning() {
        let (c, w) = run(&spec(None, false), &node(&[]));
        assert_eq!(c, host_dns());
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].reason, "MissingClusterDNS");
        assert!(w[0].node);
        assert!(w[0].message.contains("Falling back to \"Default\" policy"));
        // Default asks for no cluster DNS: no warning.
        assert!(run(&spec(Some("Default"), false), &node(&[])).1.is_empty());
    }

    #[test]
    fn none_is_only_dns_config() {
        let mut s = spec(Some("None"), false);
        assert_eq!(run(&s, &node(&["10.96.0.10"])).0, DnsConfig::default());
        s.dns_config = Some(PodDNSConfig {
            nameservers: Some(vec!["1.1.1.1".into()]),
            searches: Some(vec!["my.dns.search.suffix".into()]),
            options: Some(vec![
                PodDNSConfigOption {
                    name: Some("ndots".into()),
                    value: Some("2".into()),
                },
                PodDNSConfigOption {
                    name: Some("edns0".into()),
                    value: None,
                },
            ]),
        });
        assert_eq!(
            run(&s, &node(&["10.96.0.10"])).0.render(),
            "search my.dns.search.suffix\nnameserver 1.1.1.1\noptions ndots:2 edns0\n"
        );
    }

    #[test]
    fn dns_config_merges() {
        let mut s = spec(None, false);
        s.dns_config = Some(PodDNSConfig {
            nameservers: Some(vec!["10.96.0.10".into(), "8.8.8.8".into()]),
            searches: Some(vec!["svc.cluster.local".into(), "extra.example".into()]),
            options: Some(vec![
                PodDNSConfigOption {
                    name: Some("ndots".into()),
                    value: Some("1".into()),
                },
                PodDNSConfigOption {
                    name: Some("single-request-reopen".into()),
                    value: None,
                },
            ]),
        });
        let (c, w) = run(&s, &node(&["10.96.0.10"]));
        assert!(w.is_empty());
        assert_eq!(c.servers, ["10.96.0.10", "8.8.8.8"]);
        assert_eq!(
            c.searches,
            [
                "team-a.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "corp.example",
                "lab.example",
                "extra.example"
            ]
        );
        assert_eq!(c.options, ["ndots:1", "single-request-reopen"]);
        // On Default, options merge with the host's.
        s.dns_policy = Some("Default".into());
        let (c, _) = run(&s, &node(&["10.96.0.10"]));
        assert_eq!(
            c.options,
            ["timeout:2", "edns0", "ndots:1", "single-request-reopen"]
        );
    }

    #[test]
    fn limits_trim_with_warnings() {
        let mut s = spec(Some("None"), false);
        let many: Vec<String> = (0..40).map(|i| format!("d{i}.example")).collect();
        s.dns_config = Some(PodDNSConfig {
            nameservers: Some((1..=5).map(|i| format!("10.0.0.{i}")).collect()),
            searches: Some(many),
            options: None,
        });
        let (c, w) = run(&s, &node(&[]));
        assert_eq!(c.servers, ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        assert_eq!(c.searches.len(), 32);
        assert_eq!(c.searches[31], "d31.example");
        assert_eq!(w.len(), 2);
        assert!(w.iter().all(|w| w.reason == "DNSConfigForming" && !w.node));
        assert!(w[0]
            .message
            .ends_with("line is: 10.0.0.1 10.0.0.2 10.0.0.3"));
        assert!(w[1].message.starts_with("Search Line limits were exceeded"));
        // 2048 characters in all, cut from the end; a domain over 253 characters goes.
        let long: Vec<String> = (0..10)
            .map(|i| format!("{}{i}.example", "a".repeat(240)))
            .collect();
        let mut all = vec!["x".repeat(254)];
        all.extend(long);
        s.dns_config = Some(PodDNSConfig {
            nameservers: None,
            searches: Some(all),
            options: None,
        });
        let (c, w) = run(&s, &node(&[]));
        assert_eq!(c.searches.len(), 8);
        assert!(c.searches.join(" ").len() <= MAX_SEARCH_LIST_CHARS);
        assert!(c.searches[0].starts_with("aaa"));
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn hostname_and_hosts() {
        let mut s = PodSpec::default();
        let (h, d) = hostname_and_domain("web-0", "ns", &s, "cluster.local");
        assert_eq!((h.as_str(), d.as_str()), ("web-0", ""));
        s.hostname = Some("db".into());
        s.subdomain = Some("svc1".into());
        let (h, d) = hostname_and_domain("web-0", "ns", &s, "cluster.local");
        assert_eq!(
            (h.as_str(), d.as_str()),
            ("db", "svc1.ns.svc.cluster.local")
        );
        let long = format!("{}-b", "a".repeat(62));
        let (h, _) = hostname_and_domain(&long, "ns", &PodSpec::default(), "");
        assert_eq!(h, "a".repeat(62));
        s.host_aliases = Some(vec![HostAlias {
            ip: "10.1.2.3".into(),
            hostnames: Some(vec!["foo.local".into(), "bar.local".into()]),
        }]);
        let f = hosts_file(&["10.244.1.7".into()], &h, &d, &s);
        assert!(f.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
        assert!(f.contains(&format!(
            "\n10.244.1.7\t{h}.svc1.ns.svc.cluster.local\t{h}\n"
        )));
        assert!(f.ends_with("\n# Entries added by HostAliases.\n10.1.2.3\tfoo.local\tbar.local\n"));
        let f = hosts_file(&["10.244.1.7".into()], "web-0", "", &PodSpec::default());
        assert!(f.ends_with("fe00::2\tip6-allrouters\n10.244.1.7\tweb-0\n"));
    }
}
