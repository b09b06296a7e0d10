//! `flotilla deploy master`: one master of a deployment, the process a master's container
//! runs. It starts this host's kvstore member, apiserver, scheduler, controller-manager and
//! DNS server as children (their output on its own, each line after the component's
//! name) and stops them all when one exits, so the container's restart policy brings
//! the master back whole rather than half of it.
//!
//! The apiserver talks to every member (any may fail); the scheduler, the
//! controller-manager and the DNS server to the apiserver next to them, as kubeadm's
//! stacked masters do: a master cut off from the others loses its lease holders' right to
//! act with its apiserver's quorum.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use super::layout::MasterDir;
use super::topology::{self as t, Topology};
use crate::supervisor::{Procs, Tier};

#[derive(clap::Args, Debug, Clone)]
pub struct HostFlags {
    /// This host's directory as `flotilla deploy init` wrote it (the deployment's shape
    /// and this host's credentials).
    #[arg(long, default_value = "/cluster")]
    pub cluster_dir: PathBuf,
    /// This host's name in the deployment.
    #[arg(long)]
    pub name: String,
    /// Where this host keeps its state.
    #[arg(long, default_value = "/var/lib/flotilla")]
    pub data_dir: PathBuf,
}

/// `flotilla deploy master`'s flags.
#[derive(clap::Args, Debug, Clone)]
pub struct MasterFlags {
    #[command(flatten)]
    pub host: HostFlags,
    /// `new` when the deployment starts; `existing` for a member added to a running one
    /// (after `etcdctl member add`); `auto` decides from what the other members say
    /// (`join.rs`). Ignored once the member has data.
    #[arg(long, default_value = "auto", value_parser = ["auto", "new", "existing"])]
    pub initial_cluster_state: String,
    /// With no data yet, the kvstore member is first restored from this snapshot (what
    /// `etcdctl snapshot save` wrote): every master of the new deployment restores the
    /// same file. Empty: none.
    #[arg(long, default_value = "")]
    pub restore_from: String,
    /// The scheduler's and controller-manager's `--leader-elect`: false lets every
    /// master's replica act at once (only for tests that must catch that).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Their `--leader-elect-lease-duration` (kube's default).
    #[arg(long, default_value = "15s")]
    pub leader_elect_lease_duration: String,
    /// Their `--leader-elect-renew-deadline`.
    #[arg(long, default_value = "10s")]
    pub leader_elect_renew_deadline: String,
    /// Their `--leader-elect-retry-period`.
    #[arg(long, default_value = "2s")]
    pub leader_elect_retry_period: String,
    /// The kvstore member's `--heartbeat-interval` in milliseconds (etcd's default).
    #[arg(long, default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// The kvstore member's `--election-timeout` in milliseconds (etcd's default). A
    /// leader's loss stops writes for 1.5 to 2 times this (`kvstore/src/server/mod.rs`);
    /// on a LAN 600 keeps that under 1.5 s.
    #[arg(long, default_value_t = 1000)]
    pub election_timeout: u64,
}

fn s(x: impl ToString) -> String {
    x.to_string()
}

fn p(x: &std::path::Path) -> String {
    x.display().to_string()
}

