//! The steps of `flotilla up`: check the ports and the data directory, start the tiers
//! in order with a readiness wait after each, show progress, run until Ctrl-C, stop.
//!
//! Layout of `--data-dir`: `up.lock` (held while it runs), `cluster.json` (the shape it
//! was created with), `kvstore/m<i>`, `pki/` (the apiservers' CA, the service account key,
//! `tokens.csv` with every component's identity, the agents' serving certificates and the
//! apiservers' client certificate for them; `pki/etcd/`, the kvstore's own CA and
//! certificates, see `pki.rs`), `kubeconfig` (admin, for master 0's
//! apiserver), `kubeconfigs/` (one per component, each its own user), `agents/<node>/`,
//! `logs/<component>.log`, `prometheus.yml` (a scrape configuration for every component,
//! `prometheus.rs`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::ports::{self, Ports};
use crate::supervisor::{Procs, Tier};

#[derive(
    clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum UpRuntime {
    Docker,
    Process,
}

#[derive(clap::Args, Debug, Clone)]
pub struct UpFlags {
    /// Masters: kvstore members, each with an apiserver, a scheduler and a
    /// controller-manager (1 or 3).
    #[arg(long, default_value_t = 1)]
    pub masters: usize,
    /// Node agents.
    #[arg(long, default_value_t = 1)]
    pub agents: usize,
    /// Where the cluster keeps its state.
    #[arg(long, default_value = "./flotilla-data")]
    pub data_dir: PathBuf,
    /// How agents run containers (default: docker when a Docker daemon answers, else
    /// process).
    #[arg(long, value_enum)]
    pub runtime: Option<UpRuntime>,
    /// Master i's apiserver listens on this port + i.
    #[arg(long, default_value_t = 6443)]
    pub apiserver_port: u16,
    /// Master i's block starts at this port + 10000*i: its kvstore member's client and
    /// peer ports, then its scheduler's and its controller-manager's metrics.
    #[arg(long, default_value_t = 2379)]
    pub kvstore_port: u16,
    /// Agent i listens on this port + i, the proxy of its node on this port - 1 - i.
    #[arg(long, default_value_t = 10250)]
    pub agent_port: u16,
    /// The pod network: each node gets a /24 of it (the controller-manager's
    /// `--cluster-cidr`), masqueraded when it leaves it.
    #[arg(long, default_value = "10.244.0.0/16")]
    pub cluster_cidr: String,
    /// Addresses for Services of type LoadBalancer (every node's proxy answers on them;
    /// the default is a range reserved for benchmarking, RFC 2544, that no network uses).
    #[arg(long, default_value = "198.18.0.0/24")]
    pub load_balancer_ip_range: String,
    /// Every agent ships its containers' log lines here (`loki=<URL>`, the agents'
    /// `--log-sink`).
    #[arg(long)]
    pub log_sink: Option<String>,
}

impl UpFlags {
    pub fn ports(&self) -> Result<Ports, ports::PortError> {
        ports::plan(
            ports::Bases {
                apiserver: self.apiserver_port,
                kvstore: self.kvstore_port,
                agent: self.agent_port,
            },
            self.masters,
            self.agents,
        )
    }
}

#[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
struct Shape {
    masters: usize,
}

/// The last `n` lines of a log, without backtrace frames.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let frame = |l: &&str| {
        let t = l.trim_start();
        t.starts_with("at ")
            || t.split_once(':')
                .is_some_and(|(d, _)| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
    };
    let lines: Vec<&str> = text.lines().filter(|l| !frame(l)).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn step(msg: &str) -> Instant {
    print!("  {msg} ...");
    let _ = std::io::stdout().flush();
    Instant::now()
}

fn done(started: Instant) {
    println!(" ok ({:.1}s)", started.elapsed().as_secs_f64());
}

