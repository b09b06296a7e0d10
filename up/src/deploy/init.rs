//! `flotilla deploy init`: the credentials of every host of a deployment, each host's in
//! a directory of its own (`layout.rs`). Run again, it keeps every CA, key, certificate
//! and token that exists and adds what a grown topology needs (a new agent's), so it can
//! run at every `docker-compose up` and running hosts keep trusting each other; an agent
//! taken out of the topology loses its token and its directory.

use std::path::{Path, PathBuf};

use anyhow::Context;
use apiserver::tls::{issue_to, Issued, Usage};

use super::layout::{self, MasterDir, NodeDir};
use super::topology::{Host, Topology};
use crate::identities;

#[derive(clap::Args, Debug, Clone)]
pub struct InitFlags {
    /// Where the credentials are written (created, readable by its owner only).
    #[arg(long)]
    pub dir: PathBuf,
    /// A master, `name=address` (repeated or comma-separated): 1, 3 or 5.
    #[arg(long = "master", value_delimiter = ',', required = true)]
    pub masters: Vec<Host>,
    /// An agent's node, `name=address` (repeated or comma-separated).
    #[arg(long = "agent", value_delimiter = ',')]
    pub agents: Vec<Host>,
    /// The apiservers' front (TCP load balancer), `name=address`.
    #[arg(long)]
    pub front: Host,
    /// The server URL of the admin kubeconfig: the front as the operator's machine
    /// reaches it.
    #[arg(long, default_value = "https://127.0.0.1:6443")]
    pub admin_server: String,
    /// The pod network (the controller-manager's `--cluster-cidr`).
    #[arg(long, default_value = "10.244.0.0/16")]
    pub cluster_cidr: String,
    /// Give the operator's files (admin.kubeconfig, etcdctl/) to the owner of this path,
    /// e.g. the directory the deployment was started from.
    #[arg(long)]
    pub owner_of: Option<PathBuf>,
}

/// The certificate `name` in `out` signed by the CA in `ca_dir`: kept when it exists.
fn keep_or_issue(
    ca_dir: &Path,
    out: &Path,
    name: &str,
    cn: &str,
    hosts: &[String],
    usage: Usage,
) -> anyhow::Result<Issued> {
    let kept = Issued {
        ca: ca_dir.join("ca.crt"),
        cert: out.join(format!("{name}.crt")),
        key: out.join(format!("{name}.key")),
    };
    if kept.ca.exists() && kept.cert.exists() && kept.key.exists() {
        return Ok(kept);
    }
    issue_to(ca_dir, out, name, cn, hosts, usage)
        .with_context(|| format!("issuing {name}'s certificate in {}", out.display()))
}

/// Copies `from` to `to` (0600), replacing it.
fn copy_private(from: &Path, to: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(from).with_context(|| from.display().to_string())?;
    apiserver::private::replace(to, &bytes).with_context(|| to.display().to_string())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    apiserver::kubeconfig::write_private(path, text).with_context(|| path.display().to_string())
}

/// The names a host's serving certificate carries.
fn names_of(h: &Host) -> Vec<String> {
    vec![
        h.name.clone(),
        h.ip.to_string(),
        "127.0.0.1".into(),
        "localhost".into(),
    ]
}

