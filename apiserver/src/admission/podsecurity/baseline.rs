//! The Baseline checks (kube's `check_*.go` of level Baseline, at policy version 1.33):
//! what is forbidden because it is a known privilege escalation. Each returns the
//! violation with kube's reason and detail, or `None` when the pod passes.

use std::collections::BTreeSet;

use serde_json::Value;

use super::pod::{containers_phrase, go_quote, join_quote, name, pluralize, set, strings, Pod};
use super::Violation;

/// The AppArmor annotation of a container (deprecated, still checked).
const APPARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

/// AppArmor: only the runtime's default or a localhost profile, in the field or the
/// annotation.
pub fn app_armor_profile(p: &Pod) -> Option<Violation> {
    let allowed_type = |t: &str| matches!(t, "RuntimeDefault" | "Localhost");
    let mut setters = Vec::new();
    let mut values = BTreeSet::new();
    let profile = &p.security_context()["appArmorProfile"];
    if set(profile) {
        let t = profile["type"].as_str().unwrap_or("");
        if !allowed_type(t) {
            setters.push("pod".to_string());
            values.insert(t.to_string());
        }
    }
    let mut bad = Vec::new();
    for c in p.containers() {
        let profile = &c["securityContext"]["appArmorProfile"];
        if set(profile) {
            let t = profile["type"].as_str().unwrap_or("");
            if !allowed_type(t) {
                bad.push(name(c));
                values.insert(t.to_string());
            }
        }
    }
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    let mut values: Vec<String> = values.into_iter().collect();
    let mut annotations: Vec<String> = p
        .annotations()
        .filter(|(k, v)| {
            k.starts_with(APPARMOR_ANNOTATION_PREFIX)
                && !(v.is_empty() || *v == "runtime/default" || v.starts_with("localhost/"))
        })
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect();
    if !annotations.is_empty() {
        annotations.sort();
        setters.push(pluralize("annotation", "annotations", annotations.len()).to_string());
        values.extend(annotations);
    }
    if setters.is_empty() {
        return None;
    }
    Some(Violation::new(
        pluralize(
            "forbidden AppArmor profile",
            "forbidden AppArmor profiles",
            values.len(),
        ),
        format!(
            "{} must not set AppArmor profile type to {}",
            setters.join(" and "),
            join_quote(&values)
        ),
    ))
}

/// Capabilities a container may add at Baseline (the container runtimes' defaults).
const CAPABILITIES_ALLOWED: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Adding capabilities beyond the default set (NET_RAW included) is forbidden.
pub fn capabilities_baseline(p: &Pod) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut caps = BTreeSet::new();
    for c in p.containers() {
        let mut valid = true;
        for cap in strings(&c["securityContext"]["capabilities"]["add"]) {
            if !CAPABILITIES_ALLOWED.contains(&cap) {
                valid = false;
                caps.insert(cap.to_string());
            }
        }
        if !valid {
            bad.push(name(c));
        }
    }
    if bad.is_empty() {
        return None;
    }
    let caps: Vec<String> = caps.into_iter().collect();
    Some(Violation::new(
        "non-default capabilities",
        format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&bad),
            join_quote(&caps)
        ),
    ))
}

/// Sharing the host's network, PID or IPC namespace is forbidden.
pub fn host_namespaces(p: &Pod) -> Option<Violation> {
    // Sorted, as kube lists a string set.
    let shared: Vec<&str> = ["hostIPC", "hostNetwork", "hostPID"]
        .into_iter()
        .filter(|k| p.spec[*k].as_bool() == Some(true))
        .collect();
    if shared.is_empty() {
        return None;
    }
    Some(Violation::new("host namespaces", shared.join(", ")))
}

/// hostPath volumes are forbidden.
pub fn host_path_volumes(p: &Pod) -> Option<Violation> {
    let names: Vec<String> = p.spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| set(&v["hostPath"]))
        .map(name)
        .collect();
    if names.is_empty() {
        return None;
    }
    Some(Violation::new(
        "hostPath volumes",
        format!(
            "{} {}",
            pluralize("volume", "volumes", names.len()),
            join_quote(&names)
        ),
    ))
}

