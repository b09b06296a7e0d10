//! Bearer tokens on a delegating port, as the kubelet's webhook token authenticator: the
//! apiserver says who a token is (TokenReview), and the answer is kept (authenticated 2
//! minutes, not authenticated 30 s).
//!
//! Contract: a token not in the cache costs one TokenReview, and those are limited to
//! `UNKNOWN_TOKENS_PER_SECOND` (burst `UNKNOWN_TOKENS_BURST`) whatever the tokens are; past
//! that the request is `Throttled` (429) without asking, so a flood of made-up tokens
//! costs the apiserver a bounded rate. The cache is bounded (`cache.rs`), and keeps digests
//! of tokens, never tokens. A review that fails (the apiserver unreachable) is not kept.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flotilla_core::ratelimit::TokenBucket;
use tracing::warn;

use super::cache::{key, ExpiringCache};
use super::reviews::{Reviewer, User};

/// How long an authenticated token is trusted without asking again (the kubelet's
/// `authentication.webhook.cacheTTL`).
pub const AUTHENTICATED_TTL: Duration = Duration::from_secs(120);
/// How long a token the apiserver refused stays refused without asking again.
pub const UNAUTHENTICATED_TTL: Duration = Duration::from_secs(30);
/// Tokens whose verdict is kept.
pub const TOKEN_CACHE_SIZE: usize = 4096;
/// TokenReviews per second for tokens not in the cache, and their burst.
pub const UNKNOWN_TOKENS_PER_SECOND: f64 = 20.0;
pub const UNKNOWN_TOKENS_BURST: u32 = 40;

/// What a bearer token comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authn {
    User(User),
    /// No token, or one the apiserver does not accept (or could not be asked about): 401.
    Unauthenticated,
    /// Unknown tokens arrive faster than they may be checked: 429.
    Throttled,
}

/// The token of an `Authorization: Bearer` header value (the scheme in any case).
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let (scheme, token) = header?.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

pub struct TokenAuthenticator {
    reviewer: Arc<dyn Reviewer>,
    /// A token's digest → the user it is, or None when refused.
    verdicts: Mutex<ExpiringCache<Option<User>>>,
    unknown: TokenBucket,
}

impl TokenAuthenticator {
    pub fn new(reviewer: Arc<dyn Reviewer>) -> Self {
        Self::with_limits(
            reviewer,
            TOKEN_CACHE_SIZE,
            UNKNOWN_TOKENS_PER_SECOND,
            UNKNOWN_TOKENS_BURST,
        )
    }

    pub fn with_limits(reviewer: Arc<dyn Reviewer>, size: usize, rate: f64, burst: u32) -> Self {
        TokenAuthenticator {
            reviewer,
            verdicts: Mutex::new(ExpiringCache::new(size)),
            unknown: TokenBucket::new(rate, burst),
        }
    }

    fn cached(&self, k: &[u8; 32], now: Instant) -> Option<Option<User>> {
        self.verdicts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(k, now)
    }

