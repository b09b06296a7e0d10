//! core/v1 Secret: `stringData` is folded into `data` on write, as Kubernetes does.

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;

use super::configmap::check_data_key;
use super::Kind;
use crate::error::FieldError;

pub struct Secrets;

impl Kind for Secrets {
    type Obj = Secret;
    const SINGULAR: &'static str = "secret";
    const PRINTER: Option<&'static crate::table::Printer> =
        Some(&crate::table::printers::core::SECRET);
    const FIELDS: &'static [&'static str] = &["type"];

    fn default(s: &mut Secret) {
        s.type_.get_or_insert_with(|| "Opaque".into());
        if let Some(sd) = s.string_data.take() {
            let data = s.data.get_or_insert_with(Default::default);
            for (k, v) in sd {
                data.insert(k, ByteString(v.into_bytes()));
            }
        }
    }

    fn validate(s: &Secret) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let mut size = 0;
        for (k, v) in s.data.iter().flatten() {
            check_data_key("data", k, &mut errs);
            size += v.0.len();
        }
        if size > 1024 * 1024 {
            errs.push(FieldError::too_long("data", 1024 * 1024));
        }
        errs
    }

    fn validate_update(new: &Secret, old: &Secret) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if new.type_ != old.type_ {
            errs.push(FieldError::invalid(
                "type",
                new.type_.as_deref().unwrap_or(""),
                "field is immutable",
            ));
        }
        if old.immutable == Some(true) && (new.data != old.data || new.immutable != old.immutable) {
            errs.push(FieldError::forbidden(
                "data",
                "field is immutable when `immutable` is set",
            ));
        }
        errs
    }

    fn fields(s: &Secret) -> Vec<(&'static str, String)> {
        vec![("type", s.type_.clone().unwrap_or_default())]
    }
}
