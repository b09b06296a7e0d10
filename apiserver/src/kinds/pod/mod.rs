//! core/v1 Pod: defaulting, validation, the fields an update may change, field selectors,
//! and the rules of binding and graceful deletion; its `binding` (`binding.rs`) and
//! `eviction` (`eviction.rs`, which honours PodDisruptionBudgets) subresources
//! and the streaming ones served by the pod's agent (`agent.rs`): `log` (`log.rs`), `exec`
//! (`exec.rs`) and `portforward` (`portforward.rs`), the last two as upgrades
//! (`upgrade.rs`).

pub mod agent;
mod binding;
mod eviction;
mod exec;
mod log;
mod portforward;
mod upgrade;

use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::podspec;
use super::Kind;
use crate::error::FieldError;

pub struct Pods;

impl Kind for Pods {
    type Obj = Pod;
    const SINGULAR: &'static str = "pod";
    const OBJECT_HOOKS: bool = true;
    const SUBRESOURCES: &'static [super::Subresource] = &[
        super::Subresource {
            name: "binding",
            kind: "Binding",
            group_version: None,
            verbs: &["create"],
            action: Some(binding::action),
            collection: Some("bindings"),
        },
        super::Subresource {
            name: "eviction",
            kind: "Eviction",
            group_version: Some(("policy", "v1")),
            verbs: &["create"],
            action: Some(eviction::action),
            collection: None,
        },
        super::Subresource {
            name: "log",
            kind: "Pod",
            group_version: None,
            verbs: &["get"],
            action: Some(log::action),
            collection: None,
        },
        super::Subresource {
            name: "exec",
            kind: "PodExecOptions",
            group_version: None,
            verbs: &["create", "get"],
            action: Some(exec::action),
            collection: None,
        },
        super::Subresource {
            name: "portforward",
            kind: "PodPortForwardOptions",
            group_version: None,
            verbs: &["create", "get"],
            action: Some(portforward::action),
            collection: None,
        },
    ];
    const PRINTER: Option<&'static crate::table::Printer> =
        Some(&crate::table::printers::pod::PRINTER);
    const SHORT_NAMES: &'static [&'static str] = &["po"];
    const CATEGORIES: &'static [&'static str] = &["all"];
    const STATUS: bool = true;
    const FIELDS: &'static [&'static str] = &[
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ];

    fn default(pod: &mut Pod) {
        let Some(spec) = pod.spec.as_mut() else {
            return;
        };
        podspec::default_pod_spec(spec);
        spec.enable_service_links.get_or_insert(true);
        // priority and preemptionPolicy come from the PriorityClass at admission.
        spec.service_account_name
            .get_or_insert_with(|| "default".into());
        // What the DefaultTolerationSeconds admission plugin adds.
        let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
        for key in [
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable",
        ] {
            if !tolerations.iter().any(|t| t.key.as_deref() == Some(key)) {
                tolerations.push(Toleration {
                    key: Some(key.into()),
                    operator: Some("Exists".into()),
                    effect: Some("NoExecute".into()),
                    toleration_seconds: Some(300),
                    ..Default::default()
                });
            }
        }
    }

    fn prepare_create(pod: &mut Pod) {
        let qos = pod.spec.as_ref().map(qos_class).unwrap_or("BestEffort");
        pod.status = Some(PodStatus {
            phase: Some("Pending".into()),
            qos_class: Some(qos.into()),
            ..Default::default()
        });
    }

    fn validate(pod: &Pod) -> Vec<FieldError> {
        match &pod.spec {
            Some(spec) => podspec::validate_pod_spec(spec, "spec"),
            None => vec![FieldError::required("spec", "")],
        }
    }

    fn validate_update(new: &Pod, old: &Pod) -> Vec<FieldError> {
        let (Some(n), Some(o)) = (&new.spec, &old.spec) else {
            return vec![];
        };
        // Copy what may change from the new spec onto the old one; anything else differing
        // is a forbidden change.
        let mut allowed = o.clone();
        for (a, b) in allowed.containers.iter_mut().zip(&n.containers) {
            a.image = b.image.clone();
        }
        for (a, b) in allowed
            .init_containers
            .iter_mut()
            .flatten()
            .zip(n.init_containers.iter().flatten())
        {
            a.image = b.image.clone();
        }
        allowed.active_deadline_seconds = n.active_deadline_seconds;
        let old_tol = o.tolerations.clone().unwrap_or_default();
        let new_tol = n.tolerations.clone().unwrap_or_default();
        if old_tol.iter().all(|t| new_tol.contains(t)) {
            allowed.tolerations = n.tolerations.clone();
        }
        if o.termination_grace_period_seconds.is_some_and(|g| g < 0)
            && n.termination_grace_period_seconds == Some(1)
        {
            allowed.termination_grace_period_seconds = Some(1);
        }
        if allowed != *n {
            return vec![FieldError::forbidden(
                "spec",
                "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
            )];
        }
        vec![]
    }

    fn fields(pod: &Pod) -> Vec<(&'static str, String)> {
        let spec = pod.spec.clone().unwrap_or_default();
        let status = pod.status.clone().unwrap_or_default();
        vec![
            ("spec.nodeName", spec.node_name.unwrap_or_default()),
            (
                "spec.restartPolicy",
                spec.restart_policy.unwrap_or_default(),
            ),
            (
                "spec.schedulerName",
                spec.scheduler_name.unwrap_or_default(),
            ),
            (
                "spec.serviceAccountName",
                spec.service_account_name.unwrap_or_default(),
            ),
            (
                "spec.hostNetwork",
                spec.host_network.unwrap_or(false).to_string(),
            ),
            ("status.phase", status.phase.unwrap_or_default()),
            ("status.podIP", status.pod_ip.unwrap_or_default()),
            (
                "status.nominatedNodeName",
                status.nominated_node_name.unwrap_or_default(),
            ),
        ]
    }

    fn grace_period(pod: &Pod, requested: Option<i64>) -> Option<i64> {
        grace_period(pod, requested)
    }
}