/// Waits for `ready` while watching the children; fails naming a child that died.
async fn wait<F, Fut>(
    procs: &mut Procs,
    within: Duration,
    what: &str,
    mut ready: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some((name, log, st)) = procs.exited() {
            bail!(
                "{name} exited ({st}) while waiting for {what}; the end of {}:\n{}",
                log.display(),
                tail(&log, 20)
            );
        }
        if ready().await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{what} did not happen within {within:?}; see the logs in {}",
                procs.0[0]
                    .log
                    .parent()
                    .map_or(String::new(), |p| p.display().to_string())
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn docker_answers() -> bool {
    let d = agent::runtime::docker::client::Docker::new(PathBuf::from("/var/run/docker.sock"));
    d.version(Duration::from_secs(2)).await.is_ok()
}

async fn readyz(kubeconfig: &Path) -> bool {
    let Ok(client) = component_base::client::from_kubeconfig(kubeconfig).await else {
        return false;
    };
    let Ok(req) = http::Request::get("/readyz").body(Vec::new()) else {
        return false;
    };
    client
        .request_text(req)
        .await
        .is_ok_and(|t| t.trim() == "ok")
}

/// Whether every node in `nodes` has renewed its Lease since `since` (a Node's Ready
/// condition may be left over from the last run).
async fn nodes_beating(kubeconfig: &Path, nodes: &[String], since: jiff::Timestamp) -> bool {
    use k8s_openapi::api::coordination::v1::Lease;
    let Ok(client) = component_base::client::from_kubeconfig(kubeconfig).await else {
        return false;
    };
    let api: kube::Api<Lease> = kube::Api::namespaced(client, "kube-node-lease");
    for n in nodes {
        let renewed = match api.get_opt(n).await {
            Ok(Some(l)) => l.spec.and_then(|s| s.renew_time).map(|t| t.0),
            _ => None,
        };
        if renewed.is_none_or(|t| t < since) {
            return false;
        }
    }
    true
}

pub async fn run(
    flags: UpFlags,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    if !matches!(flags.masters, 1 | 3) {
        bail!("--masters must be 1 or 3");
    }
    let ports = flags.ports()?;
    let data = &flags.data_dir;
    // Readable by this user only: it holds keys, tokens and the kvstore's data.
    apiserver::private::dir(&data.join("logs"))
        .with_context(|| format!("creating --data-dir {}", data.display()))?;
    let data = data.canonicalize()?;
    let _lock = crate::lock::lock(&data)?;
    // Say which port is taken, before any component fails on it with a bare EADDRINUSE.
    for (port, who) in ports.named() {
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            bail!(
                "port {port}, for {who}, is in use by another process; free it or move the \
                 cluster's ports (--apiserver-port, --kvstore-port, --agent-port)"
            );
        }
    }
    let shape_path = data.join("cluster.json");
    let shape = Shape {
        masters: flags.masters,
    };
    let resumed = match std::fs::read_to_string(&shape_path) {
        Ok(text) => {
            let old: Shape = serde_json::from_str(&text)
                .with_context(|| format!("reading {}", shape_path.display()))?;
            if old != shape {
                bail!(
                    "{} holds a cluster of {} master(s); run with --masters {} (or another --data-dir)",
                    data.display(),
                    old.masters,
                    old.masters
                );
            }
            true
        }
        Err(_) => {
            std::fs::write(&shape_path, serde_json::to_string(&shape)?)?;
            false
        }
    };
    let runtime = match flags.runtime {
        Some(r) => r,
        None if docker_answers().await => UpRuntime::Docker,
        None => UpRuntime::Process,
    };
    let logs = data.join("logs");
    println!(
        "{} a cluster in {}: {} master(s), {} agent(s), {:?} runtime",
        if resumed { "Resuming" } else { "Starting" },
        data.display(),
        flags.masters,
        flags.agents,
        runtime
    );
    if runtime == UpRuntime::Process {
        println!(
            "Process runtime{}: containers run as host processes of this user on the host network, with no isolation (images and securityContext are not applied)",
            if flags.runtime.is_none() {
                " (no Docker daemon answered)"
            } else {
                ""
            }
        );
    }
    let mut procs = Procs::default();
    let result = start(&flags, &ports, &data, &logs, runtime, &mut procs).await;
    if let Err(e) = result {
        println!(" failed");
        procs.stop(STOP_GRACE, show_stop);
        remove_proxy_tables(flags.agents).await;
        return Err(e);
    }
    let kubeconfig = data.join("kubeconfig");
    println!();
    println!(
        "The cluster is up. Its admin kubeconfig: {}",
        kubeconfig.display()
    );
    println!("Try:");
    println!("  export KUBECONFIG={}", kubeconfig.display());
    println!("  kubectl get nodes");
    println!(
        "Logs are in {}. Ctrl-C stops the cluster; `flotilla up` again resumes it.",
        logs.display()
    );
    println!(
        "Prometheus scrapes every component with: prometheus --config.file={}",
        data.join("prometheus.yml").display()
    );
    // Runs until Ctrl-C; a component that dies is reported.
    let mut reported = std::collections::HashSet::new();
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        for p in &mut procs.0 {
            if let Ok(Some(st)) = p.child.try_wait() {
                if reported.insert(p.name.clone()) {
                    eprintln!("{} exited ({st}); see {}", p.name, p.log.display());
                }
            }
        }
    }
    println!("Stopping (agents first, then the control plane):");
    let started = Instant::now();
    procs.stop(STOP_GRACE, show_stop);
    remove_proxy_tables(flags.agents).await;
    println!(
        "Stopped in {:.1}s. The data stays in {}.",
        started.elapsed().as_secs_f64(),
        data.display()
    );
    Ok(())
}

