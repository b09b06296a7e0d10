//! apiextensions.k8s.io/v1 CustomResourceDefinition: how users define kinds of their own.
//! Defaulted as v1 CRDs are (`names.singular` and `names.listKind` from `names.kind`,
//! conversion `None`, a conversion webhook's service port 443), validated as kube does
//! (`validation.rs`, the schemas through `crate::schema`), with a status of its own: a
//! create starts it with the storage version as the one stored version, and every update
//! adds the storage version it names, as kube's CRD strategy does.

pub mod status;
mod validation;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceConversion, CustomResourceDefinition, CustomResourceDefinitionStatus,
};

use super::Kind;
use crate::error::FieldError;

pub use validation::Paths;

pub struct CustomResourceDefinitions;

/// Adds the storage version to `status.storedVersions` unless it is there.
fn record_storage_version(crd: &mut CustomResourceDefinition) {
    let Some(v) = crd.spec.versions.iter().find(|v| v.storage) else {
        return;
    };
    let status = crd.status.get_or_insert_with(Default::default);
    let stored = status.stored_versions.get_or_insert_with(Vec::new);
    if !stored.contains(&v.name) {
        stored.push(v.name.clone());
    }
}

impl Kind for CustomResourceDefinitions {
    type Obj = CustomResourceDefinition;
    const SINGULAR: &'static str = "customresourcedefinition";
    const STORAGE: Option<&'static str> = Some("apiextensions.k8s.io/customresourcedefinitions");
    const SHORT_NAMES: &'static [&'static str] = &["crd", "crds"];
    const CATEGORIES: &'static [&'static str] = &["api-extensions"];
    const STATUS: bool = true;
    const GENERATION: bool = true;
    const OBJECT_HOOKS: bool = true;

    fn default(crd: &mut CustomResourceDefinition) {
        let names = &mut crd.spec.names;
        if names.singular.as_deref().is_none_or(str::is_empty) {
            names.singular = Some(names.kind.to_lowercase());
        }
        if names.list_kind.as_deref().is_none_or(str::is_empty) && !names.kind.is_empty() {
            names.list_kind = Some(format!("{}List", names.kind));
        }
        let conversion = crd
            .spec
            .conversion
            .get_or_insert_with(|| CustomResourceConversion {
                strategy: "None".into(),
                webhook: None,
            });
        if conversion.strategy.is_empty() {
            conversion.strategy = "None".into();
        }
        if let Some(service) = conversion
            .webhook
            .as_mut()
            .and_then(|w| w.client_config.as_mut())
            .and_then(|c| c.service.as_mut())
        {
            service.port.get_or_insert(443);
        }
    }

    fn prepare_create(crd: &mut CustomResourceDefinition) {
        crd.status = Some(CustomResourceDefinitionStatus::default());
        record_storage_version(crd);
    }

    fn prepare_update(new: &mut CustomResourceDefinition, _old: &CustomResourceDefinition) {
        record_storage_version(new);
    }

    /// The first delete holds the CRD with the cleanup finalizer and marks it Terminating
    /// (its objects are deleted by `apiextensions.rs`), as kube's CRD storage does.
    fn mark_deleting(crd: &mut CustomResourceDefinition) {
        if status::condition(crd, "Terminating").is_some() {
            return;
        }
        let status = crd.status.get_or_insert_with(Default::default);
        status::set_condition(
            status,
            "Terminating",
            "True",
            "InstanceDeletionPending",
            "CustomResourceDefinition marked for deletion; instance deletion pending",
            &crate::store::now(),
        );
        let finalizers = crd.metadata.finalizers.get_or_insert_with(Vec::new);
        if !finalizers.iter().any(|f| f == status::CLEANUP_FINALIZER) {
            finalizers.push(status::CLEANUP_FINALIZER.to_string());
        }
    }

    fn validate(crd: &CustomResourceDefinition) -> Vec<FieldError> {
        validation::validate(crd)
    }

    fn validate_update(
        new: &CustomResourceDefinition,
        old: &CustomResourceDefinition,
    ) -> Vec<FieldError> {
        validation::validate_update(new, old)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> CustomResourceDefinition {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Cluster",
                     "names": {"plural": "widgets", "kind": "Widget"},
                     "versions": [{"name": "v1", "served": true, "storage": false},
                                  {"name": "v2", "served": true, "storage": true}]}
        }))
        .unwrap()
    }

    #[test]
    fn v1_defaults() {
        let mut c = crd();
        CustomResourceDefinitions::default(&mut c);
        assert_eq!(c.spec.names.singular.as_deref(), Some("widget"));
        assert_eq!(c.spec.names.list_kind.as_deref(), Some("WidgetList"));
        assert_eq!(c.spec.conversion.unwrap().strategy, "None");
    }

    #[test]
    fn stored_versions_grow_with_the_storage_version() {
        let mut c = crd();
        c.status = Some(CustomResourceDefinitionStatus {
            stored_versions: Some(vec!["old".into()]),
            ..Default::default()
        });
        CustomResourceDefinitions::prepare_create(&mut c);
        assert_eq!(
            c.status.as_ref().unwrap().stored_versions,
            Some(vec!["v2".to_string()])
        );
        let old = c.clone();
        c.spec.versions[0].storage = true;
        c.spec.versions[1].storage = false;
        CustomResourceDefinitions::prepare_update(&mut c, &old);
        assert_eq!(
            c.status.unwrap().stored_versions,
            Some(vec!["v2".to_string(), "v1".to_string()])
        );
    }
}
