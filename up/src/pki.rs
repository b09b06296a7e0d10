//! The cluster's certificates. Leaf certificates are issued afresh at every start; the
//! CAs are kept.
//!
//! - `Pki`, the kvstore's: a CA of its own in `pki/etcd/` (as kubeadm keeps etcd's CA
//!   apart from the cluster's, so no certificate the apiserver's CA signs opens the
//!   kvstore), a certificate per member that serves clients and peers and with which it
//!   dials its peers (mTLS both ways), and the apiservers' client certificate
//!   (`kube-apiserver-etcd-client`, kubeadm's name), and one for the operator's etcdctl
//!   (`admin.crt`, CN `root`: etcd's administrator when auth is enabled), and Prometheus'
//!   for the members' metrics ports (`prometheus.crt`, CN `prometheus`).
//! - `AgentPki`, the agents' port's, from the apiservers' CA (`pki/ca.crt`, which clients
//!   already trust; created here when this is the first start, the apiservers then use
//!   it): each agent's serving certificate (CN `system:node:<node>`, for 127.0.0.1 and the
//!   node's name), and the apiservers' client certificate for the agents
//!   (`kube-apiserver-kubelet-client`, kubeadm's name, which the `system:kubelet-api-admin`
//!   role is bound to). The agents trust client certificates from the same CA.

use std::path::{Path, PathBuf};

use anyhow::Context;
use apiserver::tls::{issue, Issued, Usage};

pub struct Pki {
    members: Vec<Issued>,
    apiserver: Issued,
}

/// Where a member or client is reached: certificates name these.
const HOSTS: [&str; 2] = ["127.0.0.1", "localhost"];

impl Pki {
    pub fn issue(data: &Path, masters: usize) -> anyhow::Result<Pki> {
        let dir = Self::dir(data);
        let hosts: Vec<String> = HOSTS.iter().map(|h| h.to_string()).collect();
        let members = (0..masters)
            .map(|i| {
                let name = format!("m{i}");
                issue(&dir, &name, &name, &hosts, Usage::ServerAndClient)
            })
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("issuing the kvstore's certificates in {}", dir.display()))?;
        let apiserver = issue(
            &dir,
            "apiserver-etcd-client",
            "kube-apiserver-etcd-client",
            &[],
            Usage::Client,
        )
        .with_context(|| {
            format!(
                "issuing the apiserver's kvstore client certificate in {}",
                dir.display()
            )
        })?;
        issue(&dir, "admin", "root", &[], Usage::Client).with_context(|| {
            format!(
                "issuing the operator's kvstore client certificate in {}",
                dir.display()
            )
        })?;
        issue(&dir, "prometheus", "prometheus", &[], Usage::Client).with_context(|| {
            format!(
                "issuing Prometheus' kvstore client certificate in {}",
                dir.display()
            )
        })?;
        Ok(Pki { members, apiserver })
    }

    pub fn dir(data: &Path) -> PathBuf {
        data.join("pki").join("etcd")
    }

    /// etcd's flags for member `i`: https on both ports, client and peer certificates
    /// required.
    pub fn kvstore_args(&self, i: usize) -> Vec<String> {
        let m = &self.members[i];
        let p = |p: &Path| p.display().to_string();
        vec![
            "--cert-file".into(),
            p(&m.cert),
            "--key-file".into(),
            p(&m.key),
            "--client-cert-auth".into(),
            "--trusted-ca-file".into(),
            p(&m.ca),
            "--peer-cert-file".into(),
            p(&m.cert),
            "--peer-key-file".into(),
            p(&m.key),
            "--peer-client-cert-auth".into(),
            "--peer-trusted-ca-file".into(),
            p(&m.ca),
        ]
    }

    /// kube-apiserver's flags for reaching the kvstore.
    pub fn apiserver_args(&self) -> Vec<String> {
        let a = &self.apiserver;
        let p = |p: &Path| p.display().to_string();
        vec![
            "--etcd-cafile".into(),
            p(&a.ca),
            "--etcd-certfile".into(),
            p(&a.cert),
            "--etcd-keyfile".into(),
            p(&a.key),
        ]
    }
}

/// The secure port flags of a scheduler or controller-manager (`name`, e.g.
/// `scheduler-m0`) on loopback `port`: a serving certificate from the cluster CA in `pki/`
/// (so the admin kubeconfig verifies it), and that CA for client certificates.
pub fn secure_port_args(data: &Path, name: &str, port: u16) -> anyhow::Result<Vec<String>> {
    let dir = data.join("pki");
    let hosts = ["127.0.0.1".to_string(), "localhost".to_string()];
    let c = issue(&dir, name, name, &hosts, Usage::Server)
        .with_context(|| format!("issuing {name}'s serving certificate in {}", dir.display()))?;
    let p = |p: &Path| p.display().to_string();
    Ok(vec![
        "--bind-address".into(),
        "127.0.0.1".into(),
        "--secure-port".into(),
        port.to_string(),
        "--tls-cert-file".into(),
        p(&c.cert),
        "--tls-private-key-file".into(),
        p(&c.key),
        "--client-ca-file".into(),
        p(&c.ca),
    ])
}

