//! `flotilla up`: a whole cluster on this machine in one command. It runs this binary's
//! components as child processes (kvstore members, then an apiserver, a scheduler and a
//! controller-manager per master, then the agents), waits for each step, shows progress,
//! and on Ctrl-C stops them all, agents first (their pods' containers with them). The
//! data directory keeps everything, so running it again resumes the same cluster.
//!
//! Layout of `--data-dir`: `cluster.json` (the shape it was created with), `kvstore/m<i>`,
//! `pki/` (the apiservers' CA, the service account key, `tokens.csv` with every
//! component's identity), `kubeconfig` (admin, for master 0's apiserver), `kubeconfigs/`
//! (one per component, each its own user), `agents/<node>/`, `logs/<component>.log`.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

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
    /// Member i serves etcd clients on this port + 10000*i and peers on the next port.
    #[arg(long, default_value_t = 2379)]
    pub kvstore_port: u16,
    /// Agent i serves logs on this port + i.
    #[arg(long, default_value_t = 10250)]
    pub agent_port: u16,
}

#[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
struct Shape {
    masters: usize,
}

struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

struct Procs(Vec<Proc>);

impl Procs {
    fn spawn(&mut self, name: &str, logs: &Path, args: &[String]) -> anyhow::Result<()> {
        let log = logs.join(format!("{name}.log"));
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        let child = Command::new(std::env::current_exe()?)
            .args(args)
            .stdin(Stdio::null())
            .stdout(f.try_clone()?)
            .stderr(f)
            // Ctrl-C reaches `up` alone; it stops the children in order.
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        self.0.push(Proc {
            name: name.to_string(),
            child,
            log,
        });
        Ok(())
    }

    /// The first child that has exited, with its status.
    fn exited(&mut self) -> Option<(String, PathBuf, std::process::ExitStatus)> {
        for p in &mut self.0 {
            if let Ok(Some(st)) = p.child.try_wait() {
                return Some((p.name.clone(), p.log.clone(), st));
            }
        }
        None
    }

    /// SIGTERM to each, newest first, waiting up to `grace` for each before SIGKILL.
    fn stop(&mut self, grace: Duration) {
        while let Some(mut p) = self.0.pop() {
            if let Ok(Some(_)) = p.child.try_wait() {
                continue;
            }
            let pid = rustix::process::Pid::from_child(&p.child);
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            let deadline = Instant::now() + grace;
            loop {
                match p.child.try_wait() {
                    Ok(Some(_)) => break,
                    _ if Instant::now() >= deadline => {
                        let _ = p.child.kill();
                        let _ = p.child.wait();
                        break;
                    }
                    _ => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(20));
    }
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
    let data = &flags.data_dir;
    std::fs::create_dir_all(data.join("logs"))
        .with_context(|| format!("creating --data-dir {}", data.display()))?;
    let data = data.canonicalize()?;
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
    let mut procs = Procs(Vec::new());
    let result = start(&flags, &data, &logs, runtime, &mut procs).await;
    if let Err(e) = result {
        println!(" failed");
        procs.stop(Duration::from_secs(20));
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
    println!("Stopping (agents first, then the control plane) ...");
    procs.stop(Duration::from_secs(30));
    println!("Stopped. The data stays in {}.", data.display());
    Ok(())
}

async fn start(
    flags: &UpFlags,
    data: &Path,
    logs: &Path,
    runtime: UpRuntime,
    procs: &mut Procs,
) -> anyhow::Result<()> {
    let s = |x: &dyn ToString| x.to_string();
    let client_port = |i: usize| flags.kvstore_port + 10_000 * i as u16;
    let peer_urls: Vec<String> = (0..flags.masters)
        .map(|i| format!("m{i}=http://127.0.0.1:{}", client_port(i) + 1))
        .collect();
    let etcd: Vec<String> = (0..flags.masters)
        .map(|i| format!("http://127.0.0.1:{}", client_port(i)))
        .collect();

    let t = step(&format!("kvstore: {} member(s)", flags.masters));
    for i in 0..flags.masters {
        let c = format!("http://127.0.0.1:{}", client_port(i));
        let p = format!("http://127.0.0.1:{}", client_port(i) + 1);
        let dir = data.join("kvstore").join(format!("m{i}"));
        let args = vec![
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
        ];
        procs.spawn(&format!("kvstore-m{i}"), logs, &args)?;
    }
    let ports: Vec<u16> = (0..flags.masters).map(client_port).collect();
    wait(
        procs,
        Duration::from_secs(30),
        "the kvstore members to listen",
        || {
            let ports = ports.clone();
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
    let nodes: Vec<String> = (0..flags.agents).map(|i| format!("flotilla-{i}")).collect();
    let token_file = data.join("pki").join("tokens.csv");
    let tokens = crate::identities::ensure_tokens(&token_file, &nodes)?;
    for i in 0..flags.masters {
        let _ = std::fs::remove_file(kc(i));
        let args = vec![
            s(&"apiserver"),
            s(&"--etcd-servers"),
            etcd.join(","),
            s(&"--bind-address"),
            s(&"127.0.0.1"),
            s(&"--secure-port"),
            (flags.apiserver_port + i as u16).to_string(),
            s(&"--cert-dir"),
            data.join("pki").display().to_string(),
            s(&"--token-auth-file"),
            token_file.display().to_string(),
            s(&"--write-kubeconfig"),
            kc(i).display().to_string(),
        ];
        procs.spawn(&format!("apiserver-m{i}"), logs, &args)?;
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
        let metrics = |base: u16| format!("127.0.0.1:{}", base + 100 * i as u16);
        procs.spawn(
            &format!("scheduler-m{i}"),
            logs,
            &[
                s(&"scheduler"),
                s(&"--kubeconfig"),
                ks,
                s(&"--metrics-bind-address"),
                metrics(10251),
            ],
        )?;
        procs.spawn(
            &format!("controller-manager-m{i}"),
            logs,
            &[
                s(&"controller-manager"),
                s(&"--kubeconfig"),
                kcm,
                s(&"--metrics-bind-address"),
                metrics(10252),
            ],
        )?;
    }
    done(t);

    let t = step(&format!("{} agent(s)", flags.agents));
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
            (flags.agent_port + i as u16).to_string(),
            s(&"--stop-pods-on-exit"),
        ];
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
        ]);
        procs.spawn(&format!("agent-{node}"), logs, &args)?;
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
    Ok(())
}
