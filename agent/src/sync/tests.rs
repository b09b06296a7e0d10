use std::collections::HashSet;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod};

use super::*;
use crate::crashloop::CrashBackoff;
use crate::runtime::{ContainerState, ContainerStatus, PodView, SandboxStatus};

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
        }
    }))
    .unwrap()
}

fn sandbox() -> Option<SandboxStatus> {
    Some(SandboxStatus {
        id: "sb".into(),
        ready: true,
        ip: Some("10.0.0.2".into()),
    })
}

fn c(name: &str, init: bool, attempt: u32, state: ContainerState) -> ContainerStatus {
    ContainerStatus {
        id: format!("{name}-{attempt}"),
        name: name.into(),
        attempt,
        init,
        hash: 7,
        image: "busybox".into(),
        image_id: String::new(),
        state,
        log_path: Default::default(),
    }
}

fn running() -> ContainerState {
    ContainerState::Running { started_at: t(0) }
}

fn exited(code: i32, at: i64) -> ContainerState {
    ContainerState::Exited {
        exit_code: code,
        started_at: Some(t(0)),
        finished_at: t(at),
        reason: if code == 0 { "Completed" } else { "Error" }.into(),
        message: None,
    }
}

fn hash7(_: &Container) -> u64 {
    7
}

fn plan_for(pod: &Pod, view: &PodView, backoff: &CrashBackoff, now: i64) -> Plan {
    let none = HashSet::new();
    plan(&Inputs {
        pod,
        view,
        backoff,
        unhealthy: &none,
        startup_failed: &none,
        hash: &hash7,
        now: t(now),
    })
}

fn starts(p: &Plan) -> Vec<(String, bool, u32)> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::Start {
                name,
                init,
                attempt,
                ..
            } => Some((name.clone(), *init, *attempt)),
            _ => None,
        })
        .collect()
}

#[test]
fn sandbox_first_then_init_containers_in_order_then_apps() {
    let p = pod("Always", &["i1", "i2"], &["a", "b"]);
    let b = CrashBackoff::default();
    let mut v = PodView::default();
    assert_eq!(plan_for(&p, &v, &b, 0).actions, vec![Action::CreateSandbox]);
    v.sandbox = sandbox();
    assert_eq!(
        starts(&plan_for(&p, &v, &b, 0)),
        vec![("i1".into(), true, 0)]
    );
    v.containers.push(c("i1", true, 0, running()));
    assert!(plan_for(&p, &v, &b, 0).actions.is_empty(), "waits for i1");
    v.containers[0].state = exited(0, 1);
    assert_eq!(
        starts(&plan_for(&p, &v, &b, 1)),
        vec![("i2".into(), true, 0)]
    );
    v.containers.push(c("i2", true, 0, exited(0, 2)));
    assert_eq!(
        starts(&plan_for(&p, &v, &b, 2)),
        vec![("a".into(), false, 0), ("b".into(), false, 0)]
    );
}

#[test]
fn restart_policies_decide_which_exits_restart() {
    let b = CrashBackoff::default();
    for (policy, code, restarted) in [
        ("Always", 0, true),
        ("Always", 1, true),
        ("OnFailure", 0, false),
        ("OnFailure", 1, true),
        ("Never", 1, false),
    ] {
        let p = pod(policy, &[], &["a", "b"]);
        let v = PodView {
            sandbox: sandbox(),
            containers: vec![
                c("a", false, 0, exited(code, 5)),
                c("b", false, 0, running()),
            ],
            ..Default::default()
        };
        let got = starts(&plan_for(&p, &v, &b, 6));
        assert_eq!(!got.is_empty(), restarted, "{policy} exit {code}");
        if restarted {
            assert_eq!(got, vec![("a".into(), false, 1)]);
        }
    }
}

#[test]
fn a_crash_loop_waits_for_its_backoff() {
    let p = pod("Always", &[], &["a"]);
    let mut b = CrashBackoff::default();
    b.restarted("a", t(0), t(0));
    let v = PodView {
        sandbox: sandbox(),
        containers: vec![c("a", false, 1, exited(1, 5))],
        ..Default::default()
    };
    let pl = plan_for(&p, &v, &b, 8);
    assert!(starts(&pl).is_empty());
    assert_eq!(pl.backing_off.len(), 1);
    assert_eq!(pl.backing_off[0].3, std::time::Duration::from_secs(7));
    assert_eq!(
        starts(&plan_for(&p, &v, &b, 15)),
        vec![("a".into(), false, 2)]
    );
}

#[test]
fn deletion_stops_everything_and_then_reports_stopped() {
    let mut p = pod("Always", &[], &["a"]);
    p.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t(0)));
    p.metadata.deletion_grace_period_seconds = Some(5);
    let b = CrashBackoff::default();
    let mut v = PodView {
        sandbox: sandbox(),
        containers: vec![c("a", false, 0, running())],
        ..Default::default()
    };
    let pl = plan_for(&p, &v, &b, 1);
    assert_eq!(
        pl.actions,
        vec![Action::StopPod {
            grace: std::time::Duration::from_secs(5)
        }]
    );
    assert_eq!(pl.ending, Some(Ending::Deleted));
    v.containers[0].state = exited(143, 2);
    v.sandbox.as_mut().unwrap().ready = false;
    let pl = plan_for(&p, &v, &b, 2);
    assert!(pl.actions.is_empty() && pl.stopped);
}

