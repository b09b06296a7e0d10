use super::*;
use serde_json::json;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn cronjob(spec: serde_json::Value, status: serde_json::Value) -> CronJob {
    let mut v = json!({
        "metadata": {"name": "nightly", "namespace": "default", "uid": "cj-uid",
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"schedule": "*/10 * * * *", "concurrencyPolicy": "Allow", "suspend": false,
                 "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1,
                 "jobTemplate": {"metadata": {"labels": {"app": "n"}},
                                 "spec": {"template": {"spec": {"containers": []}}}}},
        "status": status,
    });
    for (k, val) in spec.as_object().unwrap() {
        v["spec"][k] = val.clone();
    }
    serde_json::from_value(v).unwrap()
}

fn job(name: &str, outcome: Option<&str>, start: &str) -> Job {
    let conditions = match outcome {
        Some(c) => json!([{"type": c, "status": "True"}]),
        None => json!([]),
    };
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "status": {"conditions": conditions, "startTime": start, "completionTime": start}
    }))
    .unwrap()
}

fn active(names: &[&str]) -> serde_json::Value {
    json!(names
        .iter()
        .map(
            |n| json!({"kind": "Job", "name": n, "namespace": "default", "uid": format!("uid-{n}")})
        )
        .collect::<Vec<_>>())
}

fn plan_at(cj: &CronJob, jobs: &[&Job], now: &str) -> Plan {
    plan(cj, jobs, &BTreeSet::new(), ts(now), &TimeZone::UTC)
}

#[test]
fn creates_the_job_of_the_most_recent_time_once() {
    let cj = cronjob(json!({}), json!({}));
    // Nothing due before the first time: wake up just after it.
    let p = plan_at(&cj, &[], "2026-01-01T00:05:00Z");
    assert!(p.create.is_none());
    assert_eq!(p.requeue_after, Some(Duration::from_millis(300_100)));
    let p = plan_at(&cj, &[], "2026-01-01T00:10:30Z");
    let (j, at) = p.create.unwrap();
    assert_eq!(at, ts("2026-01-01T00:10:00Z"));
    assert_eq!(j.metadata.name.as_deref(), Some("nightly-29453770"));
    let ann = j.metadata.annotations.as_ref().unwrap();
    assert_eq!(ann[SCHEDULED_TIMESTAMP], "2026-01-01T00:10:00Z");
    assert_eq!(j.metadata.labels.as_ref().unwrap()["app"], "n");
    let owner = &j.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("CronJob", Some(true))
    );
    // Once recorded, that time does not run again.
    let st = with_created(p.status, &j, at);
    let mut cj2 = cj.clone();
    cj2.status = Some(st);
    assert!(plan_at(&cj2, &[], "2026-01-01T00:15:00Z").create.is_none());
}

#[test]
fn after_downtime_only_the_latest_missed_time_runs() {
    let cj = cronjob(json!({"schedule": "* * * * *"}), json!({}));
    let p = plan_at(&cj, &[], "2026-01-03T12:34:56Z");
    assert_eq!(p.create.unwrap().1, ts("2026-01-03T12:34:00Z"));
    assert!(p.events.iter().any(|e| e.1 == "TooManyMissedTimes"));
    // With a starting deadline, the old misses are not counted, and a time past its
    // deadline is skipped.
    let cj = cronjob(
        json!({"schedule": "0 * * * *", "startingDeadlineSeconds": 60}),
        json!({}),
    );
    let p = plan_at(&cj, &[], "2026-01-03T12:30:00Z");
    assert!(p.create.is_none());
    assert!(p.events.is_empty(), "{:?}", p.events);
    let p = plan_at(&cj, &[], "2026-01-03T12:00:30Z");
    assert_eq!(p.create.unwrap().1, ts("2026-01-03T12:00:00Z"));
}

