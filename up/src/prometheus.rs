//! `prometheus.yml` in the data directory: a scrape configuration for Prometheus covering
//! every component `flotilla up` starts, with the credentials each port asks for, so that
//! `prometheus --config.file=<data-dir>/prometheus.yml` scrapes the whole cluster.
//!
//! - The kvstore members' metrics ports (+6 of each master's block) want a client
//!   certificate of the kvstore's CA: Prometheus gets its own (`pki/etcd/prometheus.crt`,
//!   CN `prometheus`).
//! - The apiservers, the schedulers', controller-managers', DNS servers' and proxies'
//!   secure ports and the agents' ports (`/metrics`, `/metrics/cadvisor`,
//!   `/metrics/resource`) take a bearer token that the apiserver authorizes: Prometheus is
//!   the user `prometheus` in the group `system:monitoring` (kube's role for `/metrics`),
//!   with the token in `pki/prometheus.token`, and the ClusterRole `flotilla:prometheus`
//!   (get on `nodes/metrics` and `nodes/stats`) for the agents. All of those ports serve
//!   certificates of the cluster CA, `pki/ca.crt`.
//!
//! The file is written afresh at every start (ports and agents may differ) and is
//! readable by its owner only, like everything in the data directory.

use std::path::Path;

use serde_json::{json, Value};

use crate::ports::Ports;

/// The user Prometheus acts as, and its group.
pub const USER: &str = "prometheus";
pub const GROUP: &str = "system:monitoring";
/// The ClusterRole (and its binding) giving Prometheus the agents' metrics.
pub const ROLE: &str = "flotilla:prometheus";

/// What the configuration is about.
pub struct Cluster<'a> {
    pub data: &'a Path,
    pub ports: &'a Ports,
    /// The agents' node names, in order.
    pub nodes: &'a [String],
    /// Whether each node runs a proxy.
    pub proxies: bool,
}

fn target(port: u16, labels: Value) -> Value {
    json!({"targets": [format!("127.0.0.1:{port}")], "labels": labels})
}

/// The configuration, as a YAML document.
pub fn config(c: &Cluster) -> String {
    let path = |p: &[&str]| {
        let mut out = c.data.to_path_buf();
        for part in p {
            out.push(part);
        }
        out.display().to_string()
    };
    let token = json!({"type": "Bearer", "credentials_file": path(&["pki", "prometheus.token"])});
    let cluster_tls = json!({"ca_file": path(&["pki", "ca.crt"])});
    // A job over a token-authorized port of the cluster CA.
    let job = |name: &str, metrics_path: &str, targets: Vec<Value>| {
        json!({
            "job_name": name,
            "scheme": "https",
            "metrics_path": metrics_path,
            "tls_config": cluster_tls,
            "authorization": token,
            "static_configs": targets,
        })
    };
    let masters = |port: &dyn Fn(&crate::ports::MasterPorts) -> u16| -> Vec<Value> {
        c.ports
            .masters
            .iter()
            .enumerate()
            .map(|(i, m)| target(port(m), json!({"master": format!("m{i}")})))
            .collect()
    };
    let agents: Vec<Value> = c
        .nodes
        .iter()
        .zip(&c.ports.agents)
        .map(|(n, p)| target(*p, json!({"node": n})))
        .collect();
    let mut jobs = vec![
        json!({
            "job_name": "kvstore",
            "scheme": "https",
            "tls_config": {
                "ca_file": path(&["pki", "etcd", "ca.crt"]),
                "cert_file": path(&["pki", "etcd", "prometheus.crt"]),
                "key_file": path(&["pki", "etcd", "prometheus.key"]),
            },
            "static_configs": masters(&|m| m.kv_metrics),
        }),
        job("apiserver", "/metrics", masters(&|m| m.apiserver)),
        job("scheduler", "/metrics", masters(&|m| m.scheduler_metrics)),
        job(
            "controller-manager",
            "/metrics",
            masters(&|m| m.controller_manager_metrics),
        ),
        job("dns", "/metrics", masters(&|m| m.dns_metrics)),
        job("kubelet", "/metrics", agents.clone()),
        job("cadvisor", "/metrics/cadvisor", agents.clone()),
        job("kubelet-resource", "/metrics/resource", agents),
    ];
    if c.proxies {
        let proxies = c
            .nodes
            .iter()
            .zip(&c.ports.proxies)
            .map(|(n, p)| target(*p, json!({"node": n})))
            .collect();
        jobs.push(job("proxy", "/metrics", proxies));
    }
    let doc = json!({
        "global": {"scrape_interval": "15s", "scrape_timeout": "10s"},
        "scrape_configs": jobs,
    });
    let body = serde_yaml::to_string(&doc).unwrap_or_default();
    format!(
        "# Written by `flotilla up` at every start: every component of this cluster, with the\n\
         # credentials each port asks for. Run: prometheus --config.file={}\n{body}",
        path(&["prometheus.yml"])
    )
}

