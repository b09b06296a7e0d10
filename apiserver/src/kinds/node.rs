//! core/v1 Node: cluster-scoped, status set by its agent (also on create).

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

    fn validate(node: &Node) -> Vec<FieldError> {
        let mut errs = Vec::new();
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

    fn fields(node: &Node) -> Vec<(&'static str, String)> {
        let u = node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false);
        vec![("spec.unschedulable", u.to_string())]
    }
}
