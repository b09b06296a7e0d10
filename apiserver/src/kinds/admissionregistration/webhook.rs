//! What both kinds of webhook must be, as kube's admissionregistration validation says
//! it, and the defaults kube's v1 API gives them.

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, RuleWithOperations, ValidatingWebhook, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::error::FieldError;

/// The most matchConditions a webhook may have.
const MAX_MATCH_CONDITIONS: usize = 64;
const OPERATIONS: [&str; 5] = ["*", "CONNECT", "CREATE", "DELETE", "UPDATE"];

/// A mutating webhook seen as a validating one (the same fields but reinvocation).
pub fn view(m: &MutatingWebhook) -> ValidatingWebhook {
    ValidatingWebhook {
        admission_review_versions: m.admission_review_versions.clone(),
        client_config: m.client_config.clone(),
        failure_policy: m.failure_policy.clone(),
        match_conditions: m.match_conditions.clone(),
        match_policy: m.match_policy.clone(),
        name: m.name.clone(),
        namespace_selector: m.namespace_selector.clone(),
        object_selector: m.object_selector.clone(),
        rules: m.rules.clone(),
        side_effects: m.side_effects.clone(),
        timeout_seconds: m.timeout_seconds,
    }
}

/// kube's v1 defaults: failurePolicy Fail, matchPolicy Equivalent, empty (match-all)
/// selectors, a 10 s timeout, rules of any scope, a service's port 443.
pub fn default_common(
    failure: &mut Option<String>,
    match_policy: &mut Option<String>,
    ns: &mut Option<LabelSelector>,
    obj: &mut Option<LabelSelector>,
    timeout: &mut Option<i32>,
    rules: &mut Option<Vec<RuleWithOperations>>,
    client: &mut WebhookClientConfig,
) {
    failure.get_or_insert_with(|| "Fail".into());
    match_policy.get_or_insert_with(|| "Equivalent".into());
    ns.get_or_insert_with(LabelSelector::default);
    obj.get_or_insert_with(LabelSelector::default);
    timeout.get_or_insert(10);
    for r in rules.iter_mut().flatten() {
        r.scope.get_or_insert_with(|| "*".into());
    }
    if let Some(s) = client.service.as_mut() {
        s.port.get_or_insert(443);
    }
}

/// Every webhook of a configuration: each valid, names unique.
pub fn validate_all(hooks: &[ValidatingWebhook]) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, w) in hooks.iter().enumerate() {
        let at = format!("webhooks[{i}]");
        if !w.name.is_empty() && !seen.insert(w.name.as_str()) {
            errs.push(FieldError::duplicate(format!("{at}.name"), &w.name));
        }
        errs.extend(validate(w, &at));
    }
    errs
}

fn validate(w: &ValidatingWebhook, at: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = format!("{at}.name");
    if w.name.is_empty() {
        errs.push(FieldError::required(&name, ""));
    } else {
        for m in flotilla_core::names::dns1123_subdomain(&w.name) {
            errs.push(FieldError::invalid(&name, &w.name, m));
        }
        if w.name.split('.').count() < 3 {
            errs.push(FieldError::invalid(
                &name,
                &w.name,
                "should be a domain with at least three segments separated by dots",
            ));
        }
    }
    let versions = &w.admission_review_versions;
    if versions.is_empty() {
        errs.push(FieldError::required(
            format!("{at}.admissionReviewVersions"),
            "must specify one of v1, v1beta1",
        ));
    } else if !versions.iter().any(|v| v == "v1" || v == "v1beta1") {
        errs.push(FieldError::invalid_raw(
            format!("{at}.admissionReviewVersions"),
            format!("[]string{{{}}}", quoted(versions)),
            "must include at least one of v1, v1beta1",
        ));
    }
    match w.side_effects.as_str() {
        "None" | "NoneOnDryRun" => {}
        "" => errs.push(FieldError::required(
            format!("{at}.sideEffects"),
            "must specify one of None, NoneOnDryRun",
        )),
        other => errs.push(FieldError::not_supported(
            format!("{at}.sideEffects"),
            other,
            &["None", "NoneOnDryRun"],
        )),
    }
    if let Some(t) = w.timeout_seconds {
        if !(1..=30).contains(&t) {
            errs.push(FieldError::invalid_raw(
                format!("{at}.timeoutSeconds"),
                t.to_string(),
                "the timeout value must be between 1 and 30 seconds",
            ));
        }
    }
    one_of(
        &mut errs,
        &format!("{at}.failurePolicy"),
        w.failure_policy.as_deref(),
        &["Fail", "Ignore"],
    );
    one_of(
        &mut errs,
        &format!("{at}.matchPolicy"),
        w.match_policy.as_deref(),
        &["Equivalent", "Exact"],
    );
    errs.extend(client_config(
        &w.client_config,
        &format!("{at}.clientConfig"),
    ));
    for (j, r) in w.rules.iter().flatten().enumerate() {
        errs.extend(rule(r, &format!("{at}.rules[{j}]")));
    }
    errs.extend(match_conditions(w, at));
    errs
}