    /// Who `token` is, as of `now` (the request's arrival).
    pub async fn authenticate(&self, token: &str, now: Instant) -> Authn {
        let k = key(&[token.as_bytes()]);
        if let Some(v) = self.cached(&k, now) {
            return v.map_or(Authn::Unauthenticated, Authn::User);
        }
        if !self.unknown.try_take(now) {
            return Authn::Throttled;
        }
        let verdict = match self.reviewer.token(token).await {
            Ok(v) => v.map(User::authenticated),
            Err(e) => {
                warn!(error = %e, "reviewing a bearer token");
                return Authn::Unauthenticated;
            }
        };
        let ttl = if verdict.is_some() {
            AUTHENTICATED_TTL
        } else {
            UNAUTHENTICATED_TTL
        };
        self.verdicts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(k, verdict.clone(), ttl, now);
        verdict.map_or(Authn::Unauthenticated, Authn::User)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::super::reviews::{Attributes, ReviewError};
    use super::*;

    /// Knows one token ("good"); counts what it is asked.
    #[derive(Default)]
    pub struct Fake {
        pub tokens: AtomicUsize,
        pub accesses: AtomicUsize,
        pub down: std::sync::atomic::AtomicBool,
        /// Users allowed everything.
        pub allowed: Vec<String>,
    }

    #[async_trait::async_trait]
    impl Reviewer for Fake {
        async fn token(&self, token: &str) -> Result<Option<User>, ReviewError> {
            self.tokens.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(ReviewError::Api("connection refused".into()));
            }
            Ok((token == "good").then(|| User {
                name: "alice".into(),
                uid: "1".into(),
                groups: vec![],
            }))
        }

        async fn access(&self, user: &User, _a: &Attributes) -> Result<bool, ReviewError> {
            self.accesses.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(ReviewError::Api("connection refused".into()));
            }
            Ok(self.allowed.contains(&user.name))
        }
    }

    #[test]
    fn bearer_headers() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(Some("Bearer")), None);
        assert_eq!(bearer(None), None);
    }

    #[tokio::test]
    async fn verdicts_are_kept_for_their_time_and_failures_not_at_all() {
        let fake = Arc::new(Fake::default());
        let a = TokenAuthenticator::new(fake.clone());
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let alice = match a.authenticate("good", t0).await {
            Authn::User(u) => u,
            other => panic!("{other:?}"),
        };
        assert_eq!(alice.groups, ["system:authenticated"]);
        assert_eq!(
            a.authenticate("good", t0 + 119 * s).await,
            Authn::User(alice.clone())
        );
        assert_eq!(fake.tokens.load(Ordering::SeqCst), 1);
        assert_eq!(
            a.authenticate("good", t0 + 120 * s).await,
            Authn::User(alice)
        );
        assert_eq!(
            fake.tokens.load(Ordering::SeqCst),
            2,
            "asked again after 2 min"
        );

        assert_eq!(a.authenticate("bad", t0).await, Authn::Unauthenticated);
        assert_eq!(
            a.authenticate("bad", t0 + 29 * s).await,
            Authn::Unauthenticated
        );
        assert_eq!(fake.tokens.load(Ordering::SeqCst), 3);
        a.authenticate("bad", t0 + 30 * s).await;
        assert_eq!(
            fake.tokens.load(Ordering::SeqCst),
            4,
            "asked again after 30 s"
        );

        fake.down.store(true, Ordering::SeqCst);
        assert_eq!(a.authenticate("other", t0).await, Authn::Unauthenticated);
        fake.down.store(false, Ordering::SeqCst);
        assert!(matches!(
            a.authenticate("good", t0 + 500 * s).await,
            Authn::User(_)
        ));
        assert_eq!(
            a.authenticate("other", t0 + 500 * s).await,
            Authn::Unauthenticated
        );
        assert_eq!(
            fake.tokens.load(Ordering::SeqCst),
            7,
            "an error is not kept"
        );
    }

    #[tokio::test]
    async fn unknown_tokens_are_rate_limited_and_known_ones_are_not() {
        let fake = Arc::new(Fake::default());
        let a = TokenAuthenticator::with_limits(fake.clone(), 64, 10.0, 5);
        let t0 = Instant::now();
        assert!(matches!(a.authenticate("good", t0).await, Authn::User(_)));
        let mut throttled = 0;
        for i in 0..100 {
            match a.authenticate(&format!("random-{i}"), t0).await {
                Authn::Throttled => throttled += 1,
                Authn::Unauthenticated => {}
                Authn::User(u) => panic!("{u:?}"),
            }
        }
        // The burst (5, one spent on "good") reached the apiserver, nothing more.
        assert_eq!(fake.tokens.load(Ordering::SeqCst), 5);
        assert_eq!(throttled, 96);
        // A known token, good or bad, is answered from the cache meanwhile.
        assert!(matches!(a.authenticate("good", t0).await, Authn::User(_)));
        assert_eq!(a.authenticate("random-0", t0).await, Authn::Unauthenticated);
        // A second later the bucket has refilled to its burst, and no further.
        let later = t0 + Duration::from_secs(1);
        let asked = fake.tokens.load(Ordering::SeqCst);
        for i in 100..200 {
            a.authenticate(&format!("random-{i}"), later).await;
        }
        assert_eq!(fake.tokens.load(Ordering::SeqCst) - asked, 5);
        assert!(a.verdicts.lock().unwrap().len() <= 64);
    }
}
