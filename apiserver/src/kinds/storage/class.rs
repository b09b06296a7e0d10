//! storage.k8s.io/v1 StorageClass: kube's defaults (reclaim Delete, binding Immediate),
//! validation and update rules (parameters, provisioner and reclaim policy fixed), and its
//! columns with `(default)` after the default class.

use k8s_openapi::api::storage::v1::StorageClass;

use super::super::Kind;
use crate::error::FieldError;

pub struct StorageClasses;

const RECLAIM: &[&str] = &["Delete", "Retain"];
const BINDING: &[&str] = &["Immediate", "WaitForFirstConsumer"];
const MAX_PARAMETERS: usize = 512;
const MAX_PARAMETERS_BYTES: usize = 256 * 1024;

impl Kind for StorageClasses {
    type Obj = StorageClass;
    const SINGULAR: &'static str = "storageclass";
    const SHORT_NAMES: &'static [&'static str] = &["sc"];
    const PRINTER: Option<&'static crate::table::Printer> =
        Some(&crate::table::printers::storage::STORAGECLASS);

    fn default(sc: &mut StorageClass) {
        sc.reclaim_policy.get_or_insert_with(|| "Delete".into());
        sc.volume_binding_mode
            .get_or_insert_with(|| "Immediate".into());
    }

    fn validate(sc: &StorageClass) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if sc.provisioner.is_empty() {
            errs.push(FieldError::required("provisioner", ""));
        } else {
            for m in flotilla_core::names::label_key(&sc.provisioner.to_lowercase()) {
                errs.push(FieldError::invalid("provisioner", &sc.provisioner, m));
            }
        }
        if let Some(p) = &sc.parameters {
            if p.len() > MAX_PARAMETERS {
                errs.push(FieldError::too_many("parameters", p.len(), MAX_PARAMETERS));
            }
            let mut size = 0usize;
            for (k, v) in p {
                if k.is_empty() {
                    errs.push(FieldError::invalid(
                        "parameters",
                        k,
                        "field can not be empty.",
                    ));
                }
                size = size.saturating_add(k.len()).saturating_add(v.len());
            }
            if size > MAX_PARAMETERS_BYTES {
                errs.push(FieldError::too_long("parameters", MAX_PARAMETERS_BYTES));
            }
        }
        if let Some(r) = sc
            .reclaim_policy
            .as_deref()
            .filter(|r| !RECLAIM.contains(r))
        {
            errs.push(FieldError::not_supported("reclaimPolicy", r, RECLAIM));
        }
        match sc.volume_binding_mode.as_deref() {
            None => errs.push(FieldError::required("volumeBindingMode", "")),
            Some(m) if !BINDING.contains(&m) => {
                errs.push(FieldError::not_supported("volumeBindingMode", m, BINDING))
            }
            Some(_) => {}
        }
        errs
    }

    fn validate_update(new: &StorageClass, old: &StorageClass) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let params = |s: &StorageClass| s.parameters.clone().unwrap_or_default();
        if params(new) != params(old) {
            errs.push(FieldError::forbidden(
                "parameters",
                "updates to parameters are forbidden.",
            ));
        }
        if new.provisioner != old.provisioner {
            errs.push(FieldError::forbidden(
                "provisioner",
                "updates to provisioner are forbidden.",
            ));
        }
        if new.reclaim_policy != old.reclaim_policy {
            errs.push(FieldError::forbidden(
                "reclaimPolicy",
                "updates to reclaimPolicy are forbidden.",
            ));
        }
        if new.volume_binding_mode != old.volume_binding_mode {
            errs.push(FieldError::invalid(
                "volumeBindingMode",
                new.volume_binding_mode.as_deref().unwrap_or(""),
                "field is immutable",
            ));
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::super::{is_default, DEFAULT_ANNOTATIONS};
    use super::*;
    use serde_json::json;

    fn sc(v: serde_json::Value) -> StorageClass {
        let mut sc: StorageClass = serde_json::from_value(v).unwrap();
        StorageClasses::default(&mut sc);
        sc
    }

    #[test]
    fn defaults_and_validation() {
        let ok =
            sc(json!({"metadata": {"name": "local-path"}, "provisioner": "rancher.io/local-path"}));
        assert_eq!(ok.reclaim_policy.as_deref(), Some("Delete"));
        assert_eq!(ok.volume_binding_mode.as_deref(), Some("Immediate"));
        assert!(StorageClasses::validate(&ok).is_empty());
        let bad = sc(json!({"metadata": {"name": "x"}, "provisioner": "",
            "reclaimPolicy": "Recycle", "volumeBindingMode": "Later"}));
        let errs = StorageClasses::validate(&bad);
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["provisioner", "reclaimPolicy", "volumeBindingMode"]
        );
    }

    #[test]
    fn parameters_provisioner_and_reclaim_are_fixed() {
        let old = sc(json!({"metadata": {"name": "x"}, "provisioner": "a.io/p",
            "parameters": {"k": "v"}}));
        let mut new = old.clone();
        new.parameters = Some([("k".to_string(), "w".to_string())].into());
        new.provisioner = "b.io/p".into();
        new.allow_volume_expansion = Some(true);
        let e: Vec<String> = StorageClasses::validate_update(&new, &old)
            .iter()
            .map(|e| e.detail.clone())
            .collect();
        assert_eq!(
            e,
            [
                "updates to parameters are forbidden.",
                "updates to provisioner are forbidden."
            ]
        );
    }

    #[test]
    fn default_annotation() {
        let a = [(DEFAULT_ANNOTATIONS[0].to_string(), "true".to_string())].into();
        assert!(is_default(Some(&a)));
        let b = [(DEFAULT_ANNOTATIONS[1].to_string(), "true".to_string())].into();
        assert!(is_default(Some(&b)));
        assert!(!is_default(None));
    }
}
