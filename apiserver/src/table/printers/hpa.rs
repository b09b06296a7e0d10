//! HorizontalPodAutoscalers (autoscaling/v2, the stored form): kube's REFERENCE
//! (`Kind/name`), TARGETS (current/target of the first two metrics, then `+ N more...`),
//! MINPODS, MAXPODS and REPLICAS.

use serde_json::Value;

use super::{age, arr_at, int_at, name, str_at};
use crate::table::{Column, Printer, AGE, NAME};

pub static HORIZONTALPODAUTOSCALER: Printer = Printer {
    conditions: super::no_conditions,
    columns: &[
        NAME,
        Column::new(
            "Reference",
            "scaleTargetRef points to the target resource to scale, and is used to the pods for which metrics should be collected, as well as to actually change the replica count.",
        ),
        Column::new(
            "Targets",
            "metrics contains the specifications for which to use to calculate the desired replica count (the maximum replica count across all metrics will be used).",
        ),
        Column::new(
            "MinPods",
            "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.  It defaults to 1 pod.",
        ),
        Column::new(
            "MaxPods",
            "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up. It cannot be less that minReplicas.",
        )
        .of("integer"),
        Column::new(
            "Replicas",
            "currentReplicas is current number of replicas of pods managed by this autoscaler, as last seen by the autoscaler.",
        )
        .of("integer"),
        AGE,
    ],
    cells: |o, now| {
        let reference = format!(
            "{}/{}",
            str_at(o, "/spec/scaleTargetRef/kind").unwrap_or(""),
            str_at(o, "/spec/scaleTargetRef/name").unwrap_or("")
        );
        let min = match o.pointer("/spec/minReplicas").and_then(Value::as_i64) {
            Some(m) => m.to_string(),
            None => "<unset>".into(),
        };
        vec![
            name(o),
            reference.into(),
            targets(arr_at(o, "/spec/metrics"), arr_at(o, "/status/currentMetrics")).into(),
            min.into(),
            int_at(o, "/spec/maxReplicas").into(),
            int_at(o, "/status/currentReplicas").into(),
            age(o, now),
        ]
    },
};

/// kube's `formatHPAMetrics`: each spec metric beside the status at the same index.
fn targets(specs: &[Value], statuses: &[Value]) -> String {
    if specs.is_empty() {
        return "<none>".into();
    }
    let unknown = || "<unknown>".to_string();
    let q = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_string);
    let shown: Vec<String> = specs
        .iter()
        .take(2)
        .enumerate()
        .map(|(i, m)| {
            let st = statuses.get(i).unwrap_or(&Value::Null);
            match m["type"].as_str().unwrap_or("") {
                "External" | "Object" => {
                    let f = if m["type"] == "External" {
                        "external"
                    } else {
                        "object"
                    };
                    let t = &m[f]["target"];
                    match q(t, "/averageValue") {
                        Some(avg) => format!(
                            "{}/{avg} (avg)",
                            q(&st[f], "/current/averageValue").unwrap_or_else(unknown)
                        ),
                        None => format!(
                            "{}/{}",
                            q(&st[f], "/current/value").unwrap_or_else(unknown),
                            q(t, "/value").unwrap_or_else(unknown)
                        ),
                    }
                }
                "Pods" => format!(
                    "{}/{}",
                    q(&st["pods"], "/current/averageValue").unwrap_or_else(unknown),
                    q(&m["pods"]["target"], "/averageValue").unwrap_or_else(unknown)
                ),
                ty @ ("Resource" | "ContainerResource") => {
                    let f = if ty == "Resource" {
                        "resource"
                    } else {
                        "containerResource"
                    };
                    let src = &m[f];
                    let cur = &st[f]["current"];
                    let res = src["name"].as_str().unwrap_or("");
                    match q(&src["target"], "/averageValue") {
                        Some(avg) => format!(
                            "{res}: {}/{avg}",
                            q(cur, "/averageValue").unwrap_or_else(unknown)
                        ),
                        None => {
                            let pct = |v: &Value| {
                                v.get("averageUtilization")
                                    .and_then(Value::as_i64)
                                    .map(|p| format!("{p}%"))
                            };
                            format!(
                                "{res}: {}/{}",
                                pct(cur).unwrap_or_else(unknown),
                                pct(&src["target"]).unwrap_or_else(|| "<auto>".into())
                            )
                        }
                    }
                }
                _ => "<unknown type>".into(),
            }
        })
        .collect();
    let mut out = shown.join(", ");
    if specs.len() > 2 {
        out.push_str(&format!(" + {} more...", specs.len() - 2));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn targets_are_kubes() {
        let cpu = json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}});
        let mem = json!({"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "200Mi"}}});
        let ext = json!({"type": "External", "external": {"metric": {"name": "q"}, "target": {"type": "Value", "value": "3"}}});
        assert_eq!(targets(&[], &[]), "<none>");
        assert_eq!(targets(&[cpu.clone()], &[]), "cpu: <unknown>/80%");
        let st = json!({"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 45, "averageValue": "90m"}}});
        assert_eq!(targets(&[cpu.clone()], &[st.clone()]), "cpu: 45%/80%");
        assert_eq!(
            targets(&[cpu, mem, ext], &[st]),
            "cpu: 45%/80%, memory: <unknown>/200Mi + 1 more..."
        );
    }
}
