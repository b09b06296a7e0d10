//! The kernel-facing part of the pod network: `iptables`, `nft` and `ip` run as commands.
//! Each function does one idempotent change or read; a failure is a [`CmdError`] naming
//! the command line and its stderr (the caller logs it and retries). Nothing here panics
//! or loops.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use super::plan::{self, Cidr, ROUTE_PROTO};

pub use component_base::command::CommandError as CmdError;

const TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `prog args` (with `stdin` when given) and returns its stdout.
async fn run(prog: &str, args: &[&str], stdin: Option<&str>) -> Result<String, CmdError> {
    component_base::command::run(prog, args, stdin, TIMEOUT).await
}

/// Makes sure DOCKER-USER accepts the cluster network's traffic (both directions), each
/// rule inserted once: checked with `iptables -C` first, under a machine-wide lock so two
/// agents of one cluster do not both insert it.
pub async fn ensure_docker_user(cluster_cidr: &Cidr) -> Result<(), CmdError> {
    let _lock = super::lock("iptables").await;
    for rule in plan::docker_user_rules(cluster_cidr) {
        let rule: Vec<&str> = rule.iter().map(String::as_str).collect();
        let check = [&["-w", "5", "-C", "DOCKER-USER"][..], &rule[..]].concat();
        if run("iptables", &check, None).await.is_ok() {
            continue;
        }
        let insert = [&["-w", "5", "-I", "DOCKER-USER"][..], &rule[..]].concat();
        run("iptables", &insert, None).await?;
        tracing::info!(rule = %rule.join(" "), "DOCKER-USER rule inserted");
    }
    Ok(())
}

/// Removes every copy of the cluster network's DOCKER-USER rules (for tests and
/// teardown; the agent itself leaves them, as other nodes of the cluster may need them).
pub async fn remove_docker_user(cluster_cidr: &Cidr) {
    let _lock = super::lock("iptables").await;
    for rule in plan::docker_user_rules(cluster_cidr) {
        let rule: Vec<&str> = rule.iter().map(String::as_str).collect();
        let delete = [&["-w", "5", "-D", "DOCKER-USER"][..], &rule[..]].concat();
        for _ in 0..16 {
            if run("iptables", &delete, None).await.is_err() {
                break;
            }
        }
    }
}

/// (Re)creates the node's egress masquerade table in one `nft -f -` transaction.
pub async fn apply_masquerade(pod_cidr: &Cidr, cluster_cidr: &Cidr) -> Result<(), CmdError> {
    run(
        "nft",
        &["-f", "-"],
        Some(&plan::nft_text(pod_cidr, cluster_cidr)),
    )
    .await
    .map(|_| ())
}

/// Removes the node's masquerade table (whether or not it exists).
pub async fn remove_masquerade(pod_cidr: &Cidr) -> Result<(), CmdError> {
    run("nft", &["-f", "-"], Some(&plan::nft_delete_text(pod_cidr)))
        .await
        .map(|_| ())
}

/// This host's IPv4 addresses.
pub async fn local_addrs() -> Result<BTreeSet<Ipv4Addr>, CmdError> {
    Ok(plan::parse_addrs(
        &run("ip", &["-o", "-4", "addr", "show"], None).await?,
    ))
}

/// The routes marked as ours, by destination, with their gateway.
pub async fn our_routes() -> Result<BTreeMap<Cidr, Option<Ipv4Addr>>, CmdError> {
    let proto = ROUTE_PROTO.to_string();
    Ok(plan::parse_routes(
        &run("ip", &["-4", "route", "show", "proto", &proto], None).await?,
    ))
}

pub async fn route_replace(dst: &Cidr, via: &Ipv4Addr) -> Result<(), CmdError> {
    let (dst, via, proto) = (dst.to_string(), via.to_string(), ROUTE_PROTO.to_string());
    run(
        "ip",
        &["route", "replace", &dst, "via", &via, "proto", &proto],
        None,
    )
    .await
    .map(|_| ())
}

pub async fn route_delete(dst: &Cidr) -> Result<(), CmdError> {
    let (dst, proto) = (dst.to_string(), ROUTE_PROTO.to_string());
    run("ip", &["route", "del", &dst, "proto", &proto], None)
        .await
        .map(|_| ())
}
