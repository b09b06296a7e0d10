//! Pods: NAME READY STATUS RESTARTS AGE, wide IP NODE NOMINATED NODE READINESS GATES.
//! STATUS is the reason kubectl users know (ContainerCreating, CrashLoopBackOff,
//! Init:0/1, Terminating, Completed, ...), computed as kube-apiserver's pod printer does.

use serde_json::{json, Value};

use super::{age, arr_at, int_at, name, or_none, str_at};
use crate::table::{duration, Column, Printer, AGE, NAME};

pub static PRINTER: Printer = Printer {
    conditions: conditions,
    columns: &[
        NAME,
        Column::new("Ready", "Ready containers of all containers."),
        Column::new("Status", "The aggregate status of the containers."),
        Column::new("Restarts", "Container restarts, and when the last one was."),
        AGE,
        Column::new("IP", "The pod's IP address.").wide(),
        Column::new("Node", "The node the pod is bound to.").wide(),
        Column::new("Nominated Node", "The node preemption nominated.").wide(),
        Column::new("Readiness Gates", "Readiness gates that are true.").wide(),
    ],
    cells,
};

fn condition_true(o: &Value, ty: &str) -> bool {
    arr_at(o, "/status/conditions")
        .iter()
        .any(|c| str_at(c, "/type") == Some(ty) && str_at(c, "/status") == Some("True"))
}

