//! The HPA's conditions (kube's `setCondition`): AbleToScale, ScalingActive and
//! ScalingLimited, each found by type or appended in the order first set; its transition
//! time moves only when its status flips.

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerCondition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub const ABLE_TO_SCALE: &str = "AbleToScale";
pub const SCALING_ACTIVE: &str = "ScalingActive";
pub const SCALING_LIMITED: &str = "ScalingLimited";

pub fn set(
    conditions: &mut Vec<HorizontalPodAutoscalerCondition>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    now: jiff::Timestamp,
) {
    let status = if ok { "True" } else { "False" };
    let i = match conditions.iter().position(|c| c.type_ == type_) {
        Some(i) => i,
        None => {
            conditions.push(HorizontalPodAutoscalerCondition {
                type_: type_.to_string(),
                ..Default::default()
            });
            conditions.len() - 1
        }
    };
    let c = &mut conditions[i];
    if c.status != status || c.last_transition_time.is_none() {
        c.last_transition_time = Some(Time(now));
    }
    c.status = status.to_string();
    c.reason = Some(reason.to_string());
    c.message = Some(message.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_when_the_status_flips() {
        let t0: jiff::Timestamp = "2026-12-05T10:00:00Z".parse().unwrap();
        let t1: jiff::Timestamp = "2026-12-05T10:01:00Z".parse().unwrap();
        let mut c = Vec::new();
        set(&mut c, ABLE_TO_SCALE, true, "SucceededGetScale", "m", t0);
        set(&mut c, SCALING_ACTIVE, true, "ValidMetricFound", "m", t0);
        set(&mut c, ABLE_TO_SCALE, true, "ReadyForNewScale", "m2", t1);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].reason.as_deref(), Some("ReadyForNewScale"));
        assert_eq!(c[0].last_transition_time, Some(Time(t0)));
        set(&mut c, ABLE_TO_SCALE, false, "FailedGetScale", "m3", t1);
        assert_eq!(c[0].last_transition_time, Some(Time(t1)));
        assert_eq!(c[0].status, "False");
    }
}