pub fn run(flags: InitFlags) -> anyhow::Result<()> {
    let t = Topology {
        masters: flags.masters,
        agents: flags.agents,
        front: flags.front,
        admin_server: flags.admin_server,
        cluster_cidr: flags.cluster_cidr,
    };
    t.validate().map_err(anyhow::Error::msg)?;
    let dir = &flags.dir;
    apiserver::private::dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    let topology_path = dir.join(layout::TOPOLOGY);
    let created = match std::fs::read_to_string(&topology_path) {
        Ok(text) => {
            let old: Topology = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", topology_path.display()))?;
            old.may_become(&t).map_err(|e| {
                anyhow::anyhow!(
                    "{} holds another deployment: {e} (remove the directory to start a new one)",
                    dir.display()
                )
            })?;
            false
        }
        Err(_) => true,
    };
    let shape = serde_json::to_string_pretty(&t)?;
    let m = MasterDir(dir.join(layout::MASTERS));
    masters(&t, &m)?;
    let tokens = identities::ensure_tokens(
        &m.tokens(),
        &t.agents.iter().map(|a| a.name.clone()).collect::<Vec<_>>(),
    )?;
    let ca_pem = std::fs::read_to_string(m.pki().join("ca.crt"))?;
    let token = |user: &str| {
        tokens
            .token_of(user)
            .map(str::to_string)
            .with_context(|| format!("no token for {user}"))
    };
    // The masters' own components talk to the apiserver next to them.
    let local = format!("https://127.0.0.1:{}", super::topology::APISERVER_PORT);
    for (component, user) in [
        ("scheduler", identities::SCHEDULER),
        ("controller-manager", identities::CONTROLLER_MANAGER),
        ("dns", identities::DNS),
    ] {
        let kc = identities::render_for(&local, &ca_pem, user, &token(user)?)?;
        write(&m.kubeconfig(component), &kc)?;
    }
    for a in &t.agents {
        let n = NodeDir(dir.join(layout::NODES).join(&a.name));
        apiserver::private::dir(&n.0)?;
        copy_private(&m.pki().join("ca.crt"), &n.ca())?;
        keep_or_issue(
            &m.pki(),
            &n.0,
            "agent",
            &identities::node_user(&a.name),
            &names_of(a),
            Usage::Server,
        )?;
        keep_or_issue(
            &m.pki(),
            &n.0,
            "proxy",
            &format!("proxy-{}", a.name),
            &names_of(a),
            Usage::Server,
        )?;
        let user = identities::node_user(&a.name);
        let kc = identities::render_for(&t.front_url(), &ca_pem, &user, &token(&user)?)?;
        write(&n.kubeconfig("agent"), &kc)?;
        let kc = identities::render_for(
            &t.front_url(),
            &ca_pem,
            identities::PROXY,
            &token(identities::PROXY)?,
        )?;
        write(&n.kubeconfig("proxy"), &kc)?;
        write(&n.0.join(layout::TOPOLOGY), &shape)?;
    }
    // The directories of agents taken out go with their tokens.
    if let Ok(entries) = std::fs::read_dir(dir.join(layout::NODES)) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if t.agent(&name).is_none() {
                std::fs::remove_dir_all(e.path())
                    .with_context(|| format!("removing {}", e.path().display()))?;
            }
        }
    }
    let front = dir.join(layout::FRONT);
    copy_private(&m.pki().join("ca.crt"), &front.join("ca.crt"))?;
    write(&front.join(layout::TOPOLOGY), &shape)?;

    // The operator's: kubectl through the front, etcdctl as the kvstore's root.
    let admin = dir.join(layout::ADMIN_KUBECONFIG);
    let admin_token = tokens
        .admin_token()
        .context("no system:masters token in tokens.csv")?;
    write(
        &admin,
        &apiserver::kubeconfig::render(&t.admin_server, &ca_pem, admin_token),
    )?;
    let etcdctl = dir.join(layout::ETCDCTL);
    for f in ["ca.crt", "admin.crt", "admin.key"] {
        copy_private(&m.etcd_pki().join(f), &etcdctl.join(f))?;
    }
    write(&m.0.join(layout::TOPOLOGY), &shape)?;
    write(&topology_path, &shape)?;
    if let Some(of) = &flags.owner_of {
        give_to_owner_of(of, &[dir, &admin, &etcdctl])?;
        for f in ["ca.crt", "admin.crt", "admin.key"] {
            give_to_owner_of(of, &[&etcdctl.join(f)])?;
        }
    }
    println!(
        "{} the credentials of {} master(s), {} agent(s) and the front in {}",
        if created { "Wrote" } else { "Kept" },
        t.masters.len(),
        t.agents.len(),
        dir.display()
    );
    Ok(())
}