/// The latest `lastState.terminated.finishedAt` seen, as Unix seconds.
fn later(current: Option<i64>, status: &Value) -> Option<i64> {
    let t = str_at(status, "/lastState/terminated/finishedAt").and_then(duration::parse);
    match (current, t) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn terminated_reason(t: &Value, prefix: &str) -> String {
    if let Some(r) = str_at(t, "/reason").filter(|r| !r.is_empty()) {
        return format!("{prefix}{r}");
    }
    let signal = int_at(t, "/signal");
    if signal != 0 {
        format!("{prefix}Signal:{signal}")
    } else {
        format!("{prefix}ExitCode:{}", int_at(t, "/exitCode"))
    }
}

fn cells(o: &Value, now: i64) -> Vec<Value> {
    let spec_inits = arr_at(o, "/spec/initContainers");
    let restartable = |name: Option<&str>| {
        spec_inits
            .iter()
            .any(|c| str_at(c, "/name") == name && str_at(c, "/restartPolicy") == Some("Always"))
    };
    let total = arr_at(o, "/spec/containers").len()
        + spec_inits
            .iter()
            .filter(|c| str_at(c, "/restartPolicy") == Some("Always"))
            .count();
    let phase = str_at(o, "/status/phase").unwrap_or("");
    let mut reason = str_at(o, "/status/reason")
        .filter(|r| !r.is_empty())
        .unwrap_or(phase)
        .to_string();
    if arr_at(o, "/status/conditions").iter().any(|c| {
        str_at(c, "/type") == Some("PodScheduled")
            && str_at(c, "/reason") == Some("SchedulingGated")
    }) {
        reason = "SchedulingGated".into();
    }
    let mut ready = 0;
    let mut restarts = 0;
    let mut last_restart: Option<i64> = None;
    let mut sidecar_restarts = 0;
    let mut sidecar_last: Option<i64> = None;
    let mut initializing = false;
    for (i, s) in arr_at(o, "/status/initContainerStatuses")
        .iter()
        .enumerate()
    {
        let count = int_at(s, "/restartCount");
        restarts += count;
        last_restart = later(last_restart, s);
        let sidecar = restartable(str_at(s, "/name"));
        if sidecar {
            sidecar_restarts += count;
            sidecar_last = later(sidecar_last, s);
        }
        let terminated = s.pointer("/state/terminated");
        let waiting_reason = str_at(s, "/state/waiting/reason").unwrap_or("");
        if terminated.is_some_and(|t| int_at(t, "/exitCode") == 0) {
            continue;
        }
        if sidecar && s.get("started").and_then(Value::as_bool) == Some(true) {
            if s.get("ready").and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        reason = if let Some(t) = terminated {
            terminated_reason(t, "Init:")
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{}", spec_inits.len())
        };
        initializing = true;
        break;
    }
    if !initializing || condition_true(o, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = sidecar_last;
        let mut running = false;
        for s in arr_at(o, "/status/containerStatuses").iter().rev() {
            restarts += int_at(s, "/restartCount");
            last_restart = later(last_restart, s);
            let waiting_reason = str_at(s, "/state/waiting/reason").unwrap_or("");
            let terminated = s.pointer("/state/terminated");
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(t) = terminated {
                reason = terminated_reason(t, "");
            } else if s.get("ready").and_then(Value::as_bool) == Some(true)
                && s.pointer("/state/running").is_some()
            {
                running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && running {
            reason = if condition_true(o, "Ready") {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }
    if o.pointer("/metadata/deletionTimestamp")
        .is_some_and(|d| !d.is_null())
    {
        if str_at(o, "/status/reason") == Some("NodeLost") {
            reason = "Unknown".into();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".into();
        }
    }
    let restarts_text = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", duration::human(now - t)),
        _ => restarts.to_string(),
    };
    let ip = str_at(o, "/status/podIPs/0/ip")
        .or_else(|| str_at(o, "/status/podIP"))
        .unwrap_or("");
    let gates = arr_at(o, "/spec/readinessGates");
    let gates_text = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let t = gates
            .iter()
            .filter(|g| str_at(g, "/conditionType").is_some_and(|ty| condition_true(o, ty)))
            .count();
        format!("{t}/{}", gates.len())
    };
    vec![
        name(o),
        format!("{ready}/{total}").into(),
        reason.into(),
        restarts_text.into(),
        age(o, now),
        or_none(ip),
        or_none(str_at(o, "/spec/nodeName").unwrap_or("")),
        or_none(str_at(o, "/status/nominatedNodeName").unwrap_or("")),
        gates_text.into(),
    ]
}

/// A finished pod's row says so (kubectl uses it to hide completed pods on request).
pub fn conditions(o: &Value) -> Option<Value> {
    let (reason, message) = match str_at(o, "/status/phase")? {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{ "type": "Completed", "status": "True", "reason": reason, "message": message }]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(pod: Value) -> (String, String, String) {
        let c = cells(&pod, 1_000_000);
        let s = |i: usize| c[i].as_str().unwrap_or("").to_string();
        (s(1), s(2), s(3))
    }

    #[test]
    fn statuses_as_kubectl_shows_them() {
        let running = json!({
            "kind": "Pod", "metadata": {"name": "a"},
            "spec": {"containers": [{"name": "c"}, {"name": "d"}]},
            "status": {"phase": "Running", "containerStatuses": [
                {"name": "c", "ready": true, "restartCount": 2, "state": {"running": {}},
                 "lastState": {"terminated": {"finishedAt": "1970-01-12T13:43:20Z"}}},
                {"name": "d", "ready": false, "restartCount": 0,
                 "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}
        });
        // 1970-01-12T13:43:20Z is 999,800 s: 200 s before "now".
        assert_eq!(
            status_of(running),
            (
                "1/2".into(),
                "CrashLoopBackOff".into(),
                "2 (3m20s ago)".into()
            )
        );
        let init = json!({
            "kind": "Pod", "metadata": {"name": "a"},
            "spec": {"initContainers": [{"name": "i"}, {"name": "j"}], "containers": [{"name": "c"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "i", "state": {"terminated": {"exitCode": 0}}},
                {"name": "j", "state": {"waiting": {"reason": "PodInitializing"}}}]}
        });
        assert_eq!(status_of(init).1, "Init:1/2");
        let done = json!({
            "kind": "Pod", "metadata": {"name": "a", "deletionTimestamp": "1970-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Succeeded", "containerStatuses": [
                {"name": "c", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}
        });
        assert_eq!(status_of(done.clone()).1, "Completed");
        assert!(conditions(&done).is_some());
        let deleting = json!({
            "kind": "Pod", "metadata": {"name": "a", "deletionTimestamp": "1970-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Running"}
        });
        assert_eq!(status_of(deleting).1, "Terminating");
        let pending = json!({"kind": "Pod", "metadata": {"name": "a"},
            "spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Pending"}});
        assert_eq!(
            status_of(pending),
            ("0/1".into(), "Pending".into(), "0".into())
        );
    }
}