/// The table of the proxy of agent `i` (the nodes of one machine share its network
/// namespace, so each proxy has its own).
fn proxy_table(i: usize) -> String {
    format!("flotilla-proxy-{i}")
}

/// The proxies' rules go with the cluster: nothing answers behind them once it stopped
/// (a proxy that merely restarts keeps its table, so established flows live on).
async fn remove_proxy_tables(agents: usize) {
    if !rustix::process::geteuid().is_root() {
        return;
    }
    for i in 0..agents {
        if let Err(e) = proxy::kernel::delete_table(&proxy_table(i)).await {
            eprintln!("removing nftables table {}: {e}", proxy_table(i));
        }
    }
}

/// How long a tier gets after SIGTERM before SIGKILL. An agent stops its pods with at
/// most its `--shutdown-grace-period` (2 s) each, all at once.
const STOP_GRACE: Duration = Duration::from_secs(15);

fn show_stop(what: &str, n: usize, took: Option<Duration>) {
    match took {
        None => {
            print!("  {what} ({n}) ...");
            let _ = std::io::stdout().flush();
        }
        Some(d) => println!(" stopped ({:.1}s)", d.as_secs_f64()),
    }
}

async fn start(
    flags: &UpFlags,
    ports: &Ports,
    data: &Path,
    logs: &Path,
    runtime: UpRuntime,
    procs: &mut Procs,
) -> anyhow::Result<()> {
    let s = |x: &dyn ToString| x.to_string();
    let m = &ports.masters;
    let peer_urls: Vec<String> = m
        .iter()
        .enumerate()
        .map(|(i, p)| format!("m{i}=https://127.0.0.1:{}", p.kv_peer))
        .collect();
    let etcd: Vec<String> = m
        .iter()
        .map(|p| format!("https://127.0.0.1:{}", p.kv_client))
        .collect();
    let pki = crate::pki::Pki::issue(data, flags.masters)?;
    let nodes: Vec<String> = (0..flags.agents).map(|i| format!("flotilla-{i}")).collect();
    // Before the apiservers start: this creates their CA (pki/ca.crt) on a first start.
    let agent_pki = crate::pki::AgentPki::issue(data, &nodes)?;

    let t = step(&format!("kvstore: {} member(s)", flags.masters));
    for i in 0..flags.masters {
        let c = format!("https://127.0.0.1:{}", m[i].kv_client);
        let p = format!("https://127.0.0.1:{}", m[i].kv_peer);
        let dir = data.join("kvstore").join(format!("m{i}"));
        let mut args = vec![
            s(&"kvstore"),
            s(&"--name"),
            format!("m{i}"),
            s(&"--data-dir"),
            dir.display().to_string(),
            s(&"--listen-client-urls"),
            c.clone(),
            s(&"--advertise-client-urls"),
            c,
            s(&"--listen-peer-urls"),
            p.clone(),
            s(&"--initial-advertise-peer-urls"),
            p,
            s(&"--initial-cluster"),
            peer_urls.join(","),
            s(&"--initial-cluster-state"),
            s(&"new"),
            // etcd's corruption checks: compare HashKV with the peers at start (refuse to
            // start on a mismatch) and, on the leader, every minute (CORRUPT alarm).
            s(&"--experimental-initial-corrupt-check"),
            s(&"--experimental-corrupt-check-time"),
            s(&"1m"),
            s(&"--listen-metrics-urls"),
            format!("https://127.0.0.1:{}", m[i].kv_metrics),
        ];
        args.extend(pki.kvstore_args(i));
        procs.spawn(Tier::Kvstore, &format!("kvstore-m{i}"), logs, &args)?;
    }
    let kv_ports: Vec<u16> = m.iter().map(|p| p.kv_client).collect();
    wait(
        procs,
        Duration::from_secs(30),
        "the kvstore members to listen",
        || {
            let ports = kv_ports.clone();
            async move {
                for p in ports {
                    if tokio::net::TcpStream::connect(("127.0.0.1", p))
                        .await
                        .is_err()
                    {
                        return false;
                    }
                }
                true
            }
        },
    )
    .await?;
    done(t);

    let t = step(&format!("apiserver: {} replica(s)", flags.masters));
    let kubeconfig = data.join("kubeconfig");
    let kc = |i: usize| {
        if i == 0 {
            kubeconfig.clone()
        } else {
            data.join(format!("kubeconfig-m{i}"))
        }
    };
    let token_file = data.join("pki").join("tokens.csv");
    let tokens = crate::identities::ensure_tokens(&token_file, &nodes)?;
    // Pods reach the apiservers through the `kubernetes` Service, whose endpoints are the
    // addresses they advertise: this host's, with every address bound (TLS and
    // authentication on all of them, as kube-apiserver's default 0.0.0.0).
    let host_ip = agent::machine::default_ip().to_string();
    for i in 0..flags.masters {
        let _ = std::fs::remove_file(kc(i));
        let mut args = vec![
            s(&"apiserver"),
            s(&"--etcd-servers"),
            etcd.join(","),
            s(&"--bind-address"),
            s(&"0.0.0.0"),
            s(&"--advertise-address"),
            host_ip.clone(),
            s(&"--secure-port"),
            m[i].apiserver.to_string(),
            s(&"--cert-dir"),
            data.join("pki").display().to_string(),
            s(&"--token-auth-file"),
            token_file.display().to_string(),
            s(&"--write-kubeconfig"),
            kc(i).display().to_string(),
        ];
        args.extend(pki.apiserver_args());
        args.extend(agent_pki.apiserver_args());
        procs.spawn(Tier::Apiserver, &format!("apiserver-m{i}"), logs, &args)?;
    }
    for i in 0..flags.masters {
        let path = kc(i);
        wait(
            procs,
            Duration::from_secs(60),
            "the apiservers to be ready",
            || {
                let path = path.clone();
                async move { path.exists() && readyz(&path).await }
            },
        )
        .await?;
    }
    done(t);

    // Each component acts as itself, with its bootstrap role's rights only.
    let as_user = |i: usize, file: &str, user: &str| -> anyhow::Result<String> {
        let out = data.join("kubeconfigs").join(format!("{file}-m{i}"));
        crate::identities::kubeconfig_for(&kc(i), &out, user, &tokens)
            .map(|p| p.display().to_string())
    };
    let t = step("scheduler and controller-manager on each master");
    for i in 0..flags.masters {
        let ks = as_user(i, "scheduler", crate::identities::SCHEDULER)?;
        let kcm = as_user(
            i,
            "controller-manager",
            crate::identities::CONTROLLER_MANAGER,
        )?;
        // The secure ports (`/metrics` for whom RBAC allows, `/healthz`), on loopback,
        // with certificates from the cluster CA.
        let secure = |name: &str, port: u16| crate::pki::secure_port_args(data, name, port);
        let mut args = vec![s(&"scheduler"), s(&"--kubeconfig"), ks];
        args.extend(secure(&format!("scheduler-m{i}"), m[i].scheduler_metrics)?);
        procs.spawn(Tier::Controllers, &format!("scheduler-m{i}"), logs, &args)?;
        let mut args = vec![s(&"controller-manager"), s(&"--kubeconfig"), kcm];
        // Each controller acts as its own ServiceAccount with its own role; the
        // controller-manager's identity may only read, elect and make those accounts.
        args.push(s(&"--use-service-account-credentials"));
        // Node IPAM: each node's podCIDR from the pod network.
        args.extend([
            s(&"--allocate-node-cidrs=true"),
            s(&"--cluster-cidr"),
            flags.cluster_cidr.clone(),
            // Services of type LoadBalancer get an address from here.
            s(&"--load-balancer-ip-range"),
            flags.load_balancer_ip_range.clone(),
            // The local-path provisioner's volumes live with the cluster's data.
            s(&"--local-path-root"),
            s(&std::path::absolute(data.join("storage"))?.display()),
        ]);
        args.extend(secure(
            &format!("controller-manager-m{i}"),
            m[i].controller_manager_metrics,
        )?);
        procs.spawn(
            Tier::Controllers,
            &format!("controller-manager-m{i}"),
            logs,
            &args,
        )?;
    }
    done(t);

    // Cluster DNS: one server per master, each registering its own endpoints behind the
    // kube-dns Service (10.96.0.10), at this host's address so pods reach it.
    let t = step("cluster DNS on each master");
    for i in 0..flags.masters {
        let kd = as_user(i, "dns", crate::identities::DNS)?;
        let mut args = vec![
            s(&"dns"),
            s(&"--kubeconfig"),
            kd,
            // Bound to that address, not 0.0.0.0: UDP answers must leave from the address
            // the proxy DNATed to, or conntrack cannot match them to the query.
            s(&"--listen"),
            format!("{host_ip}:{}", m[i].dns),
            s(&"--advertise-address"),
            host_ip.clone(),
            s(&"--identity"),
            format!("m{i}"),
        ];
        args.extend(crate::pki::secure_port_args(
            data,
            &format!("dns-m{i}"),
            m[i].dns_metrics,
        )?);
        procs.spawn(Tier::Controllers, &format!("dns-m{i}"), logs, &args)?;
    }
    done(t);

    // The proxy programs nftables: root only (without it Services answer only at pod IPs).
    let proxies = rustix::process::geteuid().is_root();
    let t = step(&format!(
        "{} agent(s){}",
        flags.agents,
        if proxies {
            " with their proxies"
        } else {
            " (no proxies: not root)"
        }
    ));
    let ports_agents = &ports.agents;
    let since = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(1);
    for (i, node) in nodes.iter().enumerate() {
        let node = node.clone();
        let k = as_user(
            i % flags.masters,
            &format!("agent-{node}"),
            &crate::identities::node_user(&node),
        )?;
        let mut args = vec![
            s(&"agent"),
            s(&"--kubeconfig"),
            k,
            s(&"--node-name"),
            node.clone(),
            s(&"--root-dir"),
            data.join("agents").join(&node).display().to_string(),
            s(&"--port"),
            ports_agents[i].to_string(),
            s(&"--stop-pods-on-exit"),
        ];
        args.extend(agent_pki.agent_args(i));
        // A cluster of one machine: nodes are reached on loopback.
        args.extend([
            s(&"--runtime"),
            s(match runtime {
                UpRuntime::Docker => &"docker",
                UpRuntime::Process => &"process",
            }),
            s(&"--node-ip"),
            s(&"127.0.0.1"),
            s(&"--address"),
            s(&"127.0.0.1"),
            s(&"--cluster-cidr"),
            flags.cluster_cidr.clone(),
            // Pods resolve names through the kube-dns Service (the masters' DNS servers).
            s(&"--cluster-dns"),
            s(&"10.96.0.10"),
            s(&"--cluster-domain"),
            s(&"cluster.local"),
        ]);
        if let Some(sink) = &flags.log_sink {
            args.extend([s(&"--log-sink"), sink.clone()]);
        }
        procs.spawn(Tier::Agents, &format!("agent-{node}"), logs, &args)?;
        if proxies {
            let kp = as_user(
                i % flags.masters,
                &format!("proxy-{node}"),
                crate::identities::PROXY,
            )?;
            let mut args = vec![
                s(&"proxy"),
                s(&"--kubeconfig"),
                kp,
                s(&"--hostname-override"),
                node.clone(),
                // The nodes of one machine share its network namespace: a table each.
                s(&"--table"),
                proxy_table(i),
                s(&"--cluster-cidr"),
                flags.cluster_cidr.clone(),
                // Nodes report 127.0.0.1; NodePorts answer on the host's own address.
                s(&"--nodeport-addresses"),
                format!("{host_ip}/32"),
            ];
            args.extend(crate::pki::secure_port_args(
                data,
                &format!("proxy-{node}"),
                ports.proxies[i],
            )?);
            procs.spawn(Tier::Agents, &format!("proxy-{node}"), logs, &args)?;
        }
    }
    wait(
        procs,
        Duration::from_secs(60),
        "the nodes to report",
        || {
            let kubeconfig = kubeconfig.clone();
            let nodes = nodes.clone();
            async move { nodes_beating(&kubeconfig, &nodes, since).await }
        },
    )
    .await?;
    done(t);
    let t = step("Prometheus' scrape configuration");
    monitoring(data, &kubeconfig, &tokens, ports, &nodes, proxies).await?;
    done(t);
    Ok(())
}

