//! The type-erased face of a kind ([`Strategy`]: JSON values in, JSON values out), which
//! the registry, the HTTP layer, discovery and OpenAPI use, and [`Typed`], which gives any
//! [`Kind`] that face by decoding to and encoding from its typed struct.

use serde::Deserialize as _;
use serde_json::Value;

use super::info::{ResourceInfo, Subresource};
use super::kind::{Claim, Companion, Env, Kind};
use crate::error::ApiError;
use crate::validation;

/// The type-erased face of a kind.
pub trait Strategy: Send + Sync {
    fn info(&self) -> &ResourceInfo;
    /// Parses a request body into a normalized, defaulted object: unknown fields dropped,
    /// `apiVersion` and `kind` checked and set.
    fn decode(&self, body: &[u8]) -> Result<Value, ApiError>;
    fn prepare_create(&self, obj: &mut Value) -> Result<(), ApiError>;
    fn prepare_update(&self, new: &mut Value, old: &Value) -> Result<(), ApiError>;
    /// Validates an object about to be stored (`old`: the stored one, on update).
    fn validate(&self, obj: &Value, old: Option<&Value>) -> Result<(), ApiError>;
    /// Every field selector value of a stored object.
    fn fields(&self, obj: &Value) -> Vec<(&'static str, String)>;
    /// The fields of a request body the kind does not have (empty if it does not parse:
    /// decoding reports that).
    fn unknown_fields(&self, body: &[u8]) -> Vec<String>;
    /// Adds the kind's OpenAPI schema (and those it refers to) to `generator`.
    fn add_schema(&self, generator: &mut k8s_openapi::schemars::SchemaGenerator) -> String;
    /// Fills in what a create allocates; the keys that hold it (see [`Kind::claims`]).
    fn claims(&self, obj: &mut Value, env: &Env) -> Result<Vec<Claim>, ApiError>;
    /// The keys a stored object holds, released when it is deleted.
    fn released(&self, obj: &Value) -> Vec<String>;
    /// What is written with a change of the object at `key` (see [`Kind::companions`]).
    fn companions(&self, _key: &str, _old: Option<&Value>, _new: Option<&Value>) -> Vec<Companion> {
        vec![]
    }
    fn check_delete(&self, name: &str) -> Result<(), ApiError>;
    /// The grace period a delete of `obj` gets (see [`Kind::grace_period`]).
    fn grace_period(&self, obj: &Value, requested: Option<i64>) -> Result<Option<i64>, ApiError>;
    fn mark_deleting(&self, obj: &mut Value) -> Result<(), ApiError>;
    /// Whether objects are stored in this version; false for a version served by
    /// conversion (`super::served`), whose objects are stored in another.
    fn stored_here(&self) -> bool {
        true
    }
    /// Whether a stored object may need converting to be served in this version: stored
    /// in another version, or in several (a CRD whose storage version changed).
    fn needs_conversion(&self) -> bool {
        !self.stored_here()
    }
    /// A stored object as this version serves it (itself when stored here).
    fn to_served(&self, stored: Value) -> Result<Value, ApiError> {
        Ok(stored)
    }
    /// Stored objects as this version serves them (a list's items, converted together).
    fn to_served_all(&self, stored: Vec<Value>) -> Result<Vec<Value>, ApiError> {
        stored.into_iter().map(|o| self.to_served(o)).collect()
    }
}

/// A stored object's JSON as `kind` serves it: the same bytes when stored in its version.
pub fn served_bytes(kind: &dyn Strategy, stored: bytes::Bytes) -> Result<bytes::Bytes, ApiError> {
    if !kind.needs_conversion() {
        return Ok(stored);
    }
    let v: Value = serde_json::from_slice(&stored)
        .map_err(|e| ApiError::Internal(format!("stored object: {e}")))?;
    let served = kind.to_served(v)?;
    Ok(serde_json::to_vec(&served).unwrap_or_default().into())
}

/// Stored objects' JSON as `kind` serves them, converted together (one conversion
/// webhook call for a whole list).
pub fn served_items(
    kind: &dyn Strategy,
    stored: Vec<bytes::Bytes>,
) -> Result<Vec<bytes::Bytes>, ApiError> {
    if !kind.needs_conversion() {
        return Ok(stored);
    }
    let values = stored
        .iter()
        .map(|b| serde_json::from_slice::<Value>(b))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::Internal(format!("stored object: {e}")))?;
    Ok(kind
        .to_served_all(values)?
        .iter()
        .map(|v| serde_json::to_vec(v).unwrap_or_default().into())
        .collect())
}

