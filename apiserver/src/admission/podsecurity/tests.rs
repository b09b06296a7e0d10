//! Evaluation as a whole: kube's check order and messages, which Baseline checks
//! Restricted replaces, and which pod updates are evaluated again.

use serde_json::{json, Value};

use super::*;

fn eval(level: Level, spec: Value) -> Vec<Violation> {
    let meta = json!({});
    evaluate(level, &Pod::new(&meta, &spec))
}

fn latest(level: Level) -> LevelVersion {
    LevelVersion {
        level,
        version: "latest".into(),
    }
}

#[test]
fn checks_are_in_kube_order() {
    let ids = |level: Level| -> Vec<&str> {
        CHECKS
            .iter()
            .filter(|c| c.level == level)
            .map(|c| c.id)
            .collect()
    };
    for level in [Level::Baseline, Level::Restricted] {
        let mut sorted = ids(level);
        sorted.sort();
        assert_eq!(ids(level), sorted, "{level:?} checks must be sorted by ID");
    }
    let first_restricted = CHECKS
        .iter()
        .position(|c| c.level == Level::Restricted)
        .unwrap_or(0);
    assert!(CHECKS[first_restricted..]
        .iter()
        .all(|c| c.level == Level::Restricted));
}

#[test]
fn a_bare_container_fails_restricted_with_kubes_message() {
    let v = eval(
        Level::Restricted,
        json!({"containers": [{"name": "c", "image": "busybox"}]}),
    );
    assert_eq!(
        forbidden(&latest(Level::Restricted), &v),
        concat!(
            r#"violates PodSecurity "restricted:latest": "#,
            r#"allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), "#,
            r#"unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), "#,
            r#"runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), "#,
            r#"seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
        )
    );
    assert!(eval(Level::Baseline, json!({"containers": [{"name": "c"}]})).is_empty());
    assert!(eval(Level::Privileged, json!({"hostNetwork": true})).is_empty());
}

#[test]
fn baseline_failures_come_before_restricted_ones_and_are_not_repeated() {
    let spec = json!({
        "hostNetwork": true,
        "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
        "containers": [{
            "name": "c",
            "securityContext": {
                "privileged": true,
                "capabilities": {"add": ["SYS_ADMIN"]},
                "seccompProfile": {"type": "Unconfined"},
            },
        }],
    });
    assert_eq!(
        detail(&eval(Level::Baseline, spec.clone())),
        concat!(
            r#"non-default capabilities (container "c" must not include "SYS_ADMIN" in securityContext.capabilities.add), "#,
            r#"host namespaces (hostNetwork), hostPath volumes (volume "h"), "#,
            r#"privileged (container "c" must not set securityContext.privileged=true), "#,
            r#"seccompProfile (container "c" must not set securityContext.seccompProfile.type to "Unconfined")"#
        )
    );
    // At Restricted the capability, hostPath and seccomp checks are the Restricted ones.
    let r = eval(Level::Restricted, spec);
    assert_eq!(
        reasons(&r),
        "host namespaces, privileged, allowPrivilegeEscalation != false, unrestricted capabilities, restricted volume types, runAsNonRoot != true, seccompProfile"
    );
    assert_eq!(
        would_violate(&latest(Level::Baseline), &[Violation::new("hostPort", "")]),
        r#"would violate PodSecurity "baseline:latest": hostPort"#
    );
}

#[test]
fn a_compliant_pod_passes_restricted() {
    let spec = json!({
        "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "c",
            "image": "busybox",
            "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "runAsUser": 1000},
        }],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    });
    assert_eq!(eval(Level::Restricted, spec), []);
}

#[test]
fn only_image_seccomp_and_container_changes_are_significant() {
    let pod = json!({
        "metadata": {"labels": {"a": "1"}, "annotations": {}},
        "spec": {"containers": [{"name": "c", "image": "busybox:1"}], "activeDeadlineSeconds": 5},
    });
    let mut labels = pod.clone();
    labels["metadata"]["labels"]["b"] = json!("2");
    labels["spec"]["activeDeadlineSeconds"] = json!(3);
    assert!(!significant_update(&labels, &pod));
    let mut image = pod.clone();
    image["spec"]["containers"][0]["image"] = json!("busybox:2");
    assert!(significant_update(&image, &pod));
    let mut seccomp = pod.clone();
    seccomp["metadata"]["annotations"]["container.seccomp.security.alpha.kubernetes.io/c"] =
        json!("unconfined");
    assert!(significant_update(&seccomp, &pod));
    let mut debug = pod.clone();
    debug["spec"]["ephemeralContainers"] = json!([{"name": "d", "image": "busybox"}]);
    assert!(significant_update(&debug, &pod));
    assert!(!significant_update(&debug, &debug));
}
