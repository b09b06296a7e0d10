//! A kind served in a second version (autoscaling/v1 HorizontalPodAutoscalers beside the
//! stored autoscaling/v2): objects are stored in the kind's own version only and converted
//! at the edges, as kube-apiserver converts through its internal version. A request body
//! in the served version is decoded, defaulted and converted up before the registry sees
//! it; every object a response or watch event carries is converted down
//! ([`Strategy::to_served`], [`super::served_bytes`]); a patch applies to the served form.
//! Everything else (preparation, validation, field selectors, hooks, tables) is the
//! stored kind's, on the stored form.
//!
//! Contract: `down(up(x))` keeps every field the served version has, and `up(down(y))`
//! keeps every field of the stored version (what the served version lacks travels in
//! annotations, as kube's conversions do), so a client of either version loses nothing
//! written through the other.

use serde_json::Value;

use super::info::ResourceInfo;
use super::kind::{Claim, Env, Kind};
use super::typed::{decode_as, unknown_fields_of, Strategy, Typed};
use crate::error::ApiError;

/// How the served version converts to and from the stored one.
pub trait Conversion: Send + Sync + 'static {
    /// The kind as stored.
    type Stored: Kind;
    /// The object in the served version.
    type Obj: k8s_openapi::Resource
        + serde::Serialize
        + serde::de::DeserializeOwned
        + Clone
        + Send
        + Sync
        + k8s_openapi::schemars::JsonSchema;
    /// The served version's defaults, before conversion (then the stored kind's apply).
    fn default(_obj: &mut Self::Obj) {}
    fn up(obj: Self::Obj) -> <Self::Stored as Kind>::Obj;
    fn down(obj: <Self::Stored as Kind>::Obj) -> Self::Obj;
}

pub struct Served<C: Conversion> {
    info: ResourceInfo,
    stored: Typed<C::Stored>,
}

impl<C: Conversion> Served<C> {
    pub fn new() -> Self {
        use k8s_openapi::Resource;
        let stored = Typed::<C::Stored>::new();
        let mut info = stored.info().clone();
        info.version = <C::Obj as Resource>::VERSION;
        info.schema_name =
            <C::Obj as k8s_openapi::schemars::JsonSchema>::schema_name().into_owned();
        Self { info, stored }
    }
}

impl<C: Conversion> Default for Served<C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: Conversion> Strategy for Served<C> {
    fn info(&self) -> &ResourceInfo {
        &self.info
    }

    fn decode(&self, body: &[u8]) -> Result<Value, ApiError> {
        let mut obj: C::Obj = decode_as(&self.info, body)?;
        C::default(&mut obj);
        let mut up = C::up(obj);
        <C::Stored as Kind>::default(&mut up);
        serde_json::to_value(&up)
            .map_err(|e| ApiError::Internal(format!("encoding {}: {e}", self.info.kind)))
    }

    fn prepare_create(&self, obj: &mut Value) -> Result<(), ApiError> {
        self.stored.prepare_create(obj)
    }

    fn prepare_update(&self, new: &mut Value, old: &Value) -> Result<(), ApiError> {
        self.stored.prepare_update(new, old)
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Result<(), ApiError> {
        self.stored.validate(obj, old)
    }

    fn fields(&self, obj: &Value) -> Vec<(&'static str, String)> {
        self.stored.fields(obj)
    }

    fn unknown_fields(&self, body: &[u8]) -> Vec<String> {
        unknown_fields_of::<C::Obj>(body)
    }

    fn add_schema(&self, generator: &mut k8s_openapi::schemars::SchemaGenerator) -> String {
        generator.subschema_for::<C::Obj>();
        self.info.schema_name.clone()
    }

    fn claims(&self, obj: &mut Value, env: &Env) -> Result<Vec<Claim>, ApiError> {
        self.stored.claims(obj, env)
    }

    fn released(&self, obj: &Value) -> Vec<String> {
        self.stored.released(obj)
    }

    fn check_delete(&self, name: &str) -> Result<(), ApiError> {
        self.stored.check_delete(name)
    }

    fn grace_period(&self, obj: &Value, requested: Option<i64>) -> Result<Option<i64>, ApiError> {
        self.stored.grace_period(obj, requested)
    }

    fn mark_deleting(&self, obj: &mut Value) -> Result<(), ApiError> {
        self.stored.mark_deleting(obj)
    }

    fn stored_here(&self) -> bool {
        false
    }

    fn to_served(&self, stored: Value) -> Result<Value, ApiError> {
        use serde::Deserialize as _;
        let obj = <<C::Stored as Kind>::Obj>::deserialize(&stored).map_err(|e| {
            ApiError::Internal(format!("stored {} does not decode: {e}", self.info.kind))
        })?;
        serde_json::to_value(C::down(obj))
            .map_err(|e| ApiError::Internal(format!("encoding {}: {e}", self.info.kind)))
    }
}
