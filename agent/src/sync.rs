//! What to do next for one pod: a pure function of its spec, what the runtime holds for
//! it, the crash-loop backoff and the probe results (the kubelet's computePodActions).
//!
//! The plan is one step at a time: the worker executes it, looks at the runtime again and
//! plans anew, so a plan never assumes its own effects.

use std::collections::HashSet;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod};

use crate::crashloop::CrashBackoff;
use crate::runtime::{ContainerState, ContainerStatus, PodView};

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Stop every container and the sandbox, each with this grace.
    StopPod {
        grace: Duration,
    },
    CreateSandbox,
    Start {
        name: String,
        init: bool,
        attempt: u32,
        /// The exit time of the attempt this one replaces, for the crash-loop backoff.
        replaces_exit: Option<Timestamp>,
    },
    Stop {
        id: String,
        name: String,
        grace: Duration,
        why: StopReason,
    },
    /// Remove an old exited attempt (the newest two of each container are kept).
    Remove {
        id: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    LivenessFailed,
    StartupFailed,
    SpecChanged,
}

/// Why a pod is being stopped for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Deleted,
    DeadlineExceeded,
    /// Every container has finished and none will restart.
    Finished,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Containers waiting for their crash-loop backoff: (name, init, window, remaining).
    pub backing_off: Vec<(String, bool, Duration, Duration)>,
    pub ending: Option<Ending>,
    /// Everything is stopped and the pod is ending: the worker may finish it.
    pub stopped: bool,
}

pub struct Inputs<'a> {
    pub pod: &'a Pod,
    pub view: &'a PodView,
    pub backoff: &'a CrashBackoff,
    /// Container ids whose liveness (or startup) probe has failed past its threshold.
    pub unhealthy: &'a HashSet<String>,
    pub startup_failed: &'a HashSet<String>,
    /// The hash each container's spec has now.
    pub hash: &'a dyn Fn(&Container) -> u64,
    pub now: Timestamp,
}

/// The key of a container in the crash-loop backoff.
pub fn backoff_key(name: &str, init: bool) -> String {
    format!("{}{name}", if init { "init:" } else { "" })
}

fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

/// The grace period a stop gets: the deletion's, else the spec's (default 30 s).
pub fn grace(pod: &Pod) -> Duration {
    let secs = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30)
        .max(0);
    // A grace of 0 still gets a moment for SIGTERM, as the kubelet's minimum of 2 s.
    Duration::from_secs(secs.max(2) as u64)
}

fn exited(c: &ContainerStatus) -> Option<(i32, Timestamp)> {
    match &c.state {
        ContainerState::Exited {
            exit_code,
            finished_at,
            ..
        } => Some((*exit_code, *finished_at)),
        _ => None,
    }
}

/// Whether an attempt that exited with `code` is restarted under `policy`.
pub fn restarts(policy: &str, code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => code != 0,
        _ => true,
    }
}

pub fn deadline_exceeded(pod: &Pod, now: Timestamp) -> bool {
    let Some(secs) = pod.spec.as_ref().and_then(|s| s.active_deadline_seconds) else {
        return false;
    };
    let Some(start) = pod.status.as_ref().and_then(|s| s.start_time.as_ref()) else {
        return false;
    };
    now.duration_since(start.0).as_secs() >= secs
}

/// How long until the pod's activeDeadlineSeconds runs out; `None` without a deadline or
/// a start time, or once it has run out. Saturating: whatever deadline and start time
/// (even one far in the future) a client wrote.
pub fn deadline_left(pod: &Pod, now: Timestamp) -> Option<Duration> {
    let secs = pod.spec.as_ref()?.active_deadline_seconds?;
    let start = pod.status.as_ref()?.start_time.as_ref()?;
    let left = secs.saturating_sub(now.duration_since(start.0).as_secs());
    (left > 0).then(|| Duration::from_secs(left.unsigned_abs()))
}

