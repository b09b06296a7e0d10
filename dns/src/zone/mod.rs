//! The cluster zone as an immutable index, name → records, and the one question it answers:
//! what does a query for (name, type) get.
//!
//! Contract: pure (no I/O, no clock); built whole from a snapshot of Services and
//! EndpointSlices (`build.rs`) and then only read, so a query sees one consistent version
//! of the cluster. A name is in the index iff it exists in the zone: every ancestor of a
//! name with records up to the apex is present (possibly with no records), which is what
//! separates NODATA (the name exists, not with that type) from NXDOMAIN. Reverse names
//! (PTR) are kept apart: a reverse name this zone does not know is not ours and falls
//! through to the upstreams (CoreDNS's `fallthrough in-addr.arpa ip6.arpa`).

mod build;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::IpAddr;

use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use crate::config::PodMode;
use crate::records;

pub use build::Params;

/// What a query gets from the zone.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// The name has records of the type (or a CNAME): the answer section, the additional
    /// section (addresses of SRV targets), and an out-of-zone CNAME target still to be
    /// resolved for the asked type, if any.
    Answer {
        answers: Vec<Record>,
        additionals: Vec<Record>,
        chase: Option<Name>,
    },
    /// The name exists with other types only (NOERROR, no answers, SOA in authority).
    NoData,
    /// The name does not exist in the zone (NXDOMAIN, SOA in authority).
    NxDomain,
    /// Not in this zone (nor a reverse name it knows): for the upstreams.
    NotOurs,
}

/// The index; see the module docs.
#[derive(Debug, Clone)]
pub struct Zone {
    apex: Name,
    pods: PodMode,
    ttl: u32,
    soa: Record,
    nodes: HashMap<LowerName, Vec<Record>>,
    reverse: HashMap<LowerName, Vec<Record>>,
}

/// At most this many in-zone CNAME hops are followed (a loop of ExternalNames ends here).
const MAX_CHAIN: usize = 8;

impl Zone {
    fn empty(apex: Name, pods: PodMode, ttl: u32, serial: u32) -> Self {
        let soa = records::soa(&apex, serial, ttl);
        Zone {
            apex,
            pods,
            ttl,
            soa,
            nodes: HashMap::new(),
            reverse: HashMap::new(),
        }
    }

    pub fn apex(&self) -> &Name {
        &self.apex
    }

    /// The SOA for the authority section of NXDOMAIN and NODATA answers.
    pub fn soa(&self) -> &Record {
        &self.soa
    }

    /// True when `name` is the apex or below it.
    pub fn contains(&self, name: &Name) -> bool {
        self.apex.zone_of(name)
    }

    /// Number of names (with or without records) in the forward zone.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Adds a record at its name, creating the name's ancestors up to the apex; a record
    /// equal to one already there is not added twice. Names outside the apex are ignored.
    fn insert(&mut self, record: Record) {
        let name = record.name.clone();
        if !self.apex.zone_of(&name) {
            return;
        }
        self.touch(&name);
        let node = self.nodes.entry(LowerName::new(&name)).or_default();
        if !node.contains(&record) {
            node.push(record);
        }
    }

    /// Makes `name` and its ancestors up to the apex exist.
    fn touch(&mut self, name: &Name) {
        let mut n = name.clone();
        while self.apex.zone_of(&n) {
            let key = LowerName::new(&n);
            if self.nodes.contains_key(&key) && n != *name {
                break;
            }
            self.nodes.entry(key).or_default();
            if n.num_labels() <= self.apex.num_labels() {
                break;
            }
            n = n.base_name();
        }
    }

    fn insert_reverse(&mut self, record: Record) {
        let node = self
            .reverse
            .entry(LowerName::new(&record.name))
            .or_default();
        if !node.contains(&record) {
            node.push(record);
        }
    }

    /// The answer to a query for `name` and `qtype`; see [`Lookup`].
    pub fn lookup(&self, name: &Name, qtype: RecordType) -> Lookup {
        if self.contains(name) {
            return self.lookup_forward(name, qtype);
        }
        if records::is_reverse(name) {
            return match self.reverse.get(&LowerName::new(name)) {
                Some(recs) if matches!(qtype, RecordType::PTR | RecordType::ANY) => {
                    Lookup::Answer {
                        answers: recs.clone(),
                        additionals: Vec::new(),
                        chase: None,
                    }
                }
                _ => Lookup::NotOurs,
            };
        }
        Lookup::NotOurs
    }

