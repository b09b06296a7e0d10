//! The table of served kinds: the built-in ones from [`super::builtin`], and kinds added
//! while the server runs (custom resources), looked up by group, version and plural.
//!
//! Contract: lookups see a consistent snapshot; a registration is visible to every lookup
//! that starts after it returns; two kinds never share a group, version and plural.

use std::sync::{Arc, RwLock};

use super::typed::Strategy;
use crate::error::ApiError;

#[derive(Clone)]
pub struct Kinds(Arc<RwLock<Arc<Vec<Arc<dyn Strategy>>>>>);

impl Kinds {
    /// The built-in kinds.
    pub fn all() -> Self {
        Self(Arc::new(RwLock::new(Arc::new(super::builtin()))))
    }

    fn snapshot(&self) -> Arc<Vec<Arc<dyn Strategy>>> {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
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

    /// The kind whose objects live under `/registry/<plural>/`, in the version they are
    /// stored in.
    pub fn by_plural(&self, plural: &str) -> Option<Arc<dyn Strategy>> {
        self.snapshot()
            .iter()
            .find(|k| k.info().plural == plural && k.stored_here())
            .cloned()
    }

    /// Every kind, as of now.
    pub fn iter(&self) -> std::vec::IntoIter<Arc<dyn Strategy>> {
        self.snapshot().as_ref().clone().into_iter()
    }

    /// Serves a kind from now on (a custom resource once its definition is established).
    pub fn register(&self, kind: Arc<dyn Strategy>) -> Result<(), ApiError> {
        let mut g = self.0.write().unwrap_or_else(|p| p.into_inner());
        let i = kind.info();
        if g.iter().any(|k| {
            let o = k.info();
            o.group == i.group && o.version == i.version && o.plural == i.plural
        }) {
            return Err(ApiError::AlreadyExists {
                gr: i.gr(),
                name: i.plural.to_string(),
            });
        }
        let mut next = g.as_ref().clone();
        next.push(kind);
        *g = Arc::new(next);
        Ok(())
    }

    /// Stops serving a kind registered with [`Kinds::register`].
    pub fn unregister(&self, group: &str, version: &str, plural: &str) {
        let mut g = self.0.write().unwrap_or_else(|p| p.into_inner());
        let next: Vec<_> = g
            .iter()
            .filter(|k| {
                let i = k.info();
                !(i.group == group && i.version == version && i.plural == plural)
            })
            .cloned()
            .collect();
        *g = Arc::new(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registering_adds_a_kind_once_and_unregistering_removes_it() {
        let kinds = Kinds::all();
        let n = kinds.iter().count();
        let pods = kinds.find("", "v1", "pods").unwrap();
        assert!(kinds.register(pods).is_err(), "a second pods is refused");
        kinds.unregister("", "v1", "pods");
        assert!(kinds.find("", "v1", "pods").is_none());
        assert_eq!(kinds.iter().count(), n - 1);
        kinds
            .register(Kinds::all().find("", "v1", "pods").unwrap())
            .unwrap();
        assert!(kinds.find("", "v1", "pods").is_some());
    }
}
