//! Pod Security Standards, as kube-apiserver's PodSecurity admission plugin evaluates
//! them (policy version `latest` of Kubernetes 1.33), over pods as JSON.
//!
//! Contract:
//! - `evaluate` runs the checks of a level in kube's order (Baseline check IDs sorted,
//!   then Restricted ones sorted; Restricted leaves out the Baseline checks it replaces),
//!   so `detail` of the result is byte for byte kube's message.
//! - A check never fails on odd input: a field of the wrong type reads as unset.
//!
//! Layout: `policy.rs` (levels, versions, the namespace labels), `pod.rs` (the pod view
//! and message helpers), `baseline.rs` and `restricted.rs` (the checks, one function
//! each), `existing.rs` (a namespace's pods under a stricter enforce level); this file holds the check table, evaluation, the messages and which updates are
//! evaluated.

mod baseline;
pub mod existing;
mod pod;
mod policy;
mod restricted;

use serde_json::Value;

pub use pod::Pod;
pub use policy::{Level, LevelVersion, Policy};

/// Why a pod fails one check: kube's short reason and the specifics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub reason: String,
    pub detail: String,
}

impl Violation {
    pub fn new(reason: impl Into<String>, detail: impl Into<String>) -> Self {
        Violation {
            reason: reason.into(),
            detail: detail.into(),
        }
    }
}

/// One check: its kube ID (which orders messages), level, the Baseline checks it
/// replaces at Restricted, and the function.
struct Check {
    id: &'static str,
    level: Level,
    overrides: &'static [&'static str],
    run: fn(&Pod) -> Option<Violation>,
}

const fn check(id: &'static str, level: Level, run: fn(&Pod) -> Option<Violation>) -> Check {
    Check {
        id,
        level,
        overrides: &[],
        run,
    }
}

/// Every check, Baseline then Restricted, each group sorted by ID (a unit test keeps it so).
const CHECKS: &[Check] = &[
    check(
        "appArmorProfile",
        Level::Baseline,
        baseline::app_armor_profile,
    ),
    check(
        "capabilities_baseline",
        Level::Baseline,
        baseline::capabilities_baseline,
    ),
    check("hostNamespaces", Level::Baseline, baseline::host_namespaces),
    check(
        "hostPathVolumes",
        Level::Baseline,
        baseline::host_path_volumes,
    ),
    check("hostPorts", Level::Baseline, baseline::host_ports),
    check("privileged", Level::Baseline, baseline::privileged),
    check("procMount", Level::Baseline, baseline::proc_mount),
    check(
        "seLinuxOptions",
        Level::Baseline,
        baseline::se_linux_options,
    ),
    check(
        "seccompProfile_baseline",
        Level::Baseline,
        baseline::seccomp_profile_baseline,
    ),
    check("sysctls", Level::Baseline, baseline::sysctls),
    check(
        "windowsHostProcess",
        Level::Baseline,
        baseline::windows_host_process,
    ),
    check(
        "allowPrivilegeEscalation",
        Level::Restricted,
        restricted::allow_privilege_escalation,
    ),
    Check {
        id: "capabilities_restricted",
        level: Level::Restricted,
        overrides: &["capabilities_baseline"],
        run: restricted::capabilities_restricted,
    },
    Check {
        id: "restrictedVolumes",
        level: Level::Restricted,
        overrides: &["hostPathVolumes"],
        run: restricted::restricted_volumes,
    },
    check(
        "runAsNonRoot",
        Level::Restricted,
        restricted::run_as_non_root,
    ),
    check("runAsUser", Level::Restricted, restricted::run_as_user),
    Check {
        id: "seccompProfile_restricted",
        level: Level::Restricted,
        overrides: &["seccompProfile_baseline"],
        run: restricted::seccomp_profile_restricted,
    },
];

/// The checks `pod` fails at `level`, in kube's order.
pub fn evaluate(level: Level, pod: &Pod) -> Vec<Violation> {
    let overridden = |id: &str| {
        CHECKS
            .iter()
            .filter(|c| c.level == Level::Restricted)
            .any(|c| c.overrides.contains(&id))
    };
    let runs = |c: &&Check| match level {
        Level::Privileged => false,
        Level::Baseline => c.level == Level::Baseline,
        Level::Restricted => c.level == Level::Restricted || !overridden(c.id),
    };
    CHECKS
        .iter()
        .filter(runs)
        .filter_map(|c| (c.run)(pod))
        .collect()
}

/// `reason (detail), reason (detail)`: kube's `ForbiddenDetail` of the failed checks.
pub fn detail(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| {
            if v.detail.is_empty() {
                v.reason.clone()
            } else {
                format!("{} ({})", v.reason, v.detail)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `reason, reason`: kube's `ForbiddenReason`, what the namespace check lists per pod.
pub fn reasons(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| v.reason.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What follows `pods "x" is forbidden: ` when enforce refuses a pod.
pub fn forbidden(lv: &LevelVersion, violations: &[Violation]) -> String {
    format!("violates PodSecurity \"{lv}\": {}", detail(violations))
}

/// The warning a `warn` (or `audit`) level that the pod fails gives.
pub fn would_violate(lv: &LevelVersion, violations: &[Violation]) -> String {
    format!("would violate PodSecurity \"{lv}\": {}", detail(violations))
}

const SECCOMP_POD_ANNOTATION: &str = "seccomp.security.alpha.kubernetes.io/pod";
const SECCOMP_CONTAINER_ANNOTATION_PREFIX: &str = "container.seccomp.security.alpha.kubernetes.io/";

/// Whether a pod update can change what PodSecurity decides (kube's
/// `isSignificantPodUpdate`): a pod's spec is immutable but for images, seccomp
/// annotations and added ephemeral containers; anything else is not evaluated again.
pub fn significant_update(new: &Value, old: &Value) -> bool {
    let ann = |pod: &Value, key: &str| -> String {
        pod["metadata"]["annotations"][key]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let list = |pod: &Value, k: &str| -> Vec<Value> {
        pod["spec"][k].as_array().cloned().unwrap_or_default()
    };
    let container_changed = |c: &Value, o: &Value| {
        let key = format!(
            "{SECCOMP_CONTAINER_ANNOTATION_PREFIX}{}",
            c["name"].as_str().unwrap_or("")
        );
        c["image"] != o["image"] || ann(new, &key) != ann(old, &key)
    };
    if ann(new, SECCOMP_POD_ANNOTATION) != ann(old, SECCOMP_POD_ANNOTATION) {
        return true;
    }
    for k in ["containers", "initContainers"] {
        let (n, o) = (list(new, k), list(old, k));
        if n.len() != o.len() || n.iter().zip(&o).any(|(c, o)| container_changed(c, o)) {
            return true;
        }
    }
    let old_ephemeral = list(old, "ephemeralContainers");
    list(new, "ephemeralContainers").iter().any(|c| {
        match old_ephemeral.iter().find(|o| o["name"] == c["name"]) {
            None => true,
            Some(o) => container_changed(c, o),
        }
    })
}

#[cfg(test)]
mod tests;
