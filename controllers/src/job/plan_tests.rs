use super::*;
use serde_json::json;

fn ts(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

const NOW: &str = "2026-01-01T00:10:00Z";

fn job(spec: serde_json::Value, status: serde_json::Value) -> Job {
    let mut v = json!({
        "metadata": {"name": "pi", "namespace": "default", "uid": "job-uid"},
        "spec": {
            "parallelism": 1, "completions": 1, "backoffLimit": 6,
            "completionMode": "NonIndexed", "suspend": false,
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c"}]}}
        },
        "status": status,
    });
    for (k, val) in spec.as_object().unwrap() {
        v["spec"][k] = val.clone();
    }
    serde_json::from_value(v).unwrap()
}

/// A pod `name` in `phase`, with the tracking finalizer unless `counted`.
fn pod(name: &str, phase: &str, index: Option<i32>, finished_at: &str) -> Pod {
    let mut v = json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                     "creationTimestamp": "2026-01-01T00:00:00Z",
                     "finalizers": [TRACKING_FINALIZER]},
        "status": {"phase": phase, "containerStatuses": [{
            "name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": if phase == "Running" { json!({"running": {}}) }
                     else { json!({"terminated": {"exitCode": 0, "finishedAt": finished_at}}) }
        }]}
    });
    if let Some(i) = index {
        v["metadata"]["annotations"] = json!({COMPLETION_INDEX: i.to_string()});
    }
    serde_json::from_value(v).unwrap()
}

fn counted(mut p: Pod) -> Pod {
    p.metadata.finalizers = None;
    p
}

fn cond(st: &JobStatus, ty: &str) -> Option<(String, String)> {
    st.conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == ty)
        .map(|c| (c.status.clone(), c.reason.clone().unwrap_or_default()))
}

#[test]
fn a_new_job_starts_its_pods() {
    let j = job(json!({"parallelism": 2, "completions": 5}), json!({}));
    let p = plan(&j, &[], ts(NOW));
    assert_eq!(p.create, vec![None, None]);
    let st = p.status.unwrap();
    assert_eq!(st.start_time.unwrap().0, ts(NOW));
    assert_eq!(st.active, Some(0));
}

#[test]
fn finished_pods_are_counted_through_the_finalizer_protocol() {
    let j = job(
        json!({"completions": 2}),
        json!({"startTime": "2026-01-01T00:00:00Z"}),
    );
    let done = pod("a", "Succeeded", None, "2026-01-01T00:05:00Z");
    // Step 1: the UID goes into uncountedTerminatedPods, the finalizer is to be removed,
    // nothing is counted yet, one more pod starts.
    let p = plan(&j, &[&done], ts(NOW));
    let st = p.status.clone().unwrap();
    assert_eq!(
        st.uncounted_terminated_pods.as_ref().unwrap().succeeded,
        Some(vec!["uid-a".to_string()])
    );
    assert_eq!(st.succeeded, Some(0));
    assert_eq!(p.remove_finalizers, vec!["a"]);
    assert_eq!(p.create, vec![None]);
    // Step 2: the finalizer is gone: the pod is counted once, and only once.
    let mut j2 = j.clone();
    j2.status = Some(st);
    let done = counted(done);
    let p = plan(&j2, &[&done], ts(NOW));
    let st = p.status.clone().unwrap();
    assert_eq!(st.succeeded, Some(1));
    assert_eq!(
        st.uncounted_terminated_pods.as_ref().unwrap().succeeded,
        Some(vec![])
    );
    assert!(p.remove_finalizers.is_empty());
    let mut j3 = j2.clone();
    j3.status = Some(st);
    let p = plan(&j3, &[&done], ts(NOW));
    assert_eq!(
        p.status
            .map(|s| s.succeeded)
            .unwrap_or(j3.status.as_ref().unwrap().succeeded),
        Some(1)
    );
    // A counted UID whose pod is gone from the cache is counted too (not lost).
    let mut gone = j.clone();
    gone.status = Some(
        serde_json::from_value(json!({"startTime": "2026-01-01T00:00:00Z",
            "uncountedTerminatedPods": {"failed": ["uid-x"]}}))
        .unwrap(),
    );
    let st = plan(&gone, &[], ts(NOW)).status.unwrap();
    assert_eq!(st.failed, Some(1));
}

