//! The kubeconfig `--write-kubeconfig` writes: the CA, the server URL and the admin token,
//! usable as is by kubectl and client libraries. JSON is valid YAML, so it is written as JSON.

use std::path::Path;

use base64::Engine;

pub fn render(server: &str, ca_pem: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem.as_bytes());
    let v = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "flotilla", "cluster": { "server": server, "certificate-authority-data": ca } }],
        "users": [{ "name": "admin", "user": { "token": token } }],
        "contexts": [{ "name": "flotilla", "context": { "cluster": "flotilla", "user": "admin", "namespace": "default" } }],
        "current-context": "flotilla",
        "preferences": {},
    });
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

pub fn write(path: &Path, server: &str, ca_pem: &str, token: &str) -> std::io::Result<()> {
    write_private(path, &render(server, ca_pem, token))
}

/// Replaces `path` with `contents`, readable by its owner only, in one rename (its
/// directory created when missing): for files that hold credentials.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    crate::private::replace(path, contents.as_bytes())
}
