//! A container's effective securityContext (the kubelet's
//! `DetermineEffectiveSecurityContext`): the pod's runAsUser, runAsGroup, runAsNonRoot
//! and seccompProfile unless the container sets its own; supplementalGroups and fsGroup
//! from the pod only; capabilities, privileged, readOnlyRootFilesystem and
//! allowPrivilegeEscalation from the container only. Pure: the Localhost seccomp profile
//! is named here and read by `containers.rs`.

use k8s_openapi::api::core::v1::{Container, Pod, SeccompProfile};

use crate::runtime::{Seccomp, Security};

/// What `c` of `pod` runs with. A Localhost seccomp profile comes back with an empty
/// `profile`, for the caller to read.
pub fn effective(pod: &Pod, c: &Container) -> Security {
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let csc = c.security_context.as_ref();
    let caps = csc.and_then(|s| s.capabilities.as_ref());
    let mut groups: Vec<i64> = psc
        .and_then(|p| p.supplemental_groups.clone())
        .unwrap_or_default();
    if let Some(g) = psc.and_then(|p| p.fs_group) {
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    let seccomp = csc
        .and_then(|s| s.seccomp_profile.as_ref())
        .or_else(|| psc.and_then(|p| p.seccomp_profile.as_ref()));
    Security {
        run_as_user: csc
            .and_then(|s| s.run_as_user)
            .or_else(|| psc.and_then(|p| p.run_as_user)),
        run_as_group: csc
            .and_then(|s| s.run_as_group)
            .or_else(|| psc.and_then(|p| p.run_as_group)),
        supplemental_groups: groups,
        run_as_non_root: csc
            .and_then(|s| s.run_as_non_root)
            .or_else(|| psc.and_then(|p| p.run_as_non_root))
            .unwrap_or(false),
        read_only_root: csc
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false),
        privileged: csc.and_then(|s| s.privileged).unwrap_or(false),
        cap_add: caps.and_then(|c| c.add.clone()).unwrap_or_default(),
        cap_drop: caps.and_then(|c| c.drop.clone()).unwrap_or_default(),
        no_new_privileges: csc.and_then(|s| s.allow_privilege_escalation) == Some(false),
        seccomp: seccomp.map(seccomp_of).unwrap_or_default(),
    }
}

fn seccomp_of(p: &SeccompProfile) -> Seccomp {
    match p.type_.as_str() {
        "Unconfined" => Seccomp::Unconfined,
        "Localhost" => Seccomp::Localhost {
            name: p.localhost_profile.clone().unwrap_or_default(),
            profile: String::new(),
        },
        _ => Seccomp::RuntimeDefault,
    }
}

/// Whether a Localhost profile name stays inside the seccomp directory (the API refuses
/// others; checked again before a file is read).
pub fn safe_profile_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && name
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != "..")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> (Pod, Container) {
        let p: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec}))
            .expect("a pod");
        let c = p.spec.as_ref().unwrap().containers[0].clone();
        (p, c)
    }

    #[test]
    fn nothing_set_confines_nothing_more() {
        let (p, c) = pod(json!({"containers": [{"name": "c"}]}));
        assert_eq!(effective(&p, &c), Security::default());
    }

    #[test]
    fn container_values_win_over_the_pods() {
        let (p, c) = pod(json!({
            "securityContext": {
                "runAsUser": 1000, "runAsGroup": 3000, "runAsNonRoot": true,
                "supplementalGroups": [4000, 2000], "fsGroup": 2000,
                "seccompProfile": {"type": "Unconfined"},
            },
            "containers": [{"name": "c", "securityContext": {
                "runAsUser": 1001, "runAsNonRoot": false,
                "seccompProfile": {"type": "RuntimeDefault"},
            }}],
        }));
        let s = effective(&p, &c);
        assert_eq!(s.run_as_user, Some(1001));
        assert_eq!(s.run_as_group, Some(3000));
        assert!(!s.run_as_non_root);
        assert_eq!(s.supplemental_groups, [4000, 2000]);
        assert_eq!(s.seccomp, Seccomp::RuntimeDefault);
        // The pod's profile applies to a container without its own.
        let (p, c) = pod(json!({
            "securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "audit.json"}, "fsGroup": 5},
            "containers": [{"name": "c"}],
        }));
        let s = effective(&p, &c);
        assert_eq!(
            s.seccomp,
            Seccomp::Localhost {
                name: "audit.json".into(),
                profile: String::new()
            }
        );
        assert_eq!(s.supplemental_groups, [5]);
    }

    #[test]
    fn container_only_fields() {
        let (p, c) = pod(json!({"containers": [{"name": "c", "securityContext": {
            "privileged": true, "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
            "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
        }}]}));
        let s = effective(&p, &c);
        assert!(s.privileged && s.read_only_root && s.no_new_privileges);
        assert_eq!(
            (s.cap_add, s.cap_drop),
            (vec!["NET_ADMIN".to_string()], vec!["ALL".to_string()])
        );
        let (p, c) = pod(
            json!({"containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": true}}]}),
        );
        assert!(!effective(&p, &c).no_new_privileges);
    }

    #[test]
    fn localhost_profile_names_stay_in_their_directory() {
        assert!(safe_profile_name("audit.json"));
        assert!(safe_profile_name("profiles/audit.json"));
        for bad in ["", "/etc/x", "../x", "a/../../x", "a//b", "./x"] {
            assert!(!safe_profile_name(bad), "{bad}");
        }
    }
}
