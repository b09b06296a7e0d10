//! A kube-rs client from a kubeconfig file.

use std::path::Path;

/// Builds a client for the kubeconfig's current context. Requests time out after 30 s
/// (watches are long-polls the server ends); kube-rs' own retry of 503/429 stays on.
pub async fn from_kubeconfig(path: &Path) -> anyhow::Result<kube::Client> {
    let cfg = config_from_kubeconfig(path).await?;
    Ok(kube::Client::try_from(cfg)?)
}

/// The client configuration of the kubeconfig's current context: its server, CA and
/// credentials (for a client that keeps the server and CA but acts as someone else).
pub async fn config_from_kubeconfig(path: &Path) -> anyhow::Result<kube::Config> {
    let kc = kube::config::Kubeconfig::read_from(path)
        .map_err(|e| anyhow::anyhow!("reading kubeconfig {}: {e}", path.display()))?;
    kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| anyhow::anyhow!("kubeconfig {}: {e}", path.display()))
}

/// `cfg` (server, CA, timeouts) with its credentials replaced by the bearer token in
/// `token_file`, which kube-rs reads again at least once a minute: rewriting the file
/// rotates the token of every request the client sends afterwards.
pub fn with_token_file(cfg: &kube::Config, token_file: &Path) -> kube::Config {
    let mut cfg = cfg.clone();
    cfg.auth_info = kube::config::AuthInfo {
        token_file: Some(token_file.display().to_string()),
        ..Default::default()
    };
    cfg
}
