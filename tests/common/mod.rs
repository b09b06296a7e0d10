//! Test harness: real `flotilla kvstore` processes on loopback, each test with its own
//! ports and data directories, and helpers that wait on conditions with deadlines.
#![allow(dead_code)]

use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions};

pub const BIN: &str = env!("CARGO_BIN_EXE_flotilla");

/// A free loopback port for a member to bind. Ports come from 10000-29999, below the
/// kernel's ephemeral range, so an outgoing connection can never take one between this
/// check and the member's bind; a per-process counter never hands out a port twice.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 10_000 + (std::process::id() % 500) * 40;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (10_000 + (base - 10_000 + n) % 20_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
/// TLS material of a cluster started with `Cluster::start_tls`: one CA, one certificate
/// every member serves and dials peers with, and a client certificate.
#[derive(Clone)]
pub struct Tls {
    pub ca: PathBuf,
    pub member_cert: PathBuf,
    pub member_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Tls {
    /// Issues everything under `dir` with the apiserver's certificate code.
    pub fn issue(dir: &Path, client_cn: &str) -> Tls {
        use apiserver::tls::{issue, Usage};
        let hosts = ["127.0.0.1".to_string(), "localhost".to_string()];
        let m = issue(dir, "member", "member", &hosts, Usage::ServerAndClient).expect("certs");
        let c = issue(dir, "client", client_cn, &[], Usage::Client).expect("certs");
        Tls {
            ca: m.ca,
            member_cert: m.cert,
            member_key: m.key,
            client_cert: c.cert,
            client_key: c.key,
        }
    }

    /// The kvstore flags: https on both ports, certificates required both ways.
    pub fn member_args(&self) -> Vec<String> {
        let p = |p: &PathBuf| p.display().to_string();
        vec![
            "--cert-file".into(),
            p(&self.member_cert),
            "--key-file".into(),
            p(&self.member_key),
            "--client-cert-auth".into(),
            "--trusted-ca-file".into(),
            p(&self.ca),
            "--peer-cert-file".into(),
            p(&self.member_cert),
            "--peer-key-file".into(),
            p(&self.member_key),
            "--peer-client-cert-auth".into(),
            "--peer-trusted-ca-file".into(),
            p(&self.ca),
        ]
    }

    /// etcdctl's flags for the client certificate.
    pub fn etcdctl_args(&self) -> Vec<String> {
        vec![
            format!("--cacert={}", self.ca.display()),
            format!("--cert={}", self.client_cert.display()),
            format!("--key={}", self.client_key.display()),
        ]
    }

    pub fn options(&self) -> etcd_client::TlsOptions {
        let read = |p: &PathBuf| std::fs::read(p).expect("pem");
        etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(read(&self.ca)))
            .identity(etcd_client::Identity::from_pem(
                read(&self.client_cert),
                read(&self.client_key),
            ))
    }
}

pub struct Member {
    pub name: String,
    /// Serves https on both ports.
    pub tls: bool,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub child: Option<Child>,
}

impl Member {
    fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }
    pub fn client_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.client_port)
    }
    pub fn peer_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.peer_port)
    }
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub members: Vec<Member>,
    pub args: Vec<String>,
    pub tls: Option<Tls>,
}

