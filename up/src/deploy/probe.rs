//! HTTPS GETs of health endpoints (an apiserver's `/readyz`, a kvstore member's
//! `/health`, an agent's `/healthz`), verifying the server against a CA and presenting a
//! client certificate where the port asks for one; and `flotilla deploy ready`, a
//! container's health check built on them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

/// A client for `https://<addr>` trusting `ca`, presenting `identity` (certificate, key)
/// when given, else anonymous.
pub async fn client(
    addr: SocketAddr,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
    timeout: Duration,
) -> anyhow::Result<kube::Client> {
    let user = match identity {
        Some((cert, key)) => serde_json::json!({"client-certificate": cert, "client-key": key}),
        None => serde_json::json!({}),
    };
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": format!("https://{addr}"), "certificate-authority": ca}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    });
    let kc: kube::config::Kubeconfig = serde_json::from_value(kubeconfig)?;
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .with_context(|| format!("a client for {addr} trusting {}", ca.display()))?;
    cfg.connect_timeout = Some(timeout);
    cfg.read_timeout = Some(timeout);
    Ok(kube::Client::try_from(cfg)?)
}

/// The body of a successful GET of `path`.
pub async fn get(client: &kube::Client, path: &str) -> anyhow::Result<String> {
    let req = http::Request::get(path).body(Vec::new())?;
    Ok(client.request_text(req).await?)
}

#[derive(clap::Args, Debug, Clone)]
pub struct ReadyFlags {
    /// This host's directory as `flotilla deploy init` wrote it.
    #[arg(long, default_value = "/cluster")]
    pub cluster_dir: PathBuf,
    /// This host's name: a master, an agent, or the front (default: the container's
    /// hostname, which deploy/compose.yaml sets to the host's name).
    #[arg(long, env = "HOSTNAME")]
    pub name: String,
}

const TIMEOUT: Duration = Duration::from_secs(3);

/// Exits 0 when this host serves: a master when its kvstore member knows a leader and its
/// apiserver is ready; the front when an apiserver answers ready through it; a node when
/// its agent answers.
pub async fn ready(flags: ReadyFlags) -> anyhow::Result<()> {
    use super::topology as t;
    let topology = super::layout::read_topology(&flags.cluster_dir)?;
    let local = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let dir = &flags.cluster_dir;
    let check = |what: &'static str, body: String, want: &str| {
        if body.contains(want) {
            Ok(())
        } else {
            Err(anyhow::anyhow!("{what}: {}", body.trim()))
        }
    };
    if topology.master(&flags.name).is_some() {
        let m = super::layout::MasterDir(dir.clone());
        let etcd = m.etcd_pki();
        let c = client(
            local(t::KV_METRICS_PORT),
            &etcd.join("ca.crt"),
            Some((
                &etcd.join("apiserver-etcd-client.crt"),
                &etcd.join("apiserver-etcd-client.key"),
            )),
            TIMEOUT,
        )
        .await?;
        let body = get(&c, "/health").await.context("the kvstore member")?;
        check("the kvstore member", body, r#""health":"true""#)?;
        let c = client(
            local(t::APISERVER_PORT),
            &m.pki().join("ca.crt"),
            None,
            TIMEOUT,
        )
        .await?;
        let body = get(&c, "/readyz").await.context("the apiserver")?;
        return check("the apiserver", body, "ok");
    }
    if let Some(me) = topology.agent(&flags.name) {
        let n = super::layout::NodeDir(dir.clone());
        let agent = SocketAddr::new(me.ip, t::AGENT_PORT);
        let c = client(agent, &n.ca(), None, TIMEOUT).await?;
        let body = get(&c, "/healthz").await.context("the agent")?;
        return check("the agent", body, "ok");
    }
    if topology.front.name == flags.name {
        let c = client(local(t::APISERVER_PORT), &dir.join("ca.crt"), None, TIMEOUT).await?;
        let body = get(&c, "/readyz")
            .await
            .context("an apiserver through the front")?;
        return check("an apiserver through the front", body, "ok");
    }
    anyhow::bail!("{} is no host of this deployment", flags.name)
}
