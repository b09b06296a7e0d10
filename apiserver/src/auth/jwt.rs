//! JSON Web Tokens signed with ES256 (ECDSA P-256, SHA-256), in the compact form
//! `header.claims.signature`, each part base64url without padding (RFC 7515, 7519). The
//! key is a PKCS#8 PEM file, created once when missing so apiservers sharing the
//! directory sign with one key. The header names the key by `kid`, as kube-apiserver's
//! does: the base64url SHA-256 of the public key.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use serde_json::{json, Value};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("token signed with unsupported algorithm {0:?}")]
    Algorithm(String),
    #[error("token signed by an unknown key")]
    UnknownKey,
    #[error("invalid signature")]
    Signature,
    #[error("signing: {0}")]
    Sign(String),
}

pub struct Signer {
    key: EcdsaKeyPair,
    kid: String,
    rng: SystemRandom,
}

impl Signer {
    /// A signer from a PKCS#8 DER private key.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, JwtError> {
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
            .map_err(|e| JwtError::Sign(format!("not a P-256 PKCS#8 key: {e}")))?;
        let kid = B64.encode(ring::digest::digest(
            &ring::digest::SHA256,
            key.public_key().as_ref(),
        ));
        Ok(Signer { key, kid, rng })
    }

    /// The key in `path` (PEM), created if the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, String> {
        let shown = path.display();
        let pem = match std::fs::read_to_string(path) {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                }
                let fresh = rcgen::KeyPair::generate().map_err(|e| format!("{shown}: {e}"))?;
                crate::tls::write_once(path, &fresh.serialize_pem()).map_err(|e| e.to_string())?
            }
            Err(e) => return Err(format!("{shown}: {e}")),
        };
        let pair = rcgen::KeyPair::from_pem(&pem).map_err(|e| format!("{shown}: {e}"))?;
        Self::from_pkcs8(&pair.serialize_der()).map_err(|e| format!("{shown}: {e}"))
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The uncompressed public point, what [`Verifier`] checks against.
    pub fn public_key(&self) -> Vec<u8> {
        self.key.public_key().as_ref().to_vec()
    }

    pub fn sign(&self, claims: &Value) -> Result<String, JwtError> {
        let header = json!({ "alg": "ES256", "kid": self.kid });
        let mut out = B64.encode(serde_json::to_vec(&header).unwrap_or_default());
        out.push('.');
        out.push_str(&B64.encode(serde_json::to_vec(claims).unwrap_or_default()));
        let sig = self
            .key
            .sign(&self.rng, out.as_bytes())
            .map_err(|e| JwtError::Sign(e.to_string()))?;
        out.push('.');
        out.push_str(&B64.encode(sig.as_ref()));
        Ok(out)
    }
}

/// Public keys by `kid`.
#[derive(Default)]
pub struct Verifier {
    keys: Vec<(String, Vec<u8>)>,
}

impl Verifier {
    pub fn add(&mut self, kid: &str, public_key: Vec<u8>) {
        self.keys.push((kid.to_string(), public_key));
    }

    /// Whether `token` has the shape of a JWT (three base64url parts), without checking it.
    pub fn looks_like_jwt(token: &str) -> bool {
        token.split('.').count() == 3
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    }

    /// The claims of a token whose signature is good; nothing about them is checked here.
    pub fn verify(&self, token: &str) -> Result<Value, JwtError> {
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed("want three parts"));
        };
        let decode = |part: &str, what: &'static str| -> Result<Vec<u8>, JwtError> {
            B64.decode(part).map_err(|_| JwtError::Malformed(what))
        };
        let header: Value = serde_json::from_slice(&decode(h, "header is not base64url")?)
            .map_err(|_| JwtError::Malformed("header is not JSON"))?;
        let alg = header["alg"].as_str().unwrap_or_default();
        if alg != "ES256" {
            return Err(JwtError::Algorithm(alg.to_string()));
        }
        let kid = header["kid"].as_str();
        let sig = decode(s, "signature is not base64url")?;
        let signed = &token[..h.len() + 1 + c.len()];
        let candidates = self
            .keys
            .iter()
            .filter(|(k, _)| kid.is_none_or(|want| want == k));
        let mut any = false;
        for (_, key) in candidates {
            any = true;
            let pk = signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, key);
            if pk.verify(signed.as_bytes(), &sig).is_ok() {
                return serde_json::from_slice(&decode(c, "claims are not base64url")?)
                    .map_err(|_| JwtError::Malformed("claims are not JSON"));
            }
        }
        Err(if any {
            JwtError::Signature
        } else {
            JwtError::UnknownKey
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        let k = rcgen::KeyPair::generate().unwrap();
        Signer::from_pkcs8(&k.serialize_der()).unwrap()
    }

    fn verifier(s: &Signer) -> Verifier {
        let mut v = Verifier::default();
        v.add(s.kid(), s.public_key());
        v
    }

    #[test]
    fn signed_claims_verify_and_tampering_does_not() {
        let s = signer();
        let v = verifier(&s);
        let t = s.sign(&json!({ "sub": "x", "n": 1 })).unwrap();
        assert!(Verifier::looks_like_jwt(&t));
        assert_eq!(v.verify(&t).unwrap()["sub"], "x");

        // Claims changed after signing.
        let parts: Vec<&str> = t.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            B64.encode(br#"{"sub":"admin","n":1}"#),
            parts[2]
        );
        assert_eq!(v.verify(&forged), Err(JwtError::Signature));
        // Signed by another key with the same kid claimed: still refused.
        let other = signer();
        let mut v2 = Verifier::default();
        v2.add(s.kid(), other.public_key());
        assert_eq!(v2.verify(&t), Err(JwtError::Signature));
        // A key nobody knows.
        assert_eq!(verifier(&other).verify(&t), Err(JwtError::UnknownKey));
    }

    #[test]
    fn unsigned_and_malformed_tokens_are_refused() {
        let v = verifier(&signer());
        let none = format!(
            "{}.{}.",
            B64.encode(br#"{"alg":"none"}"#),
            B64.encode(br#"{"sub":"admin"}"#)
        );
        assert_eq!(v.verify(&none), Err(JwtError::Algorithm("none".into())));
        assert!(matches!(v.verify("a.b"), Err(JwtError::Malformed(_))));
        assert!(matches!(v.verify("!!.b.c"), Err(JwtError::Malformed(_))));
        assert!(!Verifier::looks_like_jwt("plain-static-token"));
    }

    #[test]
    fn the_key_file_is_created_once_and_reused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sa.key");
        let a = Signer::load_or_create(&p).unwrap();
        let b = Signer::load_or_create(&p).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        let t = a.sign(&json!({})).unwrap();
        assert!(verifier(&b).verify(&t).is_ok());
        std::fs::write(&p, "not a key").unwrap();
        assert!(Signer::load_or_create(&p).is_err());
    }
}
