//! The ReplicationController controller: the replica controller (`replicaset/`) for
//! core/v1 ReplicationControllers, whose selector is a plain label map and whose status
//! has the ReplicaSet's names. This module is the whole of adding a controller for a kind
//! that behaves as another: the kind's view for the shared logic, and a constructor for
//! the registration table.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    PodTemplateSpec, ReplicationController, ReplicationControllerStatus,
};

use crate::context::Context;
use crate::reconciler::Run;
use crate::replicaset::plan::Counts;
use crate::replicaset::{ReplicaController, Replicated};

/// The ReplicationController controller (`--concurrent-rc-syncs` workers).
pub fn new(ctx: &Arc<Context>) -> Box<dyn Run> {
    ReplicaController::<ReplicationController>::controller(
        ctx,
        ctx.config.replicationcontroller_workers,
    )
    .into()
}

impl Replicated for ReplicationController {
    /// Every label of the selector, with its value; an empty or missing selector selects
    /// nothing (the apiserver defaults it to the template's labels).
    fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .is_some_and(|sel| !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v)))
    }
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
    fn with_status(&self, c: &Counts) -> Option<Self> {
        let old = self.status.clone().unwrap_or_default();
        let new = ReplicationControllerStatus {
            replicas: c.replicas,
            fully_labeled_replicas: Some(c.fully_labeled),
            ready_replicas: Some(c.ready),
            available_replicas: Some(c.available),
            observed_generation: c.observed_generation,
            conditions: old.conditions.clone(),
        };
        (new != old).then(|| Self {
            status: Some(new),
            ..self.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::{claim, Claim};
    use crate::context::{controller_ref, refers_to};
    use crate::replicaset::plan::{self, Diff};
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use k8s_openapi::api::core::v1::{Pod, ReplicationControllerSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn rc(selector: Option<&[(&str, &str)]>, replicas: Option<i32>) -> ReplicationController {
        ReplicationController {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("team".into()),
                uid: Some("rc-uid".into()),
                generation: Some(4),
                ..Default::default()
            },
            spec: Some(ReplicationControllerSpec {
                selector: selector.map(labels),
                replicas,
                template: None,
                min_ready_seconds: None,
            }),
            status: None,
        }
    }

    #[test]
    fn an_rc_selects_by_its_label_map_and_an_empty_one_selects_nothing() {
        let r = rc(Some(&[("app", "web")]), None);
        assert!(r.selects(&labels(&[("app", "web"), ("tier", "front")])));
        assert!(!r.selects(&labels(&[("app", "db")])));
        assert!(!r.selects(&labels(&[])));
        assert!(!rc(Some(&[]), None).selects(&labels(&[("app", "web")])));
        assert!(!rc(None, None).selects(&labels(&[("app", "web")])));
        assert_eq!(r.replicas(), 1, "replicas default to 1");
        assert!(r.template().is_none(), "an RC's template is optional");
    }

    #[test]
    fn the_shared_plan_adopts_and_scales_for_an_rc() {
        let r = rc(Some(&[("app", "web")]), Some(2));
        let orphan = Pod {
            metadata: ObjectMeta {
                labels: Some(labels(&[("app", "web")])),
                ..Default::default()
            },
            ..Default::default()
        };
        let uid = r.metadata.uid.as_deref().unwrap();
        assert_eq!(
            claim(&orphan, uid, r.selects(&labels(&[("app", "web")])), false),
            Claim::Adopt
        );
        let mut adopted = orphan.clone();
        let owner = controller_ref(&r);
        assert_eq!(
            (owner.api_version.as_str(), owner.kind.as_str()),
            ("v1", "ReplicationController")
        );
        assert!(refers_to::<ReplicationController>(&owner));
        assert!(
            !refers_to::<ReplicaSet>(&owner),
            "an RC's pods are not a ReplicaSet's"
        );
        adopted.metadata.owner_references = Some(vec![owner]);
        assert_eq!(claim(&adopted, uid, true, false), Claim::Keep);
        assert_eq!(claim(&adopted, uid, false, false), Claim::Release);
        assert_eq!(plan::diff(r.replicas(), &[&adopted]), Diff::Create(1));
    }

    #[test]
    fn an_rc_status_has_the_replicaset_fields_and_keeps_its_conditions() {
        let mut r = rc(Some(&[("app", "web")]), Some(3));
        r.status = Some(ReplicationControllerStatus {
            conditions: Some(vec![Default::default()]),
            ..Default::default()
        });
        let c = Counts {
            replicas: 3,
            fully_labeled: 2,
            ready: 2,
            available: 1,
            observed_generation: r.metadata.generation,
        };
        let updated = r.with_status(&c).expect("a new status");
        let s = updated.status.clone().unwrap();
        assert_eq!(
            (
                s.replicas,
                s.fully_labeled_replicas,
                s.ready_replicas,
                s.available_replicas,
                s.observed_generation
            ),
            (3, Some(2), Some(2), Some(1), Some(4))
        );
        assert_eq!(s.conditions.map(|c| c.len()), Some(1));
        assert!(
            updated.with_status(&c).is_none(),
            "unchanged: not written again"
        );
    }
}
