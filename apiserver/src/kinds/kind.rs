//! One kind's rules, as plain typed functions over its k8s-openapi struct: identity and
//! names (from the type and a few constants), defaulting, validation, field selectors, and
//! the hooks where a kind's own behaviour enters the generic registry (allocations claimed
//! on create and released on delete, refused deletes, graceful deletion, the mark a
//! deleting object gets). A kind is one module implementing this trait plus one line in
//! the table in `mod.rs`; nothing outside its module names it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::info::{ScaleSpec, Subresource};
use crate::error::{ApiError, FieldError};
use crate::table::Printer;
use crate::validation::NameRule;

/// What kinds' hooks may use of the apiserver's configuration.
#[derive(Debug, Clone)]
pub struct Env {
    /// `--service-cluster-ip-range`.
    pub service_ips: super::service::alloc::Range,
}

/// A key an object holds besides its own (a Service's cluster IP, a node port), created
/// in the same Txn as the object, only if absent, and deleted with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub key: String,
    /// The error when the key is taken and the client asked for this value; `None`: the
    /// value was drawn at random and is drawn again.
    pub taken: Option<FieldError>,
}

pub trait Kind: Send + Sync + 'static {
    type Obj: k8s_openapi::Resource
        + k8s_openapi::ListableResource
        + k8s_openapi::Metadata<Ty = ObjectMeta>
        + Serialize
        + DeserializeOwned
        + Clone
        + Send
        + Sync
        + k8s_openapi::schemars::JsonSchema;
    const SINGULAR: &'static str;
    /// Where objects are stored under `/registry/` when not under the plural (see
    /// [`super::ResourceInfo::storage`]).
    const STORAGE: Option<&'static str> = None;
    const SHORT_NAMES: &'static [&'static str] = &[];
    const CATEGORIES: &'static [&'static str] = &[];
    const STATUS: bool = false;
    const GENERATION: bool = false;
    /// A delete without a propagation policy orphans dependents (batch/v1 Jobs).
    const ORPHAN_BY_DEFAULT: bool = false;
    const NAME_RULE: NameRule = NameRule::Subdomain;
    const FIELDS: &'static [&'static str] = &[];
    /// Subresources besides `status` (from STATUS) and `scale` (from SCALE).
    const SUBRESOURCES: &'static [Subresource] = &[];
    const SCALE: Option<ScaleSpec> = None;
    const PRINTER: Option<&'static Printer> = None;
    /// Whether the kind implements any of the registry hooks that look at the object
    /// (`claims`, `released`, `grace_period`, `mark_deleting`). When false the registry
    /// skips them without decoding the object, so a create or delete of other kinds pays
    /// nothing for them.
    const OBJECT_HOOKS: bool = false;
    /// Whether the kind implements `companions`. Every update calls it, so only kinds that
    /// have companions pay for decoding the old and new objects.
    const COMPANIONS: bool = false;

    /// Fills in defaults, as decoding does in Kubernetes (before anything else).
    fn default(_obj: &mut Self::Obj) {}
    /// Sets what a create decides (initial status).
    fn prepare_create(_obj: &mut Self::Obj) {}
    /// Carries over what an update may not clear (allocated values).
    fn prepare_update(_new: &mut Self::Obj, _old: &Self::Obj) {}
    fn validate(_obj: &Self::Obj) -> Vec<FieldError> {
        vec![]
    }
    fn validate_update(_new: &Self::Obj, _old: &Self::Obj) -> Vec<FieldError> {
        vec![]
    }
    /// Values of the kind's own field selectors.
    fn fields(_obj: &Self::Obj) -> Vec<(&'static str, String)> {
        vec![]
    }

    /// Fills in what a create allocates and returns the keys that hold it. Called on the
    /// object as the client sent it (defaulted, validated) once per attempt: a value drawn
    /// at random that turned out taken is drawn again on the next.
    fn claims(_obj: &mut Self::Obj, _env: &Env) -> Result<Vec<Claim>, Vec<FieldError>> {
        Ok(vec![])
    }
    /// The keys of [`Kind::claims`] a stored object holds, deleted with it.
    fn released(_obj: &Self::Obj) -> Vec<String> {
        vec![]
    }
    /// Refuses a delete outright (the system namespaces).
    fn check_delete(_name: &str) -> Result<(), ApiError> {
        Ok(())
    }
    /// The grace period a delete gets; `None`: gone at once unless finalizers hold it.
    fn grace_period(_obj: &Self::Obj, _requested: Option<i64>) -> Option<i64> {
        None
    }
    /// What an object being deleted shows besides its deletionTimestamp.
    fn mark_deleting(_obj: &mut Self::Obj) {}
    /// Keys written in the same Txn as a change of the object stored at `key` (`old`
    /// None: a create; `new` None: a delete): a Lease's fence.
    fn companions(
        _key: &str,
        _old: Option<&Self::Obj>,
        _new: Option<&Self::Obj>,
    ) -> Vec<Companion> {
        vec![]
    }
}

/// A write that goes with an object's own, in its Txn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Companion {
    Put(String, Vec<u8>),
    Delete(String),
}
