//! A pod's status from what the runtime holds: phase, conditions and container statuses as
//! the kubelet computes them (generateAPIPodStatus, getPhase). Pure: the previous status is
//! an input so transition times and terminal phases are kept.

use std::collections::{HashMap, HashSet};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    Container, ContainerState as KState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus as KStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::runtime::{ContainerState, ContainerStatus, PodView};
use crate::sync::{Ending, Plan};

pub struct Inputs<'a> {
    pub pod: &'a Pod,
    pub view: &'a PodView,
    pub plan: &'a Plan,
    /// The last failure to start a container, by name: (waiting reason, message).
    pub start_errors: &'a HashMap<String, (String, String)>,
    /// Container ids whose readiness probe passes (or that have none).
    pub ready: &'a HashSet<String>,
    /// Container ids whose startup probe has passed (or that have none).
    pub started: &'a HashSet<String>,
    pub runtime: &'a str,
    pub host_ip: &'a str,
    pub now: Timestamp,
}

fn terminated(s: &ContainerStatus) -> Option<ContainerStateTerminated> {
    match &s.state {
        ContainerState::Exited {
            exit_code,
            started_at,
            finished_at,
            reason,
            message,
        } => Some(ContainerStateTerminated {
            exit_code: *exit_code,
            reason: Some(reason.clone()),
            message: message.clone(),
            started_at: started_at.map(Time),
            finished_at: Some(Time(*finished_at)),
            container_id: Some(container_id(s, "")),
            signal: None,
        }),
        _ => None,
    }
}

fn container_id(s: &ContainerStatus, runtime: &str) -> String {
    if runtime.is_empty() {
        return s.id.clone();
    }
    format!("{runtime}://{}", s.id)
}

fn waiting(reason: &str, message: Option<String>) -> KState {
    KState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message,
        }),
        ..Default::default()
    }
}

fn container_status(i: &Inputs, c: &Container, init: bool, pod_initializing: bool) -> KStatus {
    let latest = i.view.latest(&c.name, init);
    let previous = i.view.previous(&c.name, init);
    let mut st = KStatus {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        image_id: String::new(),
        restart_count: latest.map_or(0, |l| l.attempt as i32),
        ready: false,
        started: Some(false),
        ..Default::default()
    };
    let fix_id = |mut t: ContainerStateTerminated, s: &ContainerStatus| {
        t.container_id = Some(container_id(s, i.runtime));
        t
    };
    let backing_off = i
        .plan
        .backing_off
        .iter()
        .find(|(n, ini, _, _)| n == &c.name && *ini == init);
    match latest {
        None => {
            let (reason, msg) = match i.start_errors.get(&c.name) {
                Some((r, m)) => (r.as_str(), Some(m.clone())),
                None if pod_initializing => ("PodInitializing", None),
                None => ("ContainerCreating", None),
            };
            st.state = Some(waiting(reason, msg));
        }
        Some(l) => {
            st.container_id = Some(container_id(l, i.runtime));
            st.image_id = l.image_id.clone();
            match &l.state {
                ContainerState::Running { started_at } => {
                    st.state = Some(KState {
                        running: Some(ContainerStateRunning {
                            started_at: Some(Time(*started_at)),
                        }),
                        ..Default::default()
                    });
                    let started = i.started.contains(&l.id);
                    st.started = Some(started);
                    st.ready = started && i.ready.contains(&l.id) && !init;
                    if let Some(p) = previous.and_then(terminated) {
                        st.last_state = Some(KState {
                            terminated: Some(fix_id(p, previous.unwrap_or(l))),
                            ..Default::default()
                        });
                    }
                }
                ContainerState::Created => {
                    st.state = Some(waiting("ContainerCreating", None));
                }
                ContainerState::Exited { .. } => {
                    let t = terminated(l).map(|t| fix_id(t, l));
                    let restarting = match i.start_errors.get(&c.name) {
                        Some((r, m)) => Some((r.clone(), Some(m.clone()))),
                        None => backing_off.map(|(_, _, window, _)| {
                            (
                                "CrashLoopBackOff".to_string(),
                                Some(format!(
                                    "back-off {}s restarting failed container={} pod={}_{}({})",
                                    window.as_secs(),
                                    c.name,
                                    i.pod.metadata.name.as_deref().unwrap_or(""),
                                    i.pod.metadata.namespace.as_deref().unwrap_or(""),
                                    i.pod.metadata.uid.as_deref().unwrap_or("")
                                )),
                            )
                        }),
                    };
                    match restarting {
                        Some((reason, msg)) => {
                            st.state = Some(waiting(&reason, msg));
                            st.last_state = t.map(|t| KState {
                                terminated: Some(t),
                                ..Default::default()
                            });
                        }
                        None => {
                            st.state = Some(KState {
                                terminated: t,
                                ..Default::default()
                            });
                            if let Some(p) = previous.and_then(terminated) {
                                st.last_state = Some(KState {
                                    terminated: Some(fix_id(p, previous.unwrap_or(l))),
                                    ..Default::default()
                                });
                            }
                        }
                    }
                }
            }
        }
    }
    st
}

