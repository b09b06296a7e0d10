//! core/v1 Node: cluster-scoped, status set by its agent (also on create).
//!
//! `spec.podCIDR` and `spec.podCIDRs` are one field as kube's internal Node keeps it
//! (`podCIDR` is `podCIDRs[0]`): each defaults from the other; each must parse as a CIDR,
//! at most one per IP family; once set they may not change (the node IPAM controller's
//! guarantee that no two Nodes share a range rests on it).

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Node;

use super::Kind;
use crate::error::FieldError;

pub struct Nodes;

impl Kind for Nodes {
    type Obj = Node;
    const SINGULAR: &'static str = "node";
    const PRINTER: Option<&'static crate::table::Printer> =
        Some(&crate::table::printers::core::NODE);
    const SHORT_NAMES: &'static [&'static str] = &["no"];
    const STATUS: bool = true;
    const FIELDS: &'static [&'static str] = &["spec.unschedulable"];

    /// kube's v1 conversion: `podCIDRs` from `podCIDR` when only that is set, and
    /// `podCIDR` from `podCIDRs[0]`.
    fn default(node: &mut Node) {
        let Some(spec) = node.spec.as_mut() else {
            return;
        };
        let single = spec.pod_cidr.clone().filter(|c| !c.is_empty());
        let first = spec.pod_cidrs.as_ref().and_then(|m| m.first().cloned());
        match (single, first) {
            (Some(c), None) => spec.pod_cidrs = Some(vec![c]),
            (None, Some(f)) => spec.pod_cidr = Some(f),
            _ => {}
        }
        if spec.pod_cidrs.as_ref().is_some_and(Vec::is_empty) {
            spec.pod_cidrs = None;
        }
    }

    fn validate(node: &Node) -> Vec<FieldError> {
        let mut errs = pod_cidrs(node);
        for (i, t) in node
            .spec
            .iter()
            .flat_map(|s| s.taints.iter().flatten())
            .enumerate()
        {
            for m in crate::validation::label_key(&t.key) {
                errs.push(FieldError::invalid(
                    format!("spec.taints[{i}].key"),
                    &t.key,
                    m,
                ));
            }
            const EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];
            if !EFFECTS.contains(&t.effect.as_str()) {
                errs.push(FieldError::not_supported(
                    format!("spec.taints[{i}].effect"),
                    &t.effect,
                    EFFECTS,
                ));
            }
        }
        errs
    }

    fn validate_update(new: &Node, old: &Node) -> Vec<FieldError> {
        let old_cidrs = flotilla_core::cidr::node_pod_cidrs(old);
        if !old_cidrs.is_empty() && flotilla_core::cidr::node_pod_cidrs(new) != old_cidrs {
            return vec![FieldError::forbidden(
                "spec.podCIDRs",
                "node updates may not change podCIDR except from \"\" to valid",
            )];
        }
        vec![]
    }

    fn fields(node: &Node) -> Vec<(&'static str, String)> {
        let u = node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false);
        vec![("spec.unschedulable", u.to_string())]
    }
}

const INVALID_CIDR: &str = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)";

/// kube's checks of `spec.podCIDR` and `spec.podCIDRs`.
fn pod_cidrs(node: &Node) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(spec) = node.spec.as_ref() else {
        return errs;
    };
    let single = spec.pod_cidr.as_deref().filter(|c| !c.is_empty());
    if let Some(c) = single {
        if cidr_is_v4(c).is_none() {
            errs.push(FieldError::invalid("spec.podCIDR", c, INVALID_CIDR));
        }
    }
    let many = spec.pod_cidrs.as_deref().unwrap_or_default();
    let mut families = Vec::new();
    for (i, c) in many.iter().enumerate() {
        match cidr_is_v4(c) {
            Some(v4) => families.push(v4),
            None => errs.push(FieldError::invalid(
                format!("spec.podCIDRs[{i}]"),
                c,
                INVALID_CIDR,
            )),
        }
        if many[..i].contains(c) {
            errs.push(FieldError::duplicate(format!("spec.podCIDRs[{i}]"), c));
        }
    }
    let dual = families.len() == 2 && families[0] != families[1];
    if many.len() > 1 && (many.len() > 2 || (families.len() == 2 && !dual)) {
        errs.push(FieldError::invalid_raw(
            "spec.podCIDRs",
            format!("{many:?}"),
            "may specify no more than one CIDR for each IP family",
        ));
    }
    if let (Some(c), Some(first)) = (single, many.first()) {
        if c != first {
            errs.push(FieldError::invalid(
                "spec.podCIDR",
                c,
                "must be the first of spec.podCIDRs",
            ));
        }
    }
    errs
}

