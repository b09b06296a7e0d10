//! The bounded cache of forwarded answers (CoreDNS's `cache 30`).
//!
//! Contract: pure (the caller passes the time); never holds more than `capacity` entries;
//! an entry is served for at most min(its records' TTL, `max_ttl`) and with its TTLs
//! counted down by the time it has spent in the cache. Negative answers are cached only
//! with an SOA (RFC 2308: their TTL comes from it); SERVFAIL and other errors never.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, RData, Record, RecordType};

/// An upstream's answer, as the handler writes it back.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
}

#[derive(Debug)]
struct Entry {
    value: Upstream,
    stored: Instant,
    ttl: Duration,
}

#[derive(Debug)]
pub struct Cache {
    capacity: usize,
    max_ttl: u32,
    map: HashMap<(LowerName, RecordType), Entry>,
}

impl Cache {
    pub fn new(capacity: usize, max_ttl: u32) -> Self {
        Cache {
            capacity,
            max_ttl,
            map: HashMap::new(),
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The cached answer with TTLs as of `now`, or `None` (an expired entry is dropped).
    pub fn get(&mut self, name: &LowerName, t: RecordType, now: Instant) -> Option<Upstream> {
        let key = (name.clone(), t);
        let entry = self.map.get(&key)?;
        let age = now.saturating_duration_since(entry.stored);
        if age >= entry.ttl {
            self.map.remove(&key);
            return None;
        }
        let spent = u32::try_from(age.as_secs()).unwrap_or(u32::MAX);
        let mut v = entry.value.clone();
        for r in v
            .answers
            .iter_mut()
            .chain(v.authorities.iter_mut())
            .chain(v.additionals.iter_mut())
        {
            r.ttl = r.ttl.saturating_sub(spent);
        }
        Some(v)
    }

    /// Stores `value` if it may be cached, evicting expired entries (or, when none is,
    /// an arbitrary one) to stay within capacity.
    pub fn put(&mut self, name: &LowerName, t: RecordType, value: &Upstream, now: Instant) {
        let Some(secs) = self.ttl_of(value) else {
            return;
        };
        if self.capacity == 0 || secs == 0 {
            return;
        }
        let key = (name.clone(), t);
        if self.map.len() >= self.capacity && !self.map.contains_key(&key) {
            self.map
                .retain(|_, e| now.saturating_duration_since(e.stored) < e.ttl);
            if self.map.len() >= self.capacity {
                if let Some(victim) = self.map.keys().next().cloned() {
                    self.map.remove(&victim);
                }
            }
        }
        let entry = Entry {
            value: value.clone(),
            stored: now,
            ttl: Duration::from_secs(u64::from(secs)),
        };
        self.map.insert(key, entry);
    }

    /// How long `value` may be cached, in seconds; `None` when it may not.
    fn ttl_of(&self, value: &Upstream) -> Option<u32> {
        match value.rcode {
            ResponseCode::NoError if !value.answers.is_empty() => {
                let min = value.answers.iter().map(|r| r.ttl).min()?;
                Some(min.min(self.max_ttl))
            }
            ResponseCode::NoError | ResponseCode::NXDomain => {
                let soa = value.authorities.iter().find_map(|r| match &r.data {
                    RData::SOA(soa) => Some(soa.minimum.min(r.ttl)),
                    _ => None,
                })?;
                Some(soa.min(self.max_ttl))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records;
    use hickory_proto::rr::Name;

    fn answer(name: &Name, ttl: u32) -> Upstream {
        Upstream {
            rcode: ResponseCode::NoError,
            answers: vec![records::address(name, "1.2.3.4".parse().unwrap(), ttl)],
            authorities: vec![],
            additionals: vec![],
        }
    }

    #[test]
    fn serves_until_the_capped_ttl_and_counts_down() {
        let n = Name::from_ascii("example.com.").unwrap();
        let k = LowerName::new(&n);
        let mut c = Cache::new(10, 30);
        let t0 = Instant::now();
        c.put(&k, RecordType::A, &answer(&n, 300), t0);
        let got = c
            .get(&k, RecordType::A, t0 + Duration::from_secs(10))
            .unwrap();
        assert_eq!(got.answers[0].ttl, 290);
        assert!(c
            .get(&k, RecordType::A, t0 + Duration::from_secs(30))
            .is_none());
        assert!(c.is_empty());
    }

    #[test]
    fn bounded_and_no_servfail() {
        let mut c = Cache::new(2, 30);
        let t0 = Instant::now();
        for i in 0..5 {
            let n = Name::from_ascii(format!("h{i}.example.")).unwrap();
            c.put(&LowerName::new(&n), RecordType::A, &answer(&n, 60), t0);
            assert!(c.len() <= 2);
        }
        let n = Name::from_ascii("fail.example.").unwrap();
        let mut fail = answer(&n, 60);
        fail.rcode = ResponseCode::ServFail;
        let mut c = Cache::new(2, 30);
        c.put(&LowerName::new(&n), RecordType::A, &fail, t0);
        assert!(c.is_empty());
    }

    #[test]
    fn negative_needs_an_soa() {
        let zone = Name::from_ascii("example.").unwrap();
        let n = Name::from_ascii("nope.example.").unwrap();
        let mut c = Cache::new(10, 30);
        let t0 = Instant::now();
        let mut neg = Upstream {
            rcode: ResponseCode::NXDomain,
            answers: vec![],
            authorities: vec![],
            additionals: vec![],
        };
        c.put(&LowerName::new(&n), RecordType::A, &neg, t0);
        assert!(c.is_empty());
        neg.authorities.push(records::soa(&zone, 1, 5));
        c.put(&LowerName::new(&n), RecordType::A, &neg, t0);
        assert!(c
            .get(
                &LowerName::new(&n),
                RecordType::A,
                t0 + Duration::from_secs(4)
            )
            .is_some());
        assert!(c
            .get(
                &LowerName::new(&n),
                RecordType::A,
                t0 + Duration::from_secs(5)
            )
            .is_none());
    }
}
