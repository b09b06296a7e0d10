//! The node IPAM flags, validated (`--cluster-cidr`, `--node-cidr-mask-size`,
//! `--node-cidr-mask-size-ipv6`, `--service-cluster-ip-range`, read only with
//! `--allocate-node-cidrs`): an IPv4 cluster CIDR, optionally followed by an IPv6 one,
//! each cut into node ranges kube accepts (longer than the cluster prefix, at most 16 bits
//! more), none overlapping a Service range. Pure.

use super::cidrset::CidrSet;
use flotilla_core::cidr::{Cidr, Family};

/// One set of ranges per cluster CIDR (IPv4 first).
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Each cluster CIDR with the prefix length of its node ranges.
    pub cluster_cidrs: Vec<(Cidr, u8)>,
}

impl Config {
    /// The flags' values, or an error naming the flag at fault.
    pub fn from_flags(
        cluster_cidr: &str,
        node_cidr_mask_size: u8,
        node_cidr_mask_size_ipv6: u8,
        service_cluster_ip_range: &str,
    ) -> Result<Self, String> {
        let clusters = cidrs("--cluster-cidr", cluster_cidr)?;
        match clusters.iter().map(Cidr::family).collect::<Vec<_>>()[..] {
            [Family::V4] | [Family::V4, Family::V6] => {}
            [] => return Err("--allocate-node-cidrs needs a --cluster-cidr".into()),
            _ => {
                return Err(format!(
                    "--cluster-cidr {cluster_cidr:?}: an IPv4 CIDR, optionally followed by an IPv6 one (dual-stack)"
                ))
            }
        }
        let services = cidrs("--service-cluster-ip-range", service_cluster_ip_range)?;
        let mut cluster_cidrs = Vec::new();
        for c in clusters {
            let (flag, size) = match c.family() {
                Family::V4 => ("--node-cidr-mask-size", node_cidr_mask_size),
                Family::V6 => ("--node-cidr-mask-size-ipv6", node_cidr_mask_size_ipv6),
            };
            CidrSet::new(c, size).map_err(|e| format!("{flag} {size}: {e}"))?;
            if let Some(s) = services.iter().find(|s| s.overlaps(&c)) {
                return Err(format!(
                    "--cluster-cidr {c} overlaps --service-cluster-ip-range {s}: pods and Services need distinct ranges"
                ));
            }
            cluster_cidrs.push((c, size));
        }
        Ok(Self { cluster_cidrs })
    }

    /// Fresh, empty ranges (for a leadership term).
    pub fn sets(&self) -> Vec<CidrSet> {
        self.cluster_cidrs
            .iter()
            .filter_map(|(c, p)| CidrSet::new(*c, *p).ok())
            .collect()
    }
}

/// A `,`-separated list of CIDRs (empty entries skipped), or which one does not parse.
fn cidrs(flag: &str, value: &str) -> Result<Vec<Cidr>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<Cidr>().map_err(|e| format!("{flag}: {e}")))
        .collect()
}
