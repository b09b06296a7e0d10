//! Authorization of every request, as kube-apiserver's `--authorization-mode=RBAC`:
//! members of `system:masters` may do anything; anyone else what an RBAC rule allows
//! (`rbac.rs`), read from the watch cache. A denied request gets 403 naming the user, the
//! verb and the resource. `review.rs` answers SelfSubjectAccessReviews (`kubectl auth
//! can-i`) and SelfSubjectRulesReviews with the same evaluation; `bootstrap.rs` holds the
//! roles every cluster starts with; `node.rs` narrows what nodes' agents may write;
//! `escalation.rs` keeps writers of Roles and bindings from granting more than they hold.

use std::sync::{Arc, Mutex};

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::de::DeserializeOwned;

use crate::auth::User;
use crate::error::ApiError;
use crate::store::cache::{Cache, CachedObj};

pub mod attributes;
pub mod bootstrap;
pub mod escalation;
pub mod node;
pub mod rbac;
pub mod review;

pub use attributes::{Attributes, ResourceAttributes};
use rbac::Policy;

/// `--authorization-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Every authenticated request is allowed.
    AlwaysAllow,
    /// RBAC (the default).
    #[value(name = "RBAC")]
    Rbac,
}

/// The group whose members may do anything.
pub const MASTERS: &str = "system:masters";

pub struct Authorizer {
    mode: Mode,
    cache: Arc<Cache>,
    /// The policy last built, and the (count, newest revision) of the objects it came from.
    built: Mutex<Option<((usize, i64), Arc<Policy>)>>,
}

const PREFIXES: [&str; 4] = [
    "/registry/clusterroles/",
    "/registry/clusterrolebindings/",
    "/registry/roles/",
    "/registry/rolebindings/",
];

fn decode<T: DeserializeOwned>(objs: &[Arc<CachedObj>]) -> Vec<T> {
    objs.iter()
        .filter_map(|o| serde_json::from_slice(&o.json).ok())
        .collect()
}

impl Authorizer {
    pub fn new(mode: Mode, cache: Arc<Cache>) -> Self {
        Authorizer {
            mode,
            cache,
            built: Mutex::new(None),
        }
    }

    /// The RBAC objects as the watch cache has them; None while it is not synced.
    pub fn policy(&self) -> Option<Arc<Policy>> {
        let mut lists = Vec::with_capacity(4);
        for p in PREFIXES {
            lists.push(self.cache.list(p)?.0);
        }
        let stamp = (
            lists.iter().map(Vec::len).sum::<usize>(),
            lists.iter().flatten().map(|o| o.rev).max().unwrap_or(0),
        );
        let mut built = self.built.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((s, p)) = built.as_ref() {
            if *s == stamp {
                return Some(p.clone());
            }
        }
        let policy = Arc::new(Policy {
            cluster_roles: decode::<ClusterRole>(&lists[0]),
            cluster_bindings: decode::<ClusterRoleBinding>(&lists[1]),
            roles: decode::<Role>(&lists[2]),
            bindings: decode::<RoleBinding>(&lists[3]),
        });
        *built = Some((stamp, policy.clone()));
        Some(policy)
    }

    /// Whether `user` may do anything (a member of `system:masters`, or AlwaysAllow).
    pub fn unrestricted(&self, user: &User) -> bool {
        self.mode == Mode::AlwaysAllow || user.groups.iter().any(|g| g == MASTERS)
    }

    /// Why `user` may do `a`, or why not.
    pub fn decide(&self, user: &User, a: &Attributes) -> Decision {
        if self.unrestricted(user) {
            return Decision::Allow(String::new());
        }
        match self.policy() {
            None => Decision::Deny("RBAC: the authorization cache is not synced yet".into()),
            Some(p) => match p.allows(user, a) {
                Some(why) => Decision::Allow(why),
                None => Decision::Deny(String::new()),
            },
        }
    }

    /// Ok, or the 403 a denied request gets.
    pub fn authorize(&self, user: &User, a: &Attributes) -> Result<(), ApiError> {
        match self.decide(user, a) {
            Decision::Allow(_) => Ok(()),
            Decision::Deny(reason) => Err(ApiError::Forbidden(forbidden_message(user, a, &reason))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow(String),
    Deny(String),
}

/// kube-apiserver's words for a denied request.
pub fn forbidden_message(user: &User, a: &Attributes, reason: &str) -> String {
    let mut msg = match a {
        Attributes::NonResource { verb, path } => {
            format!(
                "forbidden: User {:?} cannot {verb} path {path:?}",
                user.name
            )
        }
        Attributes::Resource(r) => {
            let gr = if r.group.is_empty() {
                r.resource.clone()
            } else {
                format!("{}.{}", r.resource, r.group)
            };
            let head = if r.name.is_empty() {
                format!("{gr} is forbidden")
            } else {
                format!("{gr} {:?} is forbidden", r.name)
            };
            let scope = if r.namespace.is_empty() {
                "at the cluster scope".to_string()
            } else {
                format!("in the namespace {:?}", r.namespace)
            };
            format!(
                "{head}: User {:?} cannot {} resource {:?} in API group {:?} {scope}",
                user.name,
                r.verb,
                r.combined(),
                r.group
            )
        }
    };
    if !reason.is_empty() {
        msg.push_str(": ");
        msg.push_str(reason);
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_user_verb_and_resource() {
        let u = User {
            name: "alice".into(),
            uid: String::new(),
            groups: vec![],
        };
        let a = Attributes::Resource(ResourceAttributes {
            verb: "list".into(),
            resource: "pods".into(),
            namespace: "default".into(),
            ..Default::default()
        });
        assert_eq!(
            forbidden_message(&u, &a, ""),
            "pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        let a = Attributes::Resource(ResourceAttributes {
            verb: "get".into(),
            group: "apps".into(),
            resource: "deployments".into(),
            subresource: "scale".into(),
            name: "web".into(),
            ..Default::default()
        });
        assert_eq!(
            forbidden_message(&u, &a, ""),
            "deployments.apps \"web\" is forbidden: User \"alice\" cannot get resource \"deployments/scale\" in API group \"apps\" at the cluster scope"
        );
        let a = Attributes::NonResource {
            verb: "get".into(),
            path: "/metrics".into(),
        };
        assert_eq!(
            forbidden_message(&u, &a, ""),
            "forbidden: User \"alice\" cannot get path \"/metrics\""
        );
    }
}