impl Cluster {
    /// A new one-member cluster that `flotilla snapshot-restore file` seeded, serving;
    /// and what the restore printed.
    pub async fn restored_from(file: &Path) -> (Cluster, String) {
        let mut r = Cluster {
            dir: tempfile::tempdir().expect("tempdir"),
            members: Vec::new(),
            args: Vec::new(),
            tls: None,
        };
        let i = r.add_member_slot("restored");
        let m = &r.members[i];
        let out = Command::new(BIN)
            .args(["snapshot-restore"])
            .arg(file)
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args(["--initial-advertise-peer-urls", &m.peer_url()])
            .args(["--initial-cluster", &format!("{}={}", m.name, m.peer_url())])
            .output()
            .expect("run flotilla snapshot-restore");
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "snapshot-restore failed: {log}");
        r.spawn(i, "new");
        r.wait_leader(Duration::from_secs(10)).await;
        (r, log)
    }

    /// Starts `n` members at once, as three operators would, and waits for a leader.
    pub async fn start(n: usize, args: &[&str]) -> Cluster {
        Self::start_with(n, args, false).await
    }

    /// As `start`, with mTLS on the client and peer ports (`Tls::member_args`); the
    /// cluster's clients present `tls.client_cert` (CN `root`).
    pub async fn start_tls(n: usize, args: &[&str]) -> Cluster {
        Self::start_with(n, args, true).await
    }

    async fn start_with(n: usize, args: &[&str], tls: bool) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let tls = tls.then(|| Tls::issue(&dir.path().join("pki"), "root"));
        if let Some(t) = &tls {
            args.extend(t.member_args());
        }
        let mut c = Cluster {
            dir,
            members: Vec::new(),
            args,
            tls,
        };
        for i in 0..n {
            c.add_member_slot(&format!("n{}", i + 1));
        }
        for i in 0..n {
            c.spawn(i, "new");
        }
        c.wait_leader(Duration::from_secs(20)).await;
        c.wait_published().await;
        c
    }

    /// Waits until every running member lists every member with its name (members
    /// publish their names through the log once they run, as etcd members do).
    pub async fn wait_published(&self) {
        for i in (0..self.members.len()).filter(|&i| self.members[i].child.is_some()) {
            let m = self.client(i).await;
            let want = self.members.iter().filter(|m| m.child.is_some()).count();
            wait_for(
                Duration::from_secs(20),
                "members to publish their names",
                || {
                    let mut m = m.clone();
                    async move {
                        let list = m.member_list().await.ok()?;
                        let named = list
                            .members()
                            .iter()
                            .filter(|x| !x.name().is_empty())
                            .count();
                        (named >= want).then_some(())
                    }
                },
            )
            .await;
        }
    }

    /// Reserves ports and a data directory for a member (not started).
    pub fn add_member_slot(&mut self, name: &str) -> usize {
        let m = Member {
            name: name.to_string(),
            tls: self.tls.is_some(),
            client_port: free_port(),
            peer_port: free_port(),
            data_dir: self.dir.path().join(name),
            log: self.dir.path().join(format!("{name}.log")),
            child: None,
        };
        self.members.push(m);
        self.members.len() - 1
    }

    pub fn initial_cluster(&self, idx: &[usize]) -> String {
        idx.iter()
            .map(|&i| format!("{}={}", self.members[i].name, self.members[i].peer_url()))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| m.endpoint())
            .collect()
    }

    /// Starts member `i` with `--initial-cluster` listing every member slot so far.
    pub fn spawn(&mut self, i: usize, state: &str) {
        let all: Vec<usize> = (0..self.members.len()).collect();
        let initial = self.initial_cluster(&all);
        self.spawn_with(i, state, &initial);
    }

    pub fn spawn_with(&mut self, i: usize, state: &str, initial_cluster: &str) {
        let m = &self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .expect("log file");
        let mut cmd = Command::new(BIN);
        cmd.arg("kvstore")
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args(["--listen-client-urls", &m.client_url()])
            .args(["--advertise-client-urls", &m.client_url()])
            .args(["--listen-peer-urls", &m.peer_url()])
            .args(["--initial-advertise-peer-urls", &m.peer_url()])
            .args(["--initial-cluster", initial_cluster])
            .args(["--initial-cluster-state", state])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(&self.args)
            .env(
                "RUST_LOG",
                std::env::var("FLOTILLA_TEST_LOG").unwrap_or_else(|_| "info,openraft=error".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        let child = cmd.spawn().expect("spawn flotilla");
        self.members[i].child = Some(child);
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit status.
    pub fn terminate(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        let mut c = self.members[i].child.take()?;
        let pid = c.id() as i32;
        send_signal(pid, "TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        c.wait().ok()
    }

    pub async fn client(&self, i: usize) -> Client {
        connect_with(&[self.members[i].endpoint()], self.tls.as_ref()).await
    }

    /// A client that knows every running member.
    pub async fn any_client(&self) -> Client {
        connect_with(&self.endpoints(), self.tls.as_ref()).await
    }

    /// Waits until every running member reports the same leader, itself running; returns
    /// its index.
    pub async fn wait_leader(&self, within: Duration) -> usize {
        let running: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.members[i].child.is_some())
            .collect();
        wait_for(
            within,
            "a running leader that every running member agrees on",
            || async {
                let mut seen = None;
                let mut leader_idx = None;
                for &i in &running {
                    let mut c =
                        connect_once_with(&self.members[i].endpoint(), self.tls.as_ref()).await?;
                    let st = c.status().await.ok()?;
                    if st.leader() == 0 || seen.is_some_and(|l| l != st.leader()) {
                        return None;
                    }
                    seen = Some(st.leader());
                    if st.header().map(|h| h.member_id()) == Some(st.leader()) {
                        leader_idx = Some(i);
                    }
                }
                leader_idx
            },
        )
        .await
    }

    /// Waits until every running member has applied `rev`, then checks that HashKV at
    /// `rev` is the same on all of them.
    pub async fn assert_same_hash(&self, rev: i64) {
        let mut hashes = Vec::new();
        for i in (0..self.members.len()).filter(|&i| self.members[i].child.is_some()) {
            let m = self.client(i).await;
            let hash = wait_for(
                Duration::from_secs(20),
                "member to apply the revision",
                || {
                    let mut m = m.clone();
                    async move {
                        let applied = m
                            .get(
                                "\0",
                                Some(etcd_client::GetOptions::new().with_serializable()),
                            )
                            .await
                            .ok()?;
                        if applied.header()?.revision() < rev {
                            return None;
                        }
                        m.hash_kv(rev).await.ok().map(|r| r.hash())
                    }
                },
            )
            .await;
            hashes.push((self.members[i].name.clone(), hash));
        }
        assert!(
            hashes.windows(2).all(|w| w[0].1 == w[1].1),
            "HashKV at {rev} differs: {hashes:?}"
        );
    }

    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.members[i].log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// std has no signal API; `kill(1)` sends one without unsafe code.
pub fn send_signal(pid: i32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let failing = std::thread::panicking();
        // FLOTILLA_TEST_KEEP=DIR keeps the member logs for a look after the run.
        let keep = std::env::var_os("FLOTILLA_TEST_KEEP").map(PathBuf::from);
        for i in 0..self.members.len() {
            self.kill(i);
            if let Some(dir) = &keep {
                let _ = std::fs::create_dir_all(dir);
                let _ = std::fs::copy(
                    &self.members[i].log,
                    dir.join(format!("{}.log", self.members[i].name)),
                );
            }
            if failing {
                eprintln!(
                    "---- log of {} ----\n{}",
                    self.members[i].name,
                    self.log_tail(i, 40)
                );
            }
        }
    }
}

pub async fn connect_once(endpoint: &str) -> Option<Client> {
    connect_once_with(endpoint, None).await
}

pub async fn connect_once_with(endpoint: &str, tls: Option<&Tls>) -> Option<Client> {
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_millis(500))
        .with_timeout(Duration::from_secs(3));
    if let Some(t) = tls {
        opts = opts.with_tls(t.options());
    }
    Client::connect([endpoint], Some(opts)).await.ok()
}

pub async fn connect(endpoints: &[String]) -> Client {
    connect_with(endpoints, None).await
}

pub async fn connect_with(endpoints: &[String], tls: Option<&Tls>) -> Client {
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(15));
    if let Some(t) = tls {
        opts = opts.with_tls(t.options());
    }
    wait_for(Duration::from_secs(15), "a client connection", || async {
        Client::connect(endpoints, Some(opts.clone())).await.ok()
    })
    .await
}