/// Every child's arguments, in start order: (tier, name, args).
pub fn plan(
    topology: &Topology,
    flags: &MasterFlags,
) -> anyhow::Result<Vec<(Tier, &'static str, Vec<String>)>> {
    let name = &flags.host.name;
    let me = topology.require_master(name).map_err(anyhow::Error::msg)?;
    let dir = MasterDir(flags.host.cluster_dir.clone());
    let (pki, etcd) = (dir.pki(), dir.etcd_pki());
    let data = &flags.host.data_dir;
    let any = |port: u16| format!("https://0.0.0.0:{port}");
    let mut kvstore = vec![
        s("kvstore"),
        s("--name"),
        name.clone(),
        s("--data-dir"),
        p(&data.join("kvstore")),
        s("--listen-client-urls"),
        any(t::KV_CLIENT_PORT),
        s("--advertise-client-urls"),
        t::client_url(me),
        s("--listen-peer-urls"),
        any(t::KV_PEER_PORT),
        s("--initial-advertise-peer-urls"),
        t::peer_url(me),
        s("--initial-cluster"),
        topology.initial_cluster(),
        s("--initial-cluster-state"),
        flags.initial_cluster_state.clone(),
        s("--experimental-initial-corrupt-check"),
        s("--experimental-corrupt-check-time"),
        s("1m"),
        s("--listen-metrics-urls"),
        any(t::KV_METRICS_PORT),
        s("--heartbeat-interval"),
        s(flags.heartbeat_interval),
        s("--election-timeout"),
        s(flags.election_timeout),
    ];
    let member = |ext: &str| p(&etcd.join(format!("{name}.{ext}")));
    let ca = p(&etcd.join("ca.crt"));
    kvstore.extend([
        s("--cert-file"),
        member("crt"),
        s("--key-file"),
        member("key"),
        s("--client-cert-auth"),
        s("--trusted-ca-file"),
        ca.clone(),
        s("--peer-cert-file"),
        member("crt"),
        s("--peer-key-file"),
        member("key"),
        s("--peer-client-cert-auth"),
        s("--peer-trusted-ca-file"),
        ca.clone(),
    ]);
    let apiserver = vec![
        s("apiserver"),
        s("--etcd-servers"),
        topology.etcd_servers(name).join(","),
        s("--etcd-cafile"),
        ca,
        s("--etcd-certfile"),
        p(&etcd.join("apiserver-etcd-client.crt")),
        s("--etcd-keyfile"),
        p(&etcd.join("apiserver-etcd-client.key")),
        s("--bind-address"),
        s("0.0.0.0"),
        s("--advertise-address"),
        s(me.ip),
        s("--secure-port"),
        s(t::APISERVER_PORT),
        s("--tls-san"),
        format!(
            "{},{},{},{}",
            name, me.ip, topology.front.name, topology.front.ip
        ),
        s("--cert-dir"),
        p(&pki),
        s("--token-auth-file"),
        p(&dir.tokens()),
        s("--kubelet-client-certificate"),
        p(&pki.join("apiserver-kubelet-client.crt")),
        s("--kubelet-client-key"),
        p(&pki.join("apiserver-kubelet-client.key")),
        s("--kubelet-certificate-authority"),
        p(&pki.join("ca.crt")),
    ];
    // A secure port (/metrics for whom RBAC allows, /healthz) on this host's address.
    let secure = |component: &str, port: u16| {
        let c = format!("{component}-{name}");
        vec![
            s("--bind-address"),
            s(me.ip),
            s("--secure-port"),
            s(port),
            s("--tls-cert-file"),
            p(&pki.join(format!("{c}.crt"))),
            s("--tls-private-key-file"),
            p(&pki.join(format!("{c}.key"))),
            s("--client-ca-file"),
            p(&pki.join("ca.crt")),
        ]
    };
    let election = [
        format!("--leader-elect={}", flags.leader_elect),
        format!(
            "--leader-elect-lease-duration={}",
            flags.leader_elect_lease_duration
        ),
        format!(
            "--leader-elect-renew-deadline={}",
            flags.leader_elect_renew_deadline
        ),
        format!(
            "--leader-elect-retry-period={}",
            flags.leader_elect_retry_period
        ),
    ];
    let mut scheduler = vec![
        s("scheduler"),
        s("--kubeconfig"),
        p(&dir.kubeconfig("scheduler")),
    ];
    scheduler.extend(election.iter().cloned());
    scheduler.extend(secure("scheduler", t::SCHEDULER_PORT));
    let mut cm = vec![
        s("controller-manager"),
        s("--kubeconfig"),
        p(&dir.kubeconfig("controller-manager")),
        s("--use-service-account-credentials"),
        s("--allocate-node-cidrs=true"),
        s("--cluster-cidr"),
        topology.cluster_cidr.clone(),
        s("--local-path-root"),
        p(&data.join("storage")),
    ];
    cm.extend(election.iter().cloned());
    cm.extend(secure("controller-manager", t::CONTROLLER_MANAGER_PORT));
    let mut dns = vec![
        s("dns"),
        s("--kubeconfig"),
        p(&dir.kubeconfig("dns")),
        s("--listen"),
        format!("{}:{}", me.ip, t::DNS_PORT),
        s("--advertise-address"),
        s(me.ip),
        s("--identity"),
        name.clone(),
    ];
    dns.extend(secure("dns", t::DNS_METRICS_PORT));
    Ok(vec![
        (Tier::Kvstore, "kvstore", kvstore),
        (Tier::Apiserver, "apiserver", apiserver),
        (Tier::Controllers, "scheduler", scheduler),
        (Tier::Controllers, "controller-manager", cm),
        (Tier::Controllers, "dns", dns),
    ])
}

