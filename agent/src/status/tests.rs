use std::collections::{HashMap, HashSet};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, PodStatus};

use super::*;
use crate::runtime::{ContainerState, ContainerStatus, PodView, SandboxStatus};
use crate::sync::Plan;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).unwrap()
}

fn pod(policy: &str, init: &[&str], apps: &[&str]) -> Pod {
    let c = |n: &&str| serde_json::json!({"name": n, "image": "busybox"});
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
        "spec": {
            "restartPolicy": policy,
            "initContainers": init.iter().map(c).collect::<Vec<_>>(),
            "containers": apps.iter().map(c).collect::<Vec<_>>(),
        },
        "status": {"qosClass": "BestEffort", "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2023-11-14T22:13:20Z"}
        ]}
    }))
    .unwrap()
}

fn c(name: &str, init: bool, attempt: u32, state: ContainerState) -> ContainerStatus {
    ContainerStatus {
        id: format!("{name}-{attempt}"),
        name: name.into(),
        attempt,
        init,
        hash: 7,
        image: "busybox".into(),
        image_id: "sha256:1".into(),
        state,
        log_path: Default::default(),
    }
}

fn view(containers: Vec<ContainerStatus>) -> PodView {
    PodView {
        pod: None,
        sandbox: Some(SandboxStatus {
            id: "sb".into(),
            ready: true,
            ip: Some("10.0.0.2".into()),
        }),
        containers,
    }
}

fn exited(code: i32) -> ContainerState {
    ContainerState::Exited {
        exit_code: code,
        started_at: Some(t(0)),
        finished_at: t(1),
        reason: if code == 0 { "Completed" } else { "Error" }.into(),
        message: None,
    }
}

fn compute_with(p: &Pod, v: &PodView, plan: &Plan, ready: &[&str]) -> PodStatus {
    let ready: HashSet<String> = ready.iter().map(|s| s.to_string()).collect();
    let started: HashSet<String> = v.containers.iter().map(|c| c.id.clone()).collect();
    compute(&Inputs {
        pod: p,
        view: v,
        plan,
        start_errors: &HashMap::new(),
        ready: &ready,
        started: &started,
        runtime: "process",
        host_ip: "192.168.1.1",
        now: t(2),
    })
}

fn cond<'a>(s: &'a PodStatus, t: &str) -> &'a str {
    &s.conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == t)
        .unwrap()
        .status
}

#[test]
fn running_and_ready_with_ips_and_conditions() {
    let p = pod("Always", &["i"], &["a"]);
    let v = view(vec![
        c("i", true, 0, exited(0)),
        c("a", false, 0, ContainerState::Running { started_at: t(1) }),
    ]);
    let s = compute_with(&p, &v, &Plan::default(), &["a-0"]);
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert_eq!(s.pod_ip.as_deref(), Some("10.0.0.2"));
    assert_eq!(s.host_ip.as_deref(), Some("192.168.1.1"));
    assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
    for t in ["Initialized", "Ready", "ContainersReady", "PodScheduled"] {
        assert_eq!(cond(&s, t), "True", "{t}");
    }
    let cs = &s.container_statuses.as_ref().unwrap()[0];
    assert!(cs.ready);
    assert_eq!(cs.container_id.as_deref(), Some("process://a-0"));
    assert!(cs.state.as_ref().unwrap().running.is_some());
    // Not ready while the readiness probe fails.
    let s = compute_with(&p, &v, &Plan::default(), &[]);
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert_eq!(cond(&s, "Ready"), "False");
}

#[test]
fn pending_while_initializing() {
    let p = pod("Always", &["i"], &["a"]);
    let v = view(vec![c(
        "i",
        true,
        0,
        ContainerState::Running { started_at: t(1) },
    )]);
    let s = compute_with(&p, &v, &Plan::default(), &[]);
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    assert_eq!(cond(&s, "Initialized"), "False");
    let app = &s.container_statuses.as_ref().unwrap()[0];
    assert_eq!(
        app.state
            .as_ref()
            .unwrap()
            .waiting
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some("PodInitializing")
    );
}

