//! PodSecurity (validating): the Pod Security Standards that a namespace's
//! `pod-security.kubernetes.io/*` labels select (`crate::admission::podsecurity`),
//! applied as kube-apiserver's plugin applies them:
//! - a pod is refused (403) if it violates the `enforce` level, on create and on an
//!   update that can change the outcome (an image, a seccomp annotation, an ephemeral
//!   container); the `warn` level adds a warning;
//! - a controller's pod template (Deployment, ReplicaSet, ...) only gets warnings;
//! - a namespace's labels must be valid on create, and on update when they changed; an
//!   update to a stricter enforce level warns about the pods already there.
//!
//! The `audit` level is parsed and ignored: there is no audit log. No exemptions.

use std::sync::Mutex;

use serde_json::Value;

use super::super::{decode_stored, object_key, Store, Target, Write};
use crate::admission::podsecurity::{self as pss, existing, Level, LevelVersion, Pod, Policy};
use crate::error::ApiError;
use crate::etcd::prefix_end;

/// What PodSecurity evaluates, with where its pod template is (empty: the object is a
/// pod). Kinds not served here simply never match.
const TEMPLATES: &[((&str, &str), &str)] = &[
    (("", "pods"), ""),
    (("", "podtemplates"), "/template"),
    (("", "replicationcontrollers"), "/spec/template"),
    (("apps", "replicasets"), "/spec/template"),
    (("apps", "deployments"), "/spec/template"),
    (("apps", "statefulsets"), "/spec/template"),
    (("apps", "daemonsets"), "/spec/template"),
    (("batch", "jobs"), "/spec/template"),
    (("batch", "cronjobs"), "/spec/jobTemplate/spec/template"),
];

const NAMESPACES: (&str, &str) = ("", "namespaces");

pub(super) fn handles(gr: (&str, &str)) -> bool {
    gr == NAMESPACES || TEMPLATES.iter().any(|(g, _)| *g == gr)
}

fn template_of(t: &Target) -> Option<&'static str> {
    let info = t.kind.info();
    let gr = (info.group, info.plural);
    TEMPLATES.iter().find(|(g, _)| *g == gr).map(|(_, p)| *p)
}

/// What an update needs, read before the write.
pub(super) enum Update {
    None,
    /// A pod (`template` empty) or a controller, in a namespace with `policy`.
    Pods {
        policy: Policy,
        template: &'static str,
    },
    /// A namespace; the stricter enforce level the decision set, if any.
    Namespace {
        stricter: Mutex<Option<LevelVersion>>,
    },
}

impl Update {
    pub(super) fn validate(
        &self,
        t: &Target,
        new: &Value,
        old: &Value,
        warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        match self {
            Update::None => Ok(()),
            Update::Pods { policy, template } if template.is_empty() => {
                if !pss::significant_update(new, old) {
                    return Ok(());
                }
                let pod = Pod::new(&new["metadata"], &new["spec"]);
                check(t, t.name(), policy, &pod, true, warnings)
            }
            Update::Pods { policy, template } => {
                let Some(tpl) = new.pointer(template) else {
                    return Ok(());
                };
                let pod = Pod::new(&tpl["metadata"], &tpl["spec"]);
                check(t, t.name(), policy, &pod, false, warnings)
            }
            Update::Namespace { stricter } => {
                let labels = |v: &Value| v["metadata"]["labels"].as_object().cloned();
                let (new_p, new_errs) = Policy::from_labels(labels(new).as_ref());
                let (old_p, old_errs) = Policy::from_labels(labels(old).as_ref());
                let text = |e: &[crate::error::FieldError]| -> Vec<String> {
                    e.iter().map(|x| x.to_string()).collect()
                };
                if !new_errs.is_empty()
                    && (old_errs.is_empty() || text(&new_errs) != text(&old_errs))
                {
                    return Err(t.kind.info().invalid(t.name(), new_errs));
                }
                if let Ok(mut s) = stricter.lock() {
                    *s = existing::needs_check(&old_p.enforce, &new_p.enforce)
                        .then_some(new_p.enforce);
                }
                Ok(())
            }
        }
    }
}

