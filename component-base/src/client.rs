//! A kube-rs client from a kubeconfig file.

use std::path::Path;

/// Builds a client for the kubeconfig's current context. Requests time out after 30 s
/// (watches are long-polls the server ends); kube-rs' own retry of 503/429 stays on.
pub async fn from_kubeconfig(path: &Path) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(path)
        .map_err(|e| anyhow::anyhow!("reading kubeconfig {}: {e}", path.display()))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| anyhow::anyhow!("kubeconfig {}: {e}", path.display()))?;
    Ok(kube::Client::try_from(cfg)?)
}