/// Whether `s` is an IPv4 (true) or IPv6 (false) CIDR, as kube's `ParseCIDRSloppy`
/// (host bits allowed); None if it is not one.
fn cidr_is_v4(s: &str) -> Option<bool> {
    let (ip, prefix) = s.split_once('/')?;
    let ip: IpAddr = ip.parse().ok()?;
    if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let prefix: u8 = prefix.parse().ok()?;
    let bits = if ip.is_ipv4() { 32 } else { 128 };
    (prefix <= bits).then_some(ip.is_ipv4())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSpec;

    fn node(pod_cidr: Option<&str>, pod_cidrs: &[&str]) -> Node {
        Node {
            spec: Some(NodeSpec {
                pod_cidr: pod_cidr.map(str::to_string),
                pod_cidrs: (!pod_cidrs.is_empty())
                    .then(|| pod_cidrs.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn defaulted(mut n: Node) -> Node {
        Nodes::default(&mut n);
        n
    }

    fn errors(n: &Node) -> Vec<(String, String)> {
        Nodes::validate(n)
            .into_iter()
            .map(|e| (e.field, e.detail))
            .collect()
    }

    #[test]
    fn pod_cidr_and_pod_cidrs_default_from_each_other() {
        let n = defaulted(node(Some("10.244.1.0/24"), &[]));
        let spec = n.spec.unwrap();
        assert_eq!(spec.pod_cidrs.unwrap(), ["10.244.1.0/24"]);
        let n = defaulted(node(None, &["10.244.1.0/24", "fd00::/64"]));
        assert_eq!(n.spec.unwrap().pod_cidr.unwrap(), "10.244.1.0/24");
        let n = defaulted(node(Some(""), &[]));
        assert_eq!(n.spec.as_ref().unwrap().pod_cidrs, None);
        assert_eq!(defaulted(Node::default()).spec, None);
    }

    #[test]
    fn pod_cidrs_must_be_cidrs_one_per_family() {
        assert!(errors(&defaulted(node(Some("10.244.1.0/24"), &[]))).is_empty());
        assert!(errors(&defaulted(node(None, &["10.244.1.7/24", "fd00::/64"]))).is_empty());
        assert!(errors(&node(None, &[])).is_empty());
        let e = errors(&defaulted(node(Some("10.244.1.0"), &[])));
        assert!(e
            .iter()
            .any(|(f, d)| f == "spec.podCIDR" && d.contains("must be a valid CIDR")));
        assert!(e.iter().any(|(f, _)| f == "spec.podCIDRs[0]"));
        for bad in [
            "x/24",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/-1",
            "10.0.0.0/ 8",
            "10.0.0.0/",
        ] {
            let e = errors(&node(None, &[bad]));
            assert_eq!(e.len(), 1, "{bad}: {e:?}");
            assert_eq!(e[0].0, "spec.podCIDRs[0]");
        }
        let e = errors(&node(None, &["10.0.0.0/24", "10.0.1.0/24"]));
        assert!(e.iter().any(|(f, d)| f == "spec.podCIDRs"
            && d == "may specify no more than one CIDR for each IP family"));
        let e = errors(&node(None, &["10.0.0.0/24", "fd00::/64", "fd01::/64"]));
        assert!(e.iter().any(|(f, _)| f == "spec.podCIDRs"));
        let e = errors(&node(None, &["10.0.0.0/24", "10.0.0.0/24"]));
        assert!(e.iter().any(|(f, _)| f == "spec.podCIDRs[1]"));
        let e = errors(&node(Some("10.0.1.0/24"), &["10.0.0.0/24"]));
        assert_eq!(
            e,
            [(
                "spec.podCIDR".to_string(),
                "must be the first of spec.podCIDRs".to_string()
            )]
        );
    }

    #[test]
    fn pod_cidrs_may_only_be_set_once() {
        let empty = defaulted(node(None, &[]));
        let set = defaulted(node(Some("10.244.1.0/24"), &[]));
        assert!(
            Nodes::validate_update(&set, &empty).is_empty(),
            "from \"\" to valid"
        );
        assert!(Nodes::validate_update(&set, &set).is_empty());
        let other = defaulted(node(Some("10.244.2.0/24"), &[]));
        let e = Nodes::validate_update(&other, &set);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].field, "spec.podCIDRs");
        assert_eq!(
            e[0].detail,
            "node updates may not change podCIDR except from \"\" to valid"
        );
        assert_eq!(
            Nodes::validate_update(&empty, &set).len(),
            1,
            "not cleared either"
        );
        let dual = defaulted(node(None, &["10.244.1.0/24", "fd00::/64"]));
        assert_eq!(Nodes::validate_update(&dual, &set).len(), 1);
        // Stored before defaulting (only podCIDR): the same ranges are no change.
        assert!(Nodes::validate_update(&set, &node(Some("10.244.1.0/24"), &[])).is_empty());
    }
}
