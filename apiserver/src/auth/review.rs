//! TokenReview (authentication.k8s.io/v1, `POST /apis/authentication.k8s.io/v1/tokenreviews`):
//! who is this token? Answered with this apiserver's own authenticators (static tokens,
//! ServiceAccount JWTs) as kube-apiserver answers it for webhook token authenticators such
//! as the nodes' agents, who may not see the tokens' keys. Answered, not stored; creating
//! one takes RBAC's `create` on `tokenreviews` (the `system:node` role has it).

use serde_json::{json, Value};

use super::{Authenticator, User};
use crate::error::ApiError;
use crate::reviews::parse_review;
use crate::store::Store;

/// The `status.user` of an authenticated token.
fn user_info(u: &User) -> Value {
    json!({ "username": u.name, "uid": u.uid, "groups": u.groups })
}

/// The status kube-apiserver gives: `authenticated` and `user` (empty when not), the
/// audiences the token is good for among those asked, and why a token was refused.
pub fn status(result: &Result<Option<super::Reviewed>, String>) -> Value {
    match result {
        Ok(Some(r)) => json!({
            "authenticated": true,
            "user": user_info(&r.user),
            "audiences": r.audiences,
        }),
        Ok(None) => json!({ "user": {} }),
        Err(e) => json!({ "user": {}, "error": e }),
    }
}

/// Answers a TokenReview (the body).
pub async fn token_review(
    auth: &Authenticator,
    store: &Store,
    body: &[u8],
) -> Result<Value, ApiError> {
    let mut review = parse_review("TokenReview", "authentication.k8s.io/v1", body)?;
    let spec = &review["spec"];
    let token = spec["token"].as_str().unwrap_or_default().to_string();
    if token.is_empty() {
        return Err(ApiError::BadRequest(
            "token is required for TokenReview in authentication".into(),
        ));
    }
    let audiences: Vec<String> = spec["audiences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(String::from))
        .collect();
    let result = auth.review_token(&token, &audiences, store).await;
    if let Err(e) = &result {
        tracing::debug!(error = %e, "token review: token refused");
    }
    review["status"] = status(&result);
    Ok(review)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_as_kube_apiserver_writes_them() {
        let u = User {
            name: "system:serviceaccount:team:builder".into(),
            uid: "u-1".into(),
            groups: vec![
                "system:serviceaccounts".into(),
                "system:authenticated".into(),
            ],
        };
        let ok = status(&Ok(Some(super::super::Reviewed {
            user: u,
            audiences: vec!["api".into()],
        })));
        assert_eq!(ok["authenticated"], true);
        assert_eq!(ok["user"]["username"], "system:serviceaccount:team:builder");
        assert_eq!(ok["audiences"], json!(["api"]));
        // Not authenticated: no `authenticated` (Go's omitempty), an empty user.
        assert_eq!(status(&Ok(None)), json!({ "user": {} }));
        assert_eq!(
            status(&Err("token has expired".into())),
            json!({ "user": {}, "error": "token has expired" })
        );
    }
}
