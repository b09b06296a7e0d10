//! Label selectors (metav1.LabelSelector, and the string form `a=b,c in (d),!e`) and node
//! selector terms, as pure matching functions.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

pub type Labels = BTreeMap<String, String>;

/// Whether `labels` match `sel`. An empty selector matches everything (as
/// `metav1.LabelSelectorAsSelector` does); an unknown operator matches nothing.
pub fn matches(sel: &LabelSelector, labels: &Labels) -> bool {
    for (k, v) in sel.match_labels.iter().flatten() {
        if labels.get(k) != Some(v) {
            return false;
        }
    }
    for e in sel.match_expressions.iter().flatten() {
        let got = labels.get(&e.key);
        let vals = e.values.as_deref().unwrap_or(&[]);
        let ok = match e.operator.as_str() {
            "In" => got.is_some_and(|g| vals.contains(g)),
            "NotIn" => got.is_none_or(|g| !vals.contains(g)),
            "Exists" => got.is_some(),
            "DoesNotExist" => got.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Whether `sel` is empty (matches everything).
pub fn is_empty(sel: &LabelSelector) -> bool {
    sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && sel.match_expressions.as_ref().is_none_or(|m| m.is_empty())
}

/// The selector in the string form list and watch take (`labelSelector=`).
pub fn to_query(sel: &LabelSelector) -> String {
    let mut parts = Vec::new();
    for (k, v) in sel.match_labels.iter().flatten() {
        parts.push(format!("{k}={v}"));
    }
    for e in sel.match_expressions.iter().flatten() {
        let vals = e.values.clone().unwrap_or_default().join(",");
        match e.operator.as_str() {
            "In" => parts.push(format!("{} in ({vals})", e.key)),
            "NotIn" => parts.push(format!("{} notin ({vals})", e.key)),
            "Exists" => parts.push(e.key.clone()),
            "DoesNotExist" => parts.push(format!("!{}", e.key)),
            _ => {}
        }
    }
    parts.join(",")
}

/// A node selector requirement against a node's labels (`matchExpressions`).
pub fn node_requirement(r: &NodeSelectorRequirement, labels: &Labels) -> bool {
    let got = labels.get(&r.key);
    let vals = r.values.as_deref().unwrap_or(&[]);
    let int = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => got.is_some_and(|g| vals.contains(g)),
        "NotIn" => got.is_none_or(|g| !vals.contains(g)),
        "Exists" => got.is_some(),
        "DoesNotExist" => got.is_none(),
        "Gt" | "Lt" => {
            let (Some(g), Some(v)) = (got.and_then(|g| int(g)), vals.first().and_then(|v| int(v)))
            else {
                return false;
            };
            if r.operator == "Gt" {
                g > v
            } else {
                g < v
            }
        }
        _ => false,
    }
}

/// A node selector term: all its expressions and field requirements hold. A term with
/// neither matches nothing (as Kubernetes has it).
pub fn node_term(t: &NodeSelectorTerm, node_name: &str, labels: &Labels) -> bool {
    let exprs = t.match_expressions.as_deref().unwrap_or(&[]);
    let fields = t.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let mut name_labels = Labels::new();
    name_labels.insert("metadata.name".into(), node_name.into());
    exprs.iter().all(|r| node_requirement(r, labels))
        && fields.iter().all(|r| node_requirement(r, &name_labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selectors() {
        let sel = LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "NotIn".into(),
                values: Some(vec!["db".into()]),
            }]),
        };
        assert!(matches(&sel, &l(&[("app", "web")])));
        assert!(matches(&sel, &l(&[("app", "web"), ("tier", "fe")])));
        assert!(!matches(&sel, &l(&[("app", "web"), ("tier", "db")])));
        assert!(!matches(&sel, &l(&[("app", "api")])));
        assert!(matches(&LabelSelector::default(), &l(&[])));
        assert_eq!(to_query(&sel), "app=web,tier notin (db)");
    }

    #[test]
    fn node_terms() {
        let term = NodeSelectorTerm {
            match_expressions: Some(vec![NodeSelectorRequirement {
                key: "cores".into(),
                operator: "Gt".into(),
                values: Some(vec!["4".into()]),
            }]),
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec!["n1".into()]),
            }]),
        };
        assert!(node_term(&term, "n1", &l(&[("cores", "8")])));
        assert!(!node_term(&term, "n2", &l(&[("cores", "8")])));
        assert!(!node_term(&term, "n1", &l(&[("cores", "4")])));
        assert!(!node_term(&NodeSelectorTerm::default(), "n1", &l(&[])));
    }
}
