//! The pure arithmetic of a rollout: how far each ReplicaSet may be scaled this step.
//! Kubernetes' rolling update (NewRSNewReplicas, reconcileOldReplicaSets) and recreate.
//!
//! Contract: whatever the objects say (replicas, surge and availability up to the i32
//! bounds, percentages of any size, statuses written by any client), nothing here
//! overflows: sums and differences are taken in i64, and results are clamped back to i32.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// `v` clamped to the i32 range.
pub fn clamp_i32(v: i64) -> i32 {
    i32::try_from(v).unwrap_or(if v < 0 { i32::MIN } else { i32::MAX })
}

/// The sum of `replicas`, in i64 (any number of i32s fits).
pub fn total(replicas: impl IntoIterator<Item = i32>) -> i64 {
    replicas.into_iter().map(i64::from).sum()
}

/// `maxSurge` (rounded up) and `maxUnavailable` (rounded down) against `replicas`; both
/// zero is not allowed, so unavailable becomes 1 (Kubernetes' ResolveFenceposts). A
/// percentage that comes to more than i32::MAX is i32::MAX.
pub fn fenceposts(
    surge: Option<&IntOrString>,
    unavailable: Option<&IntOrString>,
    replicas: i32,
) -> Result<(i32, i32), String> {
    let resolve = |v: Option<&IntOrString>, default: &str, up: bool| -> Result<i32, String> {
        match v {
            Some(IntOrString::Int(i)) => Ok(*i),
            Some(IntOrString::String(s)) => percent(s, replicas, up),
            None => percent(default, replicas, up),
        }
    };
    let s = resolve(surge, "25%", true)?;
    let mut u = resolve(unavailable, "25%", false)?;
    if s == 0 && u == 0 {
        u = 1;
    }
    Ok((s.max(0), u.max(0)))
}

fn percent(s: &str, of: i32, round_up: bool) -> Result<i32, String> {
    let p: i64 = s
        .strip_suffix('%')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}: must be an integer or percentage (e.g '5%')"))?;
    // Any i64 percentage of any i32 fits an i128.
    let v = i128::from(p) * i128::from(of);
    let r = if round_up {
        (v + 99).div_euclid(100)
    } else {
        v.div_euclid(100)
    };
    Ok(i32::try_from(r).unwrap_or(if r < 0 { i32::MIN } else { i32::MAX }))
}

/// A ReplicaSet as the plan sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rs {
    pub replicas: i32,
    pub available: i32,
}

/// The new ReplicaSet's replicas for this step of a rolling update: up to `desired`,
/// keeping all pods (`all_replicas`, the sum over every ReplicaSet) within
/// `desired + max_surge`.
pub fn new_rs_replicas(desired: i32, max_surge: i32, new: Rs, all_replicas: i64) -> i32 {
    if new.replicas > desired {
        return desired;
    }
    let (desired, current) = (i64::from(desired), i64::from(new.replicas));
    let allowed = desired + i64::from(max_surge) - all_replicas;
    if allowed <= 0 {
        return new.replicas;
    }
    // At most `desired`, and at least `new.replicas`: an i32 either way.
    clamp_i32(current + allowed.min(desired - current))
}

