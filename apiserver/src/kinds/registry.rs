//! The table of served kinds: the built-in ones from [`super::builtin`], and the kinds
//! CustomResourceDefinitions define, looked up by group, version and plural.
//!
//! Contract: lookups see a consistent snapshot; a change is visible to every lookup that
//! starts after it returns; two kinds never share a group, version and plural, nor a
//! storage prefix (a built-in kind wins over a custom one that would clash). The custom
//! part follows the watch cache: the cache defines a CRD's kinds before it publishes the
//! revision that changed it, so whoever waits for the cache to reach a revision also
//! finds the kinds as of that revision. [`Kinds::generation`] counts changes (OpenAPI
//! rebuilds its documents when it moves).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

use super::typed::Strategy;

/// Where CustomResourceDefinitions are stored.
pub const CRD_PREFIX: &str = "/registry/apiextensions.k8s.io/customresourcedefinitions/";

#[derive(Default)]
struct Table {
    builtin: Vec<Arc<dyn Strategy>>,
    /// By CRD name: the kinds it defines now.
    custom: BTreeMap<String, Vec<Arc<dyn Strategy>>>,
    /// `builtin` then the custom kinds that do not clash with them.
    all: Arc<Vec<Arc<dyn Strategy>>>,
    generation: u64,
    /// What calls CRDs' conversion webhooks, once set.
    caller: super::custom::conversion::SharedCaller,
}

impl Table {
    fn rebuild(&mut self) {
        let mut all = self.builtin.clone();
        for k in self.custom.values().flatten() {
            let i = k.info();
            let clash = all.iter().any(|o| {
                let o = o.info();
                (o.group == i.group && o.version == i.version && o.plural == i.plural)
                    || (o.storage == i.storage && o.version == i.version)
            });
            if !clash {
                all.push(k.clone());
            }
        }
        self.all = Arc::new(all);
        self.generation = self.generation.wrapping_add(1);
    }
}

#[derive(Clone)]
pub struct Kinds(Arc<RwLock<Table>>);

impl Kinds {
    /// The built-in kinds.
    pub fn all() -> Self {
        let mut t = Table {
            builtin: super::builtin(),
            ..Default::default()
        };
        t.rebuild();
        Self(Arc::new(RwLock::new(t)))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.0.write().unwrap_or_else(|p| p.into_inner())
    }

    fn snapshot(&self) -> Arc<Vec<Arc<dyn Strategy>>> {
        self.read().all.clone()
    }

    /// Sets what calls CRDs' conversion webhooks (once; later calls change nothing). Until
    /// then, objects that need one are refused as unavailable.
    pub fn set_conversion_caller(&self, c: Arc<dyn super::custom::conversion::Caller>) {
        let _ = self.read().caller.set(c);
    }

    fn caller(&self) -> super::custom::conversion::SharedCaller {
        self.read().caller.clone()
    }

    /// Counts changes of the table.
    pub fn generation(&self) -> u64 {
        self.read().generation
    }

    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<Arc<dyn Strategy>> {
        self.snapshot()
            .iter()
            .find(|k| {
                k.info().group == group && k.info().version == version && k.info().plural == plural
            })
            .cloned()
    }

    /// The kind with a create-only collection of that name (see
    /// [`super::Subresource::collection`]), and the subresource that serves it.
    pub fn collection(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<(Arc<dyn Strategy>, super::Subresource)> {
        self.snapshot().iter().find_map(|k| {
            let i = k.info();
            let s = i
                .collection(plural)
                .filter(|_| i.group == group && i.version == version)?;
            Some((k.clone(), *s))
        })
    }

    /// The kind whose objects live under `/registry/<storage>/`, in the version they are
    /// stored in.
    pub fn by_storage(&self, storage: &str) -> Option<Arc<dyn Strategy>> {
        self.snapshot()
            .iter()
            .find(|k| k.info().storage == storage && k.stored_here())
            .cloned()
    }

    /// Whether some kind is served in that group.
    pub fn has_group(&self, group: &str) -> bool {
        self.snapshot().iter().any(|k| k.info().group == group)
    }

    /// Every kind, as of now.
    pub fn iter(&self) -> std::vec::IntoIter<Arc<dyn Strategy>> {
        self.snapshot().as_ref().clone().into_iter()
    }

    /// Serves what the CRD stored at `key` defines from now on (`crd` None: it was
    /// deleted). A value that does not decode defines nothing.
    pub fn define(&self, key: &str, crd: Option<&[u8]>) {
        let Some(name) = key.strip_prefix(CRD_PREFIX) else {
            return;
        };
        let kinds = crd
            .and_then(|b| match serde_json::from_slice::<CustomResourceDefinition>(b) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(crd = name, error = %e, "a stored CRD does not decode; its kinds are not served");
                    None
                }
            })
            .map(|c| super::custom::build(&c, &self.caller()))
            .unwrap_or_default();
        tracing::debug!(crd = name, kinds = kinds.len(), "CRD defines");
        let mut t = self.write();
        if kinds.is_empty() && !t.custom.contains_key(name) {
            return;
        }
        if kinds.is_empty() {
            t.custom.remove(name);
        } else {
            t.custom.insert(name.to_string(), kinds);
        }
        t.rebuild();
    }

    /// Serves exactly what these CRDs (stored values by key) define (after a full list).
    pub fn reset_custom<'a>(&self, crds: impl Iterator<Item = (&'a str, &'a [u8])>) {
        let mut custom = BTreeMap::new();
        let caller = self.caller();
        for (key, value) in crds {
            let Some(name) = key.strip_prefix(CRD_PREFIX) else {
                continue;
            };
            if let Ok(c) = serde_json::from_slice::<CustomResourceDefinition>(value) {
                let kinds = super::custom::build(&c, &caller);
                if !kinds.is_empty() {
                    custom.insert(name.to_string(), kinds);
                }
            }
        }
        let mut t = self.write();
        t.custom = custom;
        t.rebuild();
    }
}

