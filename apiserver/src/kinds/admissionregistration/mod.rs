//! admissionregistration.k8s.io/v1 MutatingWebhookConfiguration and
//! ValidatingWebhookConfiguration: kube's defaults and validation. The two kinds' webhooks
//! differ only in the mutating one's `reinvocationPolicy`, so both are checked as one
//! `ValidatingWebhook` view (`webhook.rs`); calling them is `crate::webhook`'s. And
//! ValidatingAdmissionPolicy with its bindings (`policy.rs`).

pub mod policy;
pub mod webhook;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};

use super::Kind;
use crate::error::FieldError;

pub struct MutatingWebhookConfigurations;
pub struct ValidatingWebhookConfigurations;

impl Kind for MutatingWebhookConfigurations {
    type Obj = MutatingWebhookConfiguration;
    const SINGULAR: &'static str = "mutatingwebhookconfiguration";
    const CATEGORIES: &'static [&'static str] = &["api-extensions"];

    fn default(c: &mut MutatingWebhookConfiguration) {
        for w in c.webhooks.iter_mut().flatten() {
            webhook::default_common(
                &mut w.failure_policy,
                &mut w.match_policy,
                &mut w.namespace_selector,
                &mut w.object_selector,
                &mut w.timeout_seconds,
                &mut w.rules,
                &mut w.client_config,
            );
            w.reinvocation_policy.get_or_insert_with(|| "Never".into());
        }
    }

    fn validate(c: &MutatingWebhookConfiguration) -> Vec<FieldError> {
        let hooks: Vec<_> = c.webhooks.iter().flatten().map(webhook::view).collect();
        let mut errs = webhook::validate_all(&hooks);
        for (i, w) in c.webhooks.iter().flatten().enumerate() {
            if let Some(p) = w.reinvocation_policy.as_deref() {
                if !["IfNeeded", "Never"].contains(&p) {
                    errs.push(FieldError::not_supported(
                        format!("webhooks[{i}].reinvocationPolicy"),
                        p,
                        &["IfNeeded", "Never"],
                    ));
                }
            }
        }
        errs
    }
}

impl Kind for ValidatingWebhookConfigurations {
    type Obj = ValidatingWebhookConfiguration;
    const SINGULAR: &'static str = "validatingwebhookconfiguration";
    const CATEGORIES: &'static [&'static str] = &["api-extensions"];

    fn default(c: &mut ValidatingWebhookConfiguration) {
        for w in c.webhooks.iter_mut().flatten() {
            webhook::default_common(
                &mut w.failure_policy,
                &mut w.match_policy,
                &mut w.namespace_selector,
                &mut w.object_selector,
                &mut w.timeout_seconds,
                &mut w.rules,
                &mut w.client_config,
            );
        }
    }

    fn validate(c: &ValidatingWebhookConfiguration) -> Vec<FieldError> {
        webhook::validate_all(c.webhooks.as_deref().unwrap_or(&[]))
    }
}

#[cfg(test)]
mod tests;
