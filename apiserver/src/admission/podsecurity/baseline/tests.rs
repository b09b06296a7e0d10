//! Each Baseline check: what passes, and kube's reason and detail for what fails (the
//! cases of kube's `check_*_test.go`).

use serde_json::{json, Value};

use super::*;

/// Runs `check` on a pod of `meta` and `spec`.
fn run(check: fn(&Pod) -> Option<Violation>, meta: Value, spec: Value) -> Option<Violation> {
    check(&Pod::new(&meta, &spec))
}

fn spec(check: fn(&Pod) -> Option<Violation>, spec: Value) -> Option<Violation> {
    run(check, json!({}), spec)
}

#[track_caller]
fn fails(v: Option<Violation>, reason: &str, detail: &str) {
    assert_eq!(v, Some(Violation::new(reason, detail)));
}

#[test]
fn app_armor_allows_runtime_default_localhost_and_unset() {
    assert_eq!(
        spec(app_armor_profile, json!({"containers": [{"name": "a"}]})),
        None
    );
    let ok = json!({
        "securityContext": {"appArmorProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "a", "securityContext": {"appArmorProfile": {"type": "Localhost", "localhostProfile": "p"}}}],
    });
    assert_eq!(spec(app_armor_profile, ok), None);
    let meta = json!({"annotations": {
        "container.apparmor.security.beta.kubernetes.io/a": "runtime/default",
        "container.apparmor.security.beta.kubernetes.io/b": "localhost/x",
        "container.apparmor.security.beta.kubernetes.io/c": "",
        "other": "unconfined",
    }});
    assert_eq!(run(app_armor_profile, meta, json!({})), None);
}

#[test]
fn app_armor_refuses_unconfined_fields_and_annotations() {
    fails(
        spec(
            app_armor_profile,
            json!({"securityContext": {"appArmorProfile": {"type": "Unconfined"}}}),
        ),
        "forbidden AppArmor profile",
        r#"pod must not set AppArmor profile type to "Unconfined""#,
    );
    fails(
        spec(
            app_armor_profile,
            json!({
                "initContainers": [{"name": "i", "securityContext": {"appArmorProfile": {"type": "Unconfined"}}}],
                "containers": [{"name": "a", "securityContext": {"appArmorProfile": {"type": "Unconfined"}}}],
            }),
        ),
        "forbidden AppArmor profile",
        r#"containers "i", "a" must not set AppArmor profile type to "Unconfined""#,
    );
    let meta = json!({"annotations": {
        "container.apparmor.security.beta.kubernetes.io/b": "unconfined",
        "container.apparmor.security.beta.kubernetes.io/a": "bogus",
    }});
    let spec = json!({"securityContext": {"appArmorProfile": {"type": "Unconfined"}}});
    fails(
        run(app_armor_profile, meta, spec),
        "forbidden AppArmor profiles",
        concat!(
            r#"pod and annotations must not set AppArmor profile type to "Unconfined", "#,
            r#""container.apparmor.security.beta.kubernetes.io/a="bogus"", "#,
            r#""container.apparmor.security.beta.kubernetes.io/b="unconfined"""#
        ),
    );
}

#[test]
fn capabilities_beyond_the_default_set_are_refused() {
    let ok = json!({"containers": [
        {"name": "a", "securityContext": {"capabilities": {"add": ["CHOWN", "NET_BIND_SERVICE", "SYS_CHROOT"], "drop": ["ALL"]}}},
    ]});
    assert_eq!(spec(capabilities_baseline, ok), None);
    fails(
        spec(
            capabilities_baseline,
            json!({"containers": [
                {"name": "a", "securityContext": {"capabilities": {"add": ["SYS_ADMIN", "NET_RAW", "CHOWN"]}}},
                {"name": "b", "securityContext": {"capabilities": {"add": ["CHOWN"]}}},
                {"name": "c", "securityContext": {"capabilities": {"add": ["NET_RAW"]}}},
            ]}),
        ),
        "non-default capabilities",
        r#"containers "a", "c" must not include "NET_RAW", "SYS_ADMIN" in securityContext.capabilities.add"#,
    );
}

#[test]
fn host_namespaces_are_refused() {
    assert_eq!(
        spec(
            host_namespaces,
            json!({"hostNetwork": false, "hostPID": null})
        ),
        None
    );
    fails(
        spec(host_namespaces, json!({"hostNetwork": true})),
        "host namespaces",
        "hostNetwork",
    );
    fails(
        spec(
            host_namespaces,
            json!({"hostPID": true, "hostNetwork": true, "hostIPC": true}),
        ),
        "host namespaces",
        "hostIPC, hostNetwork, hostPID",
    );
}

#[test]
fn host_path_volumes_are_refused() {
    assert_eq!(
        spec(
            host_path_volumes,
            json!({"volumes": [{"name": "e", "emptyDir": {}}]})
        ),
        None
    );
    fails(
        spec(
            host_path_volumes,
            json!({"volumes": [{"name": "a", "hostPath": {"path": "/"}}]}),
        ),
        "hostPath volumes",
        r#"volume "a""#,
    );
    fails(
        spec(
            host_path_volumes,
            json!({"volumes": [
                {"name": "a", "hostPath": {"path": "/a"}},
                {"name": "e", "emptyDir": {}},
                {"name": "b", "hostPath": {"path": "/b"}},
            ]}),
        ),
        "hostPath volumes",
        r#"volumes "a", "b""#,
    );
}

#[test]
fn host_ports_are_refused() {
    let ok = json!({"containers": [{"name": "a", "ports": [{"containerPort": 80}, {"containerPort": 81, "hostPort": 0}]}]});
    assert_eq!(spec(host_ports, ok), None);
    fails(
        spec(
            host_ports,
            json!({"containers": [{"name": "a", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}),
        ),
        "hostPort",
        r#"container "a" uses hostPort 8080"#,
    );
    fails(
        spec(
            host_ports,
            json!({
                "initContainers": [{"name": "i", "ports": [{"containerPort": 1, "hostPort": 9}]}],
                "containers": [{"name": "a", "ports": [{"containerPort": 80, "hostPort": 10}, {"containerPort": 81, "hostPort": 9}]}],
            }),
        ),
        "hostPort",
        r#"containers "i", "a" use hostPorts 10, 9"#,
    );
}

#[test]
fn privileged_containers_are_refused() {
    let ok = json!({"containers": [{"name": "a", "securityContext": {"privileged": false}}, {"name": "b"}]});
    assert_eq!(spec(privileged, ok), None);
    fails(
        spec(
            privileged,
            json!({
                "containers": [{"name": "a", "securityContext": {"privileged": true}}],
                "ephemeralContainers": [{"name": "debug", "securityContext": {"privileged": true}}],
            }),
        ),
        "privileged",
        r#"containers "a", "debug" must not set securityContext.privileged=true"#,
    );
}

#[test]
fn unmasked_proc_mounts_are_refused() {
    let ok = json!({"containers": [{"name": "a", "securityContext": {"procMount": "Default"}}, {"name": "b"}]});
    assert_eq!(spec(proc_mount, ok), None);
    // hostUsers: false does not relax it in 1.33.
    fails(
        spec(
            proc_mount,
            json!({"hostUsers": false, "containers": [{"name": "a", "securityContext": {"procMount": "Unmasked"}}]}),
        ),
        "procMount",
        r#"container "a" must not set securityContext.procMount to "Unmasked""#,
    );
}

#[test]
fn se_linux_options_allow_container_types_only() {
    let ok = json!({
        "securityContext": {"seLinuxOptions": {"type": "container_t", "level": "s0:c1"}},
        "containers": [{"name": "a", "securityContext": {"seLinuxOptions": {"type": "container_engine_t"}}}],
    });
    assert_eq!(spec(se_linux_options, ok), None);
    fails(
        spec(
            se_linux_options,
            json!({"securityContext": {"seLinuxOptions": {"type": "spc_t"}}}),
        ),
        "seLinuxOptions",
        r#"pod set forbidden securityContext.seLinuxOptions: type "spc_t""#,
    );
    fails(
        spec(
            se_linux_options,
            json!({"securityContext": {"seLinuxOptions": {"user": "u"}}}),
        ),
        "seLinuxOptions",
        "pod set forbidden securityContext.seLinuxOptions: user may not be set",
    );
    fails(
        spec(
            se_linux_options,
            json!({
                "securityContext": {"seLinuxOptions": {}},
                "containers": [
                    {"name": "e", "securityContext": {"seLinuxOptions": {"type": "bar"}}},
                    {"name": "f", "securityContext": {"seLinuxOptions": {"user": "bar"}}},
                    {"name": "g", "securityContext": {"seLinuxOptions": {"role": "bar"}}},
                ],
            }),
        ),
        "seLinuxOptions",
        r#"containers "e", "f", "g" set forbidden securityContext.seLinuxOptions: type "bar"; user may not be set; role may not be set"#,
    );
}

#[test]
fn seccomp_unconfined_is_refused_but_unset_is_allowed() {
    let ok = json!({
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "a"}, {"name": "b", "securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}}}],
    });
    assert_eq!(spec(seccomp_profile_baseline, ok), None);
    fails(
        spec(
            seccomp_profile_baseline,
            json!({
                "securityContext": {"seccompProfile": {"type": "Unconfined"}},
                "containers": [{"name": "a", "securityContext": {"seccompProfile": {"type": "Unconfined"}}}],
            }),
        ),
        "seccompProfile",
        r#"pod and container "a" must not set securityContext.seccompProfile.type to "Unconfined""#,
    );
}

#[test]
fn only_safe_sysctls_are_allowed() {
    let ok = json!({"securityContext": {"sysctls": [
        {"name": "net.ipv4.ip_local_port_range", "value": "1024 65535"},
        {"name": "net.ipv4.tcp_rmem", "value": "4096 87380 6291456"},
    ]}});
    assert_eq!(spec(sysctls, ok), None);
    fails(
        spec(
            sysctls,
            json!({"securityContext": {"sysctls": [
                {"name": "kernel.msgmax", "value": "1"},
                {"name": "kernel.shm_rmid_forced", "value": "1"},
                {"name": "net.core.somaxconn", "value": "1"},
            ]}}),
        ),
        "forbidden sysctls",
        "kernel.msgmax, net.core.somaxconn",
    );
}

#[test]
fn windows_host_process_is_refused() {
    let ok = json!({"containers": [{"name": "a", "securityContext": {"windowsOptions": {"hostProcess": false}}}]});
    assert_eq!(spec(windows_host_process, ok), None);
    fails(
        spec(
            windows_host_process,
            json!({
                "securityContext": {"windowsOptions": {"hostProcess": true}},
                "containers": [{"name": "a", "securityContext": {"windowsOptions": {"hostProcess": true}}}],
            }),
        ),
        "hostProcess",
        r#"pod and container "a" must not set securityContext.windowsOptions.hostProcess=true"#,
    );
}