/// Parses a request body as `T`, the object of the resource `info` describes: its
/// `apiVersion` and `kind`, when present, must be the URL's; both are set.
pub(super) fn decode_as<T: serde::de::DeserializeOwned>(
    info: &ResourceInfo,
    body: &[u8],
) -> Result<T, ApiError> {
    let mut v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!("couldn't get version/kind; json parse error: {e}"))
    })?;
    let Some(m) = v.as_object_mut() else {
        return Err(ApiError::BadRequest(format!(
            "{} in version \"{}\" cannot be handled as a {}: the body is not a JSON object",
            info.kind, info.version, info.kind
        )));
    };
    let want = info.api_version();
    // A present apiVersion or kind must be the URL's.
    for (field, expected, what) in [
        ("apiVersion", want.as_str(), "API version"),
        ("kind", info.kind, "kind"),
    ] {
        match m.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s == expected => {}
            Some(other) => {
                let got = other
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| other.to_string());
                return Err(ApiError::BadRequest(format!(
                    "the {what} in the data ({got}) does not match the expected {what} ({expected})"
                )));
            }
        }
    }
    m.insert("apiVersion".into(), want.into());
    m.insert("kind".into(), info.kind.into());
    if !m.get("metadata").is_some_and(Value::is_object) {
        if m.get("metadata").is_some_and(|x| !x.is_null()) {
            return Err(ApiError::BadRequest(format!(
                "{} in version \"{}\" cannot be handled as a {}: metadata must be an object",
                info.kind, info.version, info.kind
            )));
        }
        m.insert("metadata".into(), Value::Object(Default::default()));
    }
    T::deserialize(&v).map_err(|e| {
        ApiError::BadRequest(format!(
            "{} in version \"{}\" cannot be handled as a {}: {e}",
            info.kind, info.version, info.kind
        ))
    })
}

/// The fields of a request body that `T` does not have (empty if it does not parse:
/// decoding reports that).
pub(super) fn unknown_fields_of<T: serde::de::DeserializeOwned + serde::Serialize>(
    body: &[u8],
) -> Vec<String> {
    let Ok(input) = serde_json::from_slice::<Value>(body) else {
        return vec![];
    };
    let Ok(obj) = T::deserialize(&input) else {
        return vec![];
    };
    let Ok(known) = serde_json::to_value(&obj) else {
        return vec![];
    };
    crate::fieldcheck::unknown_fields(&input, &known)
}

pub struct Typed<K: Kind> {
    info: ResourceInfo,
    _k: std::marker::PhantomData<K>,
}

impl<K: Kind> Typed<K> {
    pub fn new() -> Self {
        use k8s_openapi::Resource;
        let namespaced = std::any::TypeId::of::<<K::Obj as Resource>::Scope>()
            == std::any::TypeId::of::<k8s_openapi::NamespaceResourceScope>();
        Self {
            info: ResourceInfo {
                group: <K::Obj as Resource>::GROUP,
                version: <K::Obj as Resource>::VERSION,
                kind: <K::Obj as Resource>::KIND,
                list_kind: <K::Obj as k8s_openapi::ListableResource>::LIST_KIND,
                plural: <K::Obj as Resource>::URL_PATH_SEGMENT,
                storage: K::STORAGE.unwrap_or(<K::Obj as Resource>::URL_PATH_SEGMENT),
                singular: K::SINGULAR,
                namespaced,
                short_names: K::SHORT_NAMES,
                categories: K::CATEGORIES,
                status: K::STATUS,
                generation: K::GENERATION,
                orphan_by_default: K::ORPHAN_BY_DEFAULT,
                name_rule: K::NAME_RULE,
                fields: K::FIELDS,
                schema_name: <K::Obj as k8s_openapi::schemars::JsonSchema>::schema_name()
                    .into_owned(),
                subresources: K::STATUS
                    .then(|| Subresource::status(<K::Obj as Resource>::KIND))
                    .into_iter()
                    .chain(K::SCALE.map(|_| Subresource::SCALE))
                    .chain(K::SUBRESOURCES.iter().copied())
                    .collect(),
                scale: K::SCALE,
                strategic_merge: true,
                printer: K::PRINTER,
                columns: None,
            },
            _k: std::marker::PhantomData,
        }
    }

    fn typed(&self, v: &Value) -> Result<K::Obj, ApiError> {
        K::Obj::deserialize(v).map_err(|e| {
            ApiError::Internal(format!("stored {} does not decode: {e}", self.info.kind))
        })
    }

    fn untyped(&self, obj: &K::Obj) -> Result<Value, ApiError> {
        serde_json::to_value(obj)
            .map_err(|e| ApiError::Internal(format!("encoding {}: {e}", self.info.kind)))
    }
}