/// The pod has reached a phase it never leaves.
pub fn terminal_phase(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

pub fn plan(i: &Inputs) -> Plan {
    let mut plan = Plan::default();
    let Some(spec) = i.pod.spec.as_ref() else {
        return plan;
    };
    let policy = restart_policy(i.pod);
    let sandbox_ready = i.view.sandbox.as_ref().is_some_and(|s| s.ready);

    // Old attempts beyond the newest two of each container go.
    for c in &i.view.containers {
        if !c.running() {
            let newer = i
                .view
                .containers
                .iter()
                .filter(|o| o.name == c.name && o.init == c.init && o.attempt > c.attempt)
                .count();
            if newer >= 2 {
                plan.actions.push(Action::Remove { id: c.id.clone() });
            }
        }
    }

    plan.ending = if i.pod.metadata.deletion_timestamp.is_some() {
        Some(Ending::Deleted)
    } else if deadline_exceeded(i.pod, i.now) {
        Some(Ending::DeadlineExceeded)
    } else if terminal_phase(i.pod) || finished(i, policy) {
        Some(Ending::Finished)
    } else {
        None
    };
    if plan.ending.is_some() {
        if i.view.any_running() || sandbox_ready {
            plan.actions.push(Action::StopPod {
                grace: grace(i.pod),
            });
        } else {
            plan.stopped = true;
        }
        return plan;
    }

    if !sandbox_ready {
        if i.view.any_running() {
            plan.actions.push(Action::StopPod {
                grace: grace(i.pod),
            });
        }
        plan.actions.push(Action::CreateSandbox);
        return plan;
    }

    // Init containers, in order; each must succeed before the next starts.
    for c in spec.init_containers.iter().flatten() {
        match i.view.latest(&c.name, true) {
            None => {
                plan.actions.push(start(&c.name, true, 0, None));
                return plan;
            }
            Some(s) => match exited(s) {
                None => return plan, // running (or created): wait for it
                Some((0, _)) => continue,
                Some((_, at)) => {
                    if policy == "Never" {
                        return plan; // the pod has failed; `finished` ends it next
                    }
                    restart_or_wait(&mut plan, i, &c.name, true, s.attempt, at);
                    return plan;
                }
            },
        }
    }

    for c in &spec.containers {
        match i.view.latest(&c.name, false) {
            None => plan.actions.push(start(&c.name, false, 0, None)),
            Some(s) => match &s.state {
                ContainerState::Running { .. } | ContainerState::Created => {
                    let why = if i.startup_failed.contains(&s.id) {
                        Some(StopReason::StartupFailed)
                    } else if i.unhealthy.contains(&s.id) {
                        Some(StopReason::LivenessFailed)
                    } else if s.hash != (i.hash)(c) {
                        Some(StopReason::SpecChanged)
                    } else {
                        None
                    };
                    if let Some(why) = why {
                        plan.actions.push(Action::Stop {
                            id: s.id.clone(),
                            name: c.name.clone(),
                            grace: grace(i.pod),
                            why,
                        });
                    }
                }
                ContainerState::Exited {
                    exit_code,
                    finished_at,
                    ..
                } => {
                    if restarts(policy, *exit_code) {
                        restart_or_wait(&mut plan, i, &c.name, false, s.attempt, *finished_at);
                    }
                }
            },
        }
    }
    plan
}

fn start(name: &str, init: bool, attempt: u32, replaces_exit: Option<Timestamp>) -> Action {
    Action::Start {
        name: name.to_string(),
        init,
        attempt,
        replaces_exit,
    }
}

fn restart_or_wait(
    plan: &mut Plan,
    i: &Inputs,
    name: &str,
    init: bool,
    attempt: u32,
    at: Timestamp,
) {
    let key = backoff_key(name, init);
    match i.backoff.remaining(&key, at, i.now) {
        None => plan
            .actions
            .push(start(name, init, attempt.saturating_add(1), Some(at))),
        Some(left) => plan
            .backing_off
            .push((name.to_string(), init, i.backoff.delay(&key), left)),
    }
}

/// Every container has run and none will run again: an init container failed under
/// `Never`, or all app containers exited and the policy restarts none of them.
fn finished(i: &Inputs, policy: &str) -> bool {
    let Some(spec) = i.pod.spec.as_ref() else {
        return false;
    };
    let init_failed = spec.init_containers.iter().flatten().any(|c| {
        i.view
            .latest(&c.name, true)
            .and_then(exited)
            .is_some_and(|(code, _)| code != 0 && policy == "Never")
    });
    if init_failed {
        return true;
    }
    !spec.containers.is_empty()
        && spec.containers.iter().all(|c| {
            i.view
                .latest(&c.name, false)
                .and_then(exited)
                .is_some_and(|(code, _)| !restarts(policy, code))
        })
}

#[cfg(test)]
mod tests;
