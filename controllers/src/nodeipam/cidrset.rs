//! The ranges of one cluster CIDR, as kube's `cidrset`: the cluster CIDR cut into node
//! ranges of one prefix length (`10.244.0.0/16` into 256 `/24`s), each free or occupied.
//!
//! Guarantees: [`CidrSet::allocate_next`] never returns a range that is occupied, and
//! scans from just after the last one it gave out (kube's `nextCandidate`), so a released
//! range is reused only after the others have been tried; it returns None when every
//! range is occupied. [`CidrSet::occupy`] marks the ranges a network covers, of any
//! prefix (a node's `/23`, or a `/8` over the whole cluster, clipped to it); an occupied
//! range counts its holders, so a range two nodes claim stays occupied until both
//! released it. At most 2^[`MAX_NODE_BITS`] ranges per set; all index arithmetic is
//! checked.

use std::collections::BTreeMap;

use flotilla_core::cidr::Cidr;

/// kube's bound: the node prefix may be at most 16 bits longer than the cluster's.
pub const MAX_NODE_BITS: u8 = 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("the node CIDR mask size /{node_prefix} must be longer than the cluster CIDR {cluster}'s prefix and at most {bits} bits")]
    MaskSize {
        cluster: Cidr,
        node_prefix: u8,
        bits: u8,
    },
    #[error("the node CIDR mask size /{node_prefix} cuts the cluster CIDR {cluster} into too many ranges: the mask size may be at most 16 more than the cluster prefix")]
    TooManyRanges { cluster: Cidr, node_prefix: u8 },
    #[error("{cidr} is outside the cluster CIDR {cluster}")]
    Outside { cidr: Cidr, cluster: Cidr },
}

/// One cluster CIDR's node ranges: see the module's guarantees.
#[derive(Debug, Clone)]
pub struct CidrSet {
    cluster: Cidr,
    node_prefix: u8,
    /// How many node ranges there are: 2^(node prefix - cluster prefix), at most 2^16.
    max: u32,
    /// Occupied ranges by index, with how many holders each has (at least 1).
    used: BTreeMap<u32, u32>,
    /// Where the next scan for a free range starts.
    next_candidate: u32,
}

impl CidrSet {
    pub fn new(cluster: Cidr, node_prefix: u8) -> Result<Self, Error> {
        let bits = cluster.family().bits();
        if node_prefix <= cluster.prefix() || node_prefix > bits {
            return Err(Error::MaskSize {
                cluster,
                node_prefix,
                bits,
            });
        }
        let node_bits = node_prefix - cluster.prefix();
        if node_bits > MAX_NODE_BITS {
            return Err(Error::TooManyRanges {
                cluster,
                node_prefix,
            });
        }
        Ok(Self {
            cluster,
            node_prefix,
            max: 1u32 << node_bits,
            used: BTreeMap::new(),
            next_candidate: 0,
        })
    }

    pub fn cluster(&self) -> Cidr {
        self.cluster
    }

    pub fn node_prefix(&self) -> u8 {
        self.node_prefix
    }

    /// How many node ranges the set has.
    pub fn capacity(&self) -> u32 {
        self.max
    }

    /// How many node ranges are occupied.
    pub fn occupied(&self) -> usize {
        self.used.len()
    }

    /// Whether `cidr` is one node range of this set (the right prefix, inside).
    pub fn is_node_range(&self, cidr: &Cidr) -> bool {
        cidr.prefix() == self.node_prefix && self.cluster.contains(cidr)
    }

    /// The first free range from just after the last one given out, now occupied (one
    /// holder); None when all are occupied.
    pub fn allocate_next(&mut self) -> Option<Cidr> {
        for i in 0..self.max {
            let candidate = self.next_candidate.checked_add(i)? % self.max;
            if self.used.contains_key(&candidate) {
                continue;
            }
            let cidr = self.range(candidate)?;
            self.used.insert(candidate, 1);
            self.next_candidate = candidate.checked_add(1)? % self.max;
            return Some(cidr);
        }
        None
    }

