//! The CronJob controller's decisions, pure (kube's `cronjob_controllerv2.go` `syncCronJob`
//! and `cleanupFinishedJobs`, and `utils.go`): from a CronJob, the Jobs it controls and
//! the time, which Jobs to delete, which to create, the status, and when to look again.
//!
//! The Job of a scheduled time is named `<cronjob>-<minutes since the epoch>`, so a
//! controller that crashed between creating it and writing the status finds it again
//! (adopting it instead of creating a second one), and `lastScheduleTime` makes each time
//! run at most once. After downtime only the most recent missed time runs (no burst);
//! more than 100 missed times are reported, as kube does.

use std::collections::BTreeSet;
use std::time::Duration;

use flotilla_core::cron::Schedule;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use crate::context::controller_ref;

pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// More missed times than this since the last one are worth a warning.
const TOO_MANY_MISSED: u64 = 100;
/// Bound on the schedule times walked in one sync.
const MAX_STEPS: usize = 10_000;

/// Why a Job is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// Beyond the successful or failed history limit.
    History,
    /// An active Job that concurrency policy Replace replaces.
    Replaced,
}

/// What one sync does.
#[derive(Debug, Default)]
pub struct Plan {
    /// The status before any creation (the creation adds its Job to `active` and sets
    /// `lastScheduleTime`).
    pub status: CronJobStatus,
    /// Jobs to delete: name, UID, why.
    pub delete: Vec<(String, String, Deletion)>,
    /// The Job to create and the time it was scheduled for.
    pub create: Option<(Job, Timestamp)>,
    /// Unfinished Jobs it controls that its status does not list (checked against a fresh
    /// read of the CronJob before reporting them).
    pub unexpected: Vec<String>,
    /// Active references whose Job the cache does not have (checked with a read).
    pub unknown_active: Vec<ObjectReference>,
    /// Events: (type Normal/Warning, reason, message).
    pub events: Vec<(&'static str, &'static str, String)>,
    pub requeue_after: Option<Duration>,
}

/// The condition a finished Job ended with (`Complete` or `Failed`).
pub fn finished(j: &Job) -> Option<&'static str> {
    let conds = j.status.as_ref()?.conditions.as_ref()?;
    ["Complete", "Failed"]
        .into_iter()
        .find(|ty| conds.iter().any(|c| c.type_ == *ty && c.status == "True"))
}

/// The name of the Job for `scheduled`.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

/// The time zone a CronJob's schedule is read in: its `timeZone`, else `local`.
pub fn zone(cj: &CronJob, local: &TimeZone) -> Result<TimeZone, (String, String)> {
    match cj.spec.as_ref().and_then(|s| s.time_zone.as_deref()) {
        None => Ok(local.clone()),
        Some(name) => flotilla_core::cron::time_zone(name).map_err(|e| (name.to_string(), e)),
    }
}

/// The latest schedule time in (`earliest`, `now`], and how many were missed (roughly,
/// as kube counts them).
pub fn most_recent(
    s: &Schedule,
    tz: &TimeZone,
    earliest: Timestamp,
    now: Timestamp,
) -> Result<(Option<Timestamp>, u64), String> {
    let Some(t1) = s.next_after(earliest, tz).filter(|t| *t <= now) else {
        return Ok((None, 0));
    };
    let Some(t2) = s.next_after(t1, tz).filter(|t| *t <= now) else {
        return Ok((Some(t1), 1));
    };
    let interval = t2.duration_since(t1);
    if interval < jiff::SignedDuration::from_secs(1) {
        return Err("time difference between two schedules is less than 1 second".into());
    }
    let missed = u64::try_from(now.duration_since(t1).as_secs() / interval.as_secs().max(1))
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    // Far behind: start the walk two intervals before now, not at the first miss.
    let mut t = t2;
    if missed > TOO_MANY_MISSED {
        let back = interval.checked_mul(2).unwrap_or(interval);
        if let Some(c) = now
            .checked_sub(back)
            .ok()
            .and_then(|from| s.next_after(from, tz))
            .filter(|c| *c <= now && *c > t2)
        {
            t = c;
        }
    }
    for _ in 0..MAX_STEPS {
        match s.next_after(t, tz) {
            Some(n) if n <= now => t = n,
            _ => break,
        }
    }
    Ok((Some(t), missed))
}

