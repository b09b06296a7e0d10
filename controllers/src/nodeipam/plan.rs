//! What the node IPAM controller decides for one Node, and what it remembers: which
//! Node holds which ranges of the cluster CIDRs ([`Allocations`]). Pure: the controller
//! feeds it what its Node cache shows and writes what it decides.
//!
//! Guarantees, for the ranges of the cluster CIDRs:
//! - a range a Node holds (its `spec.podCIDRs`, or one chosen for it and not yet seen
//!   written) is never chosen for another Node until the holder is forgotten (it is gone
//!   from the cache) or is seen with other `podCIDRs`;
//! - a Node that still has no `podCIDRs` gets the ranges chosen for it before again (a
//!   write whose outcome was unknown is retried with the same ranges, never two);
//! - `podCIDRs` outside every cluster CIDR, or that do not parse, are left alone and
//!   reported, never occupied;
//! - one range per cluster CIDR (IPv4 first, then IPv6 when dual-stack), or none: a
//!   cluster CIDR without a free range leaves the Node with nothing new held.

use std::collections::HashMap;

use super::cidrset::CidrSet;
use flotilla_core::cidr::Cidr;

/// What to do about a Node the cache shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// It has `podCIDRs`: they are held. Those outside every cluster CIDR or not parsing
    /// are listed, for a warning.
    Keep {
        outside: Vec<String>,
        invalid: Vec<String>,
    },
    /// It has none: write these (one per cluster CIDR, in their order); they are held for
    /// it meanwhile.
    Assign(Vec<Cidr>),
    /// It has none and `cluster` has no free range left.
    Full { cluster: Cidr },
}

/// The cluster CIDRs' ranges and which Node holds which: see the module's guarantees.
#[derive(Debug, Clone)]
pub struct Allocations {
    sets: Vec<CidrSet>,
    held: HashMap<String, Vec<Cidr>>,
}

impl Allocations {
    /// `sets`: one per cluster CIDR, in the order of `--cluster-cidr`.
    pub fn new(sets: Vec<CidrSet>) -> Self {
        Self {
            sets,
            held: HashMap::new(),
        }
    }

    /// The Nodes holding ranges (to look again whether they still exist).
    pub fn holders(&self) -> impl Iterator<Item = &String> {
        self.held.keys()
    }

    /// What `name` holds.
    pub fn held(&self, name: &str) -> &[Cidr] {
        self.held.get(name).map_or(&[], Vec::as_slice)
    }

    /// Ranges occupied in each cluster CIDR.
    pub fn occupied(&self) -> Vec<usize> {
        self.sets.iter().map(CidrSet::occupied).collect()
    }

    /// Decides for the Node `name` whose `spec.podCIDRs` (or `[spec.podCIDR]`) are
    /// `pod_cidrs`; `assign` false (a Node being deleted) only keeps what it has.
    pub fn decide(&mut self, name: &str, pod_cidrs: &[String], assign: bool) -> Decision {
        if !pod_cidrs.is_empty() || !assign {
            return self.keep(name, pod_cidrs);
        }
        // Ranges chosen before for this Node, one per set: the same again.
        let pending = self.held(name);
        if pending.len() == self.sets.len()
            && self
                .sets
                .iter()
                .zip(pending)
                .all(|(s, c)| s.is_node_range(c))
        {
            return Decision::Assign(pending.to_vec());
        }
        self.forget(name);
        let mut chosen = Vec::with_capacity(self.sets.len());
        for i in 0..self.sets.len() {
            match self.sets[i].allocate_next() {
                Some(c) => chosen.push(c),
                None => {
                    let cluster = self.sets[i].cluster();
                    for (s, c) in self.sets.iter_mut().zip(&chosen) {
                        let _ = s.release(c);
                    }
                    return Decision::Full { cluster };
                }
            }
        }
        if !chosen.is_empty() {
            self.held.insert(name.to_string(), chosen.clone());
        }
        Decision::Assign(chosen)
    }

    /// The Node `name` is gone: its ranges are free.
    pub fn forget(&mut self, name: &str) {
        for c in self.held.remove(name).unwrap_or_default() {
            self.release(&c);
        }
    }

    /// `name` holds exactly the ranges of `pod_cidrs` inside the cluster CIDRs.
    fn keep(&mut self, name: &str, pod_cidrs: &[String]) -> Decision {
        let (mut outside, mut invalid, mut inside) = (Vec::new(), Vec::new(), Vec::new());
        for s in pod_cidrs {
            match s.parse::<Cidr>() {
                Err(_) => invalid.push(s.clone()),
                Ok(c) if self.sets.iter().any(|set| set.cluster().overlaps(&c)) => {
                    if !inside.contains(&c) {
                        inside.push(c)
                    }
                }
                Ok(_) => outside.push(s.clone()),
            }
        }
        let before = self.held.remove(name).unwrap_or_default();
        for c in inside.iter().filter(|c| !before.contains(c)) {
            for set in &mut self.sets {
                // Only the set it overlaps takes it; the others refuse it.
                let _ = set.occupy(c);
            }
        }
        for c in before.iter().filter(|c| !inside.contains(c)) {
            self.release(c);
        }
        if !inside.is_empty() {
            self.held.insert(name.to_string(), inside);
        }
        Decision::Keep { outside, invalid }
    }