/// Polls `probe` until it yields a value or `within` passes (then panics naming `what`).
pub async fn wait_for<T, F, Fut>(within: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn etcdctl(endpoints: &[String], args: &[&str]) -> std::process::Output {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", endpoints.join(",")))
        .args(["--dial-timeout=3s", "--command-timeout=15s"])
        .args(args)
        .output()
        .expect("etcdctl is installed (scripts/test installs Debian's etcd-client)")
}

/// Runs etcdctl and returns its stdout, failing the test with stderr if it failed.
pub fn etcdctl_ok(endpoints: &[String], args: &[&str]) -> String {
    let out = etcdctl(endpoints, args);
    assert!(
        out.status.success(),
        "etcdctl {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs etcdctl as `user` (`name:password`, etcdctl's `--user`).
pub fn etcdctl_as(endpoints: &[String], user: &str, args: &[&str]) -> std::process::Output {
    let user = format!("--user={user}");
    let all: Vec<&str> = std::iter::once(user.as_str())
        .chain(args.iter().copied())
        .collect();
    etcdctl(endpoints, &all)
}

/// Runs etcdctl with `input` on its standard input (prompts such as `user passwd
/// --interactive=false` read from it).
pub fn etcdctl_input(endpoints: &[String], args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", endpoints.join(",")))
        .args(["--dial-timeout=3s", "--command-timeout=15s"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("etcdctl is installed (scripts/test installs Debian's etcd-client)");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes());
    }
    child.wait_with_output().expect("etcdctl output")
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

/// Waits for a child to exit by itself; kills it if it has not within `within`.
pub fn wait_for_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(st)) = child.try_wait() {
            return st;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait().expect("wait")
}
pub mod agents;
pub mod compose;
pub mod control;
pub mod extension;
pub mod images;
pub mod k8s;
pub mod loki;
pub mod procstat;
pub mod webhook;
