//! core/v1 ConfigMap.

use k8s_openapi::api::core::v1::ConfigMap;

use super::Kind;
use crate::error::FieldError;

pub struct ConfigMaps;

const MAX_SIZE: usize = 1024 * 1024;

/// A key of a ConfigMap or Secret: `[-._a-zA-Z0-9]+`, not "." or "..".
pub fn check_data_key(field: &str, k: &str, errs: &mut Vec<FieldError>) {
    let ok = !k.is_empty()
        && k.len() <= 253
        && k != "."
        && k != ".."
        && k.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-._".contains(&c));
    if !ok {
        errs.push(FieldError::invalid(
            field,
            k,
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
        ));
    }
}

impl Kind for ConfigMaps {
    type Obj = ConfigMap;
    const SINGULAR: &'static str = "configmap";
    const PRINTER: Option<&'static crate::table::Printer> =
        Some(&crate::table::printers::core::CONFIGMAP);
    const SHORT_NAMES: &'static [&'static str] = &["cm"];

    fn validate(cm: &ConfigMap) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let mut size = 0;
        for (k, v) in cm.data.iter().flatten() {
            check_data_key("data", k, &mut errs);
            size += v.len();
        }
        for (k, v) in cm.binary_data.iter().flatten() {
            check_data_key("binaryData", k, &mut errs);
            if cm.data.as_ref().is_some_and(|d| d.contains_key(k)) {
                errs.push(FieldError::invalid(
                    "data",
                    k,
                    "duplicate of key present in binaryData",
                ));
            }
            size += v.0.len();
        }
        if size > MAX_SIZE {
            errs.push(FieldError::too_long("", MAX_SIZE));
        }
        errs
    }

    fn validate_update(new: &ConfigMap, old: &ConfigMap) -> Vec<FieldError> {
        if old.immutable == Some(true)
            && (new.data != old.data
                || new.binary_data != old.binary_data
                || new.immutable != old.immutable)
        {
            return vec![FieldError::forbidden(
                "data",
                "field is immutable when `immutable` is set",
            )];
        }
        vec![]
    }
}
