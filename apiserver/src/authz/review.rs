//! authorization.k8s.io/v1 reviews: SelfSubjectAccessReview (may I do this? — `kubectl auth
//! can-i`), SelfSubjectRulesReview (what may I do in this namespace? — `kubectl auth can-i
//! --list`) and SubjectAccessReview (may this user do this? — asked by the nodes' agents
//! about whoever calls them, so it needs RBAC's `create` on `subjectaccessreviews`). All
//! are answered with the same evaluation as requests, not stored.

use serde_json::{json, Value};

use super::{Attributes, Authorizer, Decision, ResourceAttributes};
use crate::auth::User;
use crate::error::{ApiError, FieldError};
use crate::reviews::parse_review;

const GROUP_VERSION: &str = "authorization.k8s.io/v1";

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

/// The attributes a review's `spec` asks about; kube-apiserver's field errors otherwise.
fn attributes(spec: &Value, causes: &mut Vec<FieldError>) -> Option<Attributes> {
    let (res, non) = (&spec["resourceAttributes"], &spec["nonResourceAttributes"]);
    match (res.is_object(), non.is_object()) {
        (true, false) => Some(Attributes::Resource(ResourceAttributes {
            verb: str_of(res, "verb"),
            group: str_of(res, "group"),
            resource: str_of(res, "resource"),
            subresource: str_of(res, "subresource"),
            namespace: str_of(res, "namespace"),
            name: str_of(res, "name"),
        })),
        (false, true) => Some(Attributes::NonResource {
            verb: str_of(non, "verb"),
            path: str_of(non, "path"),
        }),
        (true, true) => {
            causes.push(FieldError::invalid(
                "spec.nonResourceAttributes",
                &non.to_string(),
                "cannot be specified in combination with resourceAttributes",
            ));
            None
        }
        (false, false) => {
            causes.push(FieldError::invalid(
                "spec.resourceAttributes",
                "null",
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
            ));
            None
        }
    }
}

/// An access review's status (`reason` left out when empty, as Go's omitempty). RBAC never
/// denies outright, so `denied` is never set: a request it does not allow is just not
/// allowed, as kube-apiserver's RBAC authorizer has no opinion on it.
fn status(d: Decision) -> Value {
    let (allowed, reason) = match d {
        Decision::Allow(r) => (true, r),
        Decision::Deny(r) => (false, r),
    };
    let mut st = json!({ "allowed": allowed });
    if !reason.is_empty() {
        st["reason"] = reason.into();
    }
    st
}

/// Answers a SelfSubjectAccessReview (the body) for `user`.
pub fn access_review(az: &Authorizer, user: &User, body: &[u8]) -> Result<Value, ApiError> {
    const KIND: &str = "SelfSubjectAccessReview";
    let mut review = parse_review(KIND, GROUP_VERSION, body)?;
    let mut causes = Vec::new();
    let a = attributes(&review["spec"], &mut causes);
    let Some(a) = a.filter(|_| causes.is_empty()) else {
        return Err(invalid(KIND, causes));
    };
    review["status"] = status(az.decide(user, &a));
    Ok(review)
}

/// Answers a SubjectAccessReview (the body): may `spec.user` in `spec.groups` do what the
/// spec's attributes say? The subject is taken as given (no group is added), as
/// kube-apiserver takes it; the caller (a node's agent) sends the groups it authenticated.
pub fn subject_access_review(az: &Authorizer, body: &[u8]) -> Result<Value, ApiError> {
    const KIND: &str = "SubjectAccessReview";
    let mut review = parse_review(KIND, GROUP_VERSION, body)?;
    let spec = &review["spec"];
    let mut causes = Vec::new();
    let a = attributes(spec, &mut causes);
    let subject = User {
        name: str_of(spec, "user"),
        uid: str_of(spec, "uid"),
        groups: spec["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| g.as_str().map(String::from))
            .collect(),
    };
    if subject.name.is_empty() && subject.groups.is_empty() {
        causes.push(FieldError::invalid(
            "spec.user",
            "",
            "at least one of user or group must be specified",
        ));
    }
    let Some(a) = a.filter(|_| causes.is_empty()) else {
        return Err(invalid(KIND, causes));
    };
    review["status"] = status(az.decide(&subject, &a));
    Ok(review)
}

/// Answers a SelfSubjectRulesReview for `user`: every rule that applies in the namespace.
pub fn rules_review(az: &Authorizer, user: &User, body: &[u8]) -> Result<Value, ApiError> {
    let mut review = parse_review("SelfSubjectRulesReview", GROUP_VERSION, body)?;
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
    Ok(review)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RBAC over a watch cache that has not synced: only system:masters is allowed.
    fn authorizer() -> Authorizer {
        let cache = crate::store::cache::Cache::new(crate::kinds::Kinds::all(), 10);
        Authorizer::new(super::super::Mode::Rbac, cache)
    }

    fn sar(spec: Value) -> Result<Value, ApiError> {
        let body = json!({ "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec });
        subject_access_review(&authorizer(), &serde_json::to_vec(&body).unwrap())
    }

    #[test]
    fn subject_access_reviews_judge_the_subject_given() {
        let proxy =
            json!({ "verb": "get", "resource": "nodes", "subresource": "proxy", "name": "n1" });
        let r = sar(
            json!({ "user": "root", "groups": ["system:masters"], "resourceAttributes": proxy }),
        )
        .unwrap();
        assert_eq!(r["status"], json!({ "allowed": true }));
        assert_eq!(r["kind"], "SubjectAccessReview");
        assert_eq!(r["spec"]["user"], "root");
        // Not allowed is not "denied": RBAC has no opinion on what it does not allow.
        let r = sar(json!({ "user": "bob", "resourceAttributes": proxy })).unwrap();
        assert_eq!(r["status"]["allowed"], false);
        assert!(r["status"].get("denied").is_none(), "{r}");
        let r = sar(
            json!({ "groups": ["g"], "nonResourceAttributes": { "verb": "get", "path": "/x" } }),
        )
        .unwrap();
        assert_eq!(r["status"]["allowed"], false);
    }

    #[test]
    fn subject_access_reviews_are_validated_as_kube_validates_them() {
        let e = sar(json!({})).unwrap_err();
        assert_eq!(e.code(), 422);
        assert_eq!(
            e.to_string(),
            "SubjectAccessReview.authorization.k8s.io \"\" is invalid: [spec.resourceAttributes: Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified, spec.user: Invalid value: \"\": at least one of user or group must be specified]"
        );
        let both = json!({ "user": "u", "resourceAttributes": {}, "nonResourceAttributes": {} });
        assert!(sar(both)
            .unwrap_err()
            .to_string()
            .contains("cannot be specified in combination with resourceAttributes"));
        let e = subject_access_review(&authorizer(), b"[1]").unwrap_err();
        assert_eq!(e.code(), 400);
        // The self review needs no subject.
        let body = br#"{"spec":{"resourceAttributes":{"verb":"get","resource":"pods"}}}"#;
        let me = User {
            name: "bob".into(),
            uid: String::new(),
            groups: vec!["system:masters".into()],
        };
        let r = access_review(&authorizer(), &me, body).unwrap();
        assert_eq!(r["status"], json!({ "allowed": true }));
        assert_eq!(r["kind"], "SelfSubjectAccessReview");
    }
}
