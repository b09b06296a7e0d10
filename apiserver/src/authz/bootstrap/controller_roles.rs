//! kube's `system:controller:<account>` ClusterRoles for the controllers this build runs,
//! rule for rule as kube-apiserver's bootstrap policy has them, each bound to the
//! ServiceAccount `kube-system/<account>`: what a controller may do when the
//! controller-manager runs it with its own credentials (`--use-service-account-credentials`).
//! An account is named as kube names it, which is not always the `--controllers` name
//! (`garbagecollector` acts as `generic-garbage-collector`, `endpoints` as both
//! `endpoint-controller` and `endpointslice-controller`).

use serde_json::Value;

use super::{rule, EVENTS};

/// The events every controller records (kube's `eventsRule`).
fn events() -> Value {
    rule(&["", "events.k8s.io"], &["events"], EVENTS)
}

/// (ServiceAccount in kube-system, the rules of its role).
#[rustfmt::skip]
pub(super) fn accounts() -> Vec<(&'static str, Vec<Value>)> {
    vec![
        ("deployment-controller", vec![
            rule(&["extensions", "apps"], &["deployments"], &["get", "list", "watch", "update"]),
            rule(&["extensions", "apps"], &["deployments/status"], &["update"]),
            rule(&["extensions", "apps"], &["deployments/finalizers"], &["update"]),
            rule(&["apps", "extensions"], &["replicasets"], &["get", "list", "watch", "create", "update", "patch", "delete"]),
            // kube keeps `update` until kubernetes#36897 is resolved.
            rule(&[""], &["pods"], &["get", "list", "watch", "update"]),
            events(),
        ]),
        ("replicaset-controller", vec![
            rule(&["apps", "extensions"], &["replicasets"], &["get", "list", "watch", "update"]),
            rule(&["apps", "extensions"], &["replicasets/status"], &["update"]),
            rule(&["apps", "extensions"], &["replicasets/finalizers"], &["update"]),
            rule(&[""], &["pods"], &["list", "watch", "patch", "create", "delete"]),
            events(),
        ]),
        ("job-controller", vec![
            rule(&["batch"], &["jobs"], &["get", "list", "watch", "update", "patch"]),
            rule(&["batch"], &["jobs/status"], &["update"]),
            rule(&["batch"], &["jobs/finalizers"], &["update"]),
            rule(&[""], &["pods"], &["list", "watch", "create", "delete", "patch"]),
            events(),
        ]),
        ("daemon-set-controller", vec![
            rule(&["apps"], &["daemonsets"], &["get", "list", "watch"]),
            rule(&["apps"], &["daemonsets/status"], &["update"]),
            rule(&["apps"], &["daemonsets/finalizers"], &["update"]),
            rule(&[""], &["nodes"], &["list", "watch"]),
            rule(&[""], &["pods"], &["list", "watch", "create", "delete", "patch"]),
            rule(&[""], &["pods/binding"], &["create"]),
            rule(&["apps"], &["controllerrevisions"], &["get", "list", "watch", "create", "delete", "update", "patch"]),
            events(),
        ]),
        ("cronjob-controller", vec![
            rule(&["batch"], &["cronjobs"], &["get", "list", "watch", "update"]),
            rule(&["batch"], &["jobs"], &["get", "list", "watch", "create", "update", "delete", "patch"]),
            rule(&["batch"], &["cronjobs/status"], &["update"]),
            rule(&["batch"], &["cronjobs/finalizers"], &["update"]),
            rule(&[""], &["pods"], &["list", "delete"]),
            events(),
        ]),
        ("statefulset-controller", vec![
            rule(&[""], &["pods"], &["list", "watch"]),
            rule(&["apps"], &["statefulsets"], &["list", "watch"]),
            rule(&["apps"], &["statefulsets"], &["get"]),
            rule(&["apps"], &["statefulsets/status"], &["update"]),
            rule(&["apps"], &["statefulsets/finalizers"], &["update"]),
            rule(&[""], &["pods"], &["get", "create", "delete", "update", "patch"]),
            rule(&["apps"], &["controllerrevisions"], &["get", "list", "watch", "create", "delete", "update", "patch"]),
            rule(&[""], &["persistentvolumeclaims"], &["get", "create"]),
            rule(&[""], &["persistentvolumeclaims"], &["update", "delete", "patch"]),
            events(),
        ]),
        ("persistent-volume-binder", vec![
            rule(&[""], &["persistentvolumes"], &["create", "delete", "get", "list", "update", "watch"]),
            rule(&[""], &["persistentvolumes/status"], &["update"]),
            rule(&[""], &["persistentvolumeclaims"], &["get", "list", "update", "watch"]),
            rule(&[""], &["persistentvolumeclaims/status"], &["update"]),
            rule(&[""], &["pods"], &["create", "delete", "get", "list", "watch"]),
            rule(&["storage.k8s.io"], &["storageclasses"], &["get", "list", "watch"]),
            rule(&[""], &["nodes"], &["get", "list", "watch"]),
            events(),
        ]),
        ("pvc-protection-controller", vec![
            rule(&[""], &["persistentvolumeclaims"], &["get", "list", "watch", "update"]),
            rule(&[""], &["pods"], &["get", "list", "watch"]),
            events(),
        ]),
        ("pv-protection-controller", vec![
            rule(&[""], &["persistentvolumes"], &["get", "list", "watch", "update"]),
            events(),
        ]),
        // rancher's local-path-provisioner-role, which k3s installs.
        ("local-path-provisioner-service-account", vec![
            rule(&[""], &["nodes"], &["get", "list", "watch"]),
            rule(&[""], &["persistentvolumeclaims", "configmaps"], &["get", "list", "watch"]),
            rule(&[""], &["pods"], &["get", "list", "watch", "create", "delete"]),
            rule(&[""], &["persistentvolumes"], &["get", "list", "watch", "create", "patch", "update", "delete"]),
            rule(&["storage.k8s.io"], &["storageclasses"], &["get", "list", "watch", "create"]),
            events(),
        ]),
        ("disruption-controller", vec![
            rule(&["extensions", "apps"], &["deployments"], &["get", "list", "watch"]),
            rule(&["apps", "extensions"], &["replicasets"], &["get", "list", "watch"]),
            rule(&[""], &["replicationcontrollers"], &["get", "list", "watch"]),
            rule(&["policy"], &["poddisruptionbudgets"], &["get", "list", "watch"]),
            rule(&["apps"], &["statefulsets"], &["get", "list", "watch"]),
            rule(&["policy"], &["poddisruptionbudgets/status"], &["update"]),
            rule(&["*"], &["*/scale"], &["get"]),
            rule(&[""], &["pods/status"], &["patch", "update"]),
            events(),
        ]),
        ("horizontal-pod-autoscaler", vec![
            rule(&["autoscaling"], &["horizontalpodautoscalers"], &["get", "list", "watch"]),
            rule(&["autoscaling"], &["horizontalpodautoscalers/status"], &["update"]),
            rule(&["*"], &["*/scale"], &["get", "update"]),
            rule(&[""], &["pods"], &["list"]),
            rule(&["metrics.k8s.io"], &["pods"], &["list"]),
            rule(&["custom.metrics.k8s.io"], &["*"], &["get", "list"]),
            rule(&["external.metrics.k8s.io"], &["*"], &["get", "list"]),
            events(),
        ]),
        ("ttl-after-finished-controller", vec![
            rule(&["batch"], &["jobs"], &["get", "list", "watch", "delete"]),
            events(),
        ]),
        ("replication-controller", vec![
            rule(&[""], &["replicationcontrollers"], &["get", "list", "watch", "update"]),
            rule(&[""], &["replicationcontrollers/status"], &["update"]),
            rule(&[""], &["replicationcontrollers/finalizers"], &["update"]),
            rule(&[""], &["pods"], &["list", "watch", "patch", "create", "delete"]),
            events(),
        ]),
        // Lists and watches every resource for its graph, reads owners, deletes dependents
        // and updates owners' finalizers and dependents' owner references.
        ("generic-garbage-collector", vec![
            rule(&["*"], &["*"], &["get", "list", "watch", "patch", "update", "delete"]),
            events(),
        ]),
        ("node-controller", vec![
            rule(&[""], &["nodes"], &["get", "list", "update", "delete", "patch"]),
            rule(&[""], &["nodes/status"], &["patch", "update"]),
            // Marking the pods of a lost node not ready, and evicting them.
            rule(&[""], &["pods/status"], &["patch", "update"]),
            rule(&[""], &["pods"], &["list", "get", "delete"]),
            events(),
        ]),
        ("service-controller", vec![
            rule(&[""], &["services"], &["get", "list", "watch"]),
            rule(&[""], &["services/status"], &["list", "patch", "update"]),
            rule(&[""], &["nodes"], &["list", "watch"]),
            events(),
        ]),
        ("endpoint-controller", vec![
            rule(&[""], &["services", "pods"], &["get", "list", "watch"]),
            rule(&[""], &["endpoints"], &["get", "list", "create", "update", "delete"]),
            rule(&[""], &["endpoints/restricted"], &["create"]),
            events(),
        ]),
        ("endpointslice-controller", vec![
            rule(&[""], &["services", "pods", "nodes"], &["get", "list", "watch"]),
            // A slice the Service owns with blockOwnerDeletion needs the Service's finalizers.
            rule(&[""], &["services/finalizers"], &["update"]),
            rule(&["discovery.k8s.io"], &["endpointslices"], &["get", "list", "create", "update", "delete"]),
            events(),
        ]),
        // Empties a deleted namespace of every kind before finalizing it.
        ("namespace-controller", vec![
            rule(&[""], &["namespaces"], &["get", "list", "watch", "delete"]),
            rule(&[""], &["namespaces/finalize", "namespaces/status"], &["update"]),
            rule(&["*"], &["*"], &["get", "list", "delete", "deletecollection"]),
        ]),
        ("service-account-controller", vec![
            rule(&[""], &["serviceaccounts"], &["create"]),
            events(),
        ]),
    ]
}
