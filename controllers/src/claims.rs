//! Which objects an owner controls (kube's `ControllerRefManager`): an owner keeps what it
//! controls and still selects, releases what it controls but no longer selects, and adopts
//! orphans it selects, each adoption or release a merge patch of the owner references
//! guarded by the resourceVersion the decision was made on. The replica, Job, DaemonSet
//! and StatefulSet controllers claim their pods through it, the DaemonSet and StatefulSet
//! controllers their ControllerRevisions too. A deleting owner adopts nothing and releases
//! nothing; nothing adopts an object being deleted.

use std::sync::Arc;

use component_base::labels;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams};

use crate::context::{controller_of, key_of, Key};

/// What an owner does with an object of its namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Ours and still selected (or we are being deleted): counts as ours.
    Keep,
    /// Ours but no longer selected: drop our controller reference.
    Release,
    /// An orphan we select: add our controller reference; counts as ours.
    Adopt,
    /// Someone else's, or not for us.
    Ignore,
}

/// The claim of an owner with uid `owner_uid` on `obj`, which its selector does or does
/// not select.
pub fn claim<K: kube::Resource>(
    obj: &K,
    owner_uid: &str,
    selected: bool,
    owner_deleting: bool,
) -> Claim {
    match controller_of(obj) {
        Some(r) if r.uid == owner_uid => {
            if selected || owner_deleting {
                Claim::Keep
            } else {
                Claim::Release
            }
        }
        None if selected && !owner_deleting && obj.meta().deletion_timestamp.is_none() => {
            Claim::Adopt
        }
        _ => Claim::Ignore,
    }
}

/// Whether `selector` picks an object with `meta`'s labels, as a controller's selector
/// does: a missing or empty selector picks nothing.
pub fn selected_by(selector: Option<&LabelSelector>, meta: &ObjectMeta) -> bool {
    let empty = Default::default();
    selector.is_some_and(|sel| {
        !labels::is_empty(sel) && labels::matches(sel, meta.labels.as_ref().unwrap_or(&empty))
    })
}

/// The keys of the `owners` that could adopt `obj`, an object no one controls: those of
/// its namespace, not being deleted, that `selects` says pick it (kube's handlers queue
/// them all on an orphan's change; the first to reconcile adopts it).
pub fn adopters<O: kube::Resource, K: kube::Resource>(
    owners: &[Arc<O>],
    obj: &K,
    selects: impl Fn(&O) -> bool,
) -> Vec<Key> {
    if controller_of(obj).is_some() || obj.meta().deletion_timestamp.is_some() {
        return Vec::new();
    }
    owners
        .iter()
        .filter(|o| o.meta().namespace == obj.meta().namespace)
        .filter(|o| o.meta().deletion_timestamp.is_none() && selects(o))
        .map(|o| key_of(o.as_ref()))
        .collect()
}

/// An adoption or release the API refused.
#[derive(Debug, thiserror::Error)]
#[error("{verb} the controller reference of {kind} {name}")]
pub struct Error {
    pub verb: &'static str,
    pub kind: String,
    pub name: String,
    #[source]
    pub source: kube::Error,
}

/// The owner's claim over `objs` (its namespace's objects of one kind): those it keeps or
/// adopts, adopted ones as they are after the adoption. `owner` is the controller
/// reference to add; `selects` says whether the owner's selector picks an object;
/// `finalizers` are added with an adoption (the Job controller's tracking finalizer).
pub async fn claim_all<K>(
    api: &Api<K>,
    objs: Vec<Arc<K>>,
    owner: &OwnerReference,
    owner_deleting: bool,
    selects: impl Fn(&K) -> bool,
    finalizers: &[&str],
) -> Result<Vec<Arc<K>>, Error>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + serde::Serialize,
{
    let mut out = Vec::new();
    for o in objs {
        match claim(o.as_ref(), &owner.uid, selects(&o), owner_deleting) {
            Claim::Keep => out.push(o),
            Claim::Release => {
                set_owner(api, &o, None, &[]).await?;
            }
            Claim::Adopt => {
                if let Some(adopted) = set_owner(api, &o, Some(owner.clone()), finalizers).await? {
                    out.push(Arc::new(adopted));
                }
            }
            Claim::Ignore => {}
        }
    }
    Ok(out)
}

/// Adds (`Some`) or drops (`None`) the object's controller reference, with `finalizers`
/// added: a merge patch guarded by the resourceVersion the decision was made on (a patch,
/// as kube's controllers adopt, since their roles may patch pods but not update them).
/// `None` when the object changed or went meanwhile (the watch brings the news and
/// another reconcile).
pub async fn set_owner<K>(
    api: &Api<K>,
    obj: &K,
    owner: Option<OwnerReference>,
    finalizers: &[&str],
) -> Result<Option<K>, Error>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + serde::Serialize,
{
    let verb = if owner.is_some() {
        "adding"
    } else {
        "dropping"
    };
    let meta = obj.meta();
    let mut refs = meta.owner_references.clone().unwrap_or_default();
    match owner {
        Some(o) => refs.push(o),
        None => refs.retain(|r| r.controller != Some(true)),
    }
    let mut patch = serde_json::json!({
        "metadata": {
            "resourceVersion": meta.resource_version,
            "ownerReferences": refs,
        }
    });
    let mut fins = meta.finalizers.clone().unwrap_or_default();
    let missing: Vec<&&str> = finalizers
        .iter()
        .filter(|f| !fins.iter().any(|have| have == **f))
        .collect();
    if !missing.is_empty() {
        fins.extend(missing.into_iter().map(|f| f.to_string()));
        patch["metadata"]["finalizers"] = serde_json::json!(fins);
    }
    let name = meta.name.clone().unwrap_or_default();
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(o) => Ok(Some(o)),
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(None),
        Err(source) => Err(Error {
            verb,
            kind: K::kind(&()).into_owned(),
            name,
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn pod(controller: Option<&str>, deleting: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                owner_references: controller.map(|uid| {
                    vec![OwnerReference {
                        uid: uid.into(),
                        controller: Some(true),
                        ..Default::default()
                    }]
                }),
                deletion_timestamp: deleting.then(|| Time(jiff::Timestamp::UNIX_EPOCH)),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn an_owner_keeps_adopts_and_releases_as_its_selector_says() {
        assert_eq!(
            claim(&pod(Some("me"), false), "me", true, false),
            Claim::Keep
        );
        assert_eq!(
            claim(&pod(Some("me"), false), "me", false, false),
            Claim::Release
        );
        assert_eq!(
            claim(&pod(Some("me"), false), "me", false, true),
            Claim::Keep,
            "a deleting owner releases nothing"
        );
        assert_eq!(claim(&pod(None, false), "me", true, false), Claim::Adopt);
        assert_eq!(
            claim(&pod(None, false), "me", true, true),
            Claim::Ignore,
            "a deleting owner adopts nothing"
        );
        assert_eq!(
            claim(&pod(None, true), "me", true, false),
            Claim::Ignore,
            "a deleting orphan is not adopted"
        );
        assert_eq!(claim(&pod(None, false), "me", false, false), Claim::Ignore);
        assert_eq!(
            claim(&pod(Some("other"), false), "me", true, false),
            Claim::Ignore,
            "another controller's pod stays its own"
        );
    }
}
