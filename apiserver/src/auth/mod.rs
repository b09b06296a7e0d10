//! Authentication of a request's bearer token: a static token (`tokens.rs`), or a
//! ServiceAccount token (`serviceaccount.rs`, JWTs signed as `jwt.rs` does) whose account
//! (and bound pod or secret) still exists with the uid the token names. Tokens are issued
//! by the ServiceAccount kind's `token` subresource (`kinds/serviceaccount/token.rs`).

use serde_json::Value;

use crate::store::{object_key, unix_now, Store};

pub mod jwt;
pub mod serviceaccount;
pub mod tokens;

pub use tokens::Tokens;

/// The group every authenticated user is in.
pub const AUTHENTICATED: &str = "system:authenticated";

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

pub struct Authenticator {
    pub tokens: Tokens,
    pub service_accounts: serviceaccount::Issuer,
}

/// The SelfSubjectReview (authentication.k8s.io/v1) answering "who am I".
pub fn self_review(user: &User) -> Value {
    serde_json::json!({
        "kind": "SelfSubjectReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": { "creationTimestamp": crate::store::time_value(&crate::store::now()) },
        "status": { "userInfo": { "username": user.name, "uid": user.uid, "groups": user.groups } },
    })
}

/// The token of an `Authorization: Bearer` header.
fn bearer(header: Option<&str>) -> Option<&str> {
    let (scheme, token) = header?.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl Authenticator {
    /// The user an `Authorization` header value authenticates, if any.
    pub async fn authenticate(&self, header: Option<&str>, store: &Store) -> Option<User> {
        let token = bearer(header)?;
        if let Some(u) = self.tokens.lookup(token) {
            return Some(u.clone());
        }
        if !jwt::Verifier::looks_like_jwt(token) {
            return None;
        }
        let claims = match self.service_accounts.verify(token, unix_now()) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "service account token refused");
                return None;
            }
        };
        let ns = Some(claims.namespace.as_str());
        let mut live = vec![("serviceaccounts", &claims.service_account)];
        live.extend(claims.pod.iter().map(|p| ("pods", p)));
        live.extend(claims.secret.iter().map(|s| ("secrets", s)));
        for (plural, want) in live {
            let key = object_key(plural, ns, &want.name);
            if !still_valid(store, &key, want).await {
                tracing::debug!(%key, "service account token names an object that is gone");
                return None;
            }
        }
        Some(claims.user())
    }
}

/// Whether the object at `key` is the one a token names: the watch cache answers when it
/// agrees; otherwise (not there yet, or another uid) a linearizable read decides.
async fn still_valid(store: &Store, key: &str, want: &serviceaccount::Named) -> bool {
    if let Some(o) = store.cache.get(key) {
        if let Ok(v) = serde_json::from_slice::<Value>(&o.json) {
            if serviceaccount::still_valid(&v, want) {
                return true;
            }
        }
    }
    match store.read(key).await {
        Ok(Some(s)) => serviceaccount::still_valid(&s.value, want),
        Ok(None) => false,
        Err(e) => {
            tracing::warn!(%key, error = %e, "checking a service account token");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
    }
}
