//! Kubernetes-level harness: a storage backend (a Flotilla kvstore cluster, or Debian's
//! etcd 3.4 for comparison), `flotilla apiserver` processes over it, kubectl and kube-rs
//! clients from the kubeconfig each apiserver writes.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use super::{free_port, wait_for, Cluster, BIN};

/// Three etcd 3.4 members (Debian's etcd-server) on loopback.
pub struct EtcdCluster {
    pub dir: tempfile::TempDir,
    pub client_ports: Vec<u16>,
    pub children: Vec<Option<Child>>,
}

impl EtcdCluster {
    pub async fn start(n: usize) -> EtcdCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let names: Vec<String> = (1..=n).map(|i| format!("e{i}")).collect();
        let client_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let peer_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let initial: Vec<String> = names
            .iter()
            .zip(&peer_ports)
            .map(|(n, p)| format!("{n}=http://127.0.0.1:{p}"))
            .collect();
        let mut children = Vec::new();
        for i in 0..n {
            let log =
                std::fs::File::create(dir.path().join(format!("{}.log", names[i]))).expect("log");
            let child = Command::new("etcd")
                .args(["--name", &names[i]])
                .arg("--data-dir")
                .arg(dir.path().join(&names[i]))
                .args([
                    "--listen-client-urls",
                    &format!("http://127.0.0.1:{}", client_ports[i]),
                ])
                .args([
                    "--advertise-client-urls",
                    &format!("http://127.0.0.1:{}", client_ports[i]),
                ])
                .args([
                    "--listen-peer-urls",
                    &format!("http://127.0.0.1:{}", peer_ports[i]),
                ])
                .args([
                    "--initial-advertise-peer-urls",
                    &format!("http://127.0.0.1:{}", peer_ports[i]),
                ])
                .args(["--initial-cluster", &initial.join(",")])
                .args([
                    "--initial-cluster-state",
                    "new",
                    "--heartbeat-interval",
                    "50",
                    "--election-timeout",
                    "500",
                ])
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("etcd is installed (scripts/test installs Debian's etcd-server)");
            children.push(Some(child));
        }
        let c = EtcdCluster {
            dir,
            client_ports,
            children,
        };
        let eps = c.urls();
        let client = super::connect(&eps).await;
        wait_for(Duration::from_secs(20), "etcd to elect a leader", || {
            let mut c = client.clone();
            async move { c.put("/health-probe", "x", None).await.ok().map(|_| ()) }
        })
        .await;
        c
    }

    pub fn urls(&self) -> Vec<String> {
        self.client_ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Where the apiservers keep their state.
pub enum Backend {
    Flotilla(Cluster),
    Etcd(EtcdCluster),
}

impl Backend {
    pub async fn flotilla() -> Backend {
        Backend::Flotilla(Cluster::start(3, &[]).await)
    }
    pub async fn etcd() -> Backend {
        Backend::Etcd(EtcdCluster::start(3).await)
    }
    pub fn urls(&self) -> Vec<String> {
        match self {
            Backend::Flotilla(c) => c.members.iter().map(|m| m.client_url()).collect(),
            Backend::Etcd(e) => e.urls(),
        }
    }

    /// SIGKILLs the leader (for etcd, whichever member `endpoint status` names leader).
    pub async fn kill_leader(&mut self) {
        match self {
            Backend::Flotilla(c) => {
                let leader = c.wait_leader(Duration::from_secs(5)).await;
                c.kill(leader);
            }
            Backend::Etcd(e) => {
                let mut victim = 0;
                for (i, url) in e.urls().iter().enumerate() {
                    let mut cl =
                        super::connect(&[url.trim_start_matches("http://").to_string()]).await;
                    if let Ok(st) = cl.status().await {
                        if st.leader() == st.header().map(|h| h.member_id()).unwrap_or(0) {
                            victim = i;
                        }
                    }
                }
                if let Some(mut c) = e.children[victim].take() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
            }
        }
    }
}

pub struct Apiserver {
    pub port: u16,
    pub kubeconfig: PathBuf,
    pub log: PathBuf,
    pub child: Option<Child>,
    args: Vec<String>,
}

/// Apiservers sharing one certificate directory (one CA, one admin token), as the
/// masters of an HA deployment do.
pub struct Apiservers {
    pub dir: tempfile::TempDir,
    pub servers: Vec<Apiserver>,
}

impl Apiservers {
    /// The CA of the apiservers' front-proxy client certificate: what an aggregated API's
    /// backend trusts for `X-Remote-User`.
    pub fn front_proxy_ca(&self) -> PathBuf {
        self.dir.path().join("front-proxy").join("ca.crt")
    }

    pub async fn start(n: usize, etcd: &[String]) -> Apiservers {
        let dir = tempfile::tempdir().expect("tempdir");
        // The client certificate the apiservers present to agents, from their own CA
        // (created here, then used by them), which agents' certificates come from too
        // (`Agents` with `certs`), as `flotilla up` sets it up.
        let kubelet = apiserver::tls::issue(
            &dir.path().join("certs"),
            "apiserver-kubelet-client",
            "kube-apiserver-kubelet-client",
            &[],
            apiserver::tls::Usage::Client,
        )
        .expect("the kubelet client certificate");
        // The client certificate for aggregated APIs' backends, from a CA of its own
        // (`front_proxy_ca`), as `flotilla up` sets it up.
        let front = apiserver::tls::issue(
            &dir.path().join("front-proxy"),
            "front-proxy-client",
            "front-proxy-client",
            &[],
            apiserver::tls::Usage::Client,
        )
        .expect("the front-proxy client certificate");
        let mut a = Apiservers {
            dir,
            servers: Vec::new(),
        };
        for i in 0..n {
            let port = free_port();
            let args = vec![
                "apiserver".to_string(),
                "--etcd-servers".into(),
                etcd.join(","),
                "--bind-address".into(),
                "127.0.0.1".into(),
                "--secure-port".into(),
                port.to_string(),
                "--etcd-compaction-interval".into(),
                "0".into(),
                "--kubelet-client-certificate".into(),
                kubelet.cert.display().to_string(),
                "--kubelet-client-key".into(),
                kubelet.key.display().to_string(),
                "--kubelet-certificate-authority".into(),
                kubelet.ca.display().to_string(),
                "--proxy-client-cert-file".into(),
                front.cert.display().to_string(),
                "--proxy-client-key-file".into(),
                front.key.display().to_string(),
                "--requestheader-client-ca-file".into(),
                front.ca.display().to_string(),
                "--requestheader-allowed-names".into(),
                "front-proxy-client".into(),
            ];
            a.servers.push(Apiserver {
                port,
                kubeconfig: a.dir.path().join(format!("kubeconfig-{i}")),
                log: a.dir.path().join(format!("apiserver-{i}.log")),
                child: None,
                args,
            });
        }
        for i in 0..n {
            a.spawn(i);
        }
        for i in 0..n {
            a.wait_ready(i).await;
        }
        a
    }

    pub fn spawn(&mut self, i: usize) {
        let certs = self.dir.path().join("certs");
        let s = &mut self.servers[i];
        let _ = std::fs::remove_file(&s.kubeconfig);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&s.log)
            .expect("log");
        let child = Command::new(BIN)
            .args(&s.args)
            .arg("--cert-dir")
            .arg(&certs)
            .arg("--write-kubeconfig")
            .arg(&s.kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("FLOTILLA_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn flotilla apiserver");
        s.child = Some(child);
    }

    /// Waits until apiserver `i` serves and the system namespaces exist.
    pub async fn wait_ready(&self, i: usize) {
        let kc = self.servers[i].kubeconfig.clone();
        wait_for(Duration::from_secs(30), "the apiserver to serve", || {
            let kc = kc.clone();
            async move {
                if !kc.exists() {
                    return None;
                }
                let out = kubectl(&kc, &["get", "namespace", "kube-node-lease", "-o", "name"]);
                out.status.success().then_some(())
            }
        })
        .await;
    }

    /// Stops apiserver `i` as an operator would (SIGTERM) and waits for it to exit.
    pub fn terminate(&mut self, i: usize) {
        if let Some(mut c) = self.servers[i].child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }

    /// Apiserver `i`'s secure port.
    pub fn port(&self, i: usize) -> u16 {
        self.servers[i].port
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.servers[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Restarts apiserver `i` with `--flag value` (replacing an earlier value of the flag;
    /// kept for later restarts), and waits until it serves.
    pub async fn restart_with(&mut self, i: usize, flag: &str, value: &str) {
        self.kill(i);
        let args = &mut self.servers[i].args;
        if let Some(at) = args.iter().position(|a| a == flag) {
            args.drain(at..(at + 2).min(args.len()));
        }
        args.extend([flag.to_string(), value.to_string()]);
        self.spawn(i);
        self.wait_ready(i).await;
    }

    pub fn kubeconfig(&self, i: usize) -> &Path {
        &self.servers[i].kubeconfig
    }

    /// Their certificate directory: the cluster CA (`ca.crt`) and what it issued.
    pub fn certs(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    pub async fn client(&self, i: usize) -> kube::Client {
        self.client_with(i, true).await
    }

    /// A client that does not retry 503/504/429 by itself (kube-rs does by default).
    pub async fn client_with(&self, i: usize, retry: bool) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(self.kubeconfig(i)).expect("kubeconfig");
        let mut cfg =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .expect("config");
        cfg.default_retry = retry;
        kube::Client::try_from(cfg).expect("client")
    }

    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.servers[i].log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Apiservers {
    fn drop(&mut self) {
        let failing = std::thread::panicking();
        for i in 0..self.servers.len() {
            self.kill(i);
            if failing {
                eprintln!("---- log of apiserver {i} ----\n{}", self.log_tail(i, 40));
            }
        }
    }
}

/// A child process killed when dropped, so a failing test leaves nothing running.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--request-timeout", "20s"])
        .args(args)
        .output()
        .expect("kubectl is installed")
}

/// Runs kubectl and returns stdout; fails the test with stderr if kubectl failed.
pub fn kubectl_ok(kubeconfig: &Path, args: &[&str]) -> String {
    let out = kubectl(kubeconfig, args);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs kubectl with `stdin` as its input.
pub fn kubectl_stdin(kubeconfig: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--request-timeout", "20s"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl is installed");
    if let Some(mut si) = child.stdin.take() {
        let _ = si.write_all(stdin.as_bytes());
    }
    child.wait_with_output().expect("kubectl output")
}

/// A running `kubectl port-forward` and the local port it listens on.
pub struct PortForward {
    pub child: std::process::Child,
    /// The local port it forwards.
    pub port: u16,
    /// What kubectl has written to stderr so far.
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PortForward {
    /// Starts `kubectl port-forward <what> 0:<remote>` and waits for the port it listens on.
    pub fn start(kc: &Path, what: &str, remote: u16) -> PortForward {
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(kc)
            .args(["port-forward", what, &format!("0:{remote}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl is installed");
        // "Forwarding from 127.0.0.1:NNNNN -> 8080"
        let mut stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut b = [0u8; 256];
            while let Ok(n) = stdout.read(&mut b) {
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&b[..n]);
                let s = String::from_utf8_lossy(&seen).into_owned();
                if let Some(port) = s
                    .split("Forwarding from 127.0.0.1:")
                    .nth(1)
                    .and_then(|r| r.split(' ').next())
                    .and_then(|p| p.parse::<u16>().ok())
                {
                    let _ = tx.send(port);
                    // Keep draining so kubectl never blocks on its output.
                    while let Ok(n) = stdout.read(&mut b) {
                        if n == 0 {
                            break;
                        }
                    }
                    return;
                }
            }
        });
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let seen = stderr.clone();
        std::thread::spawn(move || {
            let mut b = [0u8; 1024];
            while let Ok(n) = err.read(&mut b) {
                if n == 0 {
                    break;
                }
                seen.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&b[..n]));
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("kubectl port-forward to say where it listens");
        PortForward {
            child,
            port,
            stderr,
        }
    }
}

/// `GET /index.html` over a local port: the whole answer.
pub fn http_get_over(port: u16) -> std::io::Result<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
