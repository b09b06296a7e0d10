//! kube-system/extension-apiserver-authentication: what an aggregated API server (the
//! sample-apiserver, metrics-server) reads to trust this apiserver as its front proxy:
//! the CA of the front-proxy client certificate (`--requestheader-client-ca-file`), the
//! names it may carry (`--requestheader-allowed-names`) and the headers the user comes
//! in. Every apiserver writes it at start (kube's ClusterAuthenticationTrust controller);
//! they write the same.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::error::ApiError;
use crate::store::{Store, Target, Write};

pub const NAME: &str = "extension-apiserver-authentication";

/// The ConfigMap for the front-proxy CA (PEM) and the allowed client names.
pub fn config_map(ca_pem: &str, allowed_names: &[String]) -> Value {
    let list = |v: &[&str]| serde_json::to_string(v).unwrap_or_default();
    let names: Vec<&str> = allowed_names.iter().map(String::as_str).collect();
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": NAME, "namespace": "kube-system"},
        "data": {
            "requestheader-client-ca-file": ca_pem,
            "requestheader-allowed-names": list(&names),
            "requestheader-username-headers": list(&["X-Remote-User"]),
            "requestheader-group-headers": list(&["X-Remote-Group"]),
            "requestheader-extra-headers-prefix": list(&["X-Remote-Extra-"]),
        }
    })
}

/// Creates or updates the ConfigMap until it holds `want` (retrying while kube-system
/// does not exist yet or the store is unavailable).
pub async fn publish(store: Arc<Store>, want: Value) {
    loop {
        match write(&store, &want).await {
            Ok(()) => return,
            Err(e) => {
                tracing::debug!(error = %e, "{NAME}: will retry");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn write(store: &Store, want: &Value) -> Result<(), ApiError> {
    let kind = store
        .kinds
        .find("", "v1", "configmaps")
        .ok_or(ApiError::NoRoute)?;
    let collection = Target {
        kind: kind.clone(),
        namespace: Some("kube-system".into()),
        name: None,
    };
    let w = Write::new("kube-apiserver", false);
    let body = serde_json::to_vec(want).unwrap_or_default();
    match store.create(&collection, &body, &w).await {
        Ok(_) => return Ok(()),
        Err(ApiError::AlreadyExists { .. }) => {}
        Err(e) => return Err(e),
    }
    let one = Target {
        name: Some(NAME.into()),
        ..collection
    };
    let current: Value = serde_json::from_slice(&store.get(&one, None).await?)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    if current["data"] == want["data"] {
        return Ok(());
    }
    let mut next = want.clone();
    next["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
    store
        .update(
            &one,
            &serde_json::to_vec(&next).unwrap_or_default(),
            None,
            &w,
        )
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    #[test]
    fn headers_are_json_lists_as_kube_writes_them() {
        let cm = super::config_map("PEM", &["front-proxy-client".into()]);
        assert_eq!(
            cm["data"]["requestheader-allowed-names"],
            r#"["front-proxy-client"]"#
        );
        assert_eq!(
            cm["data"]["requestheader-username-headers"],
            r#"["X-Remote-User"]"#
        );
        assert_eq!(cm["data"]["requestheader-client-ca-file"], "PEM");
    }
}
