use serde_json::json;

use super::*;

fn sts(spec: serde_json::Value) -> StatefulSet {
    let mut v = json!({
        "metadata": {"name": "web", "namespace": "d"},
        "spec": {"serviceName": "web", "selector": {"matchLabels": {"app": "w"}},
                 "template": {"metadata": {"labels": {"app": "w"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
    });
    for (k, val) in spec.as_object().unwrap() {
        v["spec"][k] = val.clone();
    }
    let mut s: StatefulSet = serde_json::from_value(v).unwrap();
    StatefulSets::default(&mut s);
    s
}

fn errors(s: &StatefulSet) -> Vec<String> {
    StatefulSets::validate(s)
        .iter()
        .map(|e| e.to_string())
        .collect()
}

#[test]
fn defaults_as_kube() {
    let s = sts(
        json!({"volumeClaimTemplates": [{"metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}),
    );
    let spec = s.spec.as_ref().unwrap();
    assert_eq!(spec.pod_management_policy.as_deref(), Some("OrderedReady"));
    let u = spec.update_strategy.as_ref().unwrap();
    assert_eq!(u.type_.as_deref(), Some("RollingUpdate"));
    assert_eq!(u.rolling_update.as_ref().unwrap().partition, Some(0));
    let r = spec
        .persistent_volume_claim_retention_policy
        .as_ref()
        .unwrap();
    assert_eq!(
        (r.when_deleted.as_deref(), r.when_scaled.as_deref()),
        (Some("Retain"), Some("Retain"))
    );
    assert_eq!(
        (spec.replicas, spec.revision_history_limit),
        (Some(1), Some(10))
    );
    let t = &spec.volume_claim_templates.as_ref().unwrap()[0];
    assert_eq!(
        t.spec.as_ref().unwrap().volume_mode.as_deref(),
        Some("Filesystem")
    );
    assert_eq!(t.status.as_ref().unwrap().phase.as_deref(), Some("Pending"));
    assert!(errors(&s).is_empty(), "{:?}", errors(&s));
    // An explicit RollingUpdate without its parameters keeps none.
    let s = sts(json!({"updateStrategy": {"type": "RollingUpdate"}}));
    assert!(s
        .spec
        .unwrap()
        .update_strategy
        .unwrap()
        .rolling_update
        .is_none());
}

#[test]
fn bad_specs_are_kubes_errors() {
    let e = errors(&sts(json!({"selector": {"matchLabels": {"app": "other"}}})));
    assert_eq!(e.len(), 1);
    assert!(
        e[0].ends_with("`selector` does not match template `labels`"),
        "{e:?}"
    );
    let e = errors(&sts(
        json!({"replicas": -1, "podManagementPolicy": "Random",
        "updateStrategy": {"type": "OnDelete", "rollingUpdate": {"partition": 1}},
        "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Keep", "whenScaled": "Retain"},
        "ordinals": {"start": -2}}),
    ));
    let fields: Vec<&str> = e.iter().map(|s| s.split(':').next().unwrap()).collect();
    assert_eq!(
        fields,
        [
            "spec.replicas",
            "spec.podManagementPolicy",
            "spec.updateStrategy.rollingUpdate",
            "spec.persistentVolumeClaimRetentionPolicy.whenDeleted",
            "spec.ordinals.start"
        ]
    );
    assert!(
        e[1].ends_with("must be 'OrderedReady' or 'Parallel'"),
        "{e:?}"
    );
    let e = errors(&sts(json!({"updateStrategy": {"type": "RollingUpdate",
        "rollingUpdate": {"partition": -1, "maxUnavailable": 0}}})));
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[1].ends_with("cannot be 0"), "{e:?}");
}

#[test]
fn only_kubes_fields_may_change() {
    let old = sts(json!({"replicas": 3}));
    let mut new = old.clone();
    let spec = new.spec.as_mut().unwrap();
    spec.replicas = Some(5);
    spec.min_ready_seconds = Some(3);
    spec.template.spec.as_mut().unwrap().containers[0].image = Some("busybox:2".into());
    assert!(StatefulSets::validate_update(&new, &old).is_empty());
    new.spec.as_mut().unwrap().service_name = Some("other".into());
    let e = StatefulSets::validate_update(&new, &old);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].to_string(), "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden");
}

#[test]
fn max_unavailable_is_dropped_unless_kept() {
    let mut s = sts(json!({"updateStrategy": {"type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 2}}}));
    StatefulSets::prepare_create(&mut s);
    let r = |s: &StatefulSet| {
        s.spec
            .as_ref()
            .unwrap()
            .update_strategy
            .as_ref()
            .unwrap()
            .rolling_update
            .clone()
            .unwrap()
    };
    assert_eq!(r(&s).max_unavailable, None);
}