#[test]
fn completes_in_two_steps() {
    let j = job(
        json!({"completions": 1}),
        json!({"startTime": "2026-01-01T00:00:00Z", "succeeded": 1}),
    );
    let p = plan(&j, &[], ts(NOW));
    let st = p.status.unwrap();
    assert_eq!(
        cond(&st, "SuccessCriteriaMet"),
        Some(("True".into(), "CompletionsReached".into()))
    );
    assert_eq!(cond(&st, "Complete").unwrap().0, "True");
    assert_eq!(st.completion_time.unwrap().0, ts(NOW));
    assert!(p.create.is_empty());

    // With a pod still running, it is deleted first and Complete waits.
    let running = pod("b", "Running", None, "");
    let p = plan(&j, &[&running], ts(NOW));
    let st = p.status.unwrap();
    assert!(cond(&st, "SuccessCriteriaMet").is_some());
    assert!(cond(&st, "Complete").is_none());
    assert_eq!(p.delete, vec!["b"]);
}

#[test]
fn backoff_limit_and_deadline_fail_the_job() {
    let j = job(
        json!({"backoffLimit": 1, "completions": 3}),
        json!({"startTime": "2026-01-01T00:00:00Z", "failed": 2}),
    );
    let running = pod("r", "Running", None, "");
    let p = plan(&j, &[&running], ts(NOW));
    let st = p.status.unwrap();
    assert_eq!(
        cond(&st, "FailureTarget"),
        Some(("True".into(), "BackoffLimitExceeded".into()))
    );
    assert!(cond(&st, "Failed").is_none(), "a pod still runs");
    assert_eq!(p.delete, vec!["r"]);
    assert!(p.create.is_empty());
    // Once nothing runs: Failed.
    let mut j2 = j.clone();
    j2.status = Some(st);
    let st = plan(&j2, &[], ts(NOW)).status.unwrap();
    assert_eq!(cond(&st, "Failed").unwrap().1, "BackoffLimitExceeded");
    assert!(st.completion_time.is_none());

    let d = job(
        json!({"activeDeadlineSeconds": 60, "completions": 3}),
        json!({"startTime": "2026-01-01T00:00:00Z"}),
    );
    let st = plan(&d, &[], ts(NOW)).status.unwrap();
    assert_eq!(cond(&st, "Failed").unwrap().1, "DeadlineExceeded");
    // Before the deadline: a wake-up at it.
    let p = plan(&d, &[], ts("2026-01-01T00:00:30Z"));
    assert_eq!(p.requeue_after, Some(Duration::from_secs(30)));
}

#[test]
fn failures_back_off_before_new_pods() {
    let j = job(
        json!({"completions": 3}),
        json!({"startTime": "2026-01-01T00:00:00Z"}),
    );
    let f1 = counted(pod("f1", "Failed", None, "2026-01-01T00:09:58Z"));
    let f2 = counted(pod("f2", "Failed", None, "2026-01-01T00:09:59Z"));
    // Two failures since the last success: 20 s from the last one, 19 s left.
    let p = plan(&j, &[&f1, &f2], ts(NOW));
    assert!(p.create.is_empty());
    assert_eq!(p.requeue_after, Some(Duration::from_secs(19)));
    let p = plan(&j, &[&f1, &f2], ts("2026-01-01T00:10:30Z"));
    assert_eq!(p.create.len(), 1);
}