/// Prometheus' token, its rights to the agents' metrics, and `prometheus.yml`.
async fn monitoring(
    data: &Path,
    kubeconfig: &Path,
    tokens: &apiserver::auth::tokens::Tokens,
    ports: &Ports,
    nodes: &[String],
    proxies: bool,
) -> anyhow::Result<()> {
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
    use kube::api::{Api, Patch, PatchParams};
    let token = tokens
        .token_of(crate::prometheus::USER)
        .context("no token for prometheus")?;
    let token_file = data.join("pki").join("prometheus.token");
    apiserver::kubeconfig::write_private(&token_file, token)
        .with_context(|| token_file.display().to_string())?;
    let client = component_base::client::from_kubeconfig(kubeconfig).await?;
    let apply = PatchParams::apply("flotilla-up").force();
    let (role, binding) = crate::prometheus::rbac();
    let name = crate::prometheus::ROLE;
    Api::<ClusterRole>::all(client.clone())
        .patch(name, &apply, &Patch::Apply(&role))
        .await
        .with_context(|| format!("applying the ClusterRole {name}"))?;
    Api::<ClusterRoleBinding>::all(client)
        .patch(name, &apply, &Patch::Apply(&binding))
        .await
        .with_context(|| format!("applying the ClusterRoleBinding {name}"))?;
    let file = data.join("prometheus.yml");
    let text = crate::prometheus::config(&crate::prometheus::Cluster {
        data,
        ports,
        nodes,
        proxies,
    });
    apiserver::kubeconfig::write_private(&file, &text).with_context(|| file.display().to_string())
}
