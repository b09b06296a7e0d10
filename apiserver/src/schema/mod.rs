//! Custom resources' OpenAPI v3 schemas (apiextensions.k8s.io/v1 `JSONSchemaProps`), applied
//! to objects as apiextensions-apiserver applies them, in its order on a write: nulls the
//! schema forbids dropped and defaults applied (`default.rs`), unknown fields pruned
//! (`prune.rs`), then validation with kube-openapi's messages (`validate.rs`; string
//! formats in `formats.rs`, `pattern`s compiled once in `patterns.rs`, values rendered as
//! Go renders them in `gofmt.rs`). And what a CRD's schema itself must be: structural
//! (`structural.rs`) and of the keywords Kubernetes supports (`keywords.rs`). CEL rules
//! (`x-kubernetes-validations`) last, through kube-cel (`cel.rs`). Pure: no I/O, nothing
//! of the registry.

pub mod cel;
pub mod default;
pub mod formats;
pub mod gofmt;
pub mod keywords;
pub mod patterns;
pub mod prune;
pub mod structural;
pub mod validate;

pub use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps as Props;
