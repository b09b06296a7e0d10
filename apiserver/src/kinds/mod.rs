//! The served kinds. Each module implements [`Kind`] for one resource with plain typed
//! functions (defaulting, validation, field selectors, create/update preparation); the
//! [`Typed`] adapter turns that into the type-erased [`Strategy`] the registry uses, so the
//! registry and the HTTP layer never name a concrete type.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::error::{ApiError, FieldError, GroupResource};
use crate::validation::{self, NameRule};

mod configmap;
mod deployment;
mod endpoints;
mod endpointslice;
mod event;
mod lease;
mod namespace;
mod node;
pub mod pod;
pub mod podspec;
pub mod priorityclass;
mod rbac;
mod replicaset;
mod secret;
pub mod service;
mod serviceaccount;

pub use namespace::terminating as namespace_terminating;

/// What discovery and the registry need to know about a resource.
#[derive(Debug, Clone)]
pub struct ResourceInfo {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub list_kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Has a `status` subresource: a write to the object keeps the old status and a write
    /// to `status` keeps everything else.
    pub status: bool,
    /// `metadata.generation` counts changes of `spec`.
    pub generation: bool,
    pub name_rule: NameRule,
    /// Field selectors beyond `metadata.name` and `metadata.namespace`.
    pub fields: &'static [&'static str],
    /// The name of the kind's OpenAPI schema (`io.k8s.api.core.v1.Pod`).
    pub schema_name: String,
}

impl ResourceInfo {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
    pub fn gr(&self) -> GroupResource {
        GroupResource {
            group: self.group,
            resource: self.plural,
        }
    }
    pub fn invalid(&self, name: &str, causes: Vec<FieldError>) -> ApiError {
        ApiError::Invalid {
            kind: self.kind,
            group: self.group,
            name: name.to_string(),
            causes,
        }
    }
}

/// One kind's rules, as plain functions over its typed object.
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
    const SHORT_NAMES: &'static [&'static str] = &[];
    const CATEGORIES: &'static [&'static str] = &[];
    const STATUS: bool = false;
    const GENERATION: bool = false;
    const NAME_RULE: NameRule = NameRule::Subdomain;
    const FIELDS: &'static [&'static str] = &[];

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
}

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
                singular: K::SINGULAR,
                namespaced,
                short_names: K::SHORT_NAMES,
                categories: K::CATEGORIES,
                status: K::STATUS,
                generation: K::GENERATION,
                name_rule: K::NAME_RULE,
                fields: K::FIELDS,
                schema_name: <K::Obj as k8s_openapi::schemars::JsonSchema>::schema_name()
                    .into_owned(),
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

use serde::Deserialize as _;

impl<K: Kind> Strategy for Typed<K> {
    fn info(&self) -> &ResourceInfo {
        &self.info
    }

    fn decode(&self, body: &[u8]) -> Result<Value, ApiError> {
        let info = &self.info;
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
        let mut obj = K::Obj::deserialize(&v).map_err(|e| {
            ApiError::BadRequest(format!(
                "{} in version \"{}\" cannot be handled as a {}: {e}",
                info.kind, info.version, info.kind
            ))
        })?;
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
        let Ok(input) = serde_json::from_slice::<Value>(body) else {
            return vec![];
        };
        let Ok(obj) = K::Obj::deserialize(&input) else {
            return vec![];
        };
        let Ok(known) = serde_json::to_value(&obj) else {
            return vec![];
        };
        crate::fieldcheck::unknown_fields(&input, &known)
    }

    fn add_schema(&self, generator: &mut k8s_openapi::schemars::SchemaGenerator) -> String {
        generator.subschema_for::<K::Obj>();
        self.info.schema_name.clone()
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

/// Every served kind, looked up by group and plural.
#[derive(Clone)]
pub struct Kinds(Arc<Vec<Arc<dyn Strategy>>>);

impl Kinds {
    pub fn all() -> Self {
        let v: Vec<Arc<dyn Strategy>> = vec![
            Arc::new(Typed::<namespace::Namespaces>::new()),
            Arc::new(Typed::<pod::Pods>::new()),
            Arc::new(Typed::<node::Nodes>::new()),
            Arc::new(Typed::<service::Services>::new()),
            Arc::new(Typed::<endpoints::EndpointsKind>::new()),
            Arc::new(Typed::<configmap::ConfigMaps>::new()),
            Arc::new(Typed::<secret::Secrets>::new()),
            Arc::new(Typed::<serviceaccount::ServiceAccounts>::new()),
            Arc::new(Typed::<event::Events>::new()),
            Arc::new(Typed::<deployment::Deployments>::new()),
            Arc::new(Typed::<replicaset::ReplicaSets>::new()),
            Arc::new(Typed::<lease::Leases>::new()),
            Arc::new(Typed::<priorityclass::PriorityClasses>::new()),
            Arc::new(Typed::<endpointslice::EndpointSlices>::new()),
            Arc::new(Typed::<rbac::Roles>::new()),
            Arc::new(Typed::<rbac::ClusterRoles>::new()),
            Arc::new(Typed::<rbac::RoleBindings>::new()),
            Arc::new(Typed::<rbac::ClusterRoleBindings>::new()),
        ];
        Self(Arc::new(v))
    }

    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<Arc<dyn Strategy>> {
        self.0
            .iter()
            .find(|k| {
                k.info().group == group && k.info().version == version && k.info().plural == plural
            })
            .cloned()
    }

    /// The kind whose objects live under `/registry/<plural>/`.
    pub fn by_plural(&self, plural: &str) -> Option<Arc<dyn Strategy>> {
        self.0.iter().find(|k| k.info().plural == plural).cloned()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Strategy>> {
        self.0.iter()
    }
}

/// Shared helper: a required, DNS-label, unique `name` in a list at `path`.
pub(crate) fn check_names<'a>(
    path: &str,
    names: impl Iterator<Item = &'a str>,
    errs: &mut Vec<FieldError>,
) {
    let mut seen = std::collections::HashSet::new();
    for (i, n) in names.enumerate() {
        let f = format!("{path}[{i}].name");
        if n.is_empty() {
            errs.push(FieldError::required(f, ""));
            continue;
        }
        for m in validation::dns1123_label(n) {
            errs.push(FieldError::invalid(&f, n, m));
        }
        if !seen.insert(n) {
            errs.push(FieldError::duplicate(f, n));
        }
    }
}
