//! The pod network: one Docker bridge network per name, shared by the agents of a machine.

use hyper::Method;
use jiff::Timestamp;
use serde_json::json;

use super::client::{enc, Docker, DockerError};

/// The id of the pod network, created when missing. Docker allows several networks of
/// one name and then refuses to start containers on any of them ("is ambiguous"), so
/// agents of this machine create it under a machine-wide lock, and a duplicate found
/// anyway (left by something else) is removed when nothing uses it; the oldest stays.
pub(super) async fn ensure(
    docker: &Docker,
    name: &str,
) -> std::result::Result<String, DockerError> {
    let _lock = network_lock(name).await;
    let mut found = list_networks(docker, name).await?;
    if found.is_empty() {
        let body = json!({
            "Name": name,
            "Driver": "bridge",
            "CheckDuplicate": true,
            "Labels": {"flotilla": "pod-network"},
        });
        match docker
            .json(Method::POST, "/networks/create", Some(&body))
            .await
        {
            Ok(_) => tracing::info!(network = name, "pod network created"),
            Err(e) if e.status() == Some(409) => {}
            Err(e) => return Err(e),
        }
        found = list_networks(docker, name).await?;
    }
    let Some((_, chosen)) = found.first().cloned() else {
        return Err(DockerError::Protocol(format!("network {name} vanished")));
    };
    for (_, dup) in found.iter().skip(1) {
        match docker
            .json(Method::DELETE, &format!("/networks/{dup}"), None)
            .await
        {
            Ok(_) => tracing::warn!(network = name, id = %dup, "removed a duplicate pod network"),
            Err(e) => {
                return Err(DockerError::Protocol(format!(
                    "{} networks are named {name} and {dup} cannot be removed ({e}); \
                     Docker starts no container on an ambiguous name",
                    found.len()
                )))
            }
        }
    }
    Ok(chosen)
}

/// The networks named exactly `name`, oldest first (creation time, then id).
async fn list_networks(
    docker: &Docker,
    name: &str,
) -> std::result::Result<Vec<(Timestamp, String)>, DockerError> {
    let filters = json!({ "name": [name] }).to_string();
    let path = format!("/networks?filters={}", enc(&filters));
    let v = docker.json(Method::GET, &path, None).await?;
    let mut found: Vec<(Timestamp, String)> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n.get("Name").and_then(|x| x.as_str()) == Some(name))
        .filter_map(|n| {
            let created = n.get("Created")?.as_str()?.parse().ok()?;
            Some((created, n.get("Id")?.as_str()?.to_string()))
        })
        .collect();
    found.sort();
    Ok(found)
}

/// An exclusive lock on the pod network's name, shared by every agent of the machine,
/// released when dropped. Without a writable lock directory, no lock (and duplicates are
/// still cleaned up after the fact).
async fn network_lock(name: &str) -> Option<std::fs::File> {
    let name = name.to_string();
    tokio::task::spawn_blocking(move || {
        let dir = std::path::Path::new("/run/flotilla");
        std::fs::create_dir_all(dir).ok()?;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("network-{}.lock", enc(&name))))
            .ok()?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive).ok()?;
        Some(f)
    })
    .await
    .ok()
    .flatten()
}