/// Host ports are forbidden.
pub fn host_ports(p: &Pod) -> Option<Violation> {
    let mut bad = Vec::new();
    // Strings, sorted as strings, as kube's set of `strconv.Itoa` values.
    let mut ports = BTreeSet::new();
    for c in p.containers() {
        let mut valid = true;
        for port in c["ports"].as_array().into_iter().flatten() {
            let hp = port["hostPort"].as_i64().unwrap_or(0);
            if hp != 0 {
                valid = false;
                ports.insert(hp.to_string());
            }
        }
        if !valid {
            bad.push(name(c));
        }
    }
    if bad.is_empty() {
        return None;
    }
    let ports: Vec<String> = ports.into_iter().collect();
    Some(Violation::new(
        "hostPort",
        format!(
            "{} {} {} {}",
            containers_phrase(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize("hostPort", "hostPorts", ports.len()),
            ports.join(", ")
        ),
    ))
}

/// Privileged containers are forbidden.
pub fn privileged(p: &Pod) -> Option<Violation> {
    let bad: Vec<String> = p
        .containers()
        .filter(|c| c["securityContext"]["privileged"].as_bool() == Some(true))
        .map(name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    Some(Violation::new(
        "privileged",
        format!(
            "{} must not set securityContext.privileged=true",
            containers_phrase(&bad)
        ),
    ))
}

/// An unmasked /proc is forbidden: procMount must be unset or `Default`. (Pods with
/// `hostUsers: false` are not relaxed: that is the UserNamespacesPodSecurityStandards
/// gate, off by default in 1.33.)
pub fn proc_mount(p: &Pod) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut types = BTreeSet::new();
    for c in p.containers() {
        let pm = &c["securityContext"]["procMount"];
        if !set(pm) {
            continue;
        }
        let t = pm.as_str().unwrap_or("");
        if t != "Default" {
            bad.push(name(c));
            types.insert(t.to_string());
        }
    }
    if bad.is_empty() {
        return None;
    }
    let types: Vec<String> = types.into_iter().collect();
    Some(Violation::new(
        "procMount",
        format!(
            "{} must not set securityContext.procMount to {}",
            containers_phrase(&bad),
            join_quote(&types)
        ),
    ))
}

/// SELinux types a pod may ask for (`container_engine_t` since policy 1.31).
const SELINUX_TYPES: &[&str] = &[
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

/// seLinuxOptions: a type from the allowed set; no custom user or role.
pub fn se_linux_options(p: &Pod) -> Option<Violation> {
    let mut bad_types = BTreeSet::new();
    let (mut set_user, mut set_role) = (false, false);
    let mut valid = |opts: &Value| {
        let mut ok = true;
        let t = opts["type"].as_str().unwrap_or("");
        if !SELINUX_TYPES.contains(&t) {
            ok = false;
            bad_types.insert(t.to_string());
        }
        if !opts["user"].as_str().unwrap_or("").is_empty() {
            ok = false;
            set_user = true;
        }
        if !opts["role"].as_str().unwrap_or("").is_empty() {
            ok = false;
            set_role = true;
        }
        ok
    };
    let mut setters = Vec::new();
    let pod_opts = &p.security_context()["seLinuxOptions"];
    if set(pod_opts) && !valid(pod_opts) {
        setters.push("pod".to_string());
    }
    let mut bad = Vec::new();
    for c in p.containers() {
        let opts = &c["securityContext"]["seLinuxOptions"];
        if set(opts) && !valid(opts) {
            bad.push(name(c));
        }
    }
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    let mut data = Vec::new();
    if !bad_types.is_empty() {
        let types: Vec<String> = bad_types.into_iter().collect();
        data.push(format!(
            "{} {}",
            pluralize("type", "types", types.len()),
            join_quote(&types)
        ));
    }
    if set_user {
        data.push("user may not be set".to_string());
    }
    if set_role {
        data.push("role may not be set".to_string());
    }
    Some(Violation::new(
        "seLinuxOptions",
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            setters.join(" and "),
            data.join("; ")
        ),
    ))
}

/// A seccomp profile type Baseline and Restricted accept.
pub(super) fn valid_seccomp(t: &str) -> bool {
    matches!(t, "RuntimeDefault" | "Localhost")
}

/// seccomp (policy 1.19+, the field): when set, only RuntimeDefault or Localhost.
pub fn seccomp_profile_baseline(p: &Pod) -> Option<Violation> {
    let mut setters = Vec::new();
    let mut values = BTreeSet::new();
    let pod_profile = &p.security_context()["seccompProfile"];
    if set(pod_profile) {
        let t = pod_profile["type"].as_str().unwrap_or("");
        if !valid_seccomp(t) {
            setters.push("pod".to_string());
            values.insert(t.to_string());
        }
    }
    let mut bad = Vec::new();
    for c in p.containers() {
        let profile = &c["securityContext"]["seccompProfile"];
        if set(profile) {
            let t = profile["type"].as_str().unwrap_or("");
            if !valid_seccomp(t) {
                bad.push(name(c));
                values.insert(t.to_string());
            }
        }
    }
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    let values: Vec<String> = values.into_iter().collect();
    Some(Violation::new(
        "seccompProfile",
        format!(
            "{} must not set securityContext.seccompProfile.type to {}",
            setters.join(" and "),
            join_quote(&values)
        ),
    ))
}

/// The sysctls Baseline allows (namespaced, isolated from other pods), through policy
/// 1.32's additions.
const SYSCTLS_ALLOWED: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    // 1.27
    "net.ipv4.ip_local_reserved_ports",
    // 1.29
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    // 1.32
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];

/// Sysctls outside the safe set are forbidden.
pub fn sysctls(p: &Pod) -> Option<Violation> {
    let bad: Vec<&str> = p.security_context()["sysctls"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| s["name"].as_str().unwrap_or(""))
        .filter(|n| !SYSCTLS_ALLOWED.contains(n))
        .collect();
    if bad.is_empty() {
        return None;
    }
    Some(Violation::new("forbidden sysctls", bad.join(", ")))
}

/// Windows HostProcess containers are forbidden.
pub fn windows_host_process(p: &Pod) -> Option<Violation> {
    let host_process = |sc: &Value| sc["windowsOptions"]["hostProcess"].as_bool() == Some(true);
    let bad: Vec<String> = p
        .containers()
        .filter(|c| host_process(&c["securityContext"]))
        .map(name)
        .collect();
    let mut setters = Vec::new();
    if host_process(p.security_context()) {
        setters.push("pod".to_string());
    }
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    Some(Violation::new(
        "hostProcess",
        format!(
            "{} must not set securityContext.windowsOptions.hostProcess=true",
            setters.join(" and ")
        ),
    ))
}

#[cfg(test)]
mod tests;