fn reference(j: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        namespace: j.metadata.namespace.clone(),
        name: j.metadata.name.clone(),
        uid: j.metadata.uid.clone(),
        resource_version: j.metadata.resource_version.clone(),
        field_path: None,
    }
}

/// The active reference of a Job just created or adopted.
pub fn active_ref(j: &Job) -> ObjectReference {
    reference(j)
}

/// The Job for `scheduled` from the template: its labels and annotations, the scheduled
/// time (RFC 3339 in the schedule's zone), the controller reference.
pub fn job_for(cj: &CronJob, scheduled: Timestamp, tz: &TimeZone) -> Job {
    let template = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut annotations = tmeta.annotations.unwrap_or_default();
    annotations.insert(
        SCHEDULED_TIMESTAMP.into(),
        scheduled
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string()
            .replace("+00:00", "Z"),
    );
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(
                cj.metadata.name.as_deref().unwrap_or(""),
                scheduled,
            )),
            namespace: cj.metadata.namespace.clone(),
            labels: tmeta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref(cj)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

fn rfc1123z(t: Timestamp) -> String {
    t.to_zoned(TimeZone::UTC)
        .strftime("%a, %d %b %Y %H:%M:%S %z")
        .to_string()
}

/// Finished Jobs beyond `limit` of one outcome, oldest start first (no start: last; ties by
/// name), as kube's cleanup orders them.
fn beyond_limit<'a>(mut jobs: Vec<&'a Job>, limit: Option<i32>) -> Vec<&'a Job> {
    let Some(limit) = limit.and_then(|l| usize::try_from(l).ok()) else {
        return Vec::new();
    };
    if jobs.len() <= limit {
        return Vec::new();
    }
    jobs.sort_by_key(|j| {
        let start = j
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0);
        (start.is_none(), start, j.metadata.name.clone())
    });
    let excess = jobs.len() - limit;
    jobs.truncate(excess);
    jobs
}