/// The QoS class Kubernetes derives from the containers' requests and limits.
pub fn qos_class(spec: &k8s_openapi::api::core::v1::PodSpec) -> &'static str {
    let containers: Vec<_> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let r = c.resources.clone().unwrap_or_default();
        let req = r.requests.unwrap_or_default();
        let lim = r.limits.unwrap_or_default();
        if !req.is_empty() || !lim.is_empty() {
            any = true;
        }
        for res in ["cpu", "memory"] {
            match (req.get(res), lim.get(res)) {
                (Some(a), Some(b))
                    if podspec::parse_quantity(&a.0) == podspec::parse_quantity(&b.0) => {}
                (None, Some(_)) => {}
                _ => guaranteed = false,
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Why a binding is refused, in Kubernetes' words.
#[derive(Debug, PartialEq, Eq)]
pub enum BindRefusal {
    AlreadyAssigned(String),
    Terminating,
}

/// Binds `pod` to `node` as the `pods/binding` subresource does: once, never while the
/// pod is being deleted, with condition PodScheduled=True.
pub fn bind(pod: &mut Pod, node: &str, now: Time) -> Result<(), BindRefusal> {
    if pod.metadata.deletion_timestamp.is_some() {
        return Err(BindRefusal::Terminating);
    }
    let spec = pod.spec.get_or_insert_with(Default::default);
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Err(BindRefusal::AlreadyAssigned(n.to_string()));
    }
    spec.node_name = Some(node.to_string());
    let status = pod.status.get_or_insert_with(Default::default);
    let conds = status.conditions.get_or_insert_with(Vec::new);
    conds.retain(|c| c.type_ != "PodScheduled");
    conds.push(PodCondition {
        type_: "PodScheduled".into(),
        status: "True".into(),
        last_transition_time: Some(now),
        ..Default::default()
    });
    Ok(())
}

/// The grace period a delete of this pod gets: None means delete at once. A pod never
/// scheduled, or already finished, has nothing running to stop.
pub fn grace_period(pod: &Pod, requested: Option<i64>) -> Option<i64> {
    let spec = pod.spec.as_ref()?;
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("");
    if spec.node_name.as_deref().unwrap_or("").is_empty()
        || phase == "Succeeded"
        || phase == "Failed"
    {
        return None;
    }
    let g = requested
        .or(spec.termination_grace_period_seconds)
        .unwrap_or(30);
    (g > 0).then_some(g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn pod() -> Pod {
        let mut p = Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some("busybox".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        Pods::default(&mut p);
        p
    }

    #[test]
    fn only_images_and_a_few_fields_may_change() {
        let old = pod();
        let mut new = old.clone();
        new.spec.as_mut().unwrap().containers[0].image = Some("busybox:2".into());
        assert!(Pods::validate_update(&new, &old).is_empty());
        new.spec.as_mut().unwrap().restart_policy = Some("Never".into());
        assert_eq!(Pods::validate_update(&new, &old)[0].field, "spec");
    }

    #[test]
    fn binding_happens_once() {
        let mut p = pod();
        let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        bind(&mut p, "n1", now.clone()).unwrap();
        assert_eq!(p.spec.as_ref().unwrap().node_name.as_deref(), Some("n1"));
        assert_eq!(
            bind(&mut p, "n2", now),
            Err(BindRefusal::AlreadyAssigned("n1".into()))
        );
        let conds = p.status.unwrap().conditions.unwrap();
        assert_eq!(conds[0].type_, "PodScheduled");
    }

    #[test]
    fn only_scheduled_running_pods_are_deleted_gracefully() {
        let mut p = pod();
        assert_eq!(grace_period(&p, None), None);
        p.spec.as_mut().unwrap().node_name = Some("n1".into());
        assert_eq!(grace_period(&p, None), Some(30));
        assert_eq!(grace_period(&p, Some(0)), None);
        p.status = Some(PodStatus {
            phase: Some("Succeeded".into()),
            ..Default::default()
        });
        assert_eq!(grace_period(&p, Some(10)), None);
    }

    #[test]
    fn qos() {
        let p = pod();
        assert_eq!(qos_class(p.spec.as_ref().unwrap()), "BestEffort");
    }
}