#[test]
fn crash_loop_shows_waiting_with_the_last_termination() {
    let p = pod("Always", &[], &["a"]);
    let v = view(vec![
        c("a", false, 0, exited(1)),
        c("a", false, 3, exited(2)),
    ]);
    let plan = Plan {
        backing_off: vec![(
            "a".into(),
            false,
            std::time::Duration::from_secs(40),
            std::time::Duration::from_secs(30),
        )],
        ..Default::default()
    };
    let s = compute_with(&p, &v, &plan, &[]);
    assert_eq!(s.phase.as_deref(), Some("Running"));
    let cs = &s.container_statuses.as_ref().unwrap()[0];
    assert_eq!(cs.restart_count, 3);
    let w = cs.state.as_ref().unwrap().waiting.as_ref().unwrap();
    assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
    assert_eq!(
        w.message.as_deref(),
        Some("back-off 40s restarting failed container=a pod=p_ns(u)")
    );
    let last = cs.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(last.exit_code, 2);
}

#[test]
fn phases_after_every_container_exits() {
    for (policy, codes, phase) in [
        ("Never", vec![0, 0], "Succeeded"),
        ("Never", vec![0, 1], "Failed"),
        ("OnFailure", vec![0, 0], "Succeeded"),
        ("Always", vec![0, 0], "Running"),
    ] {
        let p = pod(policy, &[], &["a", "b"]);
        let v = view(vec![
            c("a", false, 0, exited(codes[0])),
            c("b", false, 0, exited(codes[1])),
        ]);
        let s = compute_with(&p, &v, &Plan::default(), &[]);
        assert_eq!(s.phase.as_deref(), Some(phase), "{policy} {codes:?}");
        if phase != "Running" {
            assert_eq!(cond(&s, "Ready"), "False");
        }
    }
    // A terminal phase is never left.
    let mut p = pod("Always", &[], &["a"]);
    p.status.as_mut().unwrap().phase = Some("Failed".into());
    let v = view(vec![c(
        "a",
        false,
        0,
        ContainerState::Running { started_at: t(1) },
    )]);
    let s = compute_with(&p, &v, &Plan::default(), &["a-0"]);
    assert_eq!(s.phase.as_deref(), Some("Failed"));
}

#[test]
fn a_deleted_pod_ends_terminal_once_stopped() {
    let stopped = Plan {
        ending: Some(crate::sync::Ending::Deleted),
        stopped: true,
        ..Plan::default()
    };
    for (policy, codes, phase) in [
        ("Always", vec![0, 0], "Succeeded"),
        ("Always", vec![137, 0], "Failed"),
        ("Never", vec![143, 143], "Failed"),
    ] {
        let p = pod(policy, &[], &["a", "b"]);
        let v = view(vec![
            c("a", false, 0, exited(codes[0])),
            c("b", false, 0, exited(codes[1])),
        ]);
        let s = compute_with(&p, &v, &stopped, &[]);
        assert_eq!(s.phase.as_deref(), Some(phase), "{policy} {codes:?}");
    }
    // Never started: failed too.
    let s = compute_with(&pod("Always", &[], &["a"]), &view(vec![]), &stopped, &[]);
    assert_eq!(s.phase.as_deref(), Some("Failed"));
}

#[test]
fn transition_times_are_kept_while_a_condition_holds() {
    let p = pod("Always", &[], &["a"]);
    let v = view(vec![c(
        "a",
        false,
        0,
        ContainerState::Running { started_at: t(1) },
    )]);
    let s1 = compute_with(&p, &v, &Plan::default(), &["a-0"]);
    let mut p2 = p.clone();
    p2.status = Some(s1.clone());
    let s2 = compute(&Inputs {
        pod: &p2,
        view: &v,
        plan: &Plan::default(),
        start_errors: &HashMap::new(),
        ready: &["a-0".to_string()].into(),
        started: &["a-0".to_string()].into(),
        runtime: "process",
        host_ip: "192.168.1.1",
        now: t(50),
    });
    assert_eq!(s1, s2, "nothing changed, so the report is the same");
}
