//! Taints and tolerations, as Kubernetes matches them (the scheduler's filters and the
//! node lifecycle controller's evictions).
//!
//! Contract: [`tolerates`] is Kubernetes' `Toleration.ToleratesTaint`; the time a
//! NoExecute taint is tolerated for is computed with checked arithmetic, so no
//! `tolerationSeconds` a user writes (negative, or near `i64::MAX`) can panic the caller.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Taint, Toleration};

/// Whether `t` tolerates `taint` (Kubernetes' Toleration.ToleratesTaint): the effect
/// matches or is empty, the key matches or is empty, and with `Equal` the values match.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(e) = t.effect.as_deref().filter(|e| !e.is_empty()) {
        if e != taint.effect {
            return false;
        }
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// Whether any of `tols` tolerates `taint`.
pub fn tolerated(tols: &[Toleration], taint: &Taint) -> bool {
    tols.iter().any(|t| tolerates(t, taint))
}

/// What a pod's tolerations make of a NoExecute taint on its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoExecute {
    /// No toleration matches: evict at once.
    EvictNow,
    /// Every matching toleration has `tolerationSeconds`: evict this long after the taint
    /// was added (the smallest of them; a negative one counts as zero).
    EvictAfter(Duration),
    /// A matching toleration has no `tolerationSeconds`: the pod may stay.
    Stay,
}

/// How `tols` treat the NoExecute `taint` (the node lifecycle controller's rule).
pub fn no_execute(tols: &[Toleration], taint: &Taint) -> NoExecute {
    let mut min: Option<i64> = None;
    let mut any = false;
    for t in tols.iter().filter(|t| tolerates(t, taint)) {
        any = true;
        match t.toleration_seconds {
            None => return NoExecute::Stay,
            Some(s) => min = Some(min.map_or(s, |m| m.min(s))),
        }
    }
    if !any {
        return NoExecute::EvictNow;
    }
    let secs = u64::try_from(min.unwrap_or(0)).unwrap_or(0);
    NoExecute::EvictAfter(Duration::from_secs(secs))
}

impl NoExecute {
    /// When to evict, in seconds since the epoch, for a taint added at `added` (seconds
    /// since the epoch); `None` when the pod may stay. A deadline past `i64::MAX` seconds is
    /// `i64::MAX`.
    pub fn deadline(self, added: i64) -> Option<i64> {
        match self {
            NoExecute::Stay => None,
            NoExecute::EvictNow => Some(added),
            NoExecute::EvictAfter(d) => Some(
                i64::try_from(d.as_secs())
                    .ok()
                    .and_then(|s| added.checked_add(s))
                    .unwrap_or(i64::MAX),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(k: &str, v: &str, e: &str) -> Taint {
        Taint {
            key: k.into(),
            value: Some(v.into()),
            effect: e.into(),
            time_added: None,
        }
    }
    fn tol(k: &str, op: &str, v: &str, e: &str) -> Toleration {
        Toleration {
            key: Some(k.into()),
            operator: Some(op.into()),
            value: Some(v.into()),
            effect: Some(e.into()),
            toleration_seconds: None,
        }
    }

    #[test]
    fn toleration_matching() {
        let t = taint("dedicated", "gpu", "NoSchedule");
        assert!(tolerates(
            &tol("dedicated", "Equal", "gpu", "NoSchedule"),
            &t
        ));
        assert!(tolerates(&tol("dedicated", "Equal", "gpu", ""), &t));
        assert!(!tolerates(
            &tol("dedicated", "Equal", "cpu", "NoSchedule"),
            &t
        ));
        assert!(!tolerates(
            &tol("dedicated", "Equal", "gpu", "NoExecute"),
            &t
        ));
        assert!(tolerates(&tol("dedicated", "Exists", "", ""), &t));
        assert!(
            tolerates(&tol("", "Exists", "", ""), &t),
            "an empty key with Exists tolerates everything"
        );
        assert!(!tolerates(&tol("", "Equal", "", ""), &t));
        assert!(tolerated(
            &[tol("x", "Equal", "", ""), tol("", "Exists", "", "")],
            &t
        ));
        assert!(!tolerated(&[], &t));
    }

    #[test]
    fn no_execute_windows() {
        let t = taint("node.kubernetes.io/unreachable", "", "NoExecute");
        let secs = |s: Option<i64>| Toleration {
            toleration_seconds: s,
            ..tol("node.kubernetes.io/unreachable", "Exists", "", "NoExecute")
        };
        assert_eq!(no_execute(&[], &t), NoExecute::EvictNow);
        assert_eq!(no_execute(&[secs(None)], &t), NoExecute::Stay);
        assert_eq!(
            no_execute(&[secs(Some(300)), secs(Some(30))], &t),
            NoExecute::EvictAfter(Duration::from_secs(30))
        );
        assert_eq!(
            no_execute(&[secs(Some(-5))], &t),
            NoExecute::EvictAfter(Duration::ZERO)
        );
        assert_eq!(
            no_execute(&[secs(Some(30)), secs(None)], &t),
            NoExecute::Stay
        );
        assert_eq!(
            NoExecute::EvictAfter(Duration::from_secs(30)).deadline(100),
            Some(130)
        );
        assert_eq!(NoExecute::EvictNow.deadline(100), Some(100));
        assert_eq!(NoExecute::Stay.deadline(100), None);
    }

    #[test]
    fn huge_toleration_seconds_do_not_overflow() {
        let t = taint("k", "", "NoExecute");
        let huge = Toleration {
            toleration_seconds: Some(i64::MAX),
            ..tol("k", "Exists", "", "NoExecute")
        };
        let w = no_execute(&[huge], &t);
        assert_eq!(w.deadline(1_700_000_000), Some(i64::MAX));
        assert_eq!(
            NoExecute::EvictAfter(Duration::MAX).deadline(i64::MAX),
            Some(i64::MAX)
        );
    }
}
