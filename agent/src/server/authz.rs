//! Authorization on the agent's port, as the kubelet's: a request is an action on this
//! node's Node (`attributes`, the kubelet's `NewNodeAuthorizerAttributesGetter`), and the
//! apiserver decides (SubjectAccessReview). Answers are kept as the kubelet keeps them:
//! allowed 5 minutes, not allowed 30 s; a review that fails is not kept.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::Method;

use super::cache::{key, ExpiringCache};
use super::reviews::{Attributes, ReviewError, Reviewer, User};

/// The kubelet's `authorization.webhook.cacheAuthorizedTTL`.
pub const ALLOWED_TTL: Duration = Duration::from_secs(300);
/// The kubelet's `authorization.webhook.cacheUnauthorizedTTL`.
pub const DENIED_TTL: Duration = Duration::from_secs(30);
/// (user, groups, action) verdicts kept.
pub const ACCESS_CACHE_SIZE: usize = 8192;

/// Whether `path` is `prefix` or below it.
fn is_subpath(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The kubelet's attributes of a request: the verb from the method, resource `nodes`, this
/// node's name, and subresource `stats`, `metrics` or `log` under those paths, `proxy` for
/// everything else (`/containerLogs/...` included).
pub fn attributes(method: &Method, path: &str, node: &str) -> Attributes {
    let verb = match *method {
        Method::POST => "create",
        Method::GET => "get",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "",
    };
    let subresource = if is_subpath(path, "/stats") {
        "stats"
    } else if is_subpath(path, "/metrics") {
        "metrics"
    } else if is_subpath(path, "/logs") {
        "log"
    } else {
        "proxy"
    };
    Attributes {
        verb: verb.to_string(),
        resource: "nodes".to_string(),
        subresource: subresource.to_string(),
        name: node.to_string(),
    }
}

/// The kubelet's 403 body.
pub fn forbidden(user: &User, a: &Attributes) -> String {
    format!(
        "Forbidden (user={}, verb={}, resource={}, subresource(s)=[{}])",
        user.name, a.verb, a.resource, a.subresource
    )
}

/// The kubelet's 500 body when the apiserver could not be asked.
pub fn error(user: &User, a: &Attributes) -> String {
    format!(
        "Authorization error (user={}, verb={}, resource={}, subresource(s)=[{}])",
        user.name, a.verb, a.resource, a.subresource
    )
}

pub struct Authorizer {
    reviewer: Arc<dyn Reviewer>,
    verdicts: Mutex<ExpiringCache<bool>>,
}

fn access_key(user: &User, a: &Attributes) -> [u8; 32] {
    let mut parts: Vec<&[u8]> = vec![
        user.name.as_bytes(),
        user.uid.as_bytes(),
        a.verb.as_bytes(),
        a.resource.as_bytes(),
        a.subresource.as_bytes(),
        a.name.as_bytes(),
    ];
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

    use super::super::auth::tests::Fake;
    use super::*;

    fn user(name: &str) -> User {
        User {
            name: name.into(),
            uid: String::new(),
            groups: vec!["system:authenticated".into()],
        }
    }

    #[test]
    fn requests_map_to_the_kubelets_attributes() {
        let a = attributes(&Method::GET, "/containerLogs/default/web/c", "n1");
        assert_eq!(
            a,
            Attributes {
                verb: "get".into(),
                resource: "nodes".into(),
                subresource: "proxy".into(),
                name: "n1".into(),
            }
        );
        assert_eq!(
            attributes(&Method::POST, "/exec/a/b/c", "n1").verb,
            "create"
        );
        assert_eq!(attributes(&Method::DELETE, "/x", "n1").verb, "delete");
        assert_eq!(attributes(&Method::HEAD, "/x", "n1").verb, "");
        for (path, sub) in [
            ("/stats", "stats"),
            ("/stats/summary", "stats"),
            ("/statsz", "proxy"),
            ("/metrics/cadvisor", "metrics"),
            ("/logs/", "log"),
            ("/logs/syslog", "log"),
            ("/logsx", "proxy"),
            ("/", "proxy"),
        ] {
            assert_eq!(
                attributes(&Method::GET, path, "n1").subresource,
                sub,
                "{path}"
            );
        }
        assert_eq!(
            forbidden(&user("system:serviceaccount:default:nosy"), &a),
            "Forbidden (user=system:serviceaccount:default:nosy, verb=get, resource=nodes, subresource(s)=[proxy])"
        );
        assert_eq!(
            error(&user("u"), &a),
            "Authorization error (user=u, verb=get, resource=nodes, subresource(s)=[proxy])"
        );
    }

    #[tokio::test]
    async fn decisions_are_kept_five_minutes_if_allowed_and_30_s_if_not() {
        let fake = Arc::new(Fake {
            allowed: vec!["admin".into()],
            ..Default::default()
        });
        let z = Authorizer::new(fake.clone());
        let a = attributes(&Method::GET, "/containerLogs/d/p/c", "n1");
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
        let post = attributes(&Method::POST, "/containerLogs/d/p/c", "n1");
        assert!(!z.authorize(&user("eve"), &post, t0 + 30 * s).await.unwrap());
        let mut eve = user("eve");
        eve.groups.push("admins".into());
        z.authorize(&eve, &a, t0 + 30 * s).await.unwrap();
        assert_eq!(asked(), 6);
        // An error is not kept.
        fake.down.store(true, Ordering::SeqCst);
        assert!(z.authorize(&user("bob"), &a, t0).await.is_err());
        fake.down.store(false, Ordering::SeqCst);
        assert!(!z.authorize(&user("bob"), &a, t0).await.unwrap());
        assert_eq!(asked(), 8);
    }
}
