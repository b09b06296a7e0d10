//! The proxy's only contact with the kernel: the `nft` and `conntrack` commands (nftables'
//! own front end parses and validates the ruleset language; a transaction is one `nft -f -`
//! run). Every call is bounded in time and its failure is an error carrying the command's
//! stderr; nothing here retries (the sync loop does, with backoff).

use std::time::Duration;

use component_base::command::CommandError;

use crate::transaction::Existing;

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error(transparent)]
    Command(#[from] component_base::command::CommandError),
    #[error("reading nft's listing: {0}")]
    Listing(String),
}

/// A transaction of 10,000 Services takes well under this.
const NFT_TIMEOUT: Duration = Duration::from_secs(60);

async fn run(
    cmd: &'static str,
    args: &[&str],
    stdin: Option<&str>,
    timeout: Duration,
) -> Result<String, KernelError> {
    Ok(component_base::command::run(cmd, args, stdin, timeout).await?)
}

/// Applies one transaction atomically.
pub async fn apply(transaction: &str) -> Result<(), KernelError> {
    run("nft", &["-f", "-"], Some(transaction), NFT_TIMEOUT).await?;
    Ok(())
}

/// Checks a transaction against the kernel without applying it.
pub async fn check(transaction: &str) -> Result<(), KernelError> {
    run("nft", &["-c", "-f", "-"], Some(transaction), NFT_TIMEOUT).await?;
    Ok(())
}

/// The objects of `table` in the kernel; none when the table does not exist.
pub async fn existing(table: &str) -> Result<Existing, KernelError> {
    let out = match run(
        "nft",
        &["-j", "list", "table", "ip", table],
        None,
        NFT_TIMEOUT,
    )
    .await
    {
        Ok(o) => o,
        Err(KernelError::Command(CommandError::Failed { stderr, .. }))
            if stderr.contains("No such file") =>
        {
            return Ok(Existing::default())
        }
        Err(e) => return Err(e),
    };
    parse_listing(&out)
}

/// Names of chains, sets and maps in `nft -j list table` output.
pub fn parse_listing(json: &str) -> Result<Existing, KernelError> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| KernelError::Listing(e.to_string()))?;
    let mut ex = Existing::default();
    for item in v
        .get("nftables")
        .and_then(|n| n.as_array())
        .ok_or_else(|| KernelError::Listing("no \"nftables\" array".into()))?
    {
        let name = |o: &serde_json::Value| o.get("name").and_then(|n| n.as_str()).map(String::from);
        if let Some(n) = item.get("chain").and_then(name) {
            ex.chains.insert(n);
        } else if let Some(n) = item.get("map").and_then(name) {
            ex.maps.insert(n);
        } else if let Some(n) = item.get("set").and_then(name) {
            ex.sets.insert(n);
        }
    }
    Ok(ex)
}

/// This host's IPv4 addresses outside 127.0.0.0/8 (`ip -j -4 addr show`).
pub async fn local_ipv4() -> Result<Vec<std::net::Ipv4Addr>, KernelError> {
    let out = run(
        "ip",
        &["-j", "-4", "addr", "show"],
        None,
        Duration::from_secs(10),
    )
    .await?;
    parse_addresses(&out)
}

/// The `local` addresses of `ip -j addr show` output, loopback ones left out.
pub fn parse_addresses(json: &str) -> Result<Vec<std::net::Ipv4Addr>, KernelError> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| KernelError::Listing(e.to_string()))?;
    let mut out: Vec<std::net::Ipv4Addr> = v
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|link| {
            link.get("addr_info")
                .and_then(|a| a.as_array())
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|a| a.get("local")?.as_str()?.parse().ok())
        .filter(|ip: &std::net::Ipv4Addr| !ip.is_loopback())
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// Removes `table` (kube-proxy's `--cleanup`); absent is fine.
pub async fn delete_table(table: &str) -> Result<(), KernelError> {
    match run("nft", &["delete", "table", "ip", table], None, NFT_TIMEOUT).await {
        Err(KernelError::Command(CommandError::Failed { stderr, .. }))
            if stderr.contains("No such file") =>
        {
            Ok(())
        }
        r => r.map(|_| ()),
    }
}

/// Whether this kernel can NAT SCTP (checked once, in a throwaway table, without
/// changing anything).
pub async fn sctp_supported() -> bool {
    let probe = "table ip flotilla-sctp-probe {\n chain c { type nat hook prerouting priority -100; meta l4proto sctp dnat to 127.0.0.1:9 }\n}\n";
    match check(probe).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "SCTP Services will get no rules on this node");
            false
        }
    }
}

/// Forgets the UDP conntrack entries that still send `service:port` traffic to
/// `endpoint`, so clients move to another endpoint instead of sending into a void
/// (kube-proxy's stale-UDP cleanup). No entries is not an error.
pub async fn forget_udp(service: std::net::Ipv4Addr, port: u16, endpoint: std::net::Ipv4Addr) {
    let (s, p, e) = (service.to_string(), port.to_string(), endpoint.to_string());
    let args = [
        "-D",
        "-p",
        "udp",
        "--orig-dst",
        &s,
        "--orig-port-dst",
        &p,
        "--dst-nat",
        &e,
    ];
    match run("conntrack", &args, None, Duration::from_secs(10)).await {
        Ok(_) => {}
        // conntrack exits 1 when it deleted nothing.
        Err(KernelError::Command(CommandError::Failed { stderr, .. }))
            if stderr.contains("0 flow entries") => {}
        Err(e) => {
            tracing::warn!(error = %e, service = %s, port, endpoint = %e, "flushing stale UDP conntrack entries")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_names_every_object() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
            {"table": {"family": "ip", "name": "t", "handle": 1}},
            {"chain": {"family": "ip", "table": "t", "name": "services", "handle": 2}},
            {"map": {"family": "ip", "table": "t", "name": "service-ips", "type": ["ipv4_addr"], "map": "verdict"}},
            {"set": {"family": "ip", "table": "t", "name": "cluster-ips", "type": "ipv4_addr"}},
            {"rule": {"family": "ip", "table": "t", "chain": "services", "expr": []}}]}"#;
        let ex = parse_listing(json).unwrap();
        assert!(ex.chains.contains("services"));
        assert!(ex.maps.contains("service-ips"));
        assert!(ex.sets.contains("cluster-ips"));
        assert_eq!(ex.chains.len(), 1);
    }

    #[test]
    fn local_addresses_without_loopback() {
        let json = r#"[{"ifindex":1,"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},
            {"ifindex":2,"ifname":"eth0","addr_info":[{"family":"inet","local":"192.0.2.4","prefixlen":24}]},
            {"ifindex":3,"ifname":"br0","addr_info":[]}]"#;
        assert_eq!(
            parse_addresses(json).unwrap(),
            vec![std::net::Ipv4Addr::new(192, 0, 2, 4)]
        );
    }

    #[test]
    fn garbage_listing_is_an_error() {
        assert!(parse_listing("not json").is_err());
        assert!(parse_listing("{}").is_err());
    }
}
