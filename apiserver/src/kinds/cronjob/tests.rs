use super::*;
use serde_json::json;

fn cronjob(spec: serde_json::Value) -> CronJob {
    let mut v = json!({
        "metadata": {"name": "nightly", "namespace": "default", "uid": "u-1"},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "OnFailure",
            "containers": [{"name": "c", "image": "busybox"}]
        }}}}}
    });
    for (k, val) in spec.as_object().unwrap() {
        v["spec"][k] = val.clone();
    }
    let mut cj: CronJob = serde_json::from_value(v).unwrap();
    CronJobs::default(&mut cj);
    cj
}

fn messages(cj: &CronJob) -> Vec<String> {
    CronJobs::validate(cj)
        .iter()
        .map(|e| format!("{}: {}", e.field, e.detail))
        .collect()
}

#[test]
fn defaults_as_kube() {
    let cj = cronjob(json!({}));
    let spec = cj.spec.as_ref().unwrap();
    assert_eq!(spec.concurrency_policy.as_deref(), Some("Allow"));
    assert_eq!(spec.suspend, Some(false));
    assert_eq!(spec.successful_jobs_history_limit, Some(3));
    assert_eq!(spec.failed_jobs_history_limit, Some(1));
    assert!(spec.starting_deadline_seconds.is_none());
    // The Job's own defaults wait for the Job; the pod template's do not.
    let job = spec.job_template.spec.as_ref().unwrap();
    assert!(job.backoff_limit.is_none());
    let pod = job.template.spec.as_ref().unwrap();
    assert_eq!(pod.dns_policy.as_deref(), Some("ClusterFirst"));
    assert!(messages(&cj).is_empty(), "{:?}", messages(&cj));
}

#[test]
fn schedules_and_time_zones() {
    for (schedule, tz, want) in [
        ("@hourly", None, None),
        ("*/5 * * * mon-fri", Some("Europe/Berlin"), None),
        ("@every 2h", None, None),
        ("", None, Some("spec.schedule: ")),
        ("* * * *", None, Some("spec.schedule: expected exactly 5 fields, found 4: [* * * *]")),
        ("CRON_TZ=UTC 0 * * * *", None, Some("spec.schedule: cannot use TZ or CRON_TZ in schedule, use timeZone field instead")),
        ("TZ=UTC 0 * * * *", Some("Etc/UTC"), Some("spec.schedule: cannot use both timeZone field and TZ or CRON_TZ in schedule")),
        ("0 * * * *", Some("Local"), Some("spec.timeZone: timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones")),
        ("0 * * * *", Some("Nowhere/Land"), Some("spec.timeZone: unknown time zone Nowhere/Land")),
    ] {
        let cj = cronjob(json!({"schedule": schedule, "timeZone": tz}));
        let got = messages(&cj);
        match want {
            None => assert!(got.is_empty(), "{schedule}: {got:?}"),
            Some(w) => assert_eq!(got, vec![w.to_string()], "{schedule}"),
        }
    }
}

#[test]
fn policies_limits_name_and_the_job_template() {
    let cj = cronjob(
        json!({"concurrencyPolicy": "Sometimes", "startingDeadlineSeconds": -1,
                            "failedJobsHistoryLimit": -2}),
    );
    let got = messages(&cj);
    assert!(
        got.iter()
            .any(|m| m.starts_with("spec.concurrencyPolicy: ")),
        "{got:?}"
    );
    assert!(
        got.contains(&"spec.startingDeadlineSeconds: must be greater than or equal to 0".into())
    );
    assert!(got.contains(&"spec.failedJobsHistoryLimit: must be greater than or equal to 0".into()));

    let mut long = cronjob(json!({}));
    long.metadata.name = Some("n".repeat(53));
    assert_eq!(
        messages(&long),
        vec!["metadata.name: must be no more than 52 characters"]
    );

    // The template is a Job's spec, at its own path; its selector is generated.
    let bad = cronjob(json!({"jobTemplate": {"spec": {
        "selector": {"matchLabels": {"a": "b"}},
        "backoffLimit": -1,
        "template": {"metadata": {"labels": {"a": "b"}},
                     "spec": {"restartPolicy": "Always", "containers": [{"name": "c", "image": "i"}]}}}}}));
    let got = messages(&bad);
    for want in [
        "spec.jobTemplate.spec.backoffLimit: must be greater than or equal to 0",
        "spec.jobTemplate.spec.template.spec.restartPolicy: valid values: \"OnFailure\", \"Never\"",
        "spec.jobTemplate.spec.selector: `selector` will be auto-generated",
    ] {
        assert!(got.contains(&want.to_string()), "{want} not in {got:?}");
    }
}