/// The decisions for `cj` controlling `jobs` at `now`; `gone` are the UIDs of active
/// Jobs that a read showed deleted; `local` is the zone of schedules without one.
pub fn plan(
    cj: &CronJob,
    jobs: &[&Job],
    gone: &BTreeSet<String>,
    now: Timestamp,
    local: &TimeZone,
) -> Plan {
    let mut out = Plan {
        status: cj.status.clone().unwrap_or_default(),
        ..Plan::default()
    };
    let Some(spec) = cj.spec.as_ref() else {
        return out;
    };
    let st = &mut out.status;
    let listed = |st: &CronJobStatus, uid: &str| {
        st.active
            .iter()
            .flatten()
            .any(|r| r.uid.as_deref() == Some(uid))
    };

    // 1. The active list and the last success, from the Jobs.
    let mut children = BTreeSet::new();
    for j in jobs {
        let uid = j.metadata.uid.clone().unwrap_or_default();
        let name = j.metadata.name.clone().unwrap_or_default();
        children.insert(uid.clone());
        let done = finished(j);
        let found = listed(st, &uid);
        match done {
            None if !found => out.unexpected.push(name),
            None => {}
            Some(condition) => {
                if found {
                    if let Some(a) = st.active.as_mut() {
                        a.retain(|r| r.uid.as_deref() != Some(&uid));
                    }
                    out.events.push((
                        "Normal",
                        "SawCompletedJob",
                        format!("Saw completed job: {name}, condition: {condition}"),
                    ));
                }
                let completed = j.status.as_ref().and_then(|s| s.completion_time.clone());
                if let (Some("Complete"), Some(t)) = (done, completed) {
                    if st.last_successful_time.as_ref().is_none_or(|l| t.0 > l.0) {
                        st.last_successful_time = Some(t);
                    }
                }
            }
        }
    }
    for r in st.active.clone().into_iter().flatten() {
        let uid = r.uid.clone().unwrap_or_default();
        if children.contains(&uid) {
            continue;
        }
        if gone.contains(&uid) {
            if let Some(a) = st.active.as_mut() {
                a.retain(|x| x.uid.as_deref() != Some(&uid));
            }
            out.events.push((
                "Normal",
                "MissingJob",
                format!(
                    "Active job went missing: {}",
                    r.name.clone().unwrap_or_default()
                ),
            ));
        } else {
            out.unknown_active.push(r);
        }
    }

    // 2. History: the oldest finished Jobs beyond the limits go.
    if cj.metadata.deletion_timestamp.is_none() {
        let of = |outcome: &str| -> Vec<&Job> {
            jobs.iter()
                .copied()
                .filter(|j| finished(j) == Some(outcome))
                .collect()
        };
        for (outcome, limit) in [
            ("Complete", spec.successful_jobs_history_limit),
            ("Failed", spec.failed_jobs_history_limit),
        ] {
            for j in beyond_limit(of(outcome), limit) {
                out.delete.push((
                    j.metadata.name.clone().unwrap_or_default(),
                    j.metadata.uid.clone().unwrap_or_default(),
                    Deletion::History,
                ));
            }
        }
    }

    // 3. The schedule.
    if cj.metadata.deletion_timestamp.is_some() || spec.suspend == Some(true) {
        return out;
    }
    let tz = match zone(cj, local) {
        Ok(tz) => tz,
        Err((name, e)) => {
            out.events.push((
                "Warning",
                "UnknownTimeZone",
                format!("invalid timeZone: {name:?}: {e}"),
            ));
            return out;
        }
    };
    let schedule = match flotilla_core::cron::parse(&spec.schedule) {
        Ok(s) => s,
        Err(e) => {
            out.events.push((
                "Warning",
                "UnparseableSchedule",
                format!("unparseable schedule: {:?} : {e}", spec.schedule),
            ));
            return out;
        }
    };
    let wake = |from: Timestamp| -> Option<Duration> {
        let next = schedule.next_after(from, &tz)?;
        let d = Duration::try_from(next.duration_since(now)).unwrap_or(Duration::ZERO);
        Some(d + Duration::from_millis(100))
    };
    let created = cj
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(now);
    let mut earliest = st
        .last_schedule_time
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(created);
    if let Some(sds) = spec.starting_deadline_seconds {
        if let Ok(floor) = now.checked_sub(jiff::SignedDuration::from_secs(sds.max(0))) {
            earliest = earliest.max(floor);
        }
    }
    let scheduled = match most_recent(&schedule, &tz, earliest, now) {
        Ok((t, missed)) => {
            if missed > TOO_MANY_MISSED {
                out.events.push((
                    "Warning",
                    "TooManyMissedTimes",
                    "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew".into(),
                ));
            }
            t
        }
        Err(e) => {
            out.events.push((
                "Warning",
                "InvalidSchedule",
                format!("invalid schedule: {} : {e}", spec.schedule),
            ));
            return out;
        }
    };
    let Some(scheduled) = scheduled else {
        out.requeue_after = wake(now);
        return out;
    };
    out.requeue_after = wake(now);
    if let Some(sds) = spec.starting_deadline_seconds {
        let late = scheduled
            .checked_add(jiff::SignedDuration::from_secs(sds.max(0)))
            .is_ok_and(|deadline| deadline < now);
        if late {
            out.events.push((
                "Warning",
                "MissSchedule",
                format!(
                    "Missed scheduled time to start a job: {}",
                    rfc1123z(scheduled)
                ),
            ));
            return out;
        }
    }
    let name = job_name(cj.metadata.name.as_deref().unwrap_or(""), scheduled);
    let handled = st
        .active
        .iter()
        .flatten()
        .any(|r| r.name.as_deref() == Some(name.as_str()))
        || st
            .last_schedule_time
            .as_ref()
            .is_some_and(|t| t.0 == scheduled);
    if handled {
        return out;
    }
    let active = st.active.clone().unwrap_or_default();
    match spec.concurrency_policy.as_deref() {
        Some("Forbid") if !active.is_empty() => {
            out.events.push((
                "Normal",
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
            ));
            return out;
        }
        Some("Replace") => {
            out.status.active = Some(Vec::new());
            for r in &active {
                out.delete.push((
                    r.name.clone().unwrap_or_default(),
                    r.uid.clone().unwrap_or_default(),
                    Deletion::Replaced,
                ));
            }
        }
        _ => {}
    }
    out.create = Some((job_for(cj, scheduled, &tz), scheduled));
    out
}

/// The status after creating (or adopting) `job` for `scheduled`.
pub fn with_created(mut st: CronJobStatus, job: &Job, scheduled: Timestamp) -> CronJobStatus {
    let r = active_ref(job);
    let active = st.active.get_or_insert_with(Vec::new);
    if !active.iter().any(|a| a.uid == r.uid) {
        active.push(r);
    }
    st.last_schedule_time = Some(Time(scheduled));
    st
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
