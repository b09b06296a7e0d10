//! etcd's simple tokens (`--auth-token=simple`): `<16 random letters>.<log index>`.
//!
//! Contract: the member that checks a password draws the random prefix and proposes only
//! its SHA-256 with the user's name, so the log never holds a usable token; applying the
//! entry registers the digest on every member under the entry's log index, which is the
//! token's counter. A token is valid on a member once that member has applied its entry,
//! until it goes 5 minutes unused (etcd's simple-token TTL; each use restarts the clock),
//! its user is deleted or changes password, or auth is disabled. Tokens live in memory
//! only: a restarted member has none, as in etcd.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ring::digest::{digest, SHA256};
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::KvError;

/// etcd's `simpleTokenTTLDefault`.
pub const SIMPLE_TOKEN_TTL: Duration = Duration::from_secs(300);
/// etcd's `defaultSimpleTokenLength`.
pub const PREFIX_LEN: usize = 16;
const LETTERS: &[u8; 52] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// What the log carries for a token: the SHA-256 of its random prefix.
pub type Digest = [u8; 32];

/// A fresh random prefix of `PREFIX_LEN` letters, as etcd draws it.
pub fn new_prefix() -> Result<String, KvError> {
    let rng = SystemRandom::new();
    let mut out = String::with_capacity(PREFIX_LEN);
    let mut buf = [0u8; 32];
    while out.len() < PREFIX_LEN {
        rng.fill(&mut buf)
            .map_err(|_| KvError::internal("no randomness for an auth token"))?;
        // 208 = 4 * 52: rejecting the rest keeps every letter equally likely.
        for b in buf.iter().filter(|b| **b < 208) {
            if out.len() < PREFIX_LEN {
                out.push(LETTERS[(*b % 52) as usize] as char);
            }
        }
    }
    Ok(out)
}

pub fn digest_of(prefix: &str) -> Digest {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, prefix.as_bytes()).as_ref());
    out
}

/// The token a client gets for a prefix registered at `index`.
pub fn format(prefix: &str, index: u64) -> String {
    format!("{prefix}.{index}")
}

/// Splits a token into its prefix and index; `None` for anything not of that shape.
pub fn parse(token: &str) -> Option<(&str, u64)> {
    let (prefix, index) = token.split_once('.')?;
    if prefix.is_empty() || index.contains('.') {
        return None;
    }
    Some((prefix, index.parse().ok()?))
}

/// The answer for a presented token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Valid; its user. The token's clock restarted.
    User(String),
    /// Not known here: valid only if issued by a log entry at `index` that this member has
    /// not applied yet.
    Unknown { index: u64 },
    /// Malformed, expired, revoked, or issued at another index.
    Invalid,
}

struct Issued {
    user: String,
    index: u64,
    expires: Instant,
}

/// The tokens this member knows.
pub struct Tokens {
    ttl: Duration,
    issued: Mutex<HashMap<Digest, Issued>>,
}

impl Default for Tokens {
    fn default() -> Self {
        Tokens::new(SIMPLE_TOKEN_TTL)
    }
}

impl Tokens {
    pub fn new(ttl: Duration) -> Self {
        Tokens {
            ttl,
            issued: Mutex::new(HashMap::new()),
        }
    }

    fn deadline(&self, now: Instant) -> Instant {
        now.checked_add(self.ttl).unwrap_or(now)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, Issued>> {
        self.issued.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a token applied at `index`; also forgets every expired one.
    pub fn issue(&self, digest: Digest, user: String, index: u64, now: Instant) {
        let mut issued = self.lock();
        issued.retain(|_, t| t.expires > now);
        let expires = self.deadline(now);
        issued.insert(
            digest,
            Issued {
                user,
                index,
                expires,
            },
        );
    }

    pub fn lookup(&self, token: &str, now: Instant) -> Lookup {
        let Some((prefix, index)) = parse(token) else {
            return Lookup::Invalid;
        };
        let key = digest_of(prefix);
        let mut issued = self.lock();
        match issued.get_mut(&key) {
            Some(t) if t.expires > now && t.index == index => {
                t.expires = self.deadline(now);
                Lookup::User(t.user.clone())
            }
            Some(t) if t.expires <= now => {
                issued.remove(&key);
                Lookup::Invalid
            }
            Some(_) => Lookup::Invalid,
            None => Lookup::Unknown { index },
        }
    }

    /// Revokes every token of `user` (deleted, or its password changed).
    pub fn invalidate_user(&self, user: &str) {
        self.lock().retain(|_, t| t.user != user);
    }

    /// Revokes every token (auth disabled).
    pub fn clear(&self) {
        self.lock().clear();
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_random_letters() {
        let a = new_prefix().unwrap();
        let b = new_prefix().unwrap();
        assert_eq!(a.len(), PREFIX_LEN);
        assert!(a.bytes().all(|c| c.is_ascii_alphabetic()));
        assert_ne!(a, b);
    }

    #[test]
    fn tokens_parse_as_prefix_dot_index() {
        assert_eq!(parse("abc.12"), Some(("abc", 12)));
        for bad in ["abc", "abc.", ".12", "abc.1.2", "abc.-1", "abc.x", ""] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert_eq!(format("abc", 7), "abc.7");
    }

    #[test]
    fn a_token_is_valid_until_unused_for_its_ttl_and_each_use_extends_it() {
        let tokens = Tokens::new(Duration::from_secs(300));
        let t0 = Instant::now();
        tokens.issue(digest_of("pre"), "alice".into(), 9, t0);
        let used = t0 + Duration::from_secs(200);
        assert_eq!(tokens.lookup("pre.9", used), Lookup::User("alice".into()));
        // 400 s after issue but 200 s after the last use: still valid.
        let later = t0 + Duration::from_secs(400);
        assert_eq!(tokens.lookup("pre.9", later), Lookup::User("alice".into()));
        let idle = later + Duration::from_secs(301);
        assert_eq!(tokens.lookup("pre.9", idle), Lookup::Invalid);
        // Expired and forgotten: now unknown, like any token never seen.
        assert_eq!(tokens.lookup("pre.9", idle), Lookup::Unknown { index: 9 });
    }

    #[test]
    fn the_index_must_match_and_unknown_tokens_report_theirs() {
        let tokens = Tokens::default();
        let now = Instant::now();
        tokens.issue(digest_of("pre"), "alice".into(), 9, now);
        assert_eq!(tokens.lookup("pre.10", now), Lookup::Invalid);
        assert_eq!(
            tokens.lookup("other.12", now),
            Lookup::Unknown { index: 12 }
        );
        assert_eq!(tokens.lookup("garbage", now), Lookup::Invalid);
    }

    #[test]
    fn users_and_everything_can_be_revoked() {
        let tokens = Tokens::default();
        let now = Instant::now();
        tokens.issue(digest_of("a"), "alice".into(), 1, now);
        tokens.issue(digest_of("b"), "bob".into(), 1, now);
        tokens.invalidate_user("alice");
        assert_eq!(tokens.lookup("a.1", now), Lookup::Unknown { index: 1 });
        assert_eq!(tokens.lookup("b.1", now), Lookup::User("bob".into()));
        tokens.clear();
        assert!(tokens.is_empty());
    }

    #[test]
    fn issuing_forgets_expired_tokens() {
        let tokens = Tokens::new(Duration::from_secs(1));
        let t0 = Instant::now();
        tokens.issue(digest_of("a"), "alice".into(), 1, t0);
        tokens.issue(digest_of("b"), "bob".into(), 2, t0 + Duration::from_secs(5));
        assert_eq!(tokens.len(), 1);
    }
}