pub async fn run(
    mut flags: MasterFlags,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let topology = super::layout::read_topology(&flags.host.cluster_dir)?;
    apiserver::private::dir(&flags.host.data_dir)
        .with_context(|| format!("creating {}", flags.host.data_dir.display()))?;
    let kv_data = flags.host.data_dir.join("kvstore");
    let empty = std::fs::read_dir(&kv_data).map_or(true, |mut d| d.next().is_none());
    let restore =
        Some(PathBuf::from(&flags.restore_from)).filter(|f| empty && !f.as_os_str().is_empty());
    if restore.is_some() {
        flags.initial_cluster_state = "new".into();
    } else if flags.initial_cluster_state == "auto" {
        flags.initial_cluster_state = if empty {
            let me = topology
                .require_master(&flags.host.name)
                .map_err(anyhow::Error::msg)?;
            let tls = super::members::tls(&MasterDir(flags.host.cluster_dir.clone()))?;
            let others = topology.masters.iter().filter(|h| h.name != me.name);
            let listed = super::members::list(others, &tls, Duration::from_secs(2)).await;
            match super::join::decide(me, listed.as_deref()).map_err(anyhow::Error::msg)? {
                super::join::Decision::New => "new".into(),
                super::join::Decision::Existing => {
                    println!(
                        "the kvstore runs and lists this member as not started yet: joining it"
                    );
                    "existing".into()
                }
            }
        } else {
            "new".into()
        };
    }
    let plan = plan(&topology, &flags)?;
    if let Some(file) = restore {
        // `flotilla snapshot-restore <file>` with the member's own flags.
        let mut args = vec![s("snapshot-restore"), p(&file)];
        args.extend(plan[0].2.iter().skip(1).cloned());
        println!("restoring the kvstore member from {}", file.display());
        let st = std::process::Command::new(std::env::current_exe()?)
            .args(&args)
            .status()
            .context("running snapshot-restore")?;
        if !st.success() {
            anyhow::bail!("restoring from {} failed ({st})", file.display());
        }
    }
    println!(
        "master {} of {} starting: {}",
        flags.host.name,
        topology.masters.len(),
        plan.iter()
            .map(|(_, n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut procs = Procs::default();
    for (tier, name, args) in &plan {
        procs.spawn_prefixed(*tier, name, args)?;
    }
    super::supervise(procs, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_master_runs_its_five_components_at_its_own_address() {
        let topology: Topology = serde_json::from_value(serde_json::json!({
            "masters": [{"name": "m0", "ip": "10.237.0.10"}, {"name": "m1", "ip": "10.237.0.11"}, {"name": "m2", "ip": "10.237.0.12"}],
            "agents": [],
            "front": {"name": "front", "ip": "10.237.0.5"},
            "adminServer": "https://127.0.0.1:6443",
            "clusterCidr": "10.244.0.0/16",
        }))
        .unwrap();
        let flags = MasterFlags {
            host: HostFlags {
                cluster_dir: "/cluster".into(),
                name: "m1".into(),
                data_dir: "/var/lib/flotilla".into(),
            },
            initial_cluster_state: "new".into(),
            restore_from: String::new(),
            leader_elect: true,
            leader_elect_lease_duration: "3s".into(),
            leader_elect_renew_deadline: "2s".into(),
            leader_elect_retry_period: "500ms".into(),
            heartbeat_interval: 100,
            election_timeout: 600,
        };
        let plan = plan(&topology, &flags).unwrap();
        let names: Vec<_> = plan.iter().map(|(_, n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "kvstore",
                "apiserver",
                "scheduler",
                "controller-manager",
                "dns"
            ]
        );
        let arg = |i: usize, flag: &str| {
            let a = &plan[i].2;
            a[a.iter().position(|x| x == flag).unwrap() + 1].clone()
        };
        assert_eq!(
            arg(0, "--initial-advertise-peer-urls"),
            "https://10.237.0.11:2380"
        );
        assert_eq!(arg(0, "--cert-file"), "/cluster/pki/etcd/m1.crt");
        assert_eq!(arg(0, "--election-timeout"), "600");
        assert!(arg(1, "--etcd-servers").starts_with("https://10.237.0.11:2379,"));
        assert_eq!(arg(1, "--advertise-address"), "10.237.0.11");
        assert_eq!(arg(1, "--tls-san"), "m1,10.237.0.11,front,10.237.0.5");
        assert_eq!(arg(4, "--listen"), "10.237.0.11:53");
        // Leader election as given, for both elected components.
        for i in [2, 3] {
            for f in [
                "--leader-elect=true",
                "--leader-elect-lease-duration=3s",
                "--leader-elect-renew-deadline=2s",
                "--leader-elect-retry-period=500ms",
            ] {
                assert!(plan[i].2.iter().any(|a| a == f), "{} lacks {f}", plan[i].1);
            }
        }
        let mut other = flags.clone();
        other.host.name = "a0".into();
        let e = super::plan(&topology, &other).unwrap_err().to_string();
        assert!(e.contains("its masters: m0, m1, m2"), "{e}");
    }
}