fn quoted(v: &[String]) -> String {
    v.iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn one_of(errs: &mut Vec<FieldError>, field: &str, v: Option<&str>, allowed: &[&'static str]) {
    if let Some(v) = v {
        if !allowed.contains(&v) {
            errs.push(FieldError::not_supported(field, v, allowed));
        }
    }
}

pub fn client_config(c: &WebhookClientConfig, at: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match (&c.url, &c.service) {
        (Some(_), Some(_)) | (None, None) => errs.push(FieldError::required(
            at,
            "exactly one of url or service is required",
        )),
        (Some(url), None) => {
            let field = format!("{at}.url");
            match url.split_once("://") {
                Some(("https", rest)) if !rest.is_empty() => {
                    if rest.contains('#') {
                        errs.push(FieldError::invalid(
                            &field,
                            url,
                            "fragments are not permitted",
                        ));
                    }
                    if rest.split('/').next().is_some_and(|h| h.contains('@')) {
                        errs.push(FieldError::invalid(
                            &field,
                            url,
                            "user information is not permitted in the URL",
                        ));
                    }
                }
                Some((_, _)) => errs.push(FieldError::invalid(
                    &field,
                    url,
                    "'https' is the only allowed URL scheme",
                )),
                None => errs.push(FieldError::invalid(&field, url, "host must be specified")),
            }
        }
        (None, Some(s)) => {
            if s.name.is_empty() {
                errs.push(FieldError::required(
                    format!("{at}.service.name"),
                    "service name is required",
                ));
            }
            if s.namespace.is_empty() {
                errs.push(FieldError::required(
                    format!("{at}.service.namespace"),
                    "service namespace is required",
                ));
            }
            if let Some(p) = s.path.as_deref().filter(|p| !p.is_empty()) {
                if !p.starts_with('/') {
                    errs.push(FieldError::invalid(
                        format!("{at}.service.path"),
                        p,
                        "must start with a '/'",
                    ));
                }
            }
            if let Some(port) = s.port {
                if !(1..=65535).contains(&port) {
                    errs.push(FieldError::invalid_raw(
                        format!("{at}.service.port"),
                        port.to_string(),
                        "port is not valid: must be between 1 and 65535, inclusive",
                    ));
                }
            }
        }
    }
    errs
}

fn rule(r: &RuleWithOperations, at: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let ops = r.operations.as_deref().unwrap_or(&[]);
    if ops.is_empty() {
        errs.push(FieldError::required(format!("{at}.operations"), ""));
    }
    for (k, op) in ops.iter().enumerate() {
        if !OPERATIONS.contains(&op.as_str()) {
            errs.push(FieldError::not_supported(
                format!("{at}.operations[{k}]"),
                op,
                &OPERATIONS,
            ));
        }
    }
    for (field, list) in [
        ("apiGroups", &r.api_groups),
        ("apiVersions", &r.api_versions),
        ("resources", &r.resources),
    ] {
        if list.as_ref().is_none_or(Vec::is_empty) {
            errs.push(FieldError::required(format!("{at}.{field}"), ""));
        }
    }
    one_of(
        &mut errs,
        &format!("{at}.scope"),
        r.scope.as_deref(),
        &["*", "Cluster", "Namespaced"],
    );
    errs
}

fn match_conditions(w: &ValidatingWebhook, at: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let conds = w.match_conditions.as_deref().unwrap_or(&[]);
    if conds.len() > MAX_MATCH_CONDITIONS {
        errs.push(FieldError::too_many(
            format!("{at}.matchConditions"),
            conds.len(),
            MAX_MATCH_CONDITIONS,
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (k, c) in conds.iter().enumerate() {
        let base = format!("{at}.matchConditions[{k}]");
        if c.name.is_empty() {
            errs.push(FieldError::required(format!("{base}.name"), ""));
        } else if !seen.insert(c.name.as_str()) {
            errs.push(FieldError::duplicate(format!("{base}.name"), &c.name));
        }
        if c.expression.trim().is_empty() {
            errs.push(FieldError::required(format!("{base}.expression"), ""));
        } else if let Err(e) = kube_cel::cel::Program::compile(&c.expression) {
            errs.push(FieldError::invalid(
                format!("{base}.expression"),
                &c.expression,
                format!("compilation failed: {e}"),
            ));
        }
    }
    errs
}