/// The storage prefix of a key under `/registry/`: its first segment, or its first two
/// when the first is a group (has a dot: custom resources, CRDs).
pub fn storage_of(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("/registry/")?;
    let mut parts = rest.splitn(3, '/');
    let first = parts.next()?;
    if !first.contains('.') {
        return Some(first);
    }
    let second = parts.next()?;
    Some(&rest[..first.len() + 1 + second.len()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crd(established: bool) -> Vec<u8> {
        let status = if established {
            json!({"conditions": [{"type": "Established", "status": "True"}],
                   "acceptedNames": {"plural": "crontabs", "kind": "CronTab"}})
        } else {
            json!({})
        };
        serde_json::to_vec(&json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "crontabs.stable.example.com"},
            "spec": {"group": "stable.example.com", "scope": "Namespaced",
                     "names": {"plural": "crontabs", "kind": "CronTab"},
                     "versions": [{"name": "v1", "served": true, "storage": true}]},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn a_crd_defines_its_kinds_once_its_names_are_accepted() {
        let kinds = Kinds::all();
        let n = kinds.iter().count();
        let key = format!("{CRD_PREFIX}crontabs.stable.example.com");
        let g = kinds.generation();
        kinds.define(&key, Some(&crd(false)));
        assert_eq!(kinds.iter().count(), n);
        assert_eq!(kinds.generation(), g, "nothing changed");
        kinds.define(&key, Some(&crd(true)));
        let k = kinds.find("stable.example.com", "v1", "crontabs").unwrap();
        assert_eq!(k.info().storage, "stable.example.com/crontabs");
        assert!(kinds.by_storage("stable.example.com/crontabs").is_some());
        assert!(kinds.has_group("stable.example.com"));
        assert!(kinds.generation() != g);
        kinds.define(&key, None);
        assert!(kinds.find("stable.example.com", "v1", "crontabs").is_none());
        kinds.reset_custom([(key.as_str(), crd(true).as_slice())].into_iter());
        assert!(kinds.find("stable.example.com", "v1", "crontabs").is_some());
        kinds.reset_custom(std::iter::empty());
        assert_eq!(kinds.iter().count(), n);
    }

    #[test]
    fn built_in_kinds_win_a_clash() {
        let kinds = Kinds::all();
        let body = String::from_utf8(crd(true))
            .unwrap()
            .replace("stable.example.com", "apps")
            .replace("crontabs", "deployments")
            .replace("CronTab", "Deployment");
        kinds.define(
            &format!("{CRD_PREFIX}deployments.apps"),
            Some(body.as_bytes()),
        );
        let d = kinds.find("apps", "v1", "deployments").unwrap();
        assert_eq!(d.info().storage, "deployments", "the built-in one");
    }

    #[test]
    fn storage_prefixes_of_keys() {
        assert_eq!(storage_of("/registry/pods/d/p"), Some("pods"));
        assert_eq!(storage_of("/registry/nodes/n"), Some("nodes"));
        assert_eq!(
            storage_of("/registry/stable.example.com/crontabs/d/c"),
            Some("stable.example.com/crontabs")
        );
        assert_eq!(storage_of("/registry/a.b"), None);
        assert_eq!(storage_of("/other/pods/x"), None);
    }
}
