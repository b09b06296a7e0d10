//! core/v1 Event.

use k8s_openapi::api::core::v1::Event;

use super::Kind;
use crate::error::FieldError;

pub struct Events;

impl Kind for Events {
    type Obj = Event;
    const SINGULAR: &'static str = "event";
    const PRINTER: Option<&'static crate::table::Printer> =
        Some(&crate::table::printers::core::EVENT);
    const SHORT_NAMES: &'static [&'static str] = &["ev"];
    const FIELDS: &'static [&'static str] = &[
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ];

    fn validate(e: &Event) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let ns = e.metadata.namespace.as_deref().unwrap_or("");
        let ino = e.involved_object.namespace.as_deref().unwrap_or("");
        if !ino.is_empty() && ino != ns {
            errs.push(FieldError::invalid(
                "involvedObject.namespace",
                ino,
                "does not match event.namespace",
            ));
        }
        if let Some(t) = e.type_.as_deref() {
            if !["Normal", "Warning"].contains(&t) {
                errs.push(FieldError::not_supported("type", t, &["Normal", "Warning"]));
            }
        }
        errs
    }

    fn fields(e: &Event) -> Vec<(&'static str, String)> {
        let o = &e.involved_object;
        let s = |x: &Option<String>| x.clone().unwrap_or_default();
        vec![
            ("involvedObject.kind", s(&o.kind)),
            ("involvedObject.namespace", s(&o.namespace)),
            ("involvedObject.name", s(&o.name)),
            ("involvedObject.uid", s(&o.uid)),
            ("involvedObject.apiVersion", s(&o.api_version)),
            ("involvedObject.resourceVersion", s(&o.resource_version)),
            ("involvedObject.fieldPath", s(&o.field_path)),
            ("reason", s(&e.reason)),
            ("reportingComponent", s(&e.reporting_component)),
            (
                "source",
                e.source
                    .as_ref()
                    .and_then(|x| x.component.clone())
                    .unwrap_or_default(),
            ),
            ("type", s(&e.type_)),
        ]
    }
}