/// The masters' directory: both CAs, the kvstore members' certificates, the service
/// account key, the apiservers' client certificates, the secure ports' certificates.
fn masters(t: &Topology, m: &MasterDir) -> anyhow::Result<()> {
    let (pki, etcd) = (m.pki(), m.etcd_pki());
    for h in &t.masters {
        keep_or_issue(
            &etcd,
            &etcd,
            &h.name,
            &h.name,
            &names_of(h),
            Usage::ServerAndClient,
        )?;
        for c in ["scheduler", "controller-manager", "dns"] {
            let name = format!("{c}-{}", h.name);
            keep_or_issue(&pki, &pki, &name, &name, &names_of(h), Usage::Server)?;
        }
    }
    keep_or_issue(
        &etcd,
        &etcd,
        "apiserver-etcd-client",
        "kube-apiserver-etcd-client",
        &[],
        Usage::Client,
    )?;
    keep_or_issue(&etcd, &etcd, "admin", "root", &[], Usage::Client)?;
    keep_or_issue(
        &pki,
        &pki,
        "apiserver-kubelet-client",
        apiserver::authz::bootstrap::KUBELET_CLIENT_USER,
        &[],
        Usage::Client,
    )?;
    apiserver::auth::jwt::Signer::load_or_create(&pki.join("sa.key"))
        .map_err(anyhow::Error::msg)?;
    Ok(())
}

/// Gives `paths` to the user and group owning `of`.
fn give_to_owner_of(of: &Path, paths: &[&Path]) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(of).with_context(|| of.display().to_string())?;
    for p in paths {
        std::os::unix::fs::chown(p, Some(md.uid()), Some(md.gid()))
            .with_context(|| format!("giving {} to the owner of {}", p.display(), of.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(dir: &Path, agents: &str) -> InitFlags {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            f: InitFlags,
        }
        Cli::parse_from([
            "init",
            "--dir",
            dir.to_str().unwrap(),
            "--master",
            "m0=10.237.0.10,m1=10.237.0.11,m2=10.237.0.12",
            "--agent",
            agents,
            "--front",
            "front=10.237.0.5",
        ])
        .f
    }

    #[test]
    fn each_host_gets_its_own_and_a_rerun_keeps_everything() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("cluster");
        run(flags(&dir, "a0=10.237.0.20,a1=10.237.0.21")).unwrap();
        let m = MasterDir(dir.join("masters"));
        for f in [
            "ca.key",
            "sa.key",
            "tokens.csv",
            "etcd/m2.crt",
            "dns-m1.crt",
        ] {
            assert!(m.pki().join(f).exists(), "{f}");
        }
        let n = NodeDir(dir.join("nodes/a1"));
        let mut files: Vec<String> = std::fs::read_dir(&n.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        assert_eq!(
            files,
            [
                "agent.crt",
                "agent.key",
                "agent.kubeconfig",
                "ca.crt",
                "cluster.json",
                "proxy.crt",
                "proxy.key",
                "proxy.kubeconfig"
            ]
        );
        let kc = std::fs::read_to_string(n.kubeconfig("agent")).unwrap();
        assert!(kc.contains("https://10.237.0.5:6443"), "{kc}");
        assert!(kc.contains("system:node:a1"), "{kc}");
        let admin = std::fs::read_to_string(dir.join("admin.kubeconfig")).unwrap();
        assert!(admin.contains("https://127.0.0.1:6443"));
        let ca = std::fs::read(m.pki().join("ca.crt")).unwrap();
        let cert = std::fs::read(n.cert("agent")).unwrap();
        let tokens = std::fs::read(m.tokens()).unwrap();
        // Again, with one more agent: what existed stays, the new agent gets its own.
        run(flags(&dir, "a0=10.237.0.20,a1=10.237.0.21,a2=10.237.0.22")).unwrap();
        assert_eq!(std::fs::read(m.pki().join("ca.crt")).unwrap(), ca);
        assert_eq!(std::fs::read(n.cert("agent")).unwrap(), cert);
        let after = std::fs::read_to_string(m.tokens()).unwrap();
        assert!(after.starts_with(std::str::from_utf8(&tokens).unwrap()));
        assert!(after.contains("system:node:a2"));
        assert!(dir.join("nodes/a2/agent.kubeconfig").exists());
        // An agent taken out loses its token and its directory.
        run(flags(&dir, "a0=10.237.0.20,a1=10.237.0.21")).unwrap();
        assert!(!std::fs::read_to_string(m.tokens())
            .unwrap()
            .contains("system:node:a2"));
        assert!(!dir.join("nodes/a2").exists());
        // Moving an agent is another deployment.
        let e = run(flags(&dir, "a0=10.237.0.29")).unwrap_err().to_string();
        assert!(e.contains("holds another deployment"), "{e}");
    }
}
