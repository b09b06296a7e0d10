//! Jobs and CronJobs, as kube-apiserver's printJob and printCronJob.

use serde_json::Value;

use super::{age, arr_at, containers_and_images, format_selector, int_at, name, or_none, str_at};
use crate::table::{duration, Column, Printer, AGE, NAME};

/// Whether the Job has a condition of `ty` with status True.
fn has_condition(o: &Value, ty: &str) -> bool {
    arr_at(o, "/status/conditions").iter().any(|c| {
        c.get("type").and_then(Value::as_str) == Some(ty)
            && c.get("status").and_then(Value::as_str) == Some("True")
    })
}

/// The Status column: the first of Complete, Failed, Terminating, Suspended,
/// FailureTarget, SuccessCriteriaMet that applies, else Running.
fn job_status(o: &Value) -> &'static str {
    if has_condition(o, "Complete") {
        "Complete"
    } else if has_condition(o, "Failed") {
        "Failed"
    } else if o.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else if has_condition(o, "Suspended") {
        "Suspended"
    } else if has_condition(o, "FailureTarget") {
        "FailureTarget"
    } else if has_condition(o, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    }
}

/// `succeeded/completions`; without completions `n/1`, or `n/1 of <parallelism>`.
fn completions(o: &Value) -> String {
    let succeeded = int_at(o, "/status/succeeded");
    match o.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => {
            let parallelism = int_at(o, "/spec/parallelism");
            if parallelism > 1 {
                format!("{succeeded}/1 of {parallelism}")
            } else {
                format!("{succeeded}/1")
            }
        }
    }
}

/// From the start to the completion, or to now while running; empty before the start.
fn job_duration(o: &Value, now: i64) -> String {
    let Some(start) = str_at(o, "/status/startTime").and_then(duration::parse) else {
        return String::new();
    };
    let end = str_at(o, "/status/completionTime")
        .and_then(duration::parse)
        .unwrap_or(now);
    duration::human(end.saturating_sub(start))
}

pub static JOB: Printer = Printer {
    conditions: super::no_conditions,
    columns: &[
        NAME,
        Column::new("Status", "Status of the job."),
        Column::new(
            "Completions",
            "The number of pods which reached phase Succeeded.",
        ),
        Column::new("Duration", "Time required to complete the job."),
        AGE,
        Column::new("Containers", "Names of each container in the template.").wide(),
        Column::new(
            "Images",
            "Images referenced by each container in the template.",
        )
        .wide(),
        Column::new(
            "Selector",
            "A label query over pods that should match the pod count.",
        )
        .wide(),
    ],
    cells: |o, now| {
        let (names, images) = containers_and_images(o, "/spec/template/spec");
        vec![
            name(o),
            job_status(o).into(),
            completions(o).into(),
            job_duration(o, now).into(),
            age(o, now),
            names,
            images,
            or_none(&format_selector(o.pointer("/spec/selector"))),
        ]
    },
};

/// `True`/`False`, `<unset>` when absent.
fn suspend(o: &Value) -> Value {
    match o.pointer("/spec/suspend").and_then(Value::as_bool) {
        Some(true) => "True".into(),
        Some(false) => "False".into(),
        None => "<unset>".into(),
    }
}

pub static CRONJOB: Printer = Printer {
    conditions: super::no_conditions,
    columns: &[
        NAME,
        Column::new("Schedule", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
        Column::new("Timezone", "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones."),
        Column::new("Suspend", "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.").of("boolean"),
        Column::new("Active", "A list of pointers to currently running jobs.").of("integer"),
        Column::new("Last Schedule", "Information when was the last time the job was successfully scheduled."),
        AGE,
        Column::new("Containers", "Names of each container in the template.").wide(),
        Column::new("Images", "Images referenced by each container in the template.").wide(),
        Column::new("Selector", "A label query over pods that should match the pod count.").wide(),
    ],
    cells: |o, now| {
        let (names, images) = containers_and_images(o, "/spec/jobTemplate/spec/template/spec");
        let last = match str_at(o, "/status/lastScheduleTime").and_then(duration::parse) {
            Some(t) => duration::human(now.saturating_sub(t)),
            None => "<none>".into(),
        };
        vec![
            name(o),
            str_at(o, "/spec/schedule").unwrap_or("").into(),
            or_none(str_at(o, "/spec/timeZone").unwrap_or("")),
            suspend(o),
            u64::try_from(arr_at(o, "/status/active").len()).unwrap_or(u64::MAX).into(),
            last.into(),
            age(o, now),
            names,
            images,
            or_none(&format_selector(o.pointer("/spec/jobTemplate/spec/selector"))),
        ]
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cronjob_columns_as_kube() {
        let now = duration::parse("2026-01-01T00:10:00Z").unwrap();
        let cj = json!({
            "metadata": {"name": "nightly", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"schedule": "0 3 * * *", "suspend": false,
                     "jobTemplate": {"spec": {"template": {"spec": {"containers": [
                         {"name": "c", "image": "busybox"}]}}}}},
            "status": {"active": [{"name": "nightly-1"}], "lastScheduleTime": "2026-01-01T00:07:00Z"}
        });
        let cells = (CRONJOB.cells)(&cj, now);
        let cells: Vec<String> = cells
            .iter()
            .map(|c| c.to_string().trim_matches('"').to_string())
            .collect();
        assert_eq!(
            cells,
            [
                "nightly",
                "0 3 * * *",
                "<none>",
                "False",
                "1",
                "3m",
                "10m",
                "c",
                "busybox",
                "<none>"
            ]
        );
    }

    #[test]
    fn columns_as_kube() {
        let now = duration::parse("2026-01-01T00:10:00Z").unwrap();
        let running = json!({
            "metadata": {"name": "pi", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"completions": 5, "parallelism": 2},
            "status": {"succeeded": 2, "startTime": "2026-01-01T00:00:00Z"}
        });
        let cells = (JOB.cells)(&running, now);
        assert_eq!(cells[1], "Running");
        assert_eq!(cells[2], "2/5");
        assert_eq!(cells[3], "10m");
        let done = json!({
            "metadata": {"name": "pi"},
            "spec": {"parallelism": 3},
            "status": {"succeeded": 1, "startTime": "2026-01-01T00:00:00Z",
                       "completionTime": "2026-01-01T00:00:42Z",
                       "conditions": [{"type": "SuccessCriteriaMet", "status": "True"},
                                      {"type": "Complete", "status": "True"}]}
        });
        let cells = (JOB.cells)(&done, now);
        assert_eq!(cells[1], "Complete");
        assert_eq!(cells[2], "1/1 of 3");
        assert_eq!(cells[3], "42s");
        let suspended = json!({"metadata": {"name": "s"}, "spec": {"parallelism": 1},
            "status": {"conditions": [{"type": "Suspended", "status": "True"}]}});
        let cells = (JOB.cells)(&suspended, now);
        assert_eq!(cells[1], "Suspended");
        assert_eq!(cells[2], "0/1");
        assert_eq!(cells[3], "");
    }
}
