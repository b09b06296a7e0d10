//! The pod network of a node: one Docker bridge network per podCIDR, named from it
//! (`<prefix>-10.244.1.0-24`), with that subnet, the first address as gateway, a bridge
//! named from the CIDR (`plan::bridge_name`) and Docker's masquerade off (the agent's
//! nftables table masquerades only traffic leaving the cluster network, `podnet/`).

use hyper::Method;
use jiff::Timestamp;
use serde_json::{json, Value};

use super::client::{enc, Docker, DockerError};
use crate::podnet::plan::{bridge_name, Cidr};

/// The id of the network `name` for `subnet`, created when missing. An existing network of
/// that name with another subnet is an error naming it; so is Docker's refusal of a
/// subnet overlapping another network's. Docker allows several networks of one name and
/// then refuses to start containers on any of them ("is ambiguous"), so agents of this
/// machine create it under a machine-wide lock, and a duplicate found anyway (left by
/// something else) is removed when nothing uses it; the oldest stays.
pub(super) async fn ensure(
    docker: &Docker,
    name: &str,
    subnet: &Cidr,
) -> std::result::Result<String, DockerError> {
    let _lock = network_lock(name).await;
    let mut found = list_networks(docker, name).await?;
    if found.is_empty() {
        let body = json!({
            "Name": name,
            "Driver": "bridge",
            "CheckDuplicate": true,
            "IPAM": {"Driver": "default", "Config": [
                {"Subnet": subnet.to_string(), "Gateway": subnet.gateway().to_string()}
            ]},
            "Options": {
                "com.docker.network.bridge.name": bridge_name(subnet),
                "com.docker.network.bridge.enable_ip_masquerade": "false",
            },
            "Labels": {"flotilla": "pod-network", "flotilla.pod-cidr": subnet.to_string()},
        });
        match docker
            .json(Method::POST, "/networks/create", Some(&body))
            .await
        {
            Ok(_) => tracing::info!(network = name, %subnet, "pod network created"),
            Err(e) if e.status() == Some(409) => {}
            Err(e) => {
                return Err(DockerError::Protocol(format!(
                    "Docker refused to create network {name} with subnet {subnet}: {e}{}",
                    if e.to_string().contains("overlap") {
                        " (another Docker network on this machine overlaps it: a podCIDR \
                         must not overlap any other Docker network's subnet)"
                    } else {
                        ""
                    }
                )))
            }
        }
        found = list_networks(docker, name).await?;
    }
    let Some((_, chosen, subnets)) = found.first().cloned() else {
        return Err(DockerError::Protocol(format!("network {name} vanished")));
    };
    let want = subnet.to_string();
    if !subnets.iter().any(|s| *s == want) {
        return Err(DockerError::Protocol(format!(
            "Docker network {name} exists with subnet(s) {subnets:?}, not {want}; \
             remove it (docker network rm {name}) or give the node another podCIDR"
        )));
    }
    for (_, dup, _) in found.iter().skip(1) {
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

/// The networks named exactly `name`, oldest first (creation time, then id), with their
/// IPAM subnets.
async fn list_networks(
    docker: &Docker,
    name: &str,
) -> std::result::Result<Vec<(Timestamp, String, Vec<String>)>, DockerError> {
    let filters = json!({ "name": [name] }).to_string();
    let path = format!("/networks?filters={}", enc(&filters));
    let v = docker.json(Method::GET, &path, None).await?;
    let mut found: Vec<(Timestamp, String, Vec<String>)> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n.get("Name").and_then(|x| x.as_str()) == Some(name))
        .filter_map(|n| {
            let created = n.get("Created")?.as_str()?.parse().ok()?;
            let subnets = n
                .pointer("/IPAM/Config")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| c.get("Subnet")?.as_str().map(String::from))
                .collect();
            Some((created, n.get("Id")?.as_str()?.to_string(), subnets))
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
