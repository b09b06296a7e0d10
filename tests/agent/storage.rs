//! Claims end to end on the Docker runtime. Static: two hostPath PersistentVolumes made
//! by hand, a StatefulSet whose claim templates the binder binds to them, each pod
//! writing its name into its volume; a deleted pod comes back under the same name with
//! the same claim and finds what it wrote. Dynamic: a claim of the default class
//! (`local-path`, WaitForFirstConsumer) is provisioned on the node the scheduler chose for
//! its pod, mounted, and its directory removed by a helper pod once the claim goes. A
//! claim deleted while a pod uses it, and a volume deleted while bound, wait for that to
//! end (the protection finalizers).

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};

use super::*;

fn volumes(dir: &std::path::Path) -> String {
    ["a", "b"]
        .iter()
        .map(|n| {
            format!(
                r#"
apiVersion: v1
kind: PersistentVolume
metadata: {{name: t30-{n}}}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteOnce]
  storageClassName: manual
  hostPath: {{path: {}, type: DirectoryOrCreate}}
---"#,
                dir.join(n).display()
            )
        })
        .collect()
}

const STS: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: st, namespace: default}
spec:
  replicas: 2
  serviceName: st
  selector: {matchLabels: {app: st}}
  template:
    metadata: {labels: {app: st}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: IMAGE
        command: ["sh", "-c", "if [ -f /data/who ]; then echo found $(cat /data/who); else hostname > /data/who; echo wrote; fi; exec sleep 3600"]
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      storageClassName: manual
      resources: {requests: {storage: 100Mi}}
"#;

pub(super) async fn claims(w: &World, kc: &std::path::Path) {
    let dir = tempfile::tempdir().unwrap();
    apply(w, &volumes(dir.path()));
    apply(w, &STS.replace("IMAGE", common::images::BUSYBOX));
    let pods = ready_pods(&w.client, "app=st", 2, Duration::from_secs(90)).await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(w.client.clone(), "default");
    let pvs: Api<PersistentVolume> = Api::all(w.client.clone());
    for n in ["data-st-0", "data-st-1"] {
        let c = claims.get(n).await.unwrap();
        assert_eq!(
            c.status.as_ref().unwrap().phase.as_deref(),
            Some("Bound"),
            "{n}"
        );
        let v = c.spec.unwrap().volume_name.unwrap();
        let pv = pvs.get(&v).await.unwrap();
        assert_eq!(pv.status.unwrap().phase.as_deref(), Some("Bound"));
        assert_eq!(pv.spec.unwrap().claim_ref.unwrap().name.as_deref(), Some(n));
    }
    let table = kubectl_ok(kc, &["get", "pvc", "data-st-0"]);
    assert!(
        table.contains("Bound") && table.contains("RWO") && table.contains("1Gi"),
        "{table}"
    );
    // Each pod wrote its own name into its own volume on the host.
    let mut written: Vec<String> = ["a", "b"]
        .iter()
        .map(|n| std::fs::read_to_string(dir.path().join(n).join("who")).unwrap_or_default())
        .map(|s| s.trim().to_string())
        .collect();
    written.sort();
    assert_eq!(written, ["st-0", "st-1"]);
    for p in &pods {
        let log = kubectl_ok(kc, &["logs", p.metadata.name.as_deref().unwrap()]);
        assert_eq!(log.trim(), "wrote");
    }

    // web-0 deleted: it comes back as itself, with its claim and what it wrote.
    let pods_api: Api<Pod> = Api::namespaced(w.client.clone(), "default");
    let old = pods_api.get("st-0").await.unwrap().metadata.uid.unwrap();
    kubectl_ok(kc, &["delete", "pod", "st-0"]);
    let again = wait_for(Duration::from_secs(90), "st-0 back and ready", || async {
        let p = pods_api.get("st-0").await.ok()?;
        (p.metadata.uid.as_deref() != Some(old.as_str()) && pod_ready(&p)).then_some(p)
    })
    .await;
    assert!(again.spec.unwrap().volumes.unwrap().iter().any(|v| v
        .persistent_volume_claim
        .as_ref()
        .is_some_and(|c| c.claim_name == "data-st-0")));
    let log = wait_for(Duration::from_secs(20), "st-0's log", || async {
        Some(kubectl_ok(kc, &["logs", "st-0"])).filter(|l| !l.is_empty())
    })
    .await;
    assert_eq!(log.trim(), "found st-0");

    kubectl_ok(kc, &["delete", "statefulset", "st"]);
    wait_for(Duration::from_secs(60), "the st pods gone", || async {
        let l = pods_api
            .list(&ListParams::default().labels("app=st"))
            .await
            .ok()?;
        l.items.is_empty().then_some(())
    })
    .await;
    // A bound volume deleted first stays (pv-protection) until its claim lets it go.
    kubectl_ok(kc, &["delete", "pv", "t30-a", "--wait=false"]);
    let table = kubectl_ok(kc, &["get", "pv", "t30-a"]);
    assert!(table.contains("Terminating"), "{table}");
    // Retain: the claims stay until deleted; then their volumes are Released.
    kubectl_ok(kc, &["delete", "pvc", "data-st-0", "data-st-1"]);
    wait_for(Duration::from_secs(30), "t30-b Released", || async {
        let l = pvs.list(&ListParams::default()).await.ok()?;
        let released = l
            .items
            .iter()
            .filter(|v| v.metadata.name.as_deref().is_some_and(|n| n == "t30-b"))
            .filter(|v| v.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released"))
            .count();
        (released == 1).then_some(())
    })
    .await;
    wait_for(
        Duration::from_secs(30),
        "t30-a gone once Released",
        || async { pvs.get_opt("t30-a").await.ok()?.is_none().then_some(()) },
    )
    .await;
    kubectl_ok(kc, &["delete", "pv", "t30-b"]);
}

const DYNAMIC: &str = r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: dyn, namespace: default}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 10Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: dyn, namespace: default, labels: {app: dyn}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: IMAGE
    command: ["sh", "-c", "echo kept > /data/file; exec sleep 3600"]
    volumeMounts: [{name: data, mountPath: /data}]
  volumes:
  - {name: data, persistentVolumeClaim: {claimName: dyn}}
"#;

pub(super) async fn provisioned(w: &World, kc: &std::path::Path) {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(w.client.clone(), "default");
    let pvs: Api<PersistentVolume> = Api::all(w.client.clone());
    // The provisioner made the default class.
    let sc = kubectl_ok(kc, &["get", "storageclass"]);
    assert!(
        sc.contains("local-path (default)") && sc.contains("WaitForFirstConsumer"),
        "{sc}"
    );
    apply(w, &DYNAMIC.replace("IMAGE", common::images::BUSYBOX));
    let pod = ready_pods(&w.client, "app=dyn", 1, Duration::from_secs(90))
        .await
        .remove(0);
    let c = claims.get("dyn").await.unwrap();
    assert_eq!(
        c.spec.as_ref().unwrap().storage_class_name.as_deref(),
        Some("local-path")
    );
    let annotations = c.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations.get("volume.kubernetes.io/selected-node"),
        Some(&node_of(&pod)),
        "the scheduler chose the claim's node"
    );
    let vname = c.spec.as_ref().unwrap().volume_name.clone().unwrap();
    assert_eq!(vname, format!("pvc-{}", c.metadata.uid.as_deref().unwrap()));
    let pv = pvs.get(&vname).await.unwrap();
    let path = std::path::PathBuf::from(
        pv.spec
            .as_ref()
            .unwrap()
            .host_path
            .as_ref()
            .unwrap()
            .path
            .clone(),
    );
    let file = path.join("file");
    wait_for(
        Duration::from_secs(20),
        "the pod's file in the volume",
        || async { (std::fs::read_to_string(&file).ok()?.trim() == "kept").then_some(()) },
    )
    .await;
    // Both carry their protection finalizer from admission.
    let fins = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        m.finalizers.clone().unwrap_or_default()
    };
    assert!(fins(&c.metadata).contains(&"kubernetes.io/pvc-protection".to_string()));
    assert!(fins(&pv.metadata).contains(&"kubernetes.io/pv-protection".to_string()));
    // The claim deleted while its pod runs: it waits (pvc-protection), the pod keeps
    // its data; once the pod goes, the claim goes, a helper pod removes the directory
    // (reclaim Delete), and the volume goes.
    kubectl_ok(kc, &["delete", "pvc", "dyn", "--wait=false"]);
    let table = kubectl_ok(kc, &["get", "pvc", "dyn"]);
    assert!(table.contains("Terminating"), "{table}");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), "kept");
    kubectl_ok(kc, &["delete", "pod", "dyn"]);
    wait_for(
        Duration::from_secs(90),
        "the volume and its directory removed",
        || async { (pvs.get_opt(&vname).await.ok()?.is_none() && !path.exists()).then_some(()) },
    )
    .await;
}
