//! `spec.conversion` as kube validates it, at the paths of its internal form
//! (`spec.conversion.webhookClientConfig`, `spec.conversion.conversionReviewVersions`).
//! Flotilla speaks ConversionReview v1 only, so a webhook must accept `v1`: a list with
//! only `v1beta1` is refused as not including a version it can use.

use flotilla_core::names::dns1035_label;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceConversion;

use crate::error::{FieldError, FieldErrorKind};
use crate::schema::gofmt;

const STRATEGIES: [&str; 2] = ["None", "Webhook"];

pub fn errors(c: Option<&CustomResourceConversion>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(c) = c else {
        return errs;
    };
    if !STRATEGIES.contains(&c.strategy.as_str()) {
        errs.push(FieldError {
            field: "spec.conversion.strategy".into(),
            kind: FieldErrorKind::NotSupported(
                gofmt::quote(&c.strategy),
                STRATEGIES.iter().map(|s| s.to_string()).collect(),
            ),
            detail: String::new(),
        });
    }
    let client = c.webhook.as_ref().and_then(|w| w.client_config.as_ref());
    let versions = c
        .webhook
        .as_ref()
        .map(|w| w.conversion_review_versions.as_slice())
        .unwrap_or_default();
    const CLIENT: &str = "spec.conversion.webhookClientConfig";
    const VERSIONS: &str = "spec.conversion.conversionReviewVersions";
    if c.strategy == "Webhook" {
        match client {
            None => errs.push(FieldError::required(
                CLIENT,
                "required when strategy is set to Webhook",
            )),
            Some(cc) => {
                let as_admission = serde_json::to_value(cc)
                    .ok()
                    .and_then(|v| serde_json::from_value(v).ok());
                if let Some(cc) = as_admission {
                    errs.extend(crate::kinds::admissionregistration::webhook::client_config(
                        &cc, CLIENT,
                    ));
                }
            }
        }
        errs.extend(review_versions(versions, VERSIONS));
    } else {
        if client.is_some() {
            errs.push(FieldError::forbidden(
                CLIENT,
                "should not be set when strategy is not set to Webhook",
            ));
        }
        if !versions.is_empty() {
            errs.push(FieldError::forbidden(
                VERSIONS,
                "should not be set when strategy is not set to Webhook",
            ));
        }
    }
    errs
}

fn review_versions(versions: &[String], at: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if versions.is_empty() {
        errs.push(FieldError::required(
            at,
            "must specify at least one version",
        ));
        return errs;
    }
    let mut seen = std::collections::HashSet::new();
    for (i, v) in versions.iter().enumerate() {
        if !seen.insert(v.as_str()) {
            errs.push(FieldError::duplicate(format!("{at}[{i}]"), v));
        }
        let bad = dns1035_label(v);
        if !bad.is_empty() {
            errs.push(FieldError::invalid(format!("{at}[{i}]"), v, bad.join(",")));
        }
    }
    if !versions.iter().any(|v| v == "v1") {
        let list: Vec<String> = versions.iter().map(|v| format!("{v:?}")).collect();
        errs.push(FieldError::invalid_raw(
            at,
            format!("[]string{{{}}}", list.join(", ")),
            "must include at least one of v1",
        ));
    }
    errs
}
