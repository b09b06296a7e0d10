//! The served kinds. A kind is one module implementing [`Kind`] (its rules as plain typed
//! functions and its hooks into the registry) plus one line in [`builtin`]; [`Typed`] turns
//! it into the type-erased [`Strategy`] that discovery, OpenAPI, routing, tables and the
//! registry use, so none of them names a concrete kind. [`Kinds`] is the table, which can
//! also take kinds defined while the server runs.
//!
//! Layout: `info.rs` (what a kind is: identity, subresources, scale, printer),
//! `kind.rs` (the trait and its hooks), `typed.rs` (the adapter), `registry.rs` (the
//! table), then one module per kind (`podspec.rs`: what Pods and pod templates share).

use std::sync::Arc;

use crate::error::FieldError;
use crate::validation;

mod info;
mod intern;
mod kind;
mod registry;
mod served;
mod typed;

mod configmap;
mod controllerrevision;
mod cronjob;
// CustomResourceDefinitions and the kinds they define (`registry.rs` serves them).
pub mod admissionregistration;
mod apiservice;
pub mod crd;
pub mod custom;
pub mod daemonset;
mod deployment;
mod endpoints;
mod endpointslice;
mod event;
mod hpa;
mod job;
mod lease;
mod namespace;
mod node;
pub mod pod;
mod poddisruptionbudget;
pub mod podspec;
pub mod priorityclass;
mod rbac;
mod replicaset;
mod replicationcontroller;
mod secret;
pub mod service;
mod serviceaccount;
mod statefulset;
pub mod storage;

pub use info::{Action, ResourceInfo, ScaleSpec, SelectorAt, Subresource};
pub use kind::{Claim, Companion, Env, Kind};
pub use namespace::terminating as namespace_terminating;
pub use registry::{storage_of, Kinds, CRD_PREFIX};
pub use served::{Conversion, Served};
pub use typed::{served_bytes, served_items, Strategy, Typed};

/// Every built-in kind: one line each.
fn builtin() -> Vec<Arc<dyn Strategy>> {
    vec![
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
        Arc::new(Typed::<daemonset::DaemonSets>::new()),
        Arc::new(Typed::<statefulset::StatefulSets>::new()),
        Arc::new(Typed::<controllerrevision::ControllerRevisions>::new()),
        Arc::new(Typed::<replicationcontroller::ReplicationControllers>::new()),
        Arc::new(Typed::<job::Jobs>::new()),
        Arc::new(Typed::<cronjob::CronJobs>::new()),
        Arc::new(Typed::<poddisruptionbudget::PodDisruptionBudgets>::new()),
        Arc::new(Typed::<hpa::HorizontalPodAutoscalers>::new()),
        Arc::new(Served::<hpa::v1::V1>::new()),
        Arc::new(Typed::<lease::Leases>::new()),
        Arc::new(Typed::<priorityclass::PriorityClasses>::new()),
        Arc::new(Typed::<endpointslice::EndpointSlices>::new()),
        Arc::new(Typed::<storage::class::StorageClasses>::new()),
        Arc::new(Typed::<storage::volume::PersistentVolumes>::new()),
        Arc::new(Typed::<storage::claim::PersistentVolumeClaims>::new()),
        Arc::new(Typed::<rbac::Roles>::new()),
        Arc::new(Typed::<rbac::ClusterRoles>::new()),
        Arc::new(Typed::<rbac::RoleBindings>::new()),
        Arc::new(Typed::<rbac::ClusterRoleBindings>::new()),
        Arc::new(Typed::<crd::CustomResourceDefinitions>::new()),
        Arc::new(Typed::<apiservice::APIServices>::new()),
        Arc::new(Typed::<admissionregistration::MutatingWebhookConfigurations>::new()),
        Arc::new(Typed::<
            admissionregistration::ValidatingWebhookConfigurations,
        >::new()),
        Arc::new(Typed::<
            admissionregistration::policy::ValidatingAdmissionPolicies,
        >::new()),
        Arc::new(Typed::<
            admissionregistration::policy::ValidatingAdmissionPolicyBindings,
        >::new()),
    ]
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
