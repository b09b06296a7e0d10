//! core/v1 Namespace: created Active with the `kubernetes` finalizer; deleting one marks it
//! Terminating, and it goes away once its finalizers are removed (`finalize.rs`: the
//! subresource that removes them).

mod finalize;

use k8s_openapi::api::core::v1::{Namespace, NamespaceSpec, NamespaceStatus};

use super::Kind;
use crate::validation::NameRule;

pub struct Namespaces;

impl Kind for Namespaces {
    type Obj = Namespace;
    const SINGULAR: &'static str = "namespace";
    const OBJECT_HOOKS: bool = true;
    const SUBRESOURCES: &'static [super::Subresource] = &[super::Subresource {
        name: "finalize",
        kind: "Namespace",
        group_version: None,
        verbs: &["update"],
        action: Some(finalize::action),
        collection: None,
    }];
    const PRINTER: Option<&'static crate::table::Printer> =
        Some(&crate::table::printers::core::NAMESPACE);
    const SHORT_NAMES: &'static [&'static str] = &["ns"];
    const STATUS: bool = true;
    const NAME_RULE: NameRule = NameRule::Label;
    const FIELDS: &'static [&'static str] = &["status.phase"];

    fn prepare_create(ns: &mut Namespace) {
        ns.status = Some(NamespaceStatus {
            phase: Some("Active".into()),
            ..Default::default()
        });
        let spec = ns.spec.get_or_insert_with(NamespaceSpec::default);
        let f = spec.finalizers.get_or_insert_with(Vec::new);
        if !f.iter().any(|f| f == "kubernetes") {
            f.push("kubernetes".into());
        }
    }

    fn prepare_update(new: &mut Namespace, old: &Namespace) {
        // spec.finalizers change only through the `finalize` subresource.
        new.spec = old.spec.clone();
    }

    fn check_delete(name: &str) -> Result<(), crate::error::ApiError> {
        if crate::bootstrap::IMMORTAL_NAMESPACES.contains(&name) {
            return Err(crate::error::ApiError::Forbidden(format!(
                "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
            )));
        }
        Ok(())
    }

    fn mark_deleting(ns: &mut Namespace) {
        ns.status.get_or_insert_with(Default::default).phase = Some("Terminating".into());
    }

    fn fields(ns: &Namespace) -> Vec<(&'static str, String)> {
        let phase = ns
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        vec![("status.phase", phase)]
    }
}

/// Whether a namespace is being deleted.
pub fn terminating(ns: &serde_json::Value) -> bool {
    ns["status"]["phase"] == "Terminating" || !ns["metadata"]["deletionTimestamp"].is_null()
}
