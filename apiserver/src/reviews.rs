//! The review APIs: questions answered at once by the authenticators and the authorizer
//! and never stored, so they are not kinds. authentication.k8s.io: TokenReview (who is
//! this token? — `auth/review.rs`) and SelfSubjectReview (`kubectl auth whoami`);
//! authorization.k8s.io: SubjectAccessReview (may this user do this?) and the
//! SelfSubject{Access,Rules}Reviews (`kubectl auth can-i`), in `authz/review.rs`. Each is
//! a create-only cluster-scoped resource whose creation RBAC authorizes like any other
//! (verb `create`). This table is what routes them and what discovery lists for them,
//! after the kinds' groups, as kube-apiserver lists them.

use serde_json::{json, Map, Value};

use crate::error::ApiError;

pub struct Review {
    pub group: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
}

pub const VERSION: &str = "v1";

pub const REVIEWS: &[Review] = &[
    Review {
        group: "authentication.k8s.io",
        plural: "selfsubjectreviews",
        kind: "SelfSubjectReview",
    },
    Review {
        group: "authentication.k8s.io",
        plural: "tokenreviews",
        kind: "TokenReview",
    },
    Review {
        group: "authorization.k8s.io",
        plural: "selfsubjectaccessreviews",
        kind: "SelfSubjectAccessReview",
    },
    Review {
        group: "authorization.k8s.io",
        plural: "selfsubjectrulesreviews",
        kind: "SelfSubjectRulesReview",
    },
    Review {
        group: "authorization.k8s.io",
        plural: "subjectaccessreviews",
        kind: "SubjectAccessReview",
    },
];

/// A review's body, which must be a JSON object, as `kind` of `group_version`.
pub fn parse_review(kind: &str, group_version: &str, body: &[u8]) -> Result<Value, ApiError> {
    let obj: Map<String, Value> = serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!(
            "{kind} in version \"{VERSION}\" cannot be handled as a {kind}: {e}"
        ))
    })?;
    let mut review = Value::Object(obj);
    review["apiVersion"] = group_version.into();
    review["kind"] = kind.into();
    Ok(review)
}

/// The review served at this group, version and resource.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Review> {
    REVIEWS
        .iter()
        .find(|r| version == VERSION && r.group == group && r.plural == plural)
}

fn groups() -> Vec<&'static str> {
    let mut out: Vec<&str> = Vec::new();
    for r in REVIEWS {
        if !out.contains(&r.group) {
            out.push(r.group);
        }
    }
    out
}

fn group_json(group: &str) -> Value {
    let gv = json!({ "groupVersion": format!("{group}/{VERSION}"), "version": VERSION });
    json!({ "name": group, "versions": [gv.clone()], "preferredVersion": gv })
}

/// Adds the review groups an `APIGroupList` does not name yet.
pub fn add_groups(list: &mut Value) {
    let Some(groups_list) = list.get_mut("groups").and_then(Value::as_array_mut) else {
        return;
    };
    for g in groups() {
        if !groups_list.iter().any(|x| x["name"] == g) {
            groups_list.push(group_json(g));
        }
    }
}

/// The `APIGroup` of a review group.
pub fn group(name: &str) -> Option<Value> {
    groups().into_iter().find(|g| *g == name)?;
    let mut doc = group_json(name);
    doc["kind"] = "APIGroup".into();
    doc["apiVersion"] = "v1".into();
    Some(doc)
}

/// The `APIResourceList` of a review group's version.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let resources: Vec<Value> = REVIEWS
        .iter()
        .filter(|r| r.group == group && version == VERSION)
        .map(|r| {
            json!({
                "name": r.plural,
                "singularName": r.kind.to_ascii_lowercase(),
                "namespaced": false,
                "kind": r.kind,
                "verbs": ["create"],
            })
        })
        .collect();
    if resources.is_empty() {
        return None;
    }
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": format!("{group}/{version}"),
        "resources": resources,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reviews_are_routed_and_discovered() {
        assert_eq!(
            find("authentication.k8s.io", "v1", "tokenreviews").map(|r| r.kind),
            Some("TokenReview")
        );
        assert!(find("authentication.k8s.io", "v1beta1", "tokenreviews").is_none());
        assert!(find("authorization.k8s.io", "v1", "localsubjectaccessreviews").is_none());
        let mut list = json!({ "kind": "APIGroupList", "groups": [group_json("apps")] });
        add_groups(&mut list);
        add_groups(&mut list);
        let names: Vec<&str> = list["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["apps", "authentication.k8s.io", "authorization.k8s.io"]
        );
        assert_eq!(group("authorization.k8s.io").unwrap()["kind"], "APIGroup");
        assert!(group("apps").is_none());
        let authz = resource_list("authorization.k8s.io", "v1").unwrap();
        let sar = &authz["resources"][2];
        assert_eq!(sar["name"], "subjectaccessreviews");
        assert_eq!(sar["singularName"], "subjectaccessreview");
        assert_eq!(sar["verbs"], json!(["create"]));
        assert!(resource_list("authorization.k8s.io", "v2").is_none());
    }

    #[test]
    fn bodies_must_be_objects() {
        for bad in [&b"[]"[..], b"1", b"\"x\"", b"{"] {
            let e = parse_review("TokenReview", "authentication.k8s.io/v1", bad).unwrap_err();
            assert!(
                e.to_string().starts_with(
                    "TokenReview in version \"v1\" cannot be handled as a TokenReview"
                ),
                "{e}"
            );
        }
        let r = parse_review("TokenReview", "authentication.k8s.io/v1", b"{}").unwrap();
        assert_eq!(r["apiVersion"], "authentication.k8s.io/v1");
        assert_eq!(r["kind"], "TokenReview");
    }
}