fn is_terminated(s: &KStatus) -> Option<i32> {
    s.state
        .as_ref()
        .and_then(|st| st.terminated.as_ref())
        .map(|t| t.exit_code)
}

/// The kubelet's getPhase over the app containers, after the init containers.
fn phase(init: &[KStatus], apps: &[KStatus], policy: &str) -> &'static str {
    for s in init {
        match is_terminated(s) {
            Some(0) => continue,
            Some(_) if policy == "Never" => return "Failed",
            _ => return "Pending",
        }
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in apps {
        let st = s.state.as_ref();
        if st.and_then(|x| x.running.as_ref()).is_some() {
            running += 1;
        } else if let Some(code) = is_terminated(s) {
            stopped += 1;
            if code == 0 {
                succeeded += 1;
            }
        } else if s
            .last_state
            .as_ref()
            .and_then(|l| l.terminated.as_ref())
            .is_some()
        {
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped == 0 {
        "Pending"
    } else if policy == "Always" {
        "Running"
    } else if stopped == succeeded {
        "Succeeded"
    } else if policy == "Never" {
        "Failed"
    } else {
        "Running"
    }
}

fn condition(
    prev: Option<&PodStatus>,
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    now: Timestamp,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let old = prev
        .and_then(|p| p.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_));
    let since = match old {
        Some(o) if o.status == status => o.last_transition_time.clone(),
        _ => Some(Time(now)),
    };
    PodCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.map(String::from),
        last_transition_time: since,
        ..Default::default()
    }
}

pub fn compute(i: &Inputs) -> PodStatus {
    let prev = i.pod.status.as_ref();
    let spec = i.pod.spec.clone().unwrap_or_default();
    let policy = spec
        .restart_policy
        .as_deref()
        .unwrap_or("Always")
        .to_string();
    let init: Vec<KStatus> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| container_status(i, c, true, false))
        .collect();
    let initialized = init.iter().all(|s| is_terminated(s) == Some(0));
    let apps: Vec<KStatus> = spec
        .containers
        .iter()
        .map(|c| container_status(i, c, false, !initialized))
        .collect();

    let prev_phase = prev.and_then(|p| p.phase.as_deref());
    let mut reason = None;
    let mut message = None;
    let phase = match (prev_phase, i.plan.ending) {
        (Some(p @ ("Succeeded" | "Failed")), _) => p.to_string(),
        (_, Some(Ending::DeadlineExceeded)) => {
            reason = Some("DeadlineExceeded".to_string());
            message =
                Some("Pod was active on the node longer than the specified deadline".to_string());
            "Failed".to_string()
        }
        // A deleted pod whose containers are stopped ends in a terminal phase before the
        // object goes (the kubelet since 1.27), so a Job's pod-replacement policy `Failed`
        // and its pod failure policy see how it ended.
        (_, Some(Ending::Deleted)) if i.plan.stopped => {
            let all_ok = !apps.is_empty() && apps.iter().all(|s| is_terminated(s) == Some(0));
            if all_ok { "Succeeded" } else { "Failed" }.to_string()
        }
        _ => phase(&init, &apps, &policy).to_string(),
    };
    let terminal = phase == "Succeeded" || phase == "Failed";
    let containers_ready = !terminal && apps.iter().all(|s| s.ready);
    let ready_reason = (!containers_ready).then_some(if terminal {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    });
    let sandbox_ready = i.view.sandbox.as_ref().is_some_and(|s| s.ready);
    let mut conditions = vec![
        condition(
            prev,
            "PodReadyToStartContainers",
            sandbox_ready,
            None,
            i.now,
        ),
        condition(
            prev,
            "Initialized",
            initialized,
            (!initialized).then_some("ContainersNotInitialized"),
            i.now,
        ),
        condition(prev, "Ready", containers_ready, ready_reason, i.now),
        condition(
            prev,
            "ContainersReady",
            containers_ready,
            ready_reason,
            i.now,
        ),
    ];
    // The scheduler's condition is kept as it wrote it.
    if let Some(ps) = prev
        .and_then(|p| p.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
    {
        conditions.push(ps.clone());
    } else {
        conditions.push(condition(prev, "PodScheduled", true, None, i.now));
    }
    let pod_ip = i
        .view
        .sandbox
        .as_ref()
        .and_then(|s| s.ip.clone())
        .or_else(|| prev.and_then(|p| p.pod_ip.clone()));
    PodStatus {
        phase: Some(phase),
        reason: reason.or_else(|| prev.and_then(|p| p.reason.clone())),
        message: message.or_else(|| prev.and_then(|p| p.message.clone())),
        conditions: Some(conditions),
        host_ip: Some(i.host_ip.to_string()),
        host_ips: Some(vec![HostIP {
            ip: i.host_ip.to_string(),
        }]),
        pod_ips: pod_ip.clone().map(|ip| vec![PodIP { ip }]),
        pod_ip,
        start_time: prev
            .and_then(|p| p.start_time.clone())
            .or(Some(Time(i.now))),
        qos_class: prev.and_then(|p| p.qos_class.clone()),
        init_container_statuses: (!init.is_empty()).then_some(init),
        container_statuses: Some(apps),
        nominated_node_name: prev.and_then(|p| p.nominated_node_name.clone()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