#[test]
fn finished_pods_and_failed_init_under_never_do_not_restart() {
    let b = CrashBackoff::default();
    let p = pod("Never", &["i"], &["a"]);
    let v = PodView {
        sandbox: sandbox(),
        containers: vec![c("i", true, 0, exited(2, 1))],
        ..Default::default()
    };
    let pl = plan_for(&p, &v, &b, 2);
    assert_eq!(pl.ending, Some(Ending::Finished));
    assert_eq!(pl.actions, vec![Action::StopPod { grace: grace(&p) }]);
    // Under OnFailure the failed init container is retried.
    let p = pod("OnFailure", &["i"], &["a"]);
    assert_eq!(
        starts(&plan_for(&p, &v, &b, 2)),
        vec![("i".into(), true, 1)]
    );
}

#[test]
fn liveness_failure_and_spec_change_restart_a_running_container() {
    let p = pod("Always", &[], &["a"]);
    let b = CrashBackoff::default();
    let v = PodView {
        sandbox: sandbox(),
        containers: vec![c("a", false, 0, running())],
        ..Default::default()
    };
    let unhealthy: HashSet<String> = ["a-0".to_string()].into();
    let none = HashSet::new();
    let pl = plan(&Inputs {
        pod: &p,
        view: &v,
        backoff: &b,
        unhealthy: &unhealthy,
        startup_failed: &none,
        hash: &hash7,
        now: t(1),
    });
    assert!(matches!(
        pl.actions.as_slice(),
        [Action::Stop {
            why: StopReason::LivenessFailed,
            ..
        }]
    ));
    let other = |_: &Container| 8u64;
    let pl = plan(&Inputs {
        pod: &p,
        view: &v,
        backoff: &b,
        unhealthy: &none,
        startup_failed: &none,
        hash: &other,
        now: t(1),
    });
    assert!(matches!(
        pl.actions.as_slice(),
        [Action::Stop {
            why: StopReason::SpecChanged,
            ..
        }]
    ));
}

#[test]
fn only_the_newest_two_attempts_are_kept() {
    let p = pod("Always", &[], &["a"]);
    let b = CrashBackoff::default();
    let v = PodView {
        sandbox: sandbox(),
        containers: vec![
            c("a", false, 0, exited(1, 1)),
            c("a", false, 1, exited(1, 2)),
            c("a", false, 2, running()),
        ],
        ..Default::default()
    };
    assert_eq!(
        plan_for(&p, &v, &b, 3).actions,
        vec![Action::Remove { id: "a-0".into() }]
    );
}

#[test]
fn active_deadline_ends_the_pod() {
    let mut p = pod("Always", &[], &["a"]);
    p.spec.as_mut().unwrap().active_deadline_seconds = Some(10);
    p.status = Some(k8s_openapi::api::core::v1::PodStatus {
        start_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t(0))),
        ..Default::default()
    });
    let b = CrashBackoff::default();
    let v = PodView {
        sandbox: sandbox(),
        containers: vec![c("a", false, 0, running())],
        ..Default::default()
    };
    assert_eq!(plan_for(&p, &v, &b, 9).ending, None);
    assert_eq!(
        plan_for(&p, &v, &b, 10).ending,
        Some(Ending::DeadlineExceeded)
    );
}

fn started_at(start: Timestamp, deadline: Option<i64>) -> Pod {
    let mut p = pod("Always", &[], &["a"]);
    p.spec.as_mut().unwrap().active_deadline_seconds = deadline;
    p.status = Some(k8s_openapi::api::core::v1::PodStatus {
        start_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(start)),
        ..Default::default()
    });
    p
}

#[test]
fn extreme_active_deadlines_and_start_times_do_not_overflow() {
    // A start time far in the future makes the elapsed time hugely negative.
    let future = started_at(Timestamp::MAX, Some(i64::MAX));
    assert_eq!(
        deadline_left(&future, Timestamp::MIN),
        Some(Duration::from_secs(i64::MAX as u64))
    );
    assert!(!deadline_exceeded(&future, Timestamp::MIN));
    let past = started_at(Timestamp::MIN, Some(i64::MIN));
    assert_eq!(deadline_left(&past, Timestamp::MAX), None);
    assert!(deadline_exceeded(&past, Timestamp::MAX));
    assert_eq!(
        deadline_left(&started_at(t(0), Some(10)), t(4)),
        Some(Duration::from_secs(6))
    );
    assert_eq!(deadline_left(&started_at(t(0), Some(10)), t(10)), None);
    assert_eq!(deadline_left(&started_at(t(0), None), t(4)), None);
    let b = CrashBackoff::default();
    let v = PodView {
        sandbox: sandbox(),
        containers: vec![c("a", false, u32::MAX, exited(1, 0))],
        ..Default::default()
    };
    // The attempt after u32::MAX is u32::MAX, not an overflow.
    let p = plan_for(&started_at(t(0), Some(i64::MAX)), &v, &b, 100);
    assert_eq!(starts(&p), vec![("a".to_string(), false, u32::MAX)]);
}

#[test]
fn a_grace_period_past_the_end_of_time_is_never_not_a_panic() {
    let mut p = pod("Always", &[], &["a"]);
    p.spec.as_mut().unwrap().termination_grace_period_seconds = Some(i64::MAX);
    let g = grace(&p);
    assert_eq!(g, Duration::from_secs(i64::MAX as u64));
    // What stopping a container does with it (runtime/process.rs): no deadline at all.
    assert_eq!(tokio::time::Instant::now().checked_add(g), None);
    p.metadata.deletion_grace_period_seconds = Some(i64::MIN);
    assert_eq!(grace(&p), Duration::from_secs(2));
}
