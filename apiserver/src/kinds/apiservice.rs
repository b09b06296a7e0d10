//! apiregistration.k8s.io/v1 APIService: a group/version served by another server behind
//! this one (API aggregation), or by this one (`service` unset: Local). Defaulted
//! (`service.port` 443) and validated as kube-aggregator does; the `Available` condition
//! is kept by `crate::aggregator::available`, requests are proxied by
//! `crate::aggregator::proxy`.

use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;

use super::Kind;
use crate::error::FieldError;

pub struct APIServices;

impl Kind for APIServices {
    type Obj = APIService;
    const SINGULAR: &'static str = "apiservice";
    const STORAGE: Option<&'static str> = Some("apiregistration.k8s.io/apiservices");
    const CATEGORIES: &'static [&'static str] = &["api-extensions"];
    const STATUS: bool = true;
    const PRINTER: Option<&'static crate::table::Printer> =
        Some(&crate::table::printers::other::APISERVICE);

    fn default(a: &mut APIService) {
        if let Some(s) = a.spec.as_mut().and_then(|s| s.service.as_mut()) {
            s.port.get_or_insert(443);
        }
    }

    fn validate(a: &APIService) -> Vec<FieldError> {
        validate(a)
    }
}

fn validate(a: &APIService) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(spec) = &a.spec else {
        return vec![FieldError::required("spec", "")];
    };
    let group = spec.group.as_deref().unwrap_or("");
    let version = spec.version.as_deref().unwrap_or("");
    let name = a.metadata.name.as_deref().unwrap_or("");
    let want = format!("{version}.{group}");
    if !name.is_empty() && name != want {
        errs.push(FieldError::invalid(
            "metadata.name",
            name,
            format!("must be {want}"),
        ));
    }
    if group.is_empty() && version != "v1" {
        errs.push(FieldError::required(
            "spec.group",
            "only v1 may have an empty group and it better be legacy kube",
        ));
    }
    if !group.is_empty() {
        for m in flotilla_core::names::dns1123_subdomain(group) {
            errs.push(FieldError::invalid("spec.group", group, m));
        }
    }
    if version.is_empty() {
        errs.push(FieldError::required("spec.version", ""));
    } else {
        for m in flotilla_core::names::dns1035_label(version) {
            errs.push(FieldError::invalid("spec.version", version, m));
        }
    }
    if !(1..=20000).contains(&spec.group_priority_minimum) {
        errs.push(FieldError::invalid_raw(
            "spec.groupPriorityMinimum",
            spec.group_priority_minimum.to_string(),
            "must be positive and less than 20000",
        ));
    }
    if !(1..=1000).contains(&spec.version_priority) {
        errs.push(FieldError::invalid_raw(
            "spec.versionPriority",
            spec.version_priority.to_string(),
            "must be positive and less than 1000",
        ));
    }
    let ca = spec.ca_bundle.as_ref().is_some_and(|b| !b.0.is_empty());
    let insecure = spec.insecure_skip_tls_verify == Some(true);
    match &spec.service {
        None => {
            if ca {
                errs.push(FieldError::invalid_raw(
                    "spec.caBundle",
                    "\"(bytes)\"".into(),
                    "local APIServices may not have a caBundle",
                ));
            }
            if insecure {
                errs.push(FieldError::invalid_raw(
                    "spec.insecureSkipTLSVerify",
                    "true".into(),
                    "local APIServices may not have insecureSkipTLSVerify",
                ));
            }
        }
        Some(s) => {
            let (svc_ns, svc_name) = (
                s.namespace.as_deref().unwrap_or(""),
                s.name.as_deref().unwrap_or(""),
            );
            if svc_ns.is_empty() {
                errs.push(FieldError::required("spec.service.namespace", ""));
            }
            if svc_name.is_empty() {
                errs.push(FieldError::required("spec.service.name", ""));
            }
            if let Some(p) = s.port {
                if !(1..=65535).contains(&p) {
                    errs.push(FieldError::invalid_raw(
                        "spec.service.port",
                        p.to_string(),
                        "port is not valid: must be between 1 and 65535, inclusive",
                    ));
                }
            }
            if insecure && ca {
                errs.push(FieldError::invalid_raw(
                    "spec.insecureSkipTLSVerify",
                    "true".into(),
                    "may not be true if caBundle is present",
                ));
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(v: serde_json::Value) -> Vec<String> {
        let mut a: APIService = serde_json::from_value(v).unwrap();
        APIServices::default(&mut a);
        validate(&a).iter().map(|e| e.to_string()).collect()
    }

    fn good() -> serde_json::Value {
        json!({"metadata": {"name": "v1alpha1.wardle.example.com"},
               "spec": {"group": "wardle.example.com", "version": "v1alpha1",
                        "service": {"namespace": "wardle", "name": "api"},
                        "caBundle": "Y2E=", "groupPriorityMinimum": 1000, "versionPriority": 15}})
    }

    #[test]
    fn a_good_apiservice_is_defaulted_and_valid() {
        let mut a: APIService = serde_json::from_value(good()).unwrap();
        APIServices::default(&mut a);
        assert_eq!(
            a.spec.as_ref().unwrap().service.as_ref().unwrap().port,
            Some(443)
        );
        assert!(validate(&a).is_empty(), "{:?}", validate(&a));
    }

    #[test]
    fn bad_apiservices_are_refused_as_kube_refuses_them() {
        let mut v = good();
        v["metadata"]["name"] = json!("wardle");
        v["spec"]["groupPriorityMinimum"] = json!(0);
        v["spec"]["versionPriority"] = json!(2000);
        v["spec"]["insecureSkipTLSVerify"] = json!(true);
        assert_eq!(
            errors(v),
            [
                "metadata.name: Invalid value: \"wardle\": must be v1alpha1.wardle.example.com",
                "spec.groupPriorityMinimum: Invalid value: 0: must be positive and less than 20000",
                "spec.versionPriority: Invalid value: 2000: must be positive and less than 1000",
                "spec.insecureSkipTLSVerify: Invalid value: true: may not be true if caBundle is present",
            ]
        );
        let mut local = good();
        local["spec"].as_object_mut().unwrap().remove("service");
        assert_eq!(
            errors(local),
            ["spec.caBundle: Invalid value: \"(bytes)\": local APIServices may not have a caBundle"]
        );
    }
}
