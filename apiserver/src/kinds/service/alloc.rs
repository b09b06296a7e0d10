//! Service cluster IPs from `--service-cluster-ip-range` and node ports, allocated without
//! collisions across any number of apiservers: each allocated IP or port is a key
//! (`/registry/ipallocations/<ip>`, as the IPAddress objects of newer Kubernetes, and
//! `/registry/nodeportallocations/<port>`) created in the same Txn as the Service, guarded
//! by "does not exist yet" (the Service's [`super::Services`] claims), and deleted in the
//! Txn that deletes it.

use std::net::Ipv4Addr;

use rand::Rng;

use crate::error::FieldError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    base: u32,
    bits: u8,
}

impl Range {
    pub fn parse(cidr: &str) -> Result<Self, String> {
        let (ip, bits) = cidr
            .split_once('/')
            .ok_or_else(|| format!("{cidr:?} is not a CIDR (a.b.c.d/n)"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|e| format!("{cidr:?}: {e}"))?;
        let bits: u8 = bits.parse().map_err(|e| format!("{cidr:?}: {e}"))?;
        if !(8..=30).contains(&bits) {
            return Err(format!(
                "{cidr:?}: the prefix length must be between 8 and 30"
            ));
        }
        let mask = u32::MAX << (32 - bits);
        Ok(Self {
            base: u32::from(ip) & mask,
            bits,
        })
    }

    fn size(&self) -> u32 {
        1u32 << (32 - self.bits)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let v = u32::from(ip);
        v > self.base && v < self.base + self.size() - 1
    }

    /// The first usable address, which Kubernetes gives the `kubernetes` service.
    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    /// A random address other than the network, broadcast and first addresses.
    pub fn random(&self) -> Ipv4Addr {
        let off = rand::rng().random_range(2..self.size() - 1);
        Ipv4Addr::from(self.base + off)
    }

    pub fn describe(&self) -> String {
        format!("{}/{}", Ipv4Addr::from(self.base), self.bits)
    }

    /// Checks a requested IP against the range.
    pub fn check(&self, ip: &str) -> Result<Ipv4Addr, FieldError> {
        let parsed: Ipv4Addr = ip.parse().map_err(|_| {
            FieldError::invalid("spec.clusterIPs[0]", ip, "must be a valid IP address")
        })?;
        if !self.contains(parsed) {
            return Err(FieldError::invalid_raw(
                "spec.clusterIPs",
                format!("[]string{{{ip:?}}}"),
                format!(
                    "failed to allocate IP {ip}: provided IP is not in the valid range. The range of valid IPs is {}",
                    self.describe()
                ),
            ));
        }
        Ok(parsed)
    }
}

pub fn key(ip: Ipv4Addr) -> String {
    format!("/registry/ipallocations/{ip}")
}

/// Node ports of NodePort and LoadBalancer services (kube-apiserver's default range).
pub const NODE_PORTS: std::ops::RangeInclusive<i64> = 30000..=32767;

pub fn node_port_key(port: i64) -> String {
    format!("/registry/nodeportallocations/{port}")
}

/// A random node port not in `used` (which it joins); None when every one is used.
pub fn random_node_port(used: &mut Vec<i64>) -> Option<i64> {
    for _ in 0..64 {
        let p = rand::rng().random_range(NODE_PORTS);
        if !used.contains(&p) {
            used.push(p);
            return Some(p);
        }
    }
    let p = NODE_PORTS.clone().find(|p| !used.contains(p))?;
    used.push(p);
    Some(p)
}

/// Requested node ports must be in the range and distinct (0: allocate one).
pub fn check_node_ports(requested: &[i64]) -> Result<(), Vec<FieldError>> {
    let mut errs = Vec::new();
    for (i, p) in requested.iter().enumerate() {
        if *p == 0 {
            continue;
        }
        let field = format!("spec.ports[{i}].nodePort");
        if !NODE_PORTS.contains(p) {
            errs.push(FieldError::invalid_raw(
                field,
                p.to_string(),
                format!(
                    "provided port is not in the valid range. The range of valid ports is {}-{}",
                    NODE_PORTS.start(),
                    NODE_PORTS.end()
                ),
            ));
        } else if requested[..i].contains(p) {
            errs.push(FieldError::duplicate(field, &p.to_string()));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_bounds() {
        let r = Range::parse("10.96.0.0/12").unwrap();
        assert_eq!(r.first(), Ipv4Addr::new(10, 96, 0, 1));
        assert!(r.contains(Ipv4Addr::new(10, 111, 255, 254)));
        assert!(!r.contains(Ipv4Addr::new(10, 112, 0, 1)));
        assert!(!r.contains(Ipv4Addr::new(10, 96, 0, 0)));
        for _ in 0..1000 {
            let ip = r.random();
            assert!(r.contains(ip) && ip != r.first());
        }
        assert!(r.check("10.97.0.5").is_ok());
        assert!(r.check("192.168.0.1").is_err());
        assert!(Range::parse("10.0.0.0").is_err());
        assert!(Range::parse("10.0.0.0/31").is_err());
        assert!(check_node_ports(&[0, 30080, 0]).is_ok());
        assert_eq!(
            check_node_ports(&[80]).unwrap_err()[0].field,
            "spec.ports[0].nodePort"
        );
        assert!(check_node_ports(&[30080, 30080]).is_err());
        let mut used = vec![];
        for _ in 0..100 {
            let p = random_node_port(&mut used).unwrap();
            assert!(NODE_PORTS.contains(&p));
        }
        assert_eq!(used.len(), 100);
        // Every port taken: none, not a loop forever.
        let mut all: Vec<i64> = NODE_PORTS.collect();
        assert_eq!(random_node_port(&mut all), None);
        all.retain(|p| *p != 31000);
        assert_eq!(random_node_port(&mut all), Some(31000));
    }
}
