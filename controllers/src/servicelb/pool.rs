//! The load-balancer address pool and who holds what (pure): `--load-balancer-ip-range`
//! (a CIDR, whose network and broadcast addresses are skipped, or `first-last`) and the
//! decision for one Service of type LoadBalancer.
//!
//! Holders are read from the Services' `status.loadBalancer.ingress` (so a new leader
//! knows every address a former one gave out) plus the assignments this leader wrote
//! that its cache has not shown yet. When two Services show the same address, the older
//! keeps it and the other is given a new one.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// An inclusive range of IPv4 addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    first: u32,
    last: u32,
}

impl Pool {
    pub fn parse(s: &str) -> Result<Pool, String> {
        let ip = |a: &str| {
            a.trim()
                .parse::<Ipv4Addr>()
                .map(u32::from)
                .map_err(|_| format!("{a:?} is not an IPv4 address"))
        };
        if let Some((a, b)) = s.split_once('-') {
            let (first, last) = (ip(a)?, ip(b)?);
            if first > last {
                return Err(format!("{s:?}: the first address is after the last"));
            }
            return Ok(Pool { first, last });
        }
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is neither a CIDR nor first-last"))?;
        let prefix: u32 = p
            .parse()
            .ok()
            .filter(|p| (1..=32).contains(p))
            .ok_or_else(|| format!("{s:?}: prefix {p:?} is not 1-32"))?;
        let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
        let net = ip(a)? & mask;
        let bcast = net | !mask;
        // /31 and /32 have no network or broadcast address to skip.
        let (first, last) = if prefix >= 31 {
            (net, bcast)
        } else {
            (net + 1, bcast - 1)
        };
        Ok(Pool { first, last })
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (self.first..=self.last).contains(&u32::from(ip))
    }

    pub fn size(&self) -> u64 {
        u64::from(self.last - self.first) + 1
    }
}

/// One Service of type LoadBalancer that this controller serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// `ns/name`.
    pub key: String,
    /// Creation time then uid: older first.
    pub age: String,
    /// `spec.loadBalancerIP`, if any.
    pub wants: Option<Ipv4Addr>,
    /// The addresses in its status.
    pub has: Vec<Ipv4Addr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Its status is right.
    Keep,
    /// Write this address as its only ingress.
    Assign(Ipv4Addr),
    /// It cannot get an address: an Event with this reason and message.
    Refuse {
        reason: &'static str,
        message: String,
    },
}

/// Who holds each address of the pool: the oldest Service showing it, then the
/// assignments not yet seen (`pending`: address → key).
pub fn holders(
    claims: &[Claim],
    pool: &Pool,
    pending: &BTreeMap<Ipv4Addr, String>,
) -> BTreeMap<Ipv4Addr, String> {
    let mut order: Vec<&Claim> = claims.iter().collect();
    order.sort_by(|a, b| (&a.age, &a.key).cmp(&(&b.age, &b.key)));
    let mut out = BTreeMap::new();
    for c in order {
        for ip in c.has.iter().filter(|ip| pool.contains(**ip)) {
            out.entry(*ip).or_insert_with(|| c.key.clone());
        }
    }
    for (ip, key) in pending {
        out.entry(*ip).or_insert_with(|| key.clone());
    }
    out
}