#[test]
fn concurrency_policies() {
    let running = job("nightly-1", None, "2026-01-01T00:00:00Z");
    let forbid = cronjob(
        json!({"concurrencyPolicy": "Forbid"}),
        json!({"active": active(&["nightly-1"])}),
    );
    let p = plan_at(&forbid, &[&running], "2026-01-01T00:10:05Z");
    assert!(p.create.is_none());
    assert_eq!(p.events[0].1, "JobAlreadyActive");
    let replace = cronjob(
        json!({"concurrencyPolicy": "Replace"}),
        json!({"active": active(&["nightly-1"])}),
    );
    let p = plan_at(&replace, &[&running], "2026-01-01T00:10:05Z");
    assert_eq!(
        p.delete,
        vec![(
            "nightly-1".to_string(),
            "uid-nightly-1".to_string(),
            Deletion::Replaced
        )]
    );
    assert!(p.create.is_some());
    assert_eq!(p.status.active, Some(vec![]));
    let allow = cronjob(json!({}), json!({"active": active(&["nightly-1"])}));
    let p = plan_at(&allow, &[&running], "2026-01-01T00:10:05Z");
    assert!(p.delete.is_empty() && p.create.is_some());
}

#[test]
fn status_follows_the_jobs_and_history_is_trimmed() {
    let cj = cronjob(
        json!({"successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 0, "suspend": true}),
        json!({"active": active(&["a", "gone"])}),
    );
    let a = job("a", Some("Complete"), "2026-01-01T00:20:00Z");
    let b = job("b", Some("Complete"), "2026-01-01T00:10:00Z");
    let f = job("f", Some("Failed"), "2026-01-01T00:05:00Z");
    let stray = job("stray", None, "2026-01-01T00:05:00Z");
    let p = plan_at(&cj, &[&a, &b, &f, &stray], "2026-01-01T00:30:00Z");
    assert!(p
        .status
        .active
        .as_ref()
        .unwrap()
        .iter()
        .all(|r| r.name.as_deref() != Some("a")));
    assert_eq!(
        p.status.last_successful_time.as_ref().unwrap().0,
        ts("2026-01-01T00:20:00Z")
    );
    assert!(p
        .events
        .iter()
        .any(|e| e.2 == "Saw completed job: a, condition: Complete"));
    assert_eq!(p.unexpected, vec!["stray"]);
    assert_eq!(p.unknown_active.len(), 1);
    let deleted: Vec<&str> = p.delete.iter().map(|d| d.0.as_str()).collect();
    assert_eq!(deleted, vec!["b", "f"]);
    // Suspended: nothing created.
    assert!(p.create.is_none());
    // A read showed the unknown one gone: dropped, with an event.
    let gone: BTreeSet<String> = ["uid-gone".to_string()].into();
    let p = plan(
        &cj,
        &[&a],
        &gone,
        ts("2026-01-01T00:30:00Z"),
        &TimeZone::UTC,
    );
    assert_eq!(p.status.active, Some(vec![]));
    assert!(p.events.iter().any(|e| e.1 == "MissingJob"));
}

#[test]
fn time_zones_and_bad_schedules() {
    let cj = cronjob(
        json!({"schedule": "0 9 * * *", "timeZone": "Asia/Tokyo"}),
        json!({}),
    );
    let p = plan_at(&cj, &[], "2026-01-02T00:00:30Z");
    let (j, at) = p.create.unwrap();
    assert_eq!(at, ts("2026-01-02T00:00:00Z"));
    assert_eq!(
        j.metadata.annotations.unwrap()[SCHEDULED_TIMESTAMP],
        "2026-01-02T09:00:00+09:00"
    );
    let bad = cronjob(json!({"timeZone": "Nowhere/Land"}), json!({}));
    let p = plan_at(&bad, &[], "2026-01-02T00:00:30Z");
    assert_eq!(p.events[0].1, "UnknownTimeZone");
    assert!(p.requeue_after.is_none());
    let bad = cronjob(json!({"schedule": "not a schedule"}), json!({}));
    assert_eq!(
        plan_at(&bad, &[], "2026-01-02T00:00:30Z").events[0].1,
        "UnparseableSchedule"
    );
}
