//! Each Restricted check: what passes, and kube's reason and detail for what fails.

use serde_json::{json, Value};

use super::*;

fn spec(check: fn(&Pod) -> Option<Violation>, spec: Value) -> Option<Violation> {
    let meta = json!({});
    check(&Pod::new(&meta, &spec))
}

#[track_caller]
fn fails(v: Option<Violation>, reason: &str, detail: &str) {
    assert_eq!(v, Some(Violation::new(reason, detail)));
}

#[test]
fn privilege_escalation_must_be_off_on_every_container() {
    let ok = json!({"containers": [{"name": "a", "securityContext": {"allowPrivilegeEscalation": false}}]});
    assert_eq!(spec(allow_privilege_escalation, ok), None);
    fails(
        spec(
            allow_privilege_escalation,
            json!({
                "initContainers": [{"name": "i"}],
                "containers": [
                    {"name": "a", "securityContext": {"allowPrivilegeEscalation": true}},
                    {"name": "b", "securityContext": {"allowPrivilegeEscalation": false}},
                    {"name": "c", "securityContext": {}},
                ],
            }),
        ),
        "allowPrivilegeEscalation != false",
        r#"containers "i", "a", "c" must set securityContext.allowPrivilegeEscalation=false"#,
    );
    // Windows pods are exempt.
    let windows = json!({"os": {"name": "windows"}, "containers": [{"name": "a"}]});
    assert_eq!(spec(allow_privilege_escalation, windows), None);
}

#[test]
fn capabilities_must_drop_all_and_add_only_net_bind_service() {
    let ok = json!({"containers": [{"name": "a", "securityContext": {"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}]});
    assert_eq!(spec(capabilities_restricted, ok), None);
    fails(
        spec(
            capabilities_restricted,
            json!({"containers": [{"name": "a"}]}),
        ),
        "unrestricted capabilities",
        r#"container "a" must set securityContext.capabilities.drop=["ALL"]"#,
    );
    fails(
        spec(
            capabilities_restricted,
            json!({"containers": [
                {"name": "a", "securityContext": {"capabilities": {"drop": ["NET_RAW"], "add": ["SYS_TIME", "CHOWN"]}}},
                {"name": "b", "securityContext": {"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE", "KILL"]}}},
            ]}),
        ),
        "unrestricted capabilities",
        concat!(
            r#"container "a" must set securityContext.capabilities.drop=["ALL"]; "#,
            r#"containers "a", "b" must not include "CHOWN", "KILL", "SYS_TIME" in securityContext.capabilities.add"#
        ),
    );
    let windows = json!({"os": {"name": "windows"}, "containers": [{"name": "a"}]});
    assert_eq!(spec(capabilities_restricted, windows), None);
}

#[test]
fn only_ephemeral_and_persistent_volume_types_are_allowed() {
    let ok = json!({"volumes": [
        {"name": "a", "configMap": {"name": "c"}},
        {"name": "b", "secret": {"secretName": "s"}},
        {"name": "c", "emptyDir": {}},
        {"name": "d", "projected": {"sources": []}},
        {"name": "e", "downwardAPI": {}},
        {"name": "f", "persistentVolumeClaim": {"claimName": "x"}},
        {"name": "g", "ephemeral": {}},
        {"name": "h", "csi": {"driver": "d"}},
        {"name": "i", "image": {"reference": "r"}},
    ]});
    assert_eq!(spec(restricted_volumes, ok), None);
    fails(
        spec(
            restricted_volumes,
            json!({"volumes": [{"name": "h", "hostPath": {"path": "/"}}]}),
        ),
        "restricted volume types",
        r#"volume "h" uses restricted volume type "hostPath""#,
    );
    fails(
        spec(
            restricted_volumes,
            json!({"volumes": [
                {"name": "n", "nfs": {"server": "s", "path": "/"}},
                {"name": "ok", "emptyDir": {}},
                {"name": "h", "hostPath": {"path": "/"}},
                {"name": "h2", "hostPath": {"path": "/x"}},
                {"name": "odd"},
            ]}),
        ),
        "restricted volume types",
        r#"volumes "n", "h", "h2", "odd" use restricted volume types "hostPath", "nfs", "unknown""#,
    );
}

#[test]
fn run_as_non_root_must_be_true_at_pod_or_container_level() {
    let pod_level =
        json!({"securityContext": {"runAsNonRoot": true}, "containers": [{"name": "a"}]});
    assert_eq!(spec(run_as_non_root, pod_level), None);
    let each = json!({"containers": [{"name": "a", "securityContext": {"runAsNonRoot": true}}]});
    assert_eq!(spec(run_as_non_root, each), None);
    fails(
        spec(
            run_as_non_root,
            json!({"containers": [{"name": "a"}, {"name": "b", "securityContext": {"runAsNonRoot": true}}, {"name": "c"}]}),
        ),
        "runAsNonRoot != true",
        r#"pod or containers "a", "c" must set securityContext.runAsNonRoot=true"#,
    );
    fails(
        spec(
            run_as_non_root,
            json!({
                "securityContext": {"runAsNonRoot": false},
                "containers": [{"name": "a", "securityContext": {"runAsNonRoot": false}}, {"name": "b"}],
            }),
        ),
        "runAsNonRoot != true",
        r#"pod and container "a" must not set securityContext.runAsNonRoot=false"#,
    );
    // A container may not opt out of a pod-level true.
    fails(
        spec(
            run_as_non_root,
            json!({
                "securityContext": {"runAsNonRoot": true},
                "containers": [{"name": "a", "securityContext": {"runAsNonRoot": false}}],
            }),
        ),
        "runAsNonRoot != true",
        r#"container "a" must not set securityContext.runAsNonRoot=false"#,
    );
}

#[test]
fn run_as_user_zero_is_refused() {
    let ok = json!({"securityContext": {"runAsUser": 1000}, "containers": [{"name": "a"}, {"name": "b", "securityContext": {"runAsUser": 1}}]});
    assert_eq!(spec(run_as_user, ok), None);
    fails(
        spec(
            run_as_user,
            json!({"securityContext": {"runAsUser": 0}, "initContainers": [{"name": "i", "securityContext": {"runAsUser": 0}}], "containers": [{"name": "a"}]}),
        ),
        "runAsUser=0",
        r#"pod and container "i" must not set runAsUser=0"#,
    );
}

#[test]
fn seccomp_must_be_runtime_default_or_localhost() {
    let pod_level = json!({"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}, "containers": [{"name": "a"}]});
    assert_eq!(spec(seccomp_profile_restricted, pod_level), None);
    let each = json!({"containers": [{"name": "a", "securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "p"}}}]});
    assert_eq!(spec(seccomp_profile_restricted, each), None);
    fails(
        spec(
            seccomp_profile_restricted,
            json!({"containers": [{"name": "a"}]}),
        ),
        "seccompProfile",
        r#"pod or container "a" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost""#,
    );
    fails(
        spec(
            seccomp_profile_restricted,
            json!({
                "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{"name": "a", "securityContext": {"seccompProfile": {"type": "Unconfined"}}}, {"name": "b"}],
            }),
        ),
        "seccompProfile",
        r#"container "a" must not set securityContext.seccompProfile.type to "Unconfined""#,
    );
    let windows = json!({"os": {"name": "windows"}, "containers": [{"name": "a"}]});
    assert_eq!(spec(seccomp_profile_restricted, windows), None);
}
