//! The plugin interface: filters decide whether a pod may run on a node, scores rank the
//! nodes that passed. A plugin is one file implementing [`Filter`] and/or [`Score`] and one
//! line in `plugins/mod.rs`.

use std::any::Any;
use std::collections::HashMap;

use crate::cache::Cache;
use crate::nodeinfo::{NodeInfo, PodInfo};

pub const MAX_SCORE: i64 = 100;

/// Why a node cannot take a pod. `resolvable`: removing lower-priority pods from the node
/// could change the answer (so preemption may try it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reasons: Vec<String>,
    pub resolvable: bool,
}

impl Failure {
    pub fn unresolvable(reason: impl Into<String>) -> Failure {
        Failure {
            reasons: vec![reason.into()],
            resolvable: false,
        }
    }
    pub fn resolvable(reasons: Vec<String>) -> Failure {
        Failure {
            reasons,
            resolvable: true,
        }
    }
}

/// Data a plugin computes once per scheduling cycle (cluster-wide counts) and reads for
/// every node.
#[derive(Default)]
pub struct CycleState {
    map: HashMap<&'static str, Box<dyn Any + Send + Sync>>,
}

impl CycleState {
    pub fn put<T: Any + Send + Sync>(&mut self, key: &'static str, v: T) {
        self.map.insert(key, Box::new(v));
    }
    pub fn get<T: Any>(&self, key: &'static str) -> Option<&T> {
        self.map.get(key).and_then(|b| b.downcast_ref())
    }
}

pub trait Filter: Send + Sync {
    fn name(&self) -> &'static str;
    /// Once per cycle, before any node is filtered.
    fn pre_filter(&self, _pod: &PodInfo, _cluster: &Cache, _state: &mut CycleState) {}
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Failure>;
}

pub trait Score: Send + Sync {
    fn name(&self) -> &'static str;
    /// Once per cycle, with the nodes that passed the filters.
    fn pre_score(
        &self,
        _pod: &PodInfo,
        _cluster: &Cache,
        _nodes: &[&NodeInfo],
        _state: &mut CycleState,
    ) {
    }
    /// A raw score; [`Score::normalize`] brings the scores of all nodes to 0..=100.
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64;
    fn normalize(&self, _scores: &mut [i64]) {}
}

/// Scales scores so the highest is [`MAX_SCORE`]; `reverse` makes the highest raw score
/// the lowest (for "fewer is better" counts). Kubernetes' DefaultNormalizeScore.
pub fn normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        // Raw scores are sums over what objects say (weights, counts): in i128, so that
        // scaling one near i64::MAX neither overflows nor loses its place.
        let v = scale(*s, 0, max);
        *s = if reverse {
            MAX_SCORE.saturating_sub(v)
        } else {
            v
        };
    }
}

/// `MAX_SCORE * (s - min) / (max - min)` without overflow, whatever the three are (0 when
/// `max == min`).
pub fn scale(s: i64, min: i64, max: i64) -> i64 {
    share(
        i128::from(s) - i128::from(min),
        i128::from(max) - i128::from(min),
    )
}

/// `MAX_SCORE * part / whole` in i128, clamped to i64 (0 when `whole` is 0). Parts here
/// are differences of i64s, so the product cannot overflow.
pub fn share(part: i128, whole: i128) -> i64 {
    if whole == 0 {
        return 0;
    }
    let v = i128::from(MAX_SCORE) * part / whole;
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

/// The enabled plugins and score weights.
pub struct Framework {
    pub filters: Vec<Box<dyn Filter>>,
    pub scores: Vec<(Box<dyn Score>, i64)>,
}

impl Framework {
    /// These filters and these score plugins with their weights; `weights` overrides a
    /// plugin's weight by name (a weight of 0 disables it). The default set is
    /// `plugins::default_framework`.
    pub fn new(
        filters: Vec<Box<dyn Filter>>,
        scores: Vec<(Box<dyn Score>, i64)>,
        weights: &HashMap<String, i64>,
    ) -> Framework {
        let scores = scores
            .into_iter()
            .map(|(p, w)| {
                let w = weights.get(p.name()).copied().unwrap_or(w);
                (p, w)
            })
            .filter(|(_, w)| *w > 0)
            .collect();
        Framework { filters, scores }
    }

    pub fn pre_filter(&self, pod: &PodInfo, cluster: &Cache) -> CycleState {
        let mut st = CycleState::default();
        for f in &self.filters {
            f.pre_filter(pod, cluster, &mut st);
        }
        st
    }

    /// Runs every filter; the first failure decides.
    pub fn filter(&self, st: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Failure> {
        for f in &self.filters {
            f.filter(st, pod, node)?;
        }
        Ok(())
    }

    /// The weighted sum of normalized scores, per node in `nodes`' order.
    pub fn score(
        &self,
        st: &mut CycleState,
        pod: &PodInfo,
        cluster: &Cache,
        nodes: &[&NodeInfo],
    ) -> Vec<i64> {
        let mut total = vec![0i64; nodes.len()];
        for (p, _) in &self.scores {
            p.pre_score(pod, cluster, nodes, st);
        }
        for (p, w) in &self.scores {
            let mut s: Vec<i64> = nodes.iter().map(|n| p.score(st, pod, n)).collect();
            p.normalize(&mut s);
            for (t, v) in total.iter_mut().zip(s) {
                *t = t.saturating_add(v.clamp(0, MAX_SCORE).saturating_mul(*w));
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizing_extreme_raw_scores_does_not_overflow() {
        let mut s = [i64::MAX, i64::MAX / 2, 0, -5, i64::MIN];
        normalize(&mut s, false);
        assert_eq!(&s[..3], &[MAX_SCORE, 49, 0]);
        let mut s = [i64::MAX, 1];
        normalize(&mut s, true);
        assert_eq!(s, [0, MAX_SCORE]);
        let mut s = [i64::MIN, -1];
        normalize(&mut s, false);
        let mut s = [i64::MIN, 1];
        normalize(&mut s, true);
        assert_eq!(s, [i64::MAX, 0]);
        assert_eq!(scale(i64::MAX, i64::MIN, i64::MAX), MAX_SCORE);
        assert_eq!(scale(i64::MIN, i64::MIN, i64::MAX), 0);
        assert_eq!(scale(7, 3, 3), 0);
    }
}
