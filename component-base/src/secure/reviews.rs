//! What a delegating port asks the apiserver, as the kubelet's and kube-scheduler's
//! webhook authenticator and authorizer do: TokenReview (who is this bearer token?) and
//! SubjectAccessReview (may this user do this?). The vocabulary both sides of a port share
//! (`User`, `Attributes`) is defined here; `Reviewer` is the seam unit tests replace.

use std::time::Duration;

use serde_json::{json, Value};

/// Who made a request to a delegating port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

/// The group every authenticated user is in (the kubelet adds it, as kube-apiserver does).
pub const AUTHENTICATED: &str = "system:authenticated";

impl User {
    /// The user with `system:authenticated` among its groups.
    pub fn authenticated(mut self) -> User {
        if !self.groups.iter().any(|g| g == AUTHENTICATED) {
            self.groups.push(AUTHENTICATED.to_string());
        }
        self
    }
}

/// What a request asks to do, in RBAC's terms: a verb on a (cluster-scoped, core) resource
/// (the agent's port: a subresource of its Node), or on a non-resource path (`/metrics`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attributes {
    Resource {
        verb: String,
        resource: String,
        subresource: String,
        name: String,
    },
    NonResource {
        verb: String,
        path: String,
    },
}

impl Attributes {
    pub fn verb(&self) -> &str {
        match self {
            Attributes::Resource { verb, .. } | Attributes::NonResource { verb, .. } => verb,
        }
    }

    /// Its parts, for a cache key.
    pub fn parts(&self) -> Vec<&[u8]> {
        match self {
            Attributes::Resource {
                verb,
                resource,
                subresource,
                name,
            } => vec![
                b"r",
                verb.as_bytes(),
                resource.as_bytes(),
                subresource.as_bytes(),
                name.as_bytes(),
            ],
            Attributes::NonResource { verb, path } => vec![b"n", verb.as_bytes(), path.as_bytes()],
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("the apiserver: {0}")]
    Api(String),
    #[error("the apiserver did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the apiserver's answer has no {0}")]
    Malformed(&'static str),
}

/// The apiserver's answers.
#[async_trait::async_trait]
pub trait Reviewer: Send + Sync {
    /// Who `token` is; None when the apiserver does not authenticate it.
    async fn token(&self, token: &str) -> Result<Option<User>, ReviewError>;
    /// Whether `user` may do `a`.
    async fn access(&self, user: &User, a: &Attributes) -> Result<bool, ReviewError>;
}

/// How long one review may take (the kubelet's webhook timeouts are 10 s).
const TIMEOUT: Duration = Duration::from_secs(10);

/// Reviews through the component's own client (its identity may `create` both reviews:
/// the `system:node`, `system:kube-scheduler` and `system:kube-controller-manager` roles).
pub struct ApiReviewer {
    pub client: kube::Client,
}

impl ApiReviewer {
    async fn post(&self, path: &str, body: &Value) -> Result<Value, ReviewError> {
        let req = hyper::Request::post(path)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(body).unwrap_or_default())
            .map_err(|e| ReviewError::Api(e.to_string()))?;
        match tokio::time::timeout(TIMEOUT, self.client.request::<Value>(req)).await {
            Ok(r) => r.map_err(|e| ReviewError::Api(e.to_string())),
            Err(_) => Err(ReviewError::Timeout(TIMEOUT)),
        }
    }
}

/// The TokenReview sent: the token alone, so the apiserver checks it for its own
/// audiences (the kubelet sets none either).
pub fn token_review(token: &str) -> Value {
    json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": { "token": token },
    })
}

