//! core/v1 ReplicationController: the ReplicaSet's predecessor, with a plain label map as
//! its selector. Defaulted as Kubernetes does (selector and labels from the template's
//! labels, one replica), validated with the checks workloads share, and scaled through
//! its `scale` subresource.

use k8s_openapi::api::core::v1::{ReplicationController, ReplicationControllerStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::deployment::validate_workload;
use super::{podspec, Kind, ScaleSpec, SelectorAt};
use crate::error::FieldError;

pub struct ReplicationControllers;

impl Kind for ReplicationControllers {
    type Obj = ReplicationController;
    const SINGULAR: &'static str = "replicationcontroller";
    const SHORT_NAMES: &'static [&'static str] = &["rc"];
    const CATEGORIES: &'static [&'static str] = &["all"];
    const STATUS: bool = true;
    const GENERATION: bool = true;
    const FIELDS: &'static [&'static str] = &["status.replicas"];
    const SCALE: Option<ScaleSpec> = Some(ScaleSpec {
        spec_replicas: "/spec/replicas",
        status_replicas: "/status/replicas",
        selector: SelectorAt::Map("/spec/selector"),
    });
    const PRINTER: Option<&'static crate::table::Printer> =
        Some(&crate::table::printers::core::REPLICATIONCONTROLLER);

    fn default(rc: &mut ReplicationController) {
        let template_labels = rc
            .spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .filter(|l| !l.is_empty());
        if let Some(labels) = &template_labels {
            if rc.metadata.labels.as_ref().is_none_or(|l| l.is_empty()) {
                rc.metadata.labels = Some(labels.clone());
            }
        }
        let Some(spec) = rc.spec.as_mut() else {
            return;
        };
        if let Some(labels) = template_labels {
            if spec.selector.as_ref().is_none_or(|s| s.is_empty()) {
                spec.selector = Some(labels);
            }
        }
        spec.replicas.get_or_insert(1);
        if let Some(t) = spec.template.as_mut() {
            podspec::default_template(t);
        }
    }

    fn prepare_create(rc: &mut ReplicationController) {
        rc.status = Some(ReplicationControllerStatus::default());
    }

    fn validate(rc: &ReplicationController) -> Vec<FieldError> {
        let Some(spec) = &rc.spec else {
            return vec![FieldError::required("spec", "")];
        };
        let selector = LabelSelector {
            match_labels: spec.selector.clone(),
            match_expressions: None,
        };
        validate_workload(&selector, spec.replicas, spec.template.as_ref())
    }

    fn fields(rc: &ReplicationController) -> Vec<(&'static str, String)> {
        let n = rc.status.as_ref().map(|s| s.replicas).unwrap_or(0);
        vec![("status.replicas", n.to_string())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::{Strategy, Typed};

    #[test]
    fn selector_and_labels_default_from_the_template_and_scale_is_served() {
        let k = Typed::<ReplicationControllers>::new();
        let body = br#"{"apiVersion":"v1","kind":"ReplicationController","metadata":{"name":"web","namespace":"d"},
            "spec":{"template":{"metadata":{"labels":{"app":"web"}},
            "spec":{"containers":[{"name":"c","image":"busybox"}]}}}}"#;
        let v = k.decode(body).unwrap();
        assert_eq!(v["spec"]["selector"]["app"], "web");
        assert_eq!(v["metadata"]["labels"]["app"], "web");
        assert_eq!(v["spec"]["replicas"], 1);
        k.validate(&v, None).unwrap();
        let info = k.info();
        assert!(info.subresource("scale").is_some() && info.subresource("status").is_some());
        assert_eq!(info.short_names, ["rc"]);
        // A selector the template does not satisfy is refused.
        let bad =
            br#"{"metadata":{"name":"web","namespace":"d"},"spec":{"selector":{"app":"other"},
            "template":{"metadata":{"labels":{"app":"web"}},
            "spec":{"containers":[{"name":"c","image":"busybox"}]}}}}"#;
        let v = k.decode(bad).unwrap();
        assert!(k.validate(&v, None).is_err());
    }
}