/// What `me` should have, given who holds what.
pub fn decide(me: &Claim, pool: &Pool, held: &BTreeMap<Ipv4Addr, String>) -> Decision {
    let mine = |ip: &Ipv4Addr| held.get(ip) == Some(&me.key);
    if let Some(w) = me.wants {
        if me.has == [w] && mine(&w) {
            return Decision::Keep;
        }
        if !pool.contains(w) {
            return Decision::Refuse {
                reason: "LoadBalancerIPNotInRange",
                message: format!("spec.loadBalancerIP {w} is not in --load-balancer-ip-range"),
            };
        }
        return match held.get(&w) {
            Some(other) if other != &me.key => Decision::Refuse {
                reason: "LoadBalancerIPInUse",
                message: format!("{w} is already the address of {other}"),
            },
            _ => Decision::Assign(w),
        };
    }
    if me.has.len() == 1 && mine(&me.has[0]) {
        return Decision::Keep;
    }
    // Keep an address it holds (dropping others), else the lowest free one.
    if let Some(ip) = me.has.iter().find(|ip| mine(ip)) {
        return Decision::Assign(*ip);
    }
    let mut ip = pool.first;
    loop {
        let a = Ipv4Addr::from(ip);
        if !held.contains_key(&a) {
            return Decision::Assign(a);
        }
        if ip == pool.last {
            return Decision::Refuse {
                reason: "AllocationFailed",
                message: format!(
                    "no free address left in --load-balancer-ip-range ({} addresses)",
                    pool.size()
                ),
            };
        }
        ip += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn claim(key: &str, age: &str, wants: Option<&str>, has: &[&str]) -> Claim {
        Claim {
            key: key.into(),
            age: age.into(),
            wants: wants.map(ip),
            has: has.iter().map(|s| ip(s)).collect(),
        }
    }

    #[test]
    fn pools_parse() {
        let p = Pool::parse("198.18.0.0/30").unwrap();
        assert!(!p.contains(ip("198.18.0.0")) && p.contains(ip("198.18.0.1")));
        assert!(p.contains(ip("198.18.0.2")) && !p.contains(ip("198.18.0.3")));
        assert_eq!(p.size(), 2);
        assert_eq!(Pool::parse("10.0.0.5-10.0.0.7").unwrap().size(), 3);
        assert_eq!(Pool::parse("10.0.0.5/32").unwrap().size(), 1);
        assert!(Pool::parse("10.0.0.7-10.0.0.5").is_err());
        assert!(Pool::parse("10.0.0.0/0").is_err());
        assert!(Pool::parse("nonsense").is_err());
    }

    #[test]
    fn the_lowest_free_address_then_exhaustion() {
        let pool = Pool::parse("198.18.0.0/30").unwrap();
        let a = claim("d/a", "1", None, &["198.18.0.1"]);
        let b = claim("d/b", "2", None, &[]);
        let held = holders(&[a.clone(), b.clone()], &pool, &BTreeMap::new());
        assert_eq!(decide(&a, &pool, &held), Decision::Keep);
        assert_eq!(decide(&b, &pool, &held), Decision::Assign(ip("198.18.0.2")));
        let mut pending = BTreeMap::new();
        pending.insert(ip("198.18.0.2"), "d/b".to_string());
        let c = claim("d/c", "3", None, &[]);
        let held = holders(&[a, b, c.clone()], &pool, &pending);
        assert!(matches!(
            decide(&c, &pool, &held),
            Decision::Refuse {
                reason: "AllocationFailed",
                ..
            }
        ));
    }

    #[test]
    fn a_duplicate_address_stays_with_the_older_service() {
        let pool = Pool::parse("198.18.0.0/24").unwrap();
        let old = claim("d/old", "1", None, &["198.18.0.9"]);
        let new = claim("d/new", "2", None, &["198.18.0.9"]);
        let held = holders(&[new.clone(), old.clone()], &pool, &BTreeMap::new());
        assert_eq!(decide(&old, &pool, &held), Decision::Keep);
        assert_eq!(
            decide(&new, &pool, &held),
            Decision::Assign(ip("198.18.0.1"))
        );
    }

    #[test]
    fn requested_addresses() {
        let pool = Pool::parse("198.18.0.0/24").unwrap();
        let a = claim("d/a", "1", Some("198.18.0.50"), &[]);
        let held = holders(&[a.clone()], &pool, &BTreeMap::new());
        assert_eq!(
            decide(&a, &pool, &held),
            Decision::Assign(ip("198.18.0.50"))
        );
        let b = claim("d/b", "2", Some("198.18.0.50"), &[]);
        let mut pending = BTreeMap::new();
        pending.insert(ip("198.18.0.50"), "d/a".to_string());
        let held = holders(&[a, b.clone()], &pool, &pending);
        assert!(matches!(
            decide(&b, &pool, &held),
            Decision::Refuse {
                reason: "LoadBalancerIPInUse",
                ..
            }
        ));
        let c = claim("d/c", "3", Some("192.0.2.1"), &[]);
        assert!(matches!(
            decide(&c, &pool, &held),
            Decision::Refuse {
                reason: "LoadBalancerIPNotInRange",
                ..
            }
        ));
    }
}