#[test]
fn indexed_jobs_run_each_index_once() {
    let j = job(
        json!({"completionMode": "Indexed", "completions": 5, "parallelism": 2}),
        json!({"startTime": "2026-01-01T00:00:00Z", "completedIndexes": "0"}),
    );
    let running = pod("pi-1", "Running", Some(1), "");
    let dup = pod("pi-1b", "Running", Some(1), "");
    let p = plan(&j, &[&running, &dup], ts(NOW));
    assert_eq!(p.delete, vec!["pi-1b"], "a second pod of an index goes");
    assert_eq!(p.create, vec![Some(2)]);
    // A succeeded pod adds its index with its UID; all indexes done completes.
    let j = job(
        json!({"completionMode": "Indexed", "completions": 2, "parallelism": 2}),
        json!({"startTime": "2026-01-01T00:00:00Z", "completedIndexes": "0", "succeeded": 1}),
    );
    let done = pod("pi-1", "Succeeded", Some(1), "2026-01-01T00:05:00Z");
    let st = plan(&j, &[&done], ts(NOW)).status.unwrap();
    assert_eq!(st.completed_indexes.as_deref(), Some("0-1"));
    assert_eq!(cond(&st, "SuccessCriteriaMet").unwrap().0, "True");
}

#[test]
fn suspend_deletes_and_resume_restarts_the_clock() {
    let j = job(
        json!({"suspend": true, "parallelism": 2, "completions": 4}),
        json!({}),
    );
    let running = pod("r", "Running", None, "");
    let p = plan(&j, &[&running], ts(NOW));
    let st = p.status.unwrap();
    assert_eq!(
        cond(&st, "Suspended"),
        Some(("True".into(), "JobSuspended".into()))
    );
    assert_eq!(p.delete, vec!["r"]);
    assert!(st.start_time.is_none());
    // A pod deleted by the suspension is let go of, and is not a failure.
    let mut deleting = running.clone();
    deleting.metadata.deletion_timestamp = Some(Time(ts(NOW)));
    let mut j2 = j.clone();
    j2.status = Some(st.clone());
    let p = plan(&j2, &[&deleting], ts(NOW));
    assert_eq!(p.remove_finalizers, vec!["r"]);
    let after = p.status.unwrap_or_else(|| st.clone());
    assert_eq!(
        after.uncounted_terminated_pods.and_then(|u| u.failed),
        Some(vec![])
    );
    assert_eq!(after.terminating, Some(1));
    // Resumed: Suspended False, a fresh start time, pods again.
    let mut resumed = j.clone();
    resumed.spec.as_mut().unwrap().suspend = Some(false);
    resumed.status = Some(st);
    let p = plan(&resumed, &[], ts(NOW));
    let st = p.status.unwrap();
    assert_eq!(
        cond(&st, "Suspended"),
        Some(("False".into(), "JobResumed".into()))
    );
    assert_eq!(st.start_time.unwrap().0, ts(NOW));
    assert_eq!(p.create.len(), 2);
}

#[test]
fn work_queues_finish_when_one_succeeded_and_none_runs() {
    let j = job(
        json!({"completions": null, "parallelism": 3}),
        json!({"startTime": "2026-01-01T00:00:00Z", "succeeded": 1}),
    );
    let running = pod("r", "Running", None, "");
    let p = plan(&j, &[&running], ts(NOW));
    assert!(p.create.is_empty(), "no new pods after a success");
    assert!(p
        .status
        .as_ref()
        .is_none_or(|s| cond(s, "Complete").is_none()));
    let st = plan(&j, &[], ts(NOW)).status.unwrap();
    assert_eq!(cond(&st, "Complete").unwrap().0, "True");
}

