//! Authentication of a request's bearer token: a static token (`tokens.rs`, held as
//! `token_file.rs` holds them), or a
//! ServiceAccount token (`serviceaccount.rs`, JWTs signed as `jwt.rs` does) whose account
//! (and bound pod or secret) still exists with the uid the token names. Tokens are issued
//! by the ServiceAccount kind's `token` subresource (`kinds/serviceaccount/token.rs`);
//! TokenReview (`review.rs`) answers the same question for others (the nodes' agents).

use serde_json::Value;

use crate::store::{object_key, unix_now, Store};

pub mod jwt;
pub mod review;
pub mod serviceaccount;
pub mod token_file;
pub mod tokens;

pub use token_file::TokenFile;
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
    pub tokens: TokenFile,
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

/// What a token authenticates, and the audiences (of those asked) it is good for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reviewed {
    pub user: User,
    pub audiences: Vec<String>,
}

impl Authenticator {
    /// The user an `Authorization` header value authenticates, if any.
    pub async fn authenticate(&self, header: Option<&str>, store: &Store) -> Option<User> {
        let token = bearer(header)?;
        match self.review_token(token, &[], store).await {
            Ok(r) => r.map(|r| r.user),
            Err(e) => {
                tracing::debug!(error = %e, "token refused");
                None
            }
        }
    }

    /// Whom `token` authenticates for one of `audiences` (none asked: this apiserver's own,
    /// `--api-audiences`). Ok(None): no authenticator knows it; Err: one knew its form but
    /// refused it (a bad signature, an expiry, an account that is gone), saying why.
    pub async fn review_token(
        &self,
        token: &str,
        audiences: &[String],
        store: &Store,
    ) -> Result<Option<Reviewed>, String> {
        let own = &self.service_accounts.audiences;
        let asked: &[String] = if audiences.is_empty() { own } else { audiences };
        if let Some(u) = self.tokens.lookup(token) {
            // A static token is for this apiserver only: good for the asked audiences that
            // are its own (kube's audience-agnostic authenticators).
            let meant: Vec<String> = asked.iter().filter(|a| own.contains(a)).cloned().collect();
            return Ok((!meant.is_empty()).then(|| Reviewed {
                user: u,
                audiences: meant,
            }));
        }
        if !jwt::Verifier::looks_like_jwt(token) {
            return Ok(None);
        }
        let (claims, meant) = self
            .service_accounts
            .verify_for(token, unix_now(), asked)
            .map_err(|e| e.to_string())?;
        let ns = Some(claims.namespace.as_str());
        let mut live = vec![("serviceaccounts", &claims.service_account)];
        live.extend(claims.pod.iter().map(|p| ("pods", p)));
        live.extend(claims.secret.iter().map(|s| ("secrets", s)));
        for (plural, want) in live {
            let key = object_key(plural, ns, &want.name);
            if !still_valid(store, &key, want).await {
                return Err(format!(
                    "{plural} \"{}/{}\" (uid {}) named by the token is gone",
                    claims.namespace, want.name, want.uid
                ));
            }
        }
        Ok(Some(Reviewed {
            user: claims.user(),
            audiences: meant,
        }))
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