/// The user a TokenReview's answer authenticates, if any.
pub fn reviewed_user(answer: &Value) -> Result<Option<User>, ReviewError> {
    let status = answer
        .get("status")
        .filter(|s| s.is_object())
        .ok_or(ReviewError::Malformed("status"))?;
    if status["authenticated"].as_bool() != Some(true) {
        return Ok(None);
    }
    let u = &status["user"];
    let name = u["username"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or(ReviewError::Malformed("status.user.username"))?;
    Ok(Some(User {
        name: name.to_string(),
        uid: u["uid"].as_str().unwrap_or_default().to_string(),
        groups: u["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| g.as_str().map(String::from))
            .collect(),
    }))
}

/// The SubjectAccessReview sent for `user` doing `a`.
pub fn access_review(user: &User, a: &Attributes) -> Value {
    let mut spec = json!({
        "user": user.name,
        "uid": user.uid,
        "groups": user.groups,
    });
    match a {
        Attributes::Resource {
            verb,
            resource,
            subresource,
            name,
        } => {
            spec["resourceAttributes"] = json!({
                "verb": verb,
                "version": "v1",
                "resource": resource,
                "subresource": subresource,
                "name": name,
            })
        }
        Attributes::NonResource { verb, path } => {
            spec["nonResourceAttributes"] = json!({ "verb": verb, "path": path })
        }
    }
    json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": spec,
    })
}

/// Whether a SubjectAccessReview's answer allows.
pub fn allowed(answer: &Value) -> Result<bool, ReviewError> {
    answer
        .get("status")
        .filter(|s| s.is_object())
        .map(|s| s["allowed"].as_bool() == Some(true) && s["denied"].as_bool() != Some(true))
        .ok_or(ReviewError::Malformed("status"))
}

#[async_trait::async_trait]
impl Reviewer for ApiReviewer {
    async fn token(&self, token: &str) -> Result<Option<User>, ReviewError> {
        let answer = self
            .post(
                "/apis/authentication.k8s.io/v1/tokenreviews",
                &token_review(token),
            )
            .await?;
        reviewed_user(&answer)
    }

    async fn access(&self, user: &User, a: &Attributes) -> Result<bool, ReviewError> {
        let answer = self
            .post(
                "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                &access_review(user, a),
            )
            .await?;
        allowed(&answer)
    }
}

#[cfg(test)]
mod tests {
    use super::super::cache::key;
    use super::*;

    #[test]
    fn reviews_are_asked_and_read_as_the_kubelet_does() {
        assert_eq!(token_review("t")["spec"], json!({ "token": "t" }));
        let yes = json!({"status": {"authenticated": true, "user": {"username": "u", "uid": "1", "groups": ["g"]}}});
        assert_eq!(
            reviewed_user(&yes).unwrap(),
            Some(User {
                name: "u".into(),
                uid: "1".into(),
                groups: vec!["g".into()]
            })
        );
        assert_eq!(
            reviewed_user(&json!({"status": {"user": {}}})).unwrap(),
            None
        );
        assert!(reviewed_user(&json!({})).is_err());
        let nameless = json!({"status": {"authenticated": true, "user": {}}});
        assert!(reviewed_user(&nameless).is_err());

        let u = User {
            name: "kube-apiserver-kubelet-client".into(),
            uid: String::new(),
            groups: vec![AUTHENTICATED.into()],
        };
        let a = Attributes::Resource {
            verb: "get".into(),
            resource: "nodes".into(),
            subresource: "proxy".into(),
            name: "n1".into(),
        };
        let sar = access_review(&u, &a);
        assert_eq!(sar["spec"]["resourceAttributes"]["subresource"], "proxy");
        assert_eq!(sar["spec"]["groups"], json!(["system:authenticated"]));
        let m = Attributes::NonResource {
            verb: "get".into(),
            path: "/metrics".into(),
        };
        let sar = access_review(&u, &m);
        assert_eq!(
            sar["spec"]["nonResourceAttributes"],
            json!({"verb": "get", "path": "/metrics"})
        );
        assert!(sar["spec"].get("resourceAttributes").is_none());
        assert_ne!(key(&a.parts()), key(&m.parts()));
        assert!(allowed(&json!({"status": {"allowed": true}})).unwrap());
        assert!(!allowed(&json!({"status": {"allowed": false}})).unwrap());
        assert!(!allowed(&json!({"status": {"allowed": true, "denied": true}})).unwrap());
        assert!(allowed(&json!({"kind": "Status"})).is_err());
        let u = User {
            groups: vec!["system:nodes".into()],
            ..u
        }
        .authenticated()
        .authenticated();
        assert_eq!(u.groups, ["system:nodes", "system:authenticated"]);
    }
}