/// The agents' serving certificates and the apiservers' client certificate for them, all
/// from the apiservers' CA in `pki/`.
pub struct AgentPki {
    agents: Vec<Issued>,
    client: Issued,
    /// The apiservers' client certificate for aggregated APIs' backends, from a CA of its
    /// own (`pki/front-proxy/ca.crt`), as kube's front-proxy CA is kept apart from the
    /// cluster CA: no other client certificate can pass for the front proxy.
    front_proxy: Issued,
}

impl AgentPki {
    pub fn issue(data: &Path, nodes: &[String]) -> anyhow::Result<AgentPki> {
        let dir = data.join("pki");
        let agents = nodes
            .iter()
            .map(|n| {
                let hosts = ["127.0.0.1".to_string(), n.clone()];
                issue(
                    &dir,
                    &format!("agent-{n}"),
                    &format!("system:node:{n}"),
                    &hosts,
                    Usage::Server,
                )
            })
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("issuing the agents' certificates in {}", dir.display()))?;
        let client = issue(
            &dir,
            "apiserver-kubelet-client",
            apiserver::authz::bootstrap::KUBELET_CLIENT_USER,
            &[],
            Usage::Client,
        )
        .with_context(|| {
            format!(
                "issuing the apiservers' client certificate for the agents in {}",
                dir.display()
            )
        })?;
        let front = dir.join("front-proxy");
        let front_proxy = issue(
            &front,
            "front-proxy-client",
            "front-proxy-client",
            &[],
            Usage::Client,
        )
        .with_context(|| {
            format!(
                "issuing the apiservers' front-proxy client certificate in {}",
                front.display()
            )
        })?;
        Ok(AgentPki {
            agents,
            client,
            front_proxy,
        })
    }

    /// The kubelet's flags for agent `i`: its serving certificate, and the CA client
    /// certificates must come from.
    pub fn agent_args(&self, i: usize) -> Vec<String> {
        let a = &self.agents[i];
        let p = |p: &Path| p.display().to_string();
        vec![
            "--tls-cert-file".into(),
            p(&a.cert),
            "--tls-private-key-file".into(),
            p(&a.key),
            "--client-ca-file".into(),
            p(&a.ca),
        ]
    }

    /// kube-apiserver's flags for dialling the agents and aggregated APIs' backends.
    pub fn apiserver_args(&self) -> Vec<String> {
        let c = &self.client;
        let f = &self.front_proxy;
        let p = |p: &Path| p.display().to_string();
        vec![
            "--kubelet-client-certificate".into(),
            p(&c.cert),
            "--kubelet-client-key".into(),
            p(&c.key),
            "--kubelet-certificate-authority".into(),
            p(&c.ca),
            "--proxy-client-cert-file".into(),
            p(&f.cert),
            "--proxy-client-key-file".into(),
            p(&f.key),
            "--requestheader-client-ca-file".into(),
            p(&f.ca),
            "--requestheader-allowed-names".into(),
            "front-proxy-client".into(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_and_the_apiservers_share_the_cluster_ca_not_the_kvstores() {
        let d = tempfile::tempdir().unwrap();
        let kv = Pki::issue(d.path(), 1).unwrap();
        let nodes = vec!["flotilla-0".to_string(), "flotilla-1".to_string()];
        let a = AgentPki::issue(d.path(), &nodes).unwrap();
        let ca = d.path().join("pki").join("ca.crt");
        assert!(ca.exists());
        let args = a.agent_args(1);
        assert_eq!(args[0], "--tls-cert-file");
        assert!(args[1].ends_with("pki/agent-flotilla-1.crt"), "{args:?}");
        assert_eq!(args[5], ca.display().to_string());
        let api = a.apiserver_args();
        assert!(
            api[1].ends_with("pki/apiserver-kubelet-client.crt"),
            "{api:?}"
        );
        assert_eq!(api[5], ca.display().to_string());
        assert!(!kv.apiserver_args()[1].starts_with(&ca.display().to_string()));
        // The CA is kept across starts, so what the apiservers trust stays the same.
        let before = std::fs::read(&ca).unwrap();
        AgentPki::issue(d.path(), &nodes).unwrap();
        assert_eq!(std::fs::read(&ca).unwrap(), before);
    }
}
