//! authorization.k8s.io/v1 reviews a user makes of itself: SelfSubjectAccessReview (may I
//! do this? — `kubectl auth can-i`) and SelfSubjectRulesReview (what may I do in this
//! namespace? — `kubectl auth can-i --list`). Both are answered, not stored.

use serde_json::{json, Value};

use super::{Attributes, Authorizer, Decision, ResourceAttributes};
use crate::auth::User;
use crate::error::{ApiError, FieldError};

fn invalid(kind: &'static str, causes: Vec<FieldError>) -> ApiError {
    ApiError::Invalid {
        kind,
        group: "authorization.k8s.io",
        name: String::new(),
        causes,
    }
}

fn str_of(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or("").to_string()
}

/// Answers a SelfSubjectAccessReview (the body) for `user`.
pub fn access_review(az: &Authorizer, user: &User, body: &[u8]) -> Result<Value, ApiError> {
    let mut review: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!(
            "SelfSubjectAccessReview in version \"v1\" cannot be handled as a SelfSubjectAccessReview: {e}"
        ))
    })?;
    let spec = review["spec"].clone();
    let (res, non) = (&spec["resourceAttributes"], &spec["nonResourceAttributes"]);
    let a = match (res.is_object(), non.is_object()) {
        (true, false) => Attributes::Resource(ResourceAttributes {
            verb: str_of(res, "verb"),
            group: str_of(res, "group"),
            resource: str_of(res, "resource"),
            subresource: str_of(res, "subresource"),
            namespace: str_of(res, "namespace"),
            name: str_of(res, "name"),
        }),
        (false, true) => Attributes::NonResource {
            verb: str_of(non, "verb"),
            path: str_of(non, "path"),
        },
        (true, true) => {
            return Err(invalid(
                "SelfSubjectAccessReview",
                vec![FieldError::invalid(
                    "spec.nonResourceAttributes",
                    &non.to_string(),
                    "cannot be specified in combination with resourceAttributes",
                )],
            ))
        }
        (false, false) => {
            return Err(invalid(
                "SelfSubjectAccessReview",
                vec![FieldError::invalid(
                    "spec.resourceAttributes",
                    "null",
                    "exactly one of nonResourceAttributes or resourceAttributes must be specified",
                )],
            ))
        }
    };
    let status = match az.decide(user, &a) {
        Decision::Allow(reason) => json!({ "allowed": true, "reason": reason }),
        Decision::Deny(reason) => json!({ "allowed": false, "reason": reason }),
    };
    review["status"] = status;
    review["apiVersion"] = "authorization.k8s.io/v1".into();
    review["kind"] = "SelfSubjectAccessReview".into();
    Ok(review)
}

/// Answers a SelfSubjectRulesReview for `user`: every rule that applies in the namespace.
pub fn rules_review(az: &Authorizer, user: &User, body: &[u8]) -> Result<Value, ApiError> {
    let mut review: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!(
            "SelfSubjectRulesReview in version \"v1\" cannot be handled as a SelfSubjectRulesReview: {e}"
        ))
    })?;
    let ns = str_of(&review["spec"], "namespace");
    if ns.is_empty() {
        return Err(ApiError::BadRequest("no namespace on request".into()));
    }
    let (mut resource_rules, mut url_rules) = (Vec::new(), Vec::new());
    let incomplete = match az.policy() {
        None => true,
        Some(p) => {
            for (rule, _) in p.rules_for(user, &ns) {
                let urls = rule.non_resource_urls.as_deref().unwrap_or(&[]);
                if urls.is_empty() {
                    resource_rules.push(json!({
                        "verbs": rule.verbs,
                        "apiGroups": rule.api_groups.clone().unwrap_or_default(),
                        "resources": rule.resources.clone().unwrap_or_default(),
                        "resourceNames": rule.resource_names.clone().unwrap_or_default(),
                    }));
                } else {
                    url_rules.push(json!({ "verbs": rule.verbs, "nonResourceURLs": urls }));
                }
            }
            false
        }
    };
    review["status"] = json!({
        "resourceRules": resource_rules,
        "nonResourceRules": url_rules,
        "incomplete": incomplete,
    });
    review["apiVersion"] = "authorization.k8s.io/v1".into();
    review["kind"] = "SelfSubjectRulesReview".into();
    Ok(review)
}
