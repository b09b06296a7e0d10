//! Members in network namespaces of their own, joined by veth pairs to one bridge in the
//! host namespace (where the harness and its clients run, at `.254`). Partitions are
//! iptables rules in the members' namespaces, so they cut member-to-member traffic and leave
//! the clients' links alone, as in Jepsen. Needs root (CAP_NET_ADMIN); everything made is
//! named after the run's tag and removed by `teardown`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use anyhow::{bail, Context};
use tracing::{info, warn};

use super::pki::Pki;
use super::{ClusterControl, Grudge, Start};

const CLIENT_PORT: u16 = 2379;
const PEER_PORT: u16 = 2380;

pub struct NetnsCluster {
    tag: String,
    subnet: [u8; 2],
    bin: PathBuf,
    dir: PathBuf,
    n: usize,
    member_args: Vec<String>,
    pki: Pki,
    procs: Mutex<Vec<Option<Child>>>,
    crashed: Mutex<Vec<(usize, String)>>,
    torn_down: Mutex<bool>,
}

/// Runs a command; fails with its stderr.
fn run(cmd: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd}"))?;
    if !out.status.success() {
        bail!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl NetnsCluster {
    /// Makes the namespaces and links for `n` members; starts nothing.
    pub fn create(
        n: usize,
        bin: &Path,
        dir: &Path,
        member_args: Vec<String>,
    ) -> anyhow::Result<NetnsCluster> {
        let pid = std::process::id();
        let mut pick = None;
        for attempt in 0..64u32 {
            let x = (pid + attempt) & 0xffff;
            let tag = format!("fj{x:04x}");
            let taken = Path::new(&format!("/run/netns/{tag}n1")).exists()
                || Path::new(&format!("/sys/class/net/{tag}br")).exists();
            if !taken {
                pick = Some((tag, [100 + ((x >> 8) % 100) as u8, (x & 0xff) as u8]));
                break;
            }
        }
        let (tag, subnet) = pick.context("no free network tag for this run")?;
        let ips: Vec<std::net::IpAddr> = (0..n)
            .map(|i| std::net::IpAddr::from([10, subnet[0], subnet[1], (i + 1) as u8]))
            .collect();
        let pki = Pki::issue(&dir.join("pki"), &ips)?;
        let c = NetnsCluster {
            tag,
            subnet,
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            n,
            member_args,
            pki,
            procs: Mutex::new((0..n).map(|_| None).collect()),
            crashed: Mutex::new(Vec::new()),
            torn_down: Mutex::new(false),
        };
        // On any failure below, Drop tears down what was made.
        c.make_network()?;
        info!(tag = %c.tag, subnet = %format!("10.{}.{}.0/24", subnet[0], subnet[1]), "network made");
        Ok(c)
    }

    fn br(&self) -> String {
        format!("{}br", self.tag)
    }
    fn ns(&self, i: usize) -> String {
        format!("{}n{}", self.tag, i + 1)
    }
    fn ip(&self, i: usize) -> String {
        format!("10.{}.{}.{}", self.subnet[0], self.subnet[1], i + 1)
    }

    fn make_network(&self) -> anyhow::Result<()> {
        let br = self.br();
        let host = format!("10.{}.{}.254/24", self.subnet[0], self.subnet[1]);
        run("ip", &["link", "add", &br, "type", "bridge"]).context(
            "making a bridge (the jepsen harness needs root: it makes network namespaces)",
        )?;
        run("ip", &["addr", "add", &host, "dev", &br])?;
        run("ip", &["link", "set", &br, "up"])?;
        // Docker sets the FORWARD policy to DROP; bridged traffic between members may pass
        // through that chain (br_netfilter), so let this bridge's own traffic through.
        run(
            "iptables",
            &["-I", "FORWARD", "-i", &br, "-o", &br, "-j", "ACCEPT"],
        )?;
        for i in 0..self.n {
            let ns = self.ns(i);
            let (vh, vp) = (
                format!("{}v{}", self.tag, i + 1),
                format!("{}p{}", self.tag, i + 1),
            );
            run("ip", &["netns", "add", &ns])?;
            run(
                "ip",
                &["link", "add", &vh, "type", "veth", "peer", "name", &vp],
            )?;
            run("ip", &["link", "set", &vp, "netns", &ns])?;
            run("ip", &["link", "set", &vh, "master", &br, "up"])?;
            let addr = format!("{}/24", self.ip(i));
            run("ip", &["-n", &ns, "addr", "add", &addr, "dev", &vp])?;
            run("ip", &["-n", &ns, "link", "set", &vp, "up"])?;
            run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.join("data").join(self.name(i))
    }

    fn initial_cluster(&self) -> String {
        (0..self.n)
            .map(|i| format!("{}={}", self.name(i), self.peer_url(i)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Notes members that exited without being told to. A clean exit is how a removed
    /// member stops; any other exit is a crash.
    fn reap(&self, procs: &mut [Option<Child>]) {
        let mut crashed = self.crashed.lock().unwrap_or_else(|e| e.into_inner());
        for (i, slot) in procs.iter_mut().enumerate() {
            if let Some(child) = slot.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    if !status.success() {
                        warn!(node = %self.name(i), %status, "member exited by itself");
                        crashed.push((i, status.to_string()));
                    }
                    *slot = None;
                }
            }
        }
    }

    fn signal(&self, node: usize, sig: &str) -> anyhow::Result<()> {
        let procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        let Some(child) = procs[node].as_ref() else {
            bail!("{} is not running", self.name(node));
        };
        run("kill", &[sig, &child.id().to_string()])
    }
}

impl ClusterControl for NetnsCluster {
    fn size(&self) -> usize {
        self.n
    }

    fn name(&self, node: usize) -> String {
        format!("n{}", node + 1)
    }

    fn client_url(&self, node: usize) -> String {
        format!("https://{}:{CLIENT_PORT}", self.ip(node))
    }

    fn client_tls(&self) -> Option<&proto::tls::ClientTls> {
        Some(&self.pki.client)
    }

    fn peer_url(&self, node: usize) -> String {
        format!("https://{}:{PEER_PORT}", self.ip(node))
    }

    fn start(&self, node: usize, how: Start) -> anyhow::Result<()> {
        let mut procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        self.reap(&mut procs);
        if procs[node].is_some() {
            bail!("{} is already running", self.name(node));
        }
        let (state, initial) = match how {
            Start::New | Start::Restart => ("new", self.initial_cluster()),
            Start::Join { initial_cluster } => ("existing", initial_cluster),
        };
        let log_path = self.dir.join(format!("{}.log", self.name(node)));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let (curl, purl) = (self.client_url(node), self.peer_url(node));
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(node)])
            .arg(&self.bin)
            .arg("kvstore")
            .args(["--name", &self.name(node)])
            .arg("--data-dir")
            .arg(self.data_dir(node))
            .args(["--listen-client-urls", &curl])
            .args(["--advertise-client-urls", &curl])
            .args(["--listen-peer-urls", &purl])
            .args(["--initial-advertise-peer-urls", &purl])
            .args(["--initial-cluster", &initial])
            .args(["--initial-cluster-state", state])
            .args(self.pki.member_args())
            .args(&self.member_args)
            .env(
                "RUST_LOG",
                std::env::var("JEPSEN_MEMBER_LOG").unwrap_or_else(|_| "info,openraft=warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting a member")?;
        info!(node = %self.name(node), pid = child.id(), state, "member started");
        procs[node] = Some(child);
        Ok(())
    }

    fn kill(&self, node: usize) -> anyhow::Result<()> {
        let mut procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        self.reap(&mut procs);
        let Some(mut child) = procs[node].take() else {
            return Ok(());
        };
        child.kill().ok();
        child.wait().context("reaping a member")?;
        Ok(())
    }

    fn pause(&self, node: usize) -> anyhow::Result<()> {
        self.signal(node, "-STOP")
    }

    fn resume(&self, node: usize) -> anyhow::Result<()> {
        self.signal(node, "-CONT")
    }

    fn wipe(&self, node: usize) -> anyhow::Result<()> {
        let dir = self.data_dir(node);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("wiping {}", dir.display()))?;
        }
        Ok(())
    }

    fn partition(&self, grudge: &Grudge) -> anyhow::Result<()> {
        self.heal()?;
        for (i, drops) in grudge.iter().enumerate() {
            let ns = self.ns(i);
            for &j in drops {
                let ip = self.ip(j);
                run(
                    "ip",
                    &[
                        "netns", "exec", &ns, "iptables", "-A", "INPUT", "-s", &ip, "-j", "DROP",
                    ],
                )?;
            }
        }
        Ok(())
    }

    fn heal(&self) -> anyhow::Result<()> {
        for i in 0..self.n {
            run(
                "ip",
                &["netns", "exec", &self.ns(i), "iptables", "-F", "INPUT"],
            )?;
        }
        Ok(())
    }

    fn running(&self, node: usize) -> bool {
        let mut procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        self.reap(&mut procs);
        procs[node].is_some()
    }

    fn crashed(&self) -> Vec<(usize, String)> {
        let mut procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        self.reap(&mut procs);
        self.crashed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn teardown(&self) {
        let mut done = self.torn_down.lock().unwrap_or_else(|e| e.into_inner());
        if *done {
            return;
        }
        *done = true;
        let mut procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        // A member that died by itself is a finding, not something to kill.
        self.reap(&mut procs);
        for child in procs
            .iter_mut()
            .filter_map(Option::take)
            .collect::<Vec<_>>()
            .iter_mut()
        {
            child.kill().ok();
            child.wait().ok();
        }
        for i in 0..self.n {
            run("ip", &["netns", "del", &self.ns(i)]).ok();
        }
        let br = self.br();
        run("ip", &["link", "del", &br]).ok();
        run(
            "iptables",
            &["-D", "FORWARD", "-i", &br, "-o", &br, "-j", "ACCEPT"],
        )
        .ok();
        info!(tag = %self.tag, "network removed");
    }
}

impl Drop for NetnsCluster {
    fn drop(&mut self) {
        self.teardown();
    }
}