/// Old ReplicaSets' replicas for this step (oldest first in `olds`): scale down unhealthy
/// replicas first, then available ones, never below `desired - max_unavailable`
/// available pods. Each result is between 0 (or the old value, if negative) and the old
/// value.
pub fn old_rs_replicas(desired: i32, max_unavailable: i32, new: Rs, olds: &[Rs]) -> Vec<i32> {
    let mut out: Vec<i64> = olds.iter().map(|r| i64::from(r.replicas)).collect();
    let old_total: i64 = out.iter().sum();
    if old_total == 0 {
        return olds.iter().map(|r| r.replicas).collect();
    }
    let all = old_total + i64::from(new.replicas);
    let min_available = i64::from(desired) - i64::from(max_unavailable);
    let new_unavailable = (i64::from(new.replicas) - i64::from(new.available)).max(0);
    let mut max_scaled_down = all - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return olds.iter().map(|r| r.replicas).collect();
    }
    // Unhealthy old replicas cost no availability.
    for (i, r) in olds.iter().enumerate() {
        if max_scaled_down <= 0 {
            break;
        }
        let unhealthy = (out[i] - i64::from(r.available)).max(0);
        let cut = unhealthy.min(max_scaled_down);
        out[i] -= cut;
        max_scaled_down -= cut;
    }
    // Then available ones, as far as availability allows.
    let available: i64 = olds
        .iter()
        .zip(&out)
        .map(|(r, now)| i64::from(r.available).min(*now))
        .sum::<i64>()
        + i64::from(new.available);
    let mut budget = (available - min_available).max(0);
    for v in out.iter_mut() {
        if budget <= 0 {
            break;
        }
        let cut = (*v).min(budget);
        *v -= cut;
        budget -= cut;
    }
    out.into_iter().map(clamp_i32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fenceposts_round_as_kubernetes() {
        let p = |s: &str| IntOrString::String(s.into());
        assert_eq!(fenceposts(None, None, 10), Ok((3, 2)));
        assert_eq!(fenceposts(Some(&p("25%")), Some(&p("25%")), 1), Ok((1, 0)));
        assert_eq!(
            fenceposts(Some(&IntOrString::Int(0)), Some(&IntOrString::Int(0)), 3),
            Ok((0, 1))
        );
        assert!(fenceposts(Some(&p("x")), None, 3).is_err());
    }

    #[test]
    fn a_rolling_update_of_three_with_one_surge_and_none_unavailable() {
        let (desired, surge, unavail) = (3, 1, 0);
        let mut new = Rs {
            replicas: 0,
            available: 0,
        };
        let mut old = Rs {
            replicas: 3,
            available: 3,
        };
        let mut steps = 0;
        while new.available < desired || old.replicas > 0 {
            let n = new_rs_replicas(desired, surge, new, total([new.replicas, old.replicas]));
            assert!(
                n + old.replicas <= desired + surge,
                "never above desired + surge"
            );
            new.replicas = n;
            let o = old_rs_replicas(desired, unavail, new, &[old])[0];
            old = Rs {
                replicas: o,
                available: o,
            };
            assert!(
                new.available + old.available >= desired - unavail,
                "never below min available"
            );
            // The new pods become available before the next step.
            new.available = new.replicas;
            steps += 1;
            assert!(steps < 20, "converges");
        }
        assert_eq!((new.replicas, old.replicas), (3, 0));
    }

    #[test]
    fn unhealthy_old_pods_go_first() {
        let new = Rs {
            replicas: 1,
            available: 0,
        };
        let olds = [Rs {
            replicas: 3,
            available: 1,
        }];
        // all=4, min available = 3-1 = 2, new unavailable = 1 → may scale down 1, and
        // the old set has 2 unhealthy pods.
        assert_eq!(old_rs_replicas(3, 1, new, &olds), vec![2]);
    }

    #[test]
    fn huge_surges_and_percentages_do_not_overflow() {
        let p = |s: &str| IntOrString::String(s.into());
        let max = IntOrString::Int(i32::MAX);
        assert_eq!(
            fenceposts(Some(&max), Some(&max), i32::MAX),
            Ok((i32::MAX, i32::MAX))
        );
        assert_eq!(
            fenceposts(Some(&p("1000000000%")), Some(&p("2147483647%")), i32::MAX),
            Ok((i32::MAX, i32::MAX))
        );
        assert_eq!(
            fenceposts(
                Some(&p("9223372036854775807%")),
                Some(&p("-9223372036854775808%")),
                i32::MAX
            ),
            Ok((i32::MAX, 0))
        );
        assert_eq!(fenceposts(Some(&p("200%")), None, 10), Ok((20, 2)));
    }

    #[test]
    fn replicas_near_i32_max_do_not_overflow() {
        let full = Rs {
            replicas: i32::MAX,
            available: i32::MAX,
        };
        let empty = Rs {
            replicas: 0,
            available: 0,
        };
        // desired + surge - all would overflow an i32.
        assert_eq!(new_rs_replicas(i32::MAX, i32::MAX, empty, 0), i32::MAX);
        assert_eq!(
            new_rs_replicas(i32::MAX, i32::MAX, empty, total([i32::MAX, i32::MAX])),
            0
        );
        // Two old sets of i32::MAX each: their sum would overflow an i32.
        let olds = [full, full];
        let out = old_rs_replicas(i32::MAX, i32::MAX, full, &olds);
        assert!(out.iter().all(|r| (0..=i32::MAX).contains(r)), "{out:?}");
        // Availability written as i32::MIN by some client.
        let broken = Rs {
            replicas: i32::MAX,
            available: i32::MIN,
        };
        let out = old_rs_replicas(0, 0, broken, &[broken, broken]);
        assert!(out.iter().all(|r| (0..=i32::MAX).contains(r)), "{out:?}");
        assert_eq!(old_rs_replicas(i32::MAX, 0, full, &olds), vec![0, 0]);
    }
}