/// The ClusterRole and ClusterRoleBinding that let Prometheus read the agents' metrics.
pub fn rbac() -> (Value, Value) {
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": ROLE},
        "rules": [
            {"apiGroups": [""], "resources": ["nodes/metrics", "nodes/stats"], "verbs": ["get"]},
            {"nonResourceURLs": ["/metrics", "/metrics/*"], "verbs": ["get"]},
        ],
    });
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": ROLE},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": ROLE},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}],
    });
    (role, binding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_component_with_its_credentials() {
        let ports = crate::ports::plan(crate::ports::Bases::default(), 3, 2).unwrap();
        let nodes = vec!["flotilla-0".to_string(), "flotilla-1".to_string()];
        let text = config(&Cluster {
            data: Path::new("/d"),
            ports: &ports,
            nodes: &nodes,
            proxies: true,
        });
        let doc: Value = serde_yaml::from_str(&text).unwrap();
        let jobs = doc["scrape_configs"].as_array().unwrap();
        let names: Vec<&str> = jobs
            .iter()
            .map(|j| j["job_name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "kvstore",
                "apiserver",
                "scheduler",
                "controller-manager",
                "dns",
                "kubelet",
                "cadvisor",
                "kubelet-resource",
                "proxy"
            ]
        );
        let targets = |job: &Value| -> Vec<String> {
            job["static_configs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["targets"][0].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(
            targets(&jobs[0]),
            ["127.0.0.1:2385", "127.0.0.1:12385", "127.0.0.1:22385"]
        );
        assert_eq!(
            jobs[0]["tls_config"]["cert_file"],
            "/d/pki/etcd/prometheus.crt"
        );
        assert!(jobs[0].get("authorization").is_none());
        assert_eq!(
            targets(&jobs[1]),
            ["127.0.0.1:6443", "127.0.0.1:6444", "127.0.0.1:6445"]
        );
        assert_eq!(targets(&jobs[6]), ["127.0.0.1:10250", "127.0.0.1:10251"]);
        assert_eq!(jobs[6]["metrics_path"], "/metrics/cadvisor");
        assert_eq!(jobs[6]["static_configs"][1]["labels"]["node"], "flotilla-1");
        assert_eq!(targets(&jobs[8]), ["127.0.0.1:10249", "127.0.0.1:10248"]);
        for j in &jobs[1..] {
            assert_eq!(j["scheme"], "https");
            assert_eq!(j["tls_config"]["ca_file"], "/d/pki/ca.crt");
            assert_eq!(
                j["authorization"]["credentials_file"],
                "/d/pki/prometheus.token"
            );
        }
        let no_proxies = config(&Cluster {
            data: Path::new("/d"),
            ports: &ports,
            nodes: &nodes,
            proxies: false,
        });
        assert!(!no_proxies.contains("job_name: proxy"));
    }
}
