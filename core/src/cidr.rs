//! An IP network in CIDR notation (`10.244.0.0/16`, `fd00::/48`), as the node IPAM
//! controller, the agent's pod network and the proxy read flags and Node `spec.podCIDRs`:
//! parsed as kube's `ParseCIDRSloppy`
//! (host bits are allowed and dropped: `10.244.1.7/24` is `10.244.1.0/24`), compared and
//! shown by its network address. Pure; every arithmetic step is checked or bounded by
//! the prefix, whatever a Node carries.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IP family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// Address bits: 32 or 128.
    pub fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// A network: its family, network address (host bits zero) and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    family: Family,
    /// The address as a number, host bits cleared (an IPv4 address in the low 32 bits).
    base: u128,
    prefix: u8,
}

/// Why a string is not a CIDR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CIDR {value:?}: {reason}")]
pub struct ParseError {
    pub value: String,
    pub reason: &'static str,
}

impl Cidr {
    /// The network of `ip`/`prefix`, host bits dropped; None if the prefix is longer than
    /// the family's address.
    pub fn new(ip: IpAddr, prefix: u8) -> Option<Self> {
        let (family, raw) = match ip {
            IpAddr::V4(a) => (Family::V4, u128::from(u32::from(a))),
            IpAddr::V6(a) => (Family::V6, u128::from(a)),
        };
        if prefix > family.bits() {
            return None;
        }
        Some(Self {
            family,
            base: raw & mask(family, prefix),
            prefix,
        })
    }

    pub fn family(&self) -> Family {
        self.family
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The network address.
    pub fn network(&self) -> IpAddr {
        match self.family {
            // The base of an IPv4 network fits 32 bits by construction.
            Family::V4 => IpAddr::V4(Ipv4Addr::from(u32::try_from(self.base).unwrap_or(u32::MAX))),
            Family::V6 => IpAddr::V6(Ipv6Addr::from(self.base)),
        }
    }

    /// The network address as a number (in the low 32 bits for IPv4).
    pub fn base(&self) -> u128 {
        self.base
    }

    /// The network of `family` at `base`/`prefix` (host bits dropped).
    pub fn from_base(family: Family, base: u128, prefix: u8) -> Option<Self> {
        if prefix > family.bits() || (family == Family::V4 && base > u128::from(u32::MAX)) {
            return None;
        }
        Some(Self {
            family,
            base: base & mask(family, prefix),
            prefix,
        })
    }

    /// The last address of the network, as a number.
    pub fn last(&self) -> u128 {
        self.base | !mask(self.family, self.prefix) & full(self.family)
    }

    /// Whether every address of `other` is in `self`.
    pub fn contains(&self, other: &Cidr) -> bool {
        self.family == other.family
            && other.prefix >= self.prefix
            && other.base & mask(self.family, self.prefix) == self.base
    }

    /// Whether `ip` is in the network.
    pub fn contains_ip(&self, ip: IpAddr) -> bool {
        Cidr::new(ip, self.family.bits()).is_some_and(|one| self.contains(&one))
    }

    /// Whether the two networks share an address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other) || other.contains(self)
    }
}

/// The family's all-ones address.
fn full(family: Family) -> u128 {
    match family {
        Family::V4 => u128::from(u32::MAX),
        Family::V6 => u128::MAX,
    }
}

/// The netmask of `prefix` (at most the family's bits) as a number.
fn mask(family: Family, prefix: u8) -> u128 {
    let host = u32::from(family.bits().saturating_sub(prefix));
    // A shift by 128 is out of range: a /0 keeps no bits.
    let ones = u128::MAX.checked_shl(host).unwrap_or(0);
    ones & full(family)
}

impl FromStr for Cidr {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let err = |reason| ParseError {
            value: s.to_string(),
            reason,
        };
        let (ip, prefix) = s.split_once('/').ok_or_else(|| err("no prefix length"))?;
        let ip: IpAddr = ip.parse().map_err(|_| err("not an IP address"))?;
        // Digits only, as Go's ParseCIDR (no sign, no spaces); at most 3 of them.
        if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("the prefix length is not a number"));
        }
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| err("the prefix length is out of range"))?;
        Cidr::new(ip, prefix).ok_or_else(|| err("the prefix length is out of range"))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

/// A Node's pod CIDRs as written: `spec.podCIDRs`, else `[spec.podCIDR]` when set (the
/// single field predates the list; kube keeps both and reads them so).
pub fn node_pod_cidrs(node: &k8s_openapi::api::core::v1::Node) -> Vec<String> {
    let spec = node.spec.as_ref();
    let many = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
    if !many.is_empty() {
        return many;
    }
    spec.and_then(|s| s.pod_cidr.clone())
        .filter(|c| !c.is_empty())
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_as_kube_sloppily_dropping_host_bits() {
        assert_eq!(c("10.244.1.7/24").to_string(), "10.244.1.0/24");
        assert_eq!(c("10.244.0.0/16").prefix(), 16);
        assert_eq!(c("fd00:1::5/48").to_string(), "fd00:1::/48");
        assert_eq!(c("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(c("::/0").to_string(), "::/0");
        assert_eq!(c("1.2.3.4/32").to_string(), "1.2.3.4/32");
        for bad in [
            "",
            "10.0.0.0",
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.0.0.0/+8",
            "10.0.0.0/ 8",
            "10.0.0/8",
            "::/129",
            "x/8",
            "10.0.0.0/99999999999999999999",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn containment_and_overlap() {
        let cluster = c("10.244.0.0/16");
        assert!(cluster.contains(&c("10.244.3.0/24")));
        assert!(!cluster.contains(&c("10.245.0.0/24")));
        assert!(!cluster.contains(&c("10.0.0.0/8")));
        assert!(cluster.overlaps(&c("10.0.0.0/8")));
        assert!(!cluster.overlaps(&c("10.96.0.0/12")));
        assert!(!cluster.contains(&c("fd00::/64")));
        assert_eq!(
            c("10.244.0.0/16").last(),
            u128::from(u32::from(Ipv4Addr::new(10, 244, 255, 255)))
        );
        assert_eq!(c("::/0").last(), u128::MAX);
    }
}
