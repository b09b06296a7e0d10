//! The Restricted checks (kube's `check_*.go` of level Restricted, at policy version
//! 1.33): current pod hardening practice, on top of Baseline. Three of them replace the
//! Baseline check of the same subject (see `CHECKS` in `mod.rs`).
//!
//! Not relaxed for `hostUsers: false` pods: in 1.33 that needs the alpha
//! UserNamespacesPodSecurityStandards gate, off by default.

use std::collections::BTreeSet;

use super::baseline::valid_seccomp;
use super::pod::{containers_phrase, join_quote, name, pluralize, set, strings, Pod};
use super::Violation;

/// Privilege escalation (setuid binaries, file capabilities) must be turned off.
/// Windows pods are exempt (policy 1.25).
pub fn allow_privilege_escalation(p: &Pod) -> Option<Violation> {
    if p.windows() {
        return None;
    }
    let bad: Vec<String> = p
        .containers()
        .filter(|c| c["securityContext"]["allowPrivilegeEscalation"].as_bool() != Some(false))
        .map(name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    Some(Violation::new(
        "allowPrivilegeEscalation != false",
        format!(
            "{} must set securityContext.allowPrivilegeEscalation=false",
            containers_phrase(&bad)
        ),
    ))
}

/// Containers must drop ALL capabilities and may add back only NET_BIND_SERVICE.
/// Windows pods are exempt (policy 1.25).
pub fn capabilities_restricted(p: &Pod) -> Option<Violation> {
    if p.windows() {
        return None;
    }
    let mut missing_drop_all = Vec::new();
    let mut adding = Vec::new();
    let mut forbidden = BTreeSet::new();
    for c in p.containers() {
        let caps = &c["securityContext"]["capabilities"];
        if !strings(&caps["drop"]).any(|d| d == "ALL") {
            missing_drop_all.push(name(c));
        }
        let mut added = false;
        for cap in strings(&caps["add"]) {
            if cap != "NET_BIND_SERVICE" {
                added = true;
                forbidden.insert(cap.to_string());
            }
        }
        if added {
            adding.push(name(c));
        }
    }
    let mut details = Vec::new();
    if !missing_drop_all.is_empty() {
        details.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            containers_phrase(&missing_drop_all)
        ));
    }
    if !adding.is_empty() {
        let forbidden: Vec<String> = forbidden.into_iter().collect();
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&adding),
            join_quote(&forbidden)
        ));
    }
    if details.is_empty() {
        return None;
    }
    Some(Violation::new(
        "unrestricted capabilities",
        details.join("; "),
    ))
}

/// Volume sources Restricted allows: those of the pod's own lifetime or defined through
/// PersistentVolumes (`image` since 1.33).
const VOLUMES_ALLOWED: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// The sources Restricted forbids, in the order kube names the first one a volume has.
const VOLUMES_RESTRICTED: &[&str] = &[
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "nfs",
    "iscsi",
    "glusterfs",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "fc",
    "azureFile",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "storageos",
];

/// Only the allowed volume types (hostPath included in what is refused).
pub fn restricted_volumes(p: &Pod) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut types = BTreeSet::new();
    for v in p.spec["volumes"].as_array().into_iter().flatten() {
        if VOLUMES_ALLOWED.iter().any(|k| set(&v[*k])) {
            continue;
        }
        bad.push(name(v));
        let t = VOLUMES_RESTRICTED
            .iter()
            .find(|k| set(&v[**k]))
            .copied()
            .unwrap_or("unknown");
        types.insert(t.to_string());
    }
    if bad.is_empty() {
        return None;
    }
    let types: Vec<String> = types.into_iter().collect();
    Some(Violation::new(
        "restricted volume types",
        format!(
            "{} {} {} {} {}",
            pluralize("volume", "volumes", bad.len()),
            join_quote(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize(
                "restricted volume type",
                "restricted volume types",
                types.len()
            ),
            join_quote(&types)
        ),
    ))
}

/// runAsNonRoot must be true: at pod level (containers may not set it false), or on
/// every container.
pub fn run_as_non_root(p: &Pod) -> Option<Violation> {
    let mut setters = Vec::new();
    let mut pod_non_root = false;
    match p.security_context()["runAsNonRoot"].as_bool() {
        Some(false) => setters.push("pod".to_string()),
        Some(true) => pod_non_root = true,
        None => {}
    }
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in p.containers() {
        match c["securityContext"]["runAsNonRoot"].as_bool() {
            Some(false) => explicit.push(name(c)),
            Some(true) => {}
            None if !pod_non_root => implicit.push(name(c)),
            None => {}
        }
    }
    if !explicit.is_empty() {
        setters.push(containers_phrase(&explicit));
    }
    if !setters.is_empty() {
        return Some(Violation::new(
            "runAsNonRoot != true",
            format!(
                "{} must not set securityContext.runAsNonRoot=false",
                setters.join(" and ")
            ),
        ));
    }
    if !implicit.is_empty() {
        return Some(Violation::new(
            "runAsNonRoot != true",
            format!(
                "pod or {} must set securityContext.runAsNonRoot=true",
                containers_phrase(&implicit)
            ),
        ));
    }
    None
}

/// runAsUser must not be 0 (unset is allowed).
pub fn run_as_user(p: &Pod) -> Option<Violation> {
    let mut setters = Vec::new();
    if p.security_context()["runAsUser"].as_i64() == Some(0) {
        setters.push("pod".to_string());
    }
    let bad: Vec<String> = p
        .containers()
        .filter(|c| c["securityContext"]["runAsUser"].as_i64() == Some(0))
        .map(name)
        .collect();
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    Some(Violation::new(
        "runAsUser=0",
        format!("{} must not set runAsUser=0", setters.join(" and ")),
    ))
}

/// A seccomp profile must be set, RuntimeDefault or Localhost: at pod level, or on every
/// container. Windows pods are exempt (policy 1.25).
pub fn seccomp_profile_restricted(p: &Pod) -> Option<Violation> {
    if p.windows() {
        return None;
    }
    let mut setters = Vec::new();
    let mut values = BTreeSet::new();
    let mut pod_set = false;
    let pod_profile = &p.security_context()["seccompProfile"];
    if set(pod_profile) {
        let t = pod_profile["type"].as_str().unwrap_or("");
        if valid_seccomp(t) {
            pod_set = true;
        } else {
            setters.push("pod".to_string());
            values.insert(t.to_string());
        }
    }
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in p.containers() {
        let profile = &c["securityContext"]["seccompProfile"];
        if set(profile) {
            let t = profile["type"].as_str().unwrap_or("");
            if !valid_seccomp(t) {
                explicit.push(name(c));
                values.insert(t.to_string());
            }
        } else if !pod_set {
            implicit.push(name(c));
        }
    }
    if !explicit.is_empty() {
        setters.push(containers_phrase(&explicit));
    }
    if !setters.is_empty() {
        let values: Vec<String> = values.into_iter().collect();
        return Some(Violation::new(
            "seccompProfile",
            format!(
                "{} must not set securityContext.seccompProfile.type to {}",
                setters.join(" and "),
                join_quote(&values)
            ),
        ));
    }
    if !implicit.is_empty() {
        return Some(Violation::new(
            "seccompProfile",
            format!(
                "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
                containers_phrase(&implicit)
            ),
        ));
    }
    None
}

#[cfg(test)]
mod tests;