impl<K: Kind> Default for Typed<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Kind> Strategy for Typed<K> {
    fn info(&self) -> &ResourceInfo {
        &self.info
    }

    fn decode(&self, body: &[u8]) -> Result<Value, ApiError> {
        let mut obj: K::Obj = decode_as(&self.info, body)?;
        K::default(&mut obj);
        self.untyped(&obj)
    }

    fn prepare_create(&self, obj: &mut Value) -> Result<(), ApiError> {
        let mut t = self.typed(obj)?;
        K::prepare_create(&mut t);
        *obj = self.untyped(&t)?;
        Ok(())
    }

    fn prepare_update(&self, new: &mut Value, old: &Value) -> Result<(), ApiError> {
        let mut t = self.typed(new)?;
        K::prepare_update(&mut t, &self.typed(old)?);
        *new = self.untyped(&t)?;
        Ok(())
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Result<(), ApiError> {
        use k8s_openapi::Metadata;
        let t = self.typed(obj)?;
        let mut errs =
            validation::object_meta(t.metadata(), self.info.namespaced, self.info.name_rule);
        errs.extend(K::validate(&t));
        if let Some(old) = old {
            errs.extend(K::validate_update(&t, &self.typed(old)?));
        }
        if errs.is_empty() {
            Ok(())
        } else {
            let name = t.metadata().name.clone().unwrap_or_default();
            Err(self.info.invalid(&name, errs))
        }
    }

    fn unknown_fields(&self, body: &[u8]) -> Vec<String> {
        unknown_fields_of::<K::Obj>(body)
    }

    fn add_schema(&self, generator: &mut k8s_openapi::schemars::SchemaGenerator) -> String {
        generator.subschema_for::<K::Obj>();
        self.info.schema_name.clone()
    }

    fn claims(&self, obj: &mut Value, env: &Env) -> Result<Vec<Claim>, ApiError> {
        if !K::OBJECT_HOOKS {
            return Ok(vec![]);
        }
        let mut t = self.typed(obj)?;
        let claims = K::claims(&mut t, env).map_err(|errs| {
            use k8s_openapi::Metadata;
            self.info
                .invalid(t.metadata().name.as_deref().unwrap_or(""), errs)
        })?;
        *obj = self.untyped(&t)?;
        Ok(claims)
    }

    fn released(&self, obj: &Value) -> Vec<String> {
        if !K::OBJECT_HOOKS {
            return vec![];
        }
        self.typed(obj).map(|t| K::released(&t)).unwrap_or_default()
    }

    fn check_delete(&self, name: &str) -> Result<(), ApiError> {
        K::check_delete(name)
    }

    fn companions(&self, key: &str, old: Option<&Value>, new: Option<&Value>) -> Vec<Companion> {
        if !K::COMPANIONS {
            return vec![];
        }
        // An object that does not decode has no companions of its own.
        let old = old.and_then(|v| self.typed(v).ok());
        let new = new.and_then(|v| self.typed(v).ok());
        K::companions(key, old.as_ref(), new.as_ref())
    }

    fn grace_period(&self, obj: &Value, requested: Option<i64>) -> Result<Option<i64>, ApiError> {
        if !K::OBJECT_HOOKS {
            return Ok(None);
        }
        Ok(K::grace_period(&self.typed(obj)?, requested))
    }

    fn mark_deleting(&self, obj: &mut Value) -> Result<(), ApiError> {
        if !K::OBJECT_HOOKS {
            return Ok(());
        }
        let mut t = self.typed(obj)?;
        K::mark_deleting(&mut t);
        // Only what the kind marks changes: metadata set by the registry stays as it is,
        // but for finalizers a kind may add (a CRD's cleanup finalizer).
        let marked = self.untyped(&t)?;
        if let (Some(o), Some(m)) = (obj.as_object_mut(), marked.as_object()) {
            for (k, v) in m {
                if k != "metadata" {
                    o.insert(k.clone(), v.clone());
                }
            }
        }
        if let Some(f) = marked["metadata"]
            .get("finalizers")
            .filter(|f| !f.is_null())
        {
            obj["metadata"]["finalizers"] = f.clone();
        }
        Ok(())
    }

    fn fields(&self, obj: &Value) -> Vec<(&'static str, String)> {
        let meta = &obj["metadata"];
        let mut out = vec![
            (
                "metadata.name",
                meta["name"].as_str().unwrap_or("").to_string(),
            ),
            (
                "metadata.namespace",
                meta["namespace"].as_str().unwrap_or("").to_string(),
            ),
        ];
        if let Ok(t) = self.typed(obj) {
            out.extend(K::fields(&t));
        }
        out
    }
}