#[test]
fn a_finished_job_lets_go_of_its_pods() {
    let j = job(
        json!({}),
        json!({"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}),
    );
    let left = pod("left", "Running", None, "");
    let p = plan(&j, &[&left], ts(NOW));
    assert_eq!(p.remove_finalizers, vec!["left"]);
    assert!(p.create.is_empty() && p.delete.is_empty());
}

/// A pod of index `index` that failed with `code`, its index having failed `before` times.
fn failed_with(name: &str, code: i32, index: Option<i32>, before: i32) -> Pod {
    let mut p = pod(name, "Failed", index, "2026-01-01T00:05:00Z");
    let st = p.status.as_mut().unwrap();
    let cs = &mut st.container_statuses.as_mut().unwrap()[0];
    cs.state
        .as_mut()
        .unwrap()
        .terminated
        .as_mut()
        .unwrap()
        .exit_code = code;
    p.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(policy::INDEX_FAILURE_COUNT.into(), before.to_string());
    p.spec = Some(serde_json::from_value(json!({"nodeName": "n1", "containers": []})).unwrap());
    p
}

fn with_status(mut j: Job, st: JobStatus) -> Job {
    j.status = Some(st);
    j
}

#[test]
fn a_fail_job_rule_fails_the_job_at_once() {
    let policy = json!({"rules": [
        {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [42]}},
        {"action": "FailJob", "onExitCodes": {"containerName": "c", "operator": "In", "values": [3]}},
    ]});
    let j = job(
        json!({"completions": 3, "backoffLimit": 6, "podFailurePolicy": policy,
               "podReplacementPolicy": "Failed"}),
        json!({"startTime": "2026-01-01T00:00:00Z"}),
    );
    // Exit 42 is ignored: not counted, the finalizer goes, a new pod starts.
    let ignored = failed_with("i", 42, None, 0);
    let p = plan(&j, &[&ignored], ts(NOW));
    let st = p.status.clone().unwrap();
    assert_eq!(st.uncounted_terminated_pods.unwrap().failed, Some(vec![]));
    assert_eq!(p.remove_finalizers, vec!["i"]);
    assert_eq!(p.create.len(), 1, "its 10 s backoff is over");
    // Exit 3 fails the Job, with kube's message.
    let bad = failed_with("b", 3, None, 0);
    let p = plan(&j, &[&bad], ts(NOW));
    let st = p.status.unwrap();
    let c = st.conditions.as_ref().unwrap();
    let target = c.iter().find(|c| c.type_ == "FailureTarget").unwrap();
    assert_eq!(target.reason.as_deref(), Some("PodFailurePolicy"));
    assert_eq!(
        target.message.as_deref(),
        Some("Container c for pod default/b failed with exit code 3 matching FailJob rule at index 1")
    );
    assert!(p.create.is_empty());
    // Counted, then Failed with the same reason.
    let j2 = with_status(j.clone(), st);
    let st = plan(&j2, &[&counted(bad.clone())], ts(NOW)).status.unwrap();
    assert_eq!(cond(&st, "Failed").unwrap().1, "PodFailurePolicy");
    assert_eq!(st.failed, Some(1));
}

#[test]
fn a_terminating_pod_holds_its_place_under_replacement_policy_failed() {
    let j = job(
        json!({"completions": 2, "parallelism": 2, "podReplacementPolicy": "Failed"}),
        json!({"startTime": "2026-01-01T00:00:00Z"}),
    );
    let mut going = pod("g", "Running", None, "");
    going.metadata.deletion_timestamp = Some(Time(ts(NOW)));
    going.spec = Some(serde_json::from_value(json!({"nodeName": "n1", "containers": []})).unwrap());
    let p = plan(&j, &[&going], ts(NOW));
    assert_eq!(
        p.create.len(),
        1,
        "one new pod; the terminating one is awaited"
    );
    assert!(p.remove_finalizers.is_empty());
    assert_eq!(p.status.unwrap().terminating, Some(1));
    // Under TerminatingOrFailed it fails at once and is replaced.
    let j = job(
        json!({"completions": 2, "parallelism": 2, "podReplacementPolicy": "TerminatingOrFailed"}),
        json!({"startTime": "2026-01-01T00:00:00Z"}),
    );
    let p = plan(&j, &[&going], ts(NOW));
    assert_eq!(p.remove_finalizers, vec!["g"]);
    assert_eq!(
        p.status.unwrap().uncounted_terminated_pods.unwrap().failed,
        Some(vec!["uid-g".to_string()])
    );
}

#[test]
fn indexes_back_off_and_fail_on_their_own() {
    let j = job(
        json!({"completionMode": "Indexed", "completions": 3, "parallelism": 3,
               "backoffLimitPerIndex": 1, "backoffLimit": i32::MAX}),
        json!({"startTime": "2026-01-01T00:00:00Z", "completedIndexes": "", "failedIndexes": ""}),
    );
    // Index 1 failed once (its first pod): retried after its own backoff, with the count.
    let first = counted(failed_with("pi-1-a", 1, Some(1), 0));
    let r0 = pod("pi-0", "Running", Some(0), "");
    let p = plan(&j, &[&r0, &first], ts("2026-01-01T00:05:05Z"));
    assert_eq!(
        p.create,
        vec![Some(2)],
        "index 1 backs off, index 2 does not"
    );
    assert_eq!(p.requeue_after, Some(Duration::from_secs(5)));
    let p = plan(&j, &[&r0, &first], ts(NOW));
    assert_eq!(p.create, vec![Some(1), Some(2)]);
    assert_eq!(p.index_failures[&1], (1, 0));
    assert_eq!(p.index_failures[&2], (0, 0));
    // Its second pod fails too: the index has failed, the Job goes on.
    let second = failed_with("pi-1-b", 1, Some(1), 1);
    let p = plan(&j, &[&r0, &counted(first.clone()), &second], ts(NOW));
    let st = p.status.unwrap();
    assert_eq!(st.failed_indexes.as_deref(), Some("1"));
    assert!(cond(&st, "FailureTarget").is_none());
    assert_eq!(p.create, vec![Some(2)]);
    // Once every other index completed: Failed with FailedIndexes.
    let j2 = with_status(
        j.clone(),
        serde_json::from_value(json!({"startTime": "2026-01-01T00:00:00Z",
            "completedIndexes": "0,2", "failedIndexes": "1", "succeeded": 2, "failed": 2}))
        .unwrap(),
    );
    let st = plan(&j2, &[], ts(NOW)).status.unwrap();
    assert_eq!(cond(&st, "Failed").unwrap().1, "FailedIndexes");
    // maxFailedIndexes 0: the first failed index fails the Job.
    let mut j3 = j.clone();
    j3.spec.as_mut().unwrap().max_failed_indexes = Some(0);
    let p = plan(&j3, &[&r0, &counted(first), &second], ts(NOW));
    let st = p.status.unwrap();
    assert_eq!(
        cond(&st, "FailureTarget").unwrap().1,
        "MaxFailedIndexesExceeded"
    );
    assert_eq!(p.delete, vec!["pi-0"]);
}

#[test]
fn a_success_policy_completes_early() {
    let j = job(
        json!({"completionMode": "Indexed", "completions": 4, "parallelism": 4,
               "successPolicy": {"rules": [{"succeededIndexes": "0,3"},
                                           {"succeededCount": 2, "succeededIndexes": "0-2"}]}}),
        json!({"startTime": "2026-01-01T00:00:00Z", "completedIndexes": "1"}),
    );
    let done = pod("pi-2", "Succeeded", Some(2), "2026-01-01T00:05:00Z");
    let running = pod("pi-0", "Running", Some(0), "");
    let p = plan(&j, &[&done, &running], ts(NOW));
    let st = p.status.unwrap();
    let c = st.conditions.as_ref().unwrap();
    let met = c.iter().find(|c| c.type_ == "SuccessCriteriaMet").unwrap();
    assert_eq!(met.reason.as_deref(), Some("SuccessPolicy"));
    assert_eq!(met.message.as_deref(), Some("Matched rules at index 1"));
    assert_eq!(p.delete, vec!["pi-0"]);
    // Complete takes the same reason once nothing runs.
    let j2 = with_status(j, st);
    let st = plan(&j2, &[&counted(done)], ts(NOW)).status.unwrap();
    assert_eq!(cond(&st, "Complete").unwrap().1, "SuccessPolicy");
}
