//! Delegated authorization, as the kubelet's and kube-scheduler's webhook authorizer: the
//! apiserver decides (SubjectAccessReview), and answers are kept as the kubelet keeps
//! them: allowed 5 minutes, not allowed 30 s; a review that fails is not kept.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::cache::{key, ExpiringCache};
use super::reviews::{Attributes, ReviewError, Reviewer, User};

/// The kubelet's `authorization.webhook.cacheAuthorizedTTL`.
pub const ALLOWED_TTL: Duration = Duration::from_secs(300);
/// The kubelet's `authorization.webhook.cacheUnauthorizedTTL`.
pub const DENIED_TTL: Duration = Duration::from_secs(30);
/// (user, groups, action) verdicts kept.
pub const ACCESS_CACHE_SIZE: usize = 8192;

pub struct Authorizer {
    reviewer: Arc<dyn Reviewer>,
    verdicts: Mutex<ExpiringCache<bool>>,
}

fn access_key(user: &User, a: &Attributes) -> [u8; 32] {
    let mut parts: Vec<&[u8]> = vec![user.name.as_bytes(), user.uid.as_bytes()];
    parts.extend(a.parts());
    parts.extend(user.groups.iter().map(|g| g.as_bytes()));
    key(&parts)
}

impl Authorizer {
    pub fn new(reviewer: Arc<dyn Reviewer>) -> Self {
        Authorizer {
            reviewer,
            verdicts: Mutex::new(ExpiringCache::new(ACCESS_CACHE_SIZE)),
        }
    }

    /// Whether `user` may do `a`, as of `now`.
    pub async fn authorize(
        &self,
        user: &User,
        a: &Attributes,
        now: Instant,
    ) -> Result<bool, ReviewError> {
        let k = access_key(user, a);
        let cached = self
            .verdicts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&k, now);
        if let Some(v) = cached {
            return Ok(v);
        }
        let allowed = self.reviewer.access(user, a).await?;
        let ttl = if allowed { ALLOWED_TTL } else { DENIED_TTL };
        self.verdicts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(k, allowed, ttl, now);
        Ok(allowed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::super::authn::tests::Fake;
    use super::*;

    fn user(name: &str) -> User {
        User {
            name: name.into(),
            uid: String::new(),
            groups: vec!["system:authenticated".into()],
        }
    }

    fn logs(verb: &str) -> Attributes {
        Attributes::Resource {
            verb: verb.into(),
            resource: "nodes".into(),
            subresource: "proxy".into(),
            name: "n1".into(),
        }
    }

    #[tokio::test]
    async fn decisions_are_kept_five_minutes_if_allowed_and_30_s_if_not() {
        let fake = Arc::new(Fake {
            allowed: vec!["admin".into()],
            ..Default::default()
        });
        let z = Authorizer::new(fake.clone());
        let a = logs("get");
        let (t0, s) = (Instant::now(), Duration::from_secs(1));
        let asked = || fake.accesses.load(Ordering::SeqCst);
        assert!(z.authorize(&user("admin"), &a, t0).await.unwrap());
        assert!(z.authorize(&user("admin"), &a, t0 + 299 * s).await.unwrap());
        assert_eq!(asked(), 1);
        assert!(z.authorize(&user("admin"), &a, t0 + 300 * s).await.unwrap());
        assert_eq!(asked(), 2);
        assert!(!z.authorize(&user("eve"), &a, t0).await.unwrap());
        assert!(!z.authorize(&user("eve"), &a, t0 + 29 * s).await.unwrap());
        assert_eq!(asked(), 3);
        z.authorize(&user("eve"), &a, t0 + 30 * s).await.unwrap();
        assert_eq!(asked(), 4);
        // Another verb, or the same name in other groups, is another question.
        assert!(!z
            .authorize(&user("eve"), &logs("create"), t0 + 30 * s)
            .await
            .unwrap());
        let mut eve = user("eve");
        eve.groups.push("admins".into());
        z.authorize(&eve, &a, t0 + 30 * s).await.unwrap();
        assert_eq!(asked(), 6);
        // So is a path.
        let metrics = Attributes::NonResource {
            verb: "get".into(),
            path: "/metrics".into(),
        };
        z.authorize(&user("eve"), &metrics, t0 + 30 * s)
            .await
            .unwrap();
        assert_eq!(asked(), 7);
        // An error is not kept.
        fake.down.store(true, Ordering::SeqCst);
        assert!(z.authorize(&user("bob"), &a, t0).await.is_err());
        fake.down.store(false, Ordering::SeqCst);
        assert!(!z.authorize(&user("bob"), &a, t0).await.unwrap());
        assert_eq!(asked(), 9);
    }
}