    fn release(&mut self, c: &Cidr) {
        for set in &mut self.sets {
            let _ = set.release(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn v(cidrs: &[&str]) -> Vec<String> {
        cidrs.iter().map(|s| s.to_string()).collect()
    }

    /// 10.244.0.0/22 in /24s: 4 ranges.
    fn small() -> Allocations {
        Allocations::new(vec![CidrSet::new(c("10.244.0.0/22"), 24).unwrap()])
    }

    fn assigned(d: Decision) -> Vec<String> {
        match d {
            Decision::Assign(cs) => cs.iter().map(Cidr::to_string).collect(),
            other => panic!("expected an assignment, got {other:?}"),
        }
    }

    #[test]
    fn existing_ranges_are_occupied_before_anything_is_assigned() {
        let mut a = small();
        // What the first list shows, as the leader starts.
        a.decide("n0", &v(&["10.244.0.0/24"]), true);
        a.decide("n2", &v(&["10.244.2.0/24"]), true);
        assert_eq!(assigned(a.decide("new1", &[], true)), ["10.244.1.0/24"]);
        assert_eq!(assigned(a.decide("new3", &[], true)), ["10.244.3.0/24"]);
        assert_eq!(
            a.decide("new4", &[], true),
            Decision::Full {
                cluster: c("10.244.0.0/22")
            }
        );
        assert!(a.held("new4").is_empty(), "nothing held when full");
    }

    #[test]
    fn a_pending_assignment_is_retried_with_the_same_ranges() {
        let mut a = small();
        let first = assigned(a.decide("n", &[], true));
        // The write failed or its outcome is unknown: the same range, not a second one.
        assert_eq!(assigned(a.decide("n", &[], true)), first);
        assert_eq!(a.occupied(), [1]);
        // Seen written: still the one range.
        a.decide("n", &first, true);
        assert_eq!(a.occupied(), [1]);
        assert_eq!(a.held("n"), [c(&first[0])]);
    }

    #[test]
    fn a_pending_range_is_released_when_the_node_is_seen_with_another() {
        let mut a = small();
        let pending = assigned(a.decide("n", &[], true));
        assert_eq!(pending, ["10.244.0.0/24"]);
        // Someone else (a former leader) wrote another range first.
        a.decide("n", &v(&["10.244.3.0/24"]), true);
        assert_eq!(a.held("n"), [c("10.244.3.0/24")]);
        assert_eq!(a.occupied(), [1]);
        // The pending one is free again (after the ones not yet tried).
        assert_eq!(assigned(a.decide("m", &[], true)), ["10.244.1.0/24"]);
        assert_eq!(assigned(a.decide("o", &[], true)), ["10.244.2.0/24"]);
        assert_eq!(assigned(a.decide("p", &[], true)), ["10.244.0.0/24"]);
    }

    #[test]
    fn a_forgotten_nodes_range_is_free_and_no_two_nodes_share_one() {
        let mut a = small();
        let mut names = Vec::new();
        for i in 0..4 {
            names.push(assigned(a.decide(&format!("n{i}"), &[], true)));
        }
        a.forget("n1");
        a.forget("absent");
        let again = assigned(a.decide("n5", &[], true));
        assert_eq!(again, names[1], "the only free range");
        let mut all: Vec<_> = (0..4)
            .filter(|i| *i != 1)
            .map(|i| a.held(&format!("n{i}")).to_vec())
            .chain([a.held("n5").to_vec()])
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 4);
    }

    #[test]
    fn ranges_outside_or_invalid_are_left_alone() {
        let mut a = small();
        let d = a.decide("n", &v(&["192.168.0.0/24", "fd00::/64"]), true);
        assert_eq!(
            d,
            Decision::Keep {
                outside: v(&["192.168.0.0/24", "fd00::/64"]),
                invalid: vec![]
            }
        );
        assert!(a.held("n").is_empty());
        let d = a.decide("m", &v(&["not-a-cidr", "10.244.1.0/24"]), true);
        assert_eq!(
            d,
            Decision::Keep {
                outside: vec![],
                invalid: v(&["not-a-cidr"])
            }
        );
        assert_eq!(a.occupied(), [1]);
    }

    #[test]
    fn a_node_being_deleted_gets_nothing_new() {
        let mut a = small();
        assert_eq!(
            a.decide("n", &[], false),
            Decision::Keep {
                outside: vec![],
                invalid: vec![]
            }
        );
        assert_eq!(a.occupied(), [0]);
    }

    #[test]
    fn dual_stack_assigns_one_per_family_or_none() {
        let mut a = Allocations::new(vec![
            CidrSet::new(c("10.244.0.0/23"), 24).unwrap(),
            CidrSet::new(c("fd00::/63"), 64).unwrap(),
        ]);
        assert_eq!(
            assigned(a.decide("a", &[], true)),
            ["10.244.0.0/24", "fd00::/64"]
        );
        // The IPv6 set fills first here: nothing taken from the IPv4 one.
        a.decide("b", &v(&["fd00:0:0:1::/64"]), true);
        assert_eq!(
            a.decide("c", &[], true),
            Decision::Full {
                cluster: c("fd00::/63")
            }
        );
        assert_eq!(a.occupied(), [1, 2]);
        a.forget("a");
        assert_eq!(a.occupied(), [0, 1]);
        // Each set scans on from its last: both wrap to their freed first range.
        assert_eq!(
            assigned(a.decide("c", &[], true)),
            ["10.244.0.0/24", "fd00::/64"]
        );
    }

    #[test]
    fn two_nodes_claiming_one_range_keep_it_occupied_until_both_are_gone() {
        let mut a = small();
        a.decide("x", &v(&["10.244.0.0/24"]), true);
        a.decide("y", &v(&["10.244.0.0/24"]), true);
        a.forget("x");
        for i in 0..3 {
            let got = assigned(a.decide(&format!("n{i}"), &[], true));
            assert_ne!(got, ["10.244.0.0/24"]);
        }
        assert!(matches!(a.decide("n3", &[], true), Decision::Full { .. }));
        a.forget("y");
        assert_eq!(assigned(a.decide("n3", &[], true)), ["10.244.0.0/24"]);
    }
}