    fn lookup_forward(&self, name: &Name, qtype: RecordType) -> Lookup {
        let Some(recs) = self.nodes.get(&LowerName::new(name)) else {
            return self.lookup_pod(name, qtype);
        };
        let cname = recs
            .iter()
            .find(|r| r.record_type() == RecordType::CNAME)
            .cloned();
        if let Some(cname) = cname.filter(|_| qtype != RecordType::CNAME) {
            return self.follow(cname, qtype);
        }
        let answers: Vec<Record> = recs
            .iter()
            .filter(|r| qtype == RecordType::ANY || r.record_type() == qtype)
            .cloned()
            .collect();
        if answers.is_empty() {
            return Lookup::NoData;
        }
        let additionals = self.additionals(&answers);
        Lookup::Answer {
            answers,
            additionals,
            chase: None,
        }
    }

    /// A CNAME and, while its target is in the zone, the target's records: iterative, at
    /// most [`MAX_CHAIN`] hops, and a CNAME already in the chain ends it (a loop).
    fn follow(&self, first: Record, qtype: RecordType) -> Lookup {
        let mut answers = vec![first];
        let mut additionals = Vec::new();
        for _ in 0..MAX_CHAIN {
            let Some(RData::CNAME(target)) = answers.last().map(|r| r.data.clone()) else {
                break;
            };
            let target = target.0;
            if !self.contains(&target) {
                return Lookup::Answer {
                    answers,
                    additionals,
                    chase: Some(target),
                };
            }
            let Some(recs) = self.nodes.get(&LowerName::new(&target)) else {
                break;
            };
            if let Some(next) = recs.iter().find(|r| r.record_type() == RecordType::CNAME) {
                if answers.contains(next) {
                    break;
                }
                answers.push(next.clone());
                continue;
            }
            let found: Vec<Record> = recs
                .iter()
                .filter(|r| qtype == RecordType::ANY || r.record_type() == qtype)
                .cloned()
                .collect();
            additionals = self.additionals(&found);
            answers.extend(found);
            break;
        }
        Lookup::Answer {
            answers,
            additionals,
            chase: None,
        }
    }

    /// Addresses of the SRV targets among `answers`, from the index.
    fn additionals(&self, answers: &[Record]) -> Vec<Record> {
        let mut out = Vec::new();
        for r in answers {
            let RData::SRV(srv) = &r.data else { continue };
            let Some(recs) = self.nodes.get(&LowerName::new(&srv.target)) else {
                continue;
            };
            for a in recs {
                let is_addr = matches!(a.record_type(), RecordType::A | RecordType::AAAA);
                if is_addr && !out.contains(a) {
                    out.push(a.clone());
                }
            }
        }
        out
    }

    /// `<a-b-c-d>.<namespace>.pod.<zone>` under `--pods insecure`: the IP in the name,
    /// without a lookup (CoreDNS's default).
    fn lookup_pod(&self, name: &Name, qtype: RecordType) -> Lookup {
        let apex_labels = usize::from(self.apex.num_labels());
        let labels: Vec<&[u8]> = name.iter().collect();
        let is_pod_name = self.pods == PodMode::Insecure
            && labels.len() == apex_labels.saturating_add(3)
            && labels
                .get(2)
                .is_some_and(|l| l.eq_ignore_ascii_case(b"pod"));
        if !is_pod_name {
            return Lookup::NxDomain;
        }
        let ip = labels
            .first()
            .and_then(|l| std::str::from_utf8(l).ok())
            .and_then(records::undashed);
        let Some(ip) = ip else {
            return Lookup::NxDomain;
        };
        let wanted = match ip {
            IpAddr::V4(_) => RecordType::A,
            IpAddr::V6(_) => RecordType::AAAA,
        };
        if qtype != wanted && qtype != RecordType::ANY {
            return Lookup::NoData;
        }
        Lookup::Answer {
            answers: vec![records::address(name, ip, self.ttl)],
            additionals: Vec::new(),
            chase: None,
        }
    }
}
