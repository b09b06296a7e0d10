//! Where `flotilla deploy init` puts each host's credentials. Each host is given only its
//! own directory (a read-only bind mount in `deploy/compose.yaml`, a copy on real hosts):
//!
//! ```text
//! <dir>/cluster.json        the deployment's shape (topology.rs), also in every host's directory
//! <dir>/admin.kubeconfig    kubectl's, through the front as the operator's machine reaches it
//! <dir>/etcdctl/            etcdctl's: the kvstore's CA, a client certificate for `root`
//! <dir>/masters/            every master's: pki/ (the cluster CA and its key, sa.key,
//!                           tokens.csv, etcd/ the kvstore's CA and certificates, the
//!                           secure ports' certificates), kubeconfigs/ (scheduler,
//!                           controller-manager, dns: each its own user, at its own master)
//! <dir>/nodes/<name>/       one agent's: ca.crt, agent.crt/.key (its port), proxy.crt/.key,
//!                           agent.kubeconfig and proxy.kubeconfig (through the front)
//! <dir>/front/              the front's: ca.crt (it checks each apiserver's /readyz)
//! ```
//!
//! An agent's host holds no CA key and no other host's token.

use std::path::{Path, PathBuf};

pub const TOPOLOGY: &str = "cluster.json";
pub const ADMIN_KUBECONFIG: &str = "admin.kubeconfig";
pub const ETCDCTL: &str = "etcdctl";
pub const MASTERS: &str = "masters";
pub const NODES: &str = "nodes";
pub const FRONT: &str = "front";

/// A master's directory.
pub struct MasterDir(pub PathBuf);

impl MasterDir {
    pub fn pki(&self) -> PathBuf {
        self.0.join("pki")
    }
    pub fn etcd_pki(&self) -> PathBuf {
        self.pki().join("etcd")
    }
    pub fn tokens(&self) -> PathBuf {
        self.pki().join("tokens.csv")
    }
    pub fn kubeconfig(&self, component: &str) -> PathBuf {
        self.0
            .join("kubeconfigs")
            .join(format!("{component}.kubeconfig"))
    }
}

/// An agent's directory.
pub struct NodeDir(pub PathBuf);

impl NodeDir {
    pub fn ca(&self) -> PathBuf {
        self.0.join("ca.crt")
    }
    pub fn cert(&self, component: &str) -> PathBuf {
        self.0.join(format!("{component}.crt"))
    }
    pub fn key(&self, component: &str) -> PathBuf {
        self.0.join(format!("{component}.key"))
    }
    pub fn kubeconfig(&self, component: &str) -> PathBuf {
        self.0.join(format!("{component}.kubeconfig"))
    }
}

/// The topology a host's directory holds.
pub fn read_topology(dir: &Path) -> anyhow::Result<super::topology::Topology> {
    use anyhow::Context;
    let path = dir.join(TOPOLOGY);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (written by `flotilla deploy init`)",
            path.display()
        )
    })?;
    let t: super::topology::Topology =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    t.validate()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(t)
}