    /// Adds a holder to every range `cidr` covers (clipped to the cluster CIDR); an error,
    /// and nothing marked, if it shares no address with the cluster CIDR.
    pub fn occupy(&mut self, cidr: &Cidr) -> Result<(), Error> {
        let (first, last) = self.indices(cidr)?;
        for i in first..=last {
            let n = self.used.entry(i).or_insert(0);
            *n = n.saturating_add(1);
        }
        Ok(())
    }

    /// Removes a holder from every range `cidr` covers; a range with none left is free.
    pub fn release(&mut self, cidr: &Cidr) -> Result<(), Error> {
        let (first, last) = self.indices(cidr)?;
        for i in first..=last {
            if let Some(n) = self.used.get_mut(&i) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.used.remove(&i);
                }
            }
        }
        Ok(())
    }

    /// The node range at `index`.
    fn range(&self, index: u32) -> Option<Cidr> {
        let host = self.cluster.family().bits().checked_sub(self.node_prefix)?;
        let offset = u128::from(index).checked_shl(u32::from(host))?;
        let base = self.cluster.base().checked_add(offset)?;
        Cidr::from_base(self.cluster.family(), base, self.node_prefix)
    }

    /// The first and last node range indices `cidr` covers.
    fn indices(&self, cidr: &Cidr) -> Result<(u32, u32), Error> {
        let outside = || Error::Outside {
            cidr: *cidr,
            cluster: self.cluster,
        };
        if !self.cluster.overlaps(cidr) {
            return Err(outside());
        }
        let lo = cidr.base().max(self.cluster.base());
        let hi = cidr.last().min(self.cluster.last());
        let host = u32::from(
            self.cluster
                .family()
                .bits()
                .checked_sub(self.node_prefix)
                .ok_or_else(outside)?,
        );
        let index = |a: u128| -> Result<u32, Error> {
            let off = a.checked_sub(self.cluster.base()).ok_or_else(outside)?;
            let i = off.checked_shr(host).unwrap_or(0);
            u32::try_from(i)
                .ok()
                .filter(|i| *i < self.max)
                .ok_or_else(outside)
        };
        Ok((index(lo)?, index(hi)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn set(cluster: &str, prefix: u8) -> CidrSet {
        CidrSet::new(c(cluster), prefix).unwrap()
    }

    #[test]
    fn allocates_in_order_until_full() {
        let mut s = set("10.244.0.0/22", 24);
        assert_eq!(s.capacity(), 4);
        let got: Vec<String> = (0..4)
            .map(|_| s.allocate_next().unwrap().to_string())
            .collect();
        assert_eq!(
            got,
            [
                "10.244.0.0/24",
                "10.244.1.0/24",
                "10.244.2.0/24",
                "10.244.3.0/24"
            ]
        );
        assert_eq!(s.allocate_next(), None, "full");
        assert_eq!(s.occupied(), 4);
    }

    #[test]
    fn a_released_range_is_reused_after_the_others_were_tried() {
        let mut s = set("10.244.0.0/22", 24);
        let a = s.allocate_next().unwrap();
        let b = s.allocate_next().unwrap();
        s.release(&a).unwrap();
        // Starts after the last one given out: 2, 3, then wraps to 0 (a).
        assert_eq!(s.allocate_next().unwrap(), c("10.244.2.0/24"));
        assert_eq!(s.allocate_next().unwrap(), c("10.244.3.0/24"));
        assert_eq!(s.allocate_next().unwrap(), a);
        assert_eq!(s.allocate_next(), None);
        s.release(&b).unwrap();
        assert_eq!(s.allocate_next().unwrap(), b);
    }

    #[test]
    fn ranges_given_out_before_are_never_given_again() {
        let mut s = set("10.244.0.0/22", 24);
        s.occupy(&c("10.244.0.0/24")).unwrap();
        s.occupy(&c("10.244.2.0/24")).unwrap();
        assert_eq!(s.allocate_next().unwrap(), c("10.244.1.0/24"));
        assert_eq!(s.allocate_next().unwrap(), c("10.244.3.0/24"));
        assert_eq!(s.allocate_next(), None);
        // A wider network occupies every range it covers; a narrower one its range.
        let mut s = set("10.244.0.0/22", 24);
        s.occupy(&c("10.244.2.0/23")).unwrap();
        s.occupy(&c("10.244.0.128/25")).unwrap();
        assert_eq!(s.allocate_next().unwrap(), c("10.244.1.0/24"));
        assert_eq!(s.allocate_next(), None);
        // One covering the whole cluster, clipped.
        let mut s = set("10.244.0.0/22", 24);
        s.occupy(&c("10.0.0.0/8")).unwrap();
        assert_eq!(s.occupied(), 4);
        assert_eq!(s.allocate_next(), None);
    }

    #[test]
    fn a_range_two_holders_claim_stays_occupied_until_both_released_it() {
        let mut s = set("10.244.0.0/23", 24);
        let a = c("10.244.0.0/24");
        s.occupy(&a).unwrap();
        s.occupy(&a).unwrap();
        s.release(&a).unwrap();
        assert_eq!(s.allocate_next().unwrap(), c("10.244.1.0/24"));
        assert_eq!(s.allocate_next(), None);
        s.release(&a).unwrap();
        assert_eq!(s.allocate_next().unwrap(), a);
        // Releasing what is free changes nothing.
        s.release(&c("10.244.1.0/24")).unwrap();
        s.release(&c("10.244.1.0/24")).unwrap();
        assert_eq!(s.occupied(), 1);
    }

    #[test]
    fn networks_outside_the_cluster_cidr_are_refused_and_mark_nothing() {
        let mut s = set("10.244.0.0/16", 24);
        for out in [
            "10.245.0.0/24",
            "192.168.0.0/16",
            "fd00::/64",
            "10.243.255.0/24",
        ] {
            assert!(
                matches!(s.occupy(&c(out)), Err(Error::Outside { .. })),
                "{out}"
            );
            assert!(s.release(&c(out)).is_err());
        }
        assert_eq!(s.occupied(), 0);
    }

    #[test]
    fn the_node_mask_must_be_longer_and_bounded() {
        assert!(matches!(
            CidrSet::new(c("10.244.0.0/16"), 16),
            Err(Error::MaskSize { .. })
        ));
        assert!(matches!(
            CidrSet::new(c("10.244.0.0/16"), 33),
            Err(Error::MaskSize { .. })
        ));
        assert!(matches!(
            CidrSet::new(c("10.0.0.0/8"), 25),
            Err(Error::TooManyRanges { .. })
        ));
        assert_eq!(set("10.0.0.0/8", 24).capacity(), 65536);
        assert_eq!(set("0.0.0.0/16", 32).capacity(), 65536);
        // IPv6: /48 into /64s; the last range is the cluster's last /64.
        let mut v6 = set("fd00:0:0::/48", 64);
        assert_eq!(v6.allocate_next().unwrap(), c("fd00::/64"));
        v6.occupy(&c("fd00:0:0:ffff::/64")).unwrap();
        assert!(v6.occupy(&c("fd00:0:1::/64")).is_err());
        // The top of the address space.
        let mut top = set("ffff:ffff:ffff:ffff:ffff:ffff:ffff:0/112", 128);
        top.occupy(&c("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"))
            .unwrap();
        let mut top4 = set("255.255.255.0/24", 32);
        for _ in 0..255 {
            assert!(top4.allocate_next().is_some());
        }
        assert_eq!(top4.allocate_next().unwrap(), c("255.255.255.255/32"));
        assert_eq!(top4.allocate_next(), None);
    }
}
