//! What a kind is, as discovery, routing, OpenAPI, tables and the registry see it: its
//! identity, scope, names, subresources, scale paths and printer. Built once per kind from
//! its [`super::Kind`] implementation (or, later, from a CustomResourceDefinition).

use crate::error::{ApiError, FieldError, GroupResource};
use crate::table::Printer;
use crate::validation::NameRule;

/// What a subresource that is an operation of its own does with a request (a pod's
/// `binding`, a namespace's `finalize`): the generic operations (get, update, patch of
/// the object, its `status` or `scale`) are not asked.
pub type Action = for<'a, 'b> fn(
    &'a crate::http::ops::Call<'b>,
    http::Request<hyper::body::Incoming>,
) -> futures::future::BoxFuture<
    'a,
    Result<http::Response<crate::http::Body>, ApiError>,
>;

/// A subresource a kind serves under `<plural>/<name>/<subresource>`.
#[derive(Debug, Clone, Copy)]
pub struct Subresource {
    pub name: &'static str,
    /// The kind of what it takes or returns (discovery's `kind`).
    pub kind: &'static str,
    /// Its group and version when not the parent's (`scale`: autoscaling/v1).
    pub group_version: Option<(&'static str, &'static str)>,
    pub verbs: &'static [&'static str],
    /// The operation it is, for each of `verbs`; `None`: a view of the object itself
    /// (`status`, `scale`).
    pub action: Option<Action>,
    /// A create-only collection in the parent's namespace that runs `action` with the
    /// object named in the body (core/v1 `bindings` for `pods/binding`).
    pub collection: Option<&'static str>,
}

impl Subresource {
    /// `status`: the object itself, with only its status written.
    pub const fn status(kind: &'static str) -> Self {
        Subresource {
            name: "status",
            kind,
            group_version: None,
            verbs: &["get", "patch", "update"],
            action: None,
            collection: None,
        }
    }
    /// `scale`: an autoscaling/v1 Scale view of the replicas (see [`ScaleSpec`]).
    pub const SCALE: Subresource = Subresource {
        name: "scale",
        kind: "Scale",
        group_version: Some(("autoscaling", "v1")),
        verbs: &["get", "patch", "update"],
        action: None,
        collection: None,
    };
}

/// How the `scale` subresource reads and writes a kind (a CRD's
/// `subresources.scale` has the same three paths).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleSpec {
    /// JSON pointer of the desired replicas (`/spec/replicas`).
    pub spec_replicas: &'static str,
    /// JSON pointer of the observed replicas (`/status/replicas`).
    pub status_replicas: &'static str,
    /// Where the pods' selector is and in which form.
    pub selector: SelectorAt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectorAt {
    /// A metav1.LabelSelector (apps/v1 kinds).
    LabelSelector(&'static str),
    /// A plain label map (ReplicationController's `spec.selector`).
    Map(&'static str),
    /// A label selector string a custom resource's status holds (a CRD's
    /// `labelSelectorPath`; empty: none). A custom resource without desired replicas
    /// scales from 0, as kube reads it.
    Text(&'static str),
}

/// What discovery, routing and the registry need to know about a resource.
#[derive(Debug, Clone)]
pub struct ResourceInfo {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub list_kind: &'static str,
    pub plural: &'static str,
    /// Where its objects are stored: `/registry/<storage>/[<namespace>/]<name>`. The plural
    /// for built-in kinds (`deployments`), `<group>/<plural>` for custom resources and
    /// CustomResourceDefinitions, as kube-apiserver keeps them.
    pub storage: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Has a `status` subresource: a write to the object keeps the old status and a write
    /// to `status` keeps everything else.
    pub status: bool,
    /// `metadata.generation` counts changes of `spec`.
    pub generation: bool,
    /// A delete without a propagation policy orphans the dependents (kube's
    /// `DefaultGarbageCollectionPolicy` of batch/v1 Jobs), instead of deleting them in the
    /// background.
    pub orphan_by_default: bool,
    pub name_rule: NameRule,
    /// Field selectors beyond `metadata.name` and `metadata.namespace`.
    pub fields: &'static [&'static str],
    /// The name of the kind's OpenAPI schema (`io.k8s.api.core.v1.Pod`).
    pub schema_name: String,
    /// Every subresource, `status` and `scale` included.
    pub subresources: Vec<Subresource>,
    pub scale: Option<ScaleSpec>,
    /// Takes strategic merge patches (custom resources do not: they have no patch
    /// strategies).
    pub strategic_merge: bool,
    /// Its `kubectl get` columns (the default printer's when None).
    pub printer: Option<&'static Printer>,
    /// A custom kind's columns (its CRD's `additionalPrinterColumns`), used instead of
    /// `printer`.
    pub columns: Option<std::sync::Arc<Vec<crate::table::custom::PathColumn>>>,
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
    /// The subresource of that name, if the kind serves it.
    pub fn subresource(&self, name: &str) -> Option<&Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }
    /// The subresource whose create-only `collection` has that name, if any.
    pub fn collection(&self, plural: &str) -> Option<&Subresource> {
        self.subresources
            .iter()
            .find(|s| s.collection == Some(plural))
    }
    /// Field selectors this kind accepts, the common ones first.
    pub fn selectable_fields(&self) -> Vec<&'static str> {
        let mut v = vec!["metadata.name", "metadata.namespace"];
        v.extend_from_slice(self.fields);
        v
    }
}
