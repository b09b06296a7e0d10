//! Cases after kube's `binder_test.go` and `index_test.go`.

use serde_json::json;

use super::*;

fn pv(name: &str, size: &str, extra: serde_json::Value) -> PersistentVolume {
    let mut v = json!({
        "metadata": {"name": name},
        "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                 "hostPath": {"path": format!("/d/{name}")}, "volumeMode": "Filesystem"},
        "status": {"phase": "Available"}
    });
    for (k, val) in extra.as_object().unwrap() {
        v["spec"][k] = val.clone();
    }
    serde_json::from_value(v).unwrap()
}

fn pvc(name: &str, size: &str, extra: serde_json::Value) -> PersistentVolumeClaim {
    let mut v = json!({
        "metadata": {"name": name, "namespace": "d", "uid": format!("uid-{name}")},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}},
                 "volumeMode": "Filesystem"}
    });
    for (k, val) in extra.as_object().unwrap() {
        v["spec"][k] = val.clone();
    }
    serde_json::from_value(v).unwrap()
}

fn class(name: &str, provisioner: &str, mode: &str) -> StorageClass {
    serde_json::from_value(
        json!({"metadata": {"name": name}, "provisioner": provisioner,
        "volumeBindingMode": mode}),
    )
    .unwrap()
}

#[test]
fn the_smallest_satisfying_volume_wins() {
    let vols = [
        pv("big", "10Gi", json!({})),
        pv("small", "2Gi", json!({})),
        pv("tiny", "1Mi", json!({})),
    ];
    let refs: Vec<&PersistentVolume> = vols.iter().collect();
    let c = pvc("c", "1Gi", json!({}));
    assert_eq!(unbound(&c, &refs, &[]), Waiting::Bind("small".into()));
    // Modes, classes and selectors narrow it.
    let rwx = pvc("c", "1Gi", json!({"accessModes": ["ReadWriteMany"]}));
    assert!(matches!(
        unbound(&rwx, &refs, &[]),
        Waiting::Event {
            reason: "FailedBinding",
            ..
        }
    ));
    let fast = pvc("c", "1Gi", json!({"storageClassName": "fast"}));
    assert_eq!(matching(&fast, &refs, false), None);
    let picky = pvc(
        "c",
        "1Gi",
        json!({"selector": {"matchLabels": {"tier": "gold"}}}),
    );
    assert_eq!(matching(&picky, &refs, false), None);
    assert_eq!(unsatisfied(&vols[2], &c), Some("requested PV is too small"));
}

#[test]
fn a_volume_pre_bound_to_the_claim_comes_first() {
    let pre = pv(
        "pre",
        "5Gi",
        json!({"claimRef": {"namespace": "d", "name": "c", "uid": "uid-c"}}),
    );
    let mut half = pre.clone();
    half.status = Some(serde_json::from_value(json!({"phase": "Bound"})).unwrap());
    let vols = [pv("small", "2Gi", json!({})), half];
    let refs: Vec<&PersistentVolume> = vols.iter().collect();
    let c = pvc("c", "1Gi", json!({}));
    assert_eq!(unbound(&c, &refs, &[]), Waiting::Bind("pre".into()));
    // Another claim of the same name (a new UID) does not get it.
    let mut other = c.clone();
    other.metadata.uid = Some("uid-new".into());
    assert_eq!(unbound(&other, &refs, &[]), Waiting::Bind("small".into()));
}

#[test]
fn classes_with_provisioners_and_delayed_binding() {
    let local = class(
        "local-path",
        "rancher.io/local-path",
        "WaitForFirstConsumer",
    );
    let now = class("now", "example.com/disk", "Immediate");
    let classes = [&local, &now];
    let c = pvc("c", "1Gi", json!({"storageClassName": "local-path"}));
    assert!(matches!(
        unbound(&c, &[], &classes),
        Waiting::Event {
            reason: "WaitForFirstConsumer",
            ..
        }
    ));
    let mut chosen = c.clone();
    chosen.metadata.annotations = Some([(SELECTED_NODE.to_string(), "node-a".to_string())].into());
    assert_eq!(
        unbound(&chosen, &[], &classes),
        Waiting::Provision("rancher.io/local-path".into())
    );
    chosen
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert(STORAGE_PROVISIONER.into(), "rancher.io/local-path".into());
    assert_eq!(unbound(&chosen, &[], &classes), Waiting::Nothing);
    let i = pvc("i", "1Gi", json!({"storageClassName": "now"}));
    assert_eq!(
        unbound(&i, &[], &classes),
        Waiting::Provision("example.com/disk".into())
    );
    let gone = pvc("g", "1Gi", json!({"storageClassName": "nope"}));
    assert!(matches!(
        unbound(&gone, &[], &classes),
        Waiting::Event {
            reason: "ProvisioningFailed",
            ..
        }
    ));
}

#[test]
fn volume_phases_follow_their_claims() {
    let c = pvc("c", "1Gi", json!({}));
    let free = pv("free", "1Gi", json!({}));
    assert_eq!(volume_phase(&free, &[&c]), Some("Available"));
    let claimed = pv(
        "v",
        "1Gi",
        json!({"claimRef": {"namespace": "d", "name": "c", "uid": "uid-c"}}),
    );
    assert_eq!(
        volume_phase(&claimed, &[&c]),
        None,
        "the claim's sync finishes the bind"
    );
    let mut bound = c.clone();
    bound.spec.as_mut().unwrap().volume_name = Some("v".into());
    assert_eq!(volume_phase(&claimed, &[&bound]), Some("Bound"));
    assert_eq!(volume_phase(&claimed, &[]), Some("Released"));
    let mut replaced = bound.clone();
    replaced.metadata.uid = Some("uid-other".into());
    assert_eq!(volume_phase(&claimed, &[&replaced]), Some("Released"));
}
