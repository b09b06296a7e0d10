//! ServiceAccount tokens, as kube-apiserver's bound tokens: a JWT naming the account (and
//! the pod or secret it is bound to) by name and uid, with an issuer, audiences and an
//! expiry. A token is accepted only while what it names still exists with the same uid
//! and is not being deleted, so deleting the account (or the pod) revokes its tokens.

use serde_json::{json, Value};

use super::jwt::{JwtError, Signer, Verifier};
use super::{User, AUTHENTICATED};

/// kube-apiserver's usual `--service-account-issuer`.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Clock skew tolerated on `exp` and `nbf`, as kube-apiserver's validator allows.
const LEEWAY_SECS: i64 = 60;

/// An object a token names: a ServiceAccount, or the Pod or Secret it is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub name: String,
    pub uid: String,
}

/// What a good token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub namespace: String,
    pub service_account: Named,
    pub pod: Option<Named>,
    pub secret: Option<Named>,
    pub expires: i64,
}

impl Claims {
    /// The user the token authenticates: `system:serviceaccount:<ns>:<name>` in the groups
    /// of all service accounts and of those of its namespace.
    pub fn user(&self) -> User {
        User {
            name: format!(
                "system:serviceaccount:{}:{}",
                self.namespace, self.service_account.name
            ),
            uid: self.service_account.uid.clone(),
            groups: vec![
                "system:serviceaccounts".to_string(),
                format!("system:serviceaccounts:{}", self.namespace),
                AUTHENTICATED.to_string(),
            ],
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error(transparent)]
    Jwt(#[from] JwtError),
    #[error("token issued by {0:?}, not by this cluster")]
    Issuer(String),
    #[error("token audiences {0:?} are not this apiserver's")]
    Audience(Vec<String>),
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token claims: {0}")]
    Claims(&'static str),
}

pub struct Issuer {
    signer: Signer,
    verifier: Verifier,
    pub issuer: String,
    /// What a token must be meant for (`--api-audiences`); also the default audiences of
    /// tokens requested without any.
    pub audiences: Vec<String>,
}

fn named(v: &Value) -> Option<Named> {
    Some(Named {
        name: v["name"].as_str()?.to_string(),
        uid: v["uid"].as_str()?.to_string(),
    })
}

impl Issuer {
    pub fn new(signer: Signer, issuer: String, audiences: Vec<String>) -> Self {
        let mut verifier = Verifier::default();
        verifier.add(signer.kid(), signer.public_key());
        Issuer {
            signer,
            verifier,
            issuer,
            audiences,
        }
    }

    /// A token for `claims`, valid from `now` until `claims.expires`, for `audiences`.
    pub fn issue(&self, c: &Claims, audiences: &[String], now: i64) -> Result<String, JwtError> {
        let mut k8s = json!({
            "namespace": c.namespace,
            "serviceaccount": { "name": c.service_account.name, "uid": c.service_account.uid },
        });
        if let Some(p) = &c.pod {
            k8s["pod"] = json!({ "name": p.name, "uid": p.uid });
        }
        if let Some(s) = &c.secret {
            k8s["secret"] = json!({ "name": s.name, "uid": s.uid });
        }
        self.signer.sign(&json!({
            "aud": audiences,
            "exp": c.expires,
            "iat": now,
            "nbf": now,
            "iss": self.issuer,
            "jti": uuid::Uuid::new_v4().to_string(),
            "kubernetes.io": k8s,
            "sub": format!("system:serviceaccount:{}:{}", c.namespace, c.service_account.name),
        }))
    }

    /// The claims of a token this cluster signed, meant for this apiserver and not expired
    /// at `now`. Whether the objects it names still exist is the caller's to check.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        self.verify_for(token, now, &self.audiences).map(|(c, _)| c)
    }

    /// As `verify`, for a token that must be meant for one of `audiences` (a TokenReview's
    /// `spec.audiences`); also returns the audiences it is meant for among them.
    pub fn verify_for(
        &self,
        token: &str,
        now: i64,
        audiences: &[String],
    ) -> Result<(Claims, Vec<String>), TokenError> {
        let v = self.verifier.verify(token)?;
        let iss = v["iss"].as_str().unwrap_or_default();
        if iss != self.issuer {
            return Err(TokenError::Issuer(iss.to_string()));
        }
        let aud: Vec<String> = match &v["aud"] {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a
                .iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect(),
            _ => vec![],
        };
        let meant: Vec<String> = audiences
            .iter()
            .filter(|a| aud.contains(a))
            .cloned()
            .collect();
        if meant.is_empty() {
            return Err(TokenError::Audience(aud));
        }
        let expires = v["exp"].as_i64().ok_or(TokenError::Claims("no exp"))?;
        if now > expires + LEEWAY_SECS {
            return Err(TokenError::Expired);
        }
        if v["nbf"].as_i64().is_some_and(|nbf| nbf > now + LEEWAY_SECS) {
            return Err(TokenError::NotYetValid);
        }
        let k8s = &v["kubernetes.io"];
        let claims = Claims {
            namespace: k8s["namespace"]
                .as_str()
                .ok_or(TokenError::Claims("no namespace"))?
                .to_string(),
            service_account: named(&k8s["serviceaccount"])
                .ok_or(TokenError::Claims("no service account"))?,
            pod: named(&k8s["pod"]),
            secret: named(&k8s["secret"]),
            expires,
        };
        let sub = format!(
            "system:serviceaccount:{}:{}",
            claims.namespace, claims.service_account.name
        );
        if v["sub"].as_str() != Some(sub.as_str()) {
            return Err(TokenError::Claims("sub does not name the service account"));
        }
        Ok((claims, meant))
    }
}

/// Whether a stored object still is the one a token names: same uid, not being deleted.
pub fn still_valid(obj: &Value, want: &Named) -> bool {
    let m = &obj["metadata"];
    m["uid"].as_str() == Some(want.uid.as_str()) && m["deletionTimestamp"].is_null()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer(aud: &[&str]) -> Issuer {
        let k = rcgen::KeyPair::generate().unwrap();
        Issuer::new(
            Signer::from_pkcs8(&k.serialize_der()).unwrap(),
            DEFAULT_ISSUER.into(),
            aud.iter().map(|s| s.to_string()).collect(),
        )
    }

    fn claims(expires: i64) -> Claims {
        Claims {
            namespace: "team".into(),
            service_account: Named {
                name: "builder".into(),
                uid: "u-1".into(),
            },
            pod: Some(Named {
                name: "p".into(),
                uid: "u-2".into(),
            }),
            secret: None,
            expires,
        }
    }

    #[test]
    fn a_token_names_its_account_until_it_expires() {
        let i = issuer(&[DEFAULT_ISSUER]);
        let t = i
            .issue(&claims(1_000), &[DEFAULT_ISSUER.into()], 100)
            .unwrap();
        let c = i.verify(&t, 500).unwrap();
        assert_eq!(c, claims(1_000));
        let u = c.user();
        assert_eq!(u.name, "system:serviceaccount:team:builder");
        assert_eq!(u.uid, "u-1");
        assert_eq!(
            u.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:team",
                "system:authenticated"
            ]
        );
        assert!(i.verify(&t, 1_000 + LEEWAY_SECS).is_ok());
        assert_eq!(i.verify(&t, 1_001 + LEEWAY_SECS), Err(TokenError::Expired));
        assert_eq!(i.verify(&t, 0), Err(TokenError::NotYetValid));
    }

    #[test]
    fn other_audiences_issuers_and_keys_are_refused() {
        let i = issuer(&[DEFAULT_ISSUER]);
        let t = i.issue(&claims(1_000), &["vault".into()], 100).unwrap();
        assert_eq!(
            i.verify(&t, 200),
            Err(TokenError::Audience(vec!["vault".into()]))
        );
        let other = issuer(&[DEFAULT_ISSUER]);
        let t = other
            .issue(&claims(1_000), &[DEFAULT_ISSUER.into()], 100)
            .unwrap();
        assert!(matches!(i.verify(&t, 200), Err(TokenError::Jwt(_))));
        // A TokenReview may ask for other audiences: the token's own among them.
        let t = i
            .issue(&claims(1_000), &["vault".into(), "db".into()], 100)
            .unwrap();
        let (_, meant) = i
            .verify_for(&t, 200, &["db".into(), "cache".into()])
            .unwrap();
        assert_eq!(meant, ["db"]);
        assert!(i.verify_for(&t, 200, &["cache".into()]).is_err());
        // The same key under another issuer name.
        let der = rcgen::KeyPair::generate().unwrap().serialize_der();
        let aud = vec![DEFAULT_ISSUER.to_string()];
        let ours = Issuer::new(
            Signer::from_pkcs8(&der).unwrap(),
            DEFAULT_ISSUER.into(),
            aud.clone(),
        );
        let theirs = Issuer::new(
            Signer::from_pkcs8(&der).unwrap(),
            "https://elsewhere".into(),
            aud.clone(),
        );
        let t = theirs.issue(&claims(1_000), &aud, 100).unwrap();
        assert_eq!(
            ours.verify(&t, 200),
            Err(TokenError::Issuer("https://elsewhere".into()))
        );
    }

    #[test]
    fn deleted_or_recreated_objects_revoke() {
        let want = Named {
            name: "builder".into(),
            uid: "u-1".into(),
        };
        assert!(still_valid(&json!({"metadata": {"uid": "u-1"}}), &want));
        assert!(!still_valid(&json!({"metadata": {"uid": "u-9"}}), &want));
        assert!(!still_valid(
            &json!({"metadata": {"uid": "u-1", "deletionTimestamp": "2026-01-01T00:00:00Z"}}),
            &want
        ));
    }
}
