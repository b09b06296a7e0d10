//! The identities `flotilla up` gives its components, so each acts with only the rights its
//! bootstrap role grants: the admin (system:masters), `system:kube-scheduler`,
//! `system:kube-controller-manager`, `system:kube-proxy` (every node's proxy, kube's
//! `system:node-proxier` role), `system:kube-dns` (the DNS servers), and
//! `system:node:<name>` (group system:nodes) for every agent, and `prometheus` (group
//! system:monitoring, see `prometheus.rs`). Each has a static token in `pki/tokens.csv` (the apiservers'
//! `--token-auth-file`); tokens already there are kept, so a resumed cluster keeps them.
//! A component's kubeconfig is the admin's with its own user and token.

use std::path::{Path, PathBuf};

use anyhow::Context;
use apiserver::auth::tokens::{random_token, Tokens};
use apiserver::kubeconfig::write_private;

pub const SCHEDULER: &str = "system:kube-scheduler";
pub const CONTROLLER_MANAGER: &str = "system:kube-controller-manager";
pub const PROXY: &str = "system:kube-proxy";
pub const DNS: &str = "system:kube-dns";

pub fn node_user(node: &str) -> String {
    format!("system:node:{node}")
}

/// (user, groups) of every identity of a cluster with these nodes.
fn identities(nodes: &[String]) -> Vec<(String, &'static str)> {
    let mut out = vec![
        ("admin".to_string(), "system:masters"),
        (SCHEDULER.to_string(), ""),
        (CONTROLLER_MANAGER.to_string(), ""),
        (PROXY.to_string(), ""),
        (DNS.to_string(), ""),
        (
            crate::prometheus::USER.to_string(),
            crate::prometheus::GROUP,
        ),
    ];
    out.extend(nodes.iter().map(|n| (node_user(n), "system:nodes")));
    out
}

/// Makes sure `path` holds a token for every identity, and none for a node not in
/// `nodes`; returns the file's tokens.
pub fn ensure_tokens(path: &Path, nodes: &[String]) -> anyhow::Result<Tokens> {
    let mut text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| path.display().to_string()),
    };
    // Nodes no longer in the cluster lose their identity.
    let before = text.len();
    text = text
        .lines()
        .filter(|l| {
            let user = l.split(',').nth(1).unwrap_or("").trim();
            user.strip_prefix("system:node:")
                .is_none_or(|n| nodes.iter().any(|k| k == n))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let mut added = text.len() != before;
    let known = Tokens::parse(&text).map_err(anyhow::Error::msg)?;
    for (user, groups) in identities(nodes) {
        if known.token_of(&user).is_none() {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&format!("{},{user},{user},\"{groups}\"\n", random_token()));
            added = true;
        }
    }
    if added {
        write_private(path, &text).with_context(|| path.display().to_string())?;
    }
    Tokens::parse(&text).map_err(anyhow::Error::msg)
}

/// Writes `out`: the kubeconfig `admin` (as the apiserver wrote it), acting as `user`.
pub fn kubeconfig_for(
    admin: &Path,
    out: &Path,
    user: &str,
    tokens: &Tokens,
) -> anyhow::Result<PathBuf> {
    let token = tokens
        .token_of(user)
        .with_context(|| format!("no token for {user}"))?;
    let text = std::fs::read_to_string(admin).with_context(|| admin.display().to_string())?;
    let kc = as_user(&text, user, token).with_context(|| admin.display().to_string())?;
    write_private(out, &kc).with_context(|| out.display().to_string())?;
    Ok(out.to_path_buf())
}

/// A kubeconfig for `server` (trusting `ca_pem`) acting as `user` with `token`.
pub fn render_for(server: &str, ca_pem: &str, user: &str, token: &str) -> anyhow::Result<String> {
    as_user(
        &apiserver::kubeconfig::render(server, ca_pem, token),
        user,
        token,
    )
}

/// The kubeconfig `text` with `user` and `token` in place of its users.
fn as_user(text: &str, user: &str, token: &str) -> anyhow::Result<String> {
    let mut kc: serde_json::Value = serde_json::from_str(text)?;
    kc["users"] = serde_json::json!([{ "name": user, "user": { "token": token } }]);
    if let Some(ctxs) = kc["contexts"].as_array_mut() {
        for c in ctxs {
            c["context"]["user"] = user.into();
        }
    }
    Ok(serde_json::to_string_pretty(&kc)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_added_once_and_kept() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("pki/tokens.csv");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "old,admin,admin,\"system:masters\"").unwrap();
        let nodes = vec!["n0".to_string()];
        let a = ensure_tokens(&p, &nodes).unwrap();
        assert_eq!(a.admin_token(), Some("old"));
        let node = a.token_of("system:node:n0").unwrap().to_string();
        let u = a.lookup(&node).unwrap();
        assert!(u.groups.iter().any(|g| g == "system:nodes"));
        assert!(a.token_of(SCHEDULER).is_some());
        let b = ensure_tokens(&p, &["n0".into(), "n1".into()]).unwrap();
        assert_eq!(b.token_of("system:node:n0"), Some(node.as_str()));
        assert!(b.token_of("system:node:n1").is_some());
        let c = ensure_tokens(&p, &["n1".into()]).unwrap();
        assert!(
            c.lookup(&node).is_none(),
            "a node taken out loses its token"
        );
        assert_eq!(c.admin_token(), Some("old"));
    }
}