/// Evaluates `pod` (of object `name`): refused if `enforce` and it violates the enforce
/// level; a warning if it violates the warn level.
fn check(
    t: &Target,
    name: &str,
    policy: &Policy,
    pod: &Pod,
    enforce: bool,
    warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    if enforce {
        let v = pss::evaluate(policy.enforce.level, pod);
        if !v.is_empty() {
            return Err(ApiError::Forbidden(format!(
                "{} \"{name}\" is forbidden: {}",
                t.kind.info().gr(),
                pss::forbidden(&policy.enforce, &v)
            )));
        }
    }
    if policy.warn.level != Level::Privileged {
        let v = pss::evaluate(policy.warn.level, pod);
        if !v.is_empty() {
            warnings.push(pss::would_violate(&policy.warn, &v));
        }
    }
    Ok(())
}

impl Store {
    /// The PodSecurity policy of namespace `ns` (privileged when it has no labels or does
    /// not exist; creating in a missing namespace fails afterwards).
    async fn namespace_policy(&self, ns: &str) -> Result<Policy, ApiError> {
        // The watch cache, as kube's plugin reads an informer; the kvstore when the cache
        // does not have it (yet).
        let key = object_key("namespaces", None, ns);
        let obj = match self.cache.get(&key) {
            Some(o) => serde_json::from_slice::<Value>(&o.json).ok(),
            None => self.read(&key).await?.map(|s| s.value),
        };
        let labels = obj
            .as_ref()
            .and_then(|o| o["metadata"]["labels"].as_object());
        Ok(Policy::from_labels(labels).0)
    }

    pub(super) async fn pod_security_create(
        &self,
        t: &Target,
        obj: &Value,
        w: &Write,
    ) -> Result<(), ApiError> {
        let name = obj["metadata"]["name"].as_str().unwrap_or("");
        let Some(template) = template_of(t) else {
            // A namespace: its labels must be valid.
            let (_, errs) = Policy::from_labels(obj["metadata"]["labels"].as_object());
            if errs.is_empty() {
                return Ok(());
            }
            return Err(t.kind.info().invalid(name, errs));
        };
        let Some(ns) = t.namespace.as_deref() else {
            return Ok(());
        };
        let policy = self.namespace_policy(ns).await?;
        if policy.is_privileged() {
            return Ok(());
        }
        let tpl = if template.is_empty() {
            Some(obj)
        } else {
            obj.pointer(template)
        };
        let Some(tpl) = tpl else {
            return Ok(());
        };
        let pod = Pod::new(&tpl["metadata"], &tpl["spec"]);
        let mut warnings = Vec::new();
        check(t, name, &policy, &pod, template.is_empty(), &mut warnings)?;
        for x in warnings {
            w.warnings.push(x);
        }
        Ok(())
    }

    pub(super) async fn pod_security_update(&self, t: &Target) -> Result<Update, ApiError> {
        let Some(template) = template_of(t) else {
            return Ok(Update::Namespace {
                stricter: Mutex::new(None),
            });
        };
        let Some(ns) = t.namespace.as_deref() else {
            return Ok(Update::None);
        };
        let policy = self.namespace_policy(ns).await?;
        if policy.is_privileged() {
            return Ok(Update::None);
        }
        Ok(Update::Pods { policy, template })
    }

    /// After a namespace's enforce level became stricter: warnings naming its pods that
    /// violate it.
    pub(super) async fn pod_security_after_update(&self, t: &Target, u: &Update, w: &Write) {
        let Update::Namespace { stricter } = u else {
            return;
        };
        let Some(lv) = stricter.lock().ok().and_then(|s| s.clone()) else {
            return;
        };
        let ns = t.name();
        let prefix = format!("/registry/pods/{ns}/");
        let pods: Vec<Value> = match self.cache.list(&prefix) {
            Some((objs, _)) => objs
                .iter()
                .filter_map(|o| serde_json::from_slice(&o.json).ok())
                .collect(),
            None => match self
                .storage
                .range(prefix.as_bytes(), &prefix_end(prefix.as_bytes()), 0, 0)
                .await
            {
                Ok(r) => r
                    .kvs
                    .iter()
                    .filter_map(|kv| decode_stored(&kv.value, kv.mod_revision).ok())
                    .collect(),
                Err(_) => {
                    w.warnings.push(
                        "failed to list pods while checking new PodSecurity enforce level".into(),
                    );
                    return;
                }
            },
        };
        for x in existing::warnings(ns, &lv, &pods) {
            w.warnings.push(x);
        }
    }
}
