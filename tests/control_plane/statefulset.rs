//! The StatefulSet controller against the stand-in agent: ordered pods with stable names,
//! hostnames and claims, `kubectl rollout status|history|undo` and `scale`, the claim
//! retention policy carried out by the garbage collector, and kube's refusal of fixed
//! fields.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;

use super::*;

const DB: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: team}
spec:
  replicas: 3
  serviceName: db
  selector: {matchLabels: {app: db}}
  persistentVolumeClaimRetentionPolicy: {whenDeleted: Delete, whenScaled: Delete}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: c, image: busybox}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
"#;

async fn names<K>(api: &Api<K>) -> Vec<String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut v: Vec<String> = api
        .list(&kube::api::ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|o| o.meta().deletion_timestamp.is_none())
        .filter_map(|o| o.meta().name.clone())
        .collect();
    v.sort();
    v
}

pub(super) async fn statefulsets(kc: &std::path::Path, client: &kube::Client) {
    let out = kubectl_stdin(kc, &["apply", "-f", "-"], DB);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rollout = || {
        kubectl_ok(
            kc,
            &[
                "rollout",
                "status",
                "statefulset/db",
                "-n",
                "team",
                "--timeout=60s",
            ],
        )
    };
    let out = rollout();
    assert!(
        out.contains("partitioned roll out complete: 3 new pods have been updated"),
        "{out}"
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), "team");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "team");
    let all = pods
        .list(&kube::api::ListParams::default().labels("app=db"))
        .await
        .unwrap()
        .items;
    let mut made: Vec<(String, String)> = all
        .iter()
        .map(|p| {
            (
                p.metadata.labels.as_ref().unwrap()["apps.kubernetes.io/pod-index"].clone(),
                p.metadata
                    .creation_timestamp
                    .as_ref()
                    .unwrap()
                    .0
                    .to_string(),
            )
        })
        .collect();
    made.sort();
    assert_eq!(
        made.iter().map(|(i, _)| i.as_str()).collect::<Vec<_>>(),
        ["0", "1", "2"]
    );
    assert!(
        made.windows(2).all(|w| w[0].1 <= w[1].1),
        "made in order: {made:?}"
    );
    for p in &all {
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.hostname, p.metadata.name);
        assert_eq!(spec.subdomain.as_deref(), Some("db"));
    }
    assert_eq!(
        names(&claims).await,
        ["data-db-0", "data-db-1", "data-db-2"]
    );
    let c0 = claims.get("data-db-0").await.unwrap();
    assert_eq!(c0.metadata.owner_references.unwrap()[0].kind, "StatefulSet");
    let table = kubectl_ok(kc, &["get", "sts", "db", "-n", "team"]);
    assert!(table.lines().nth(1).unwrap().contains("3/3"), "{table}");

    // Scaled down from the highest ordinal; the claims of the pods scaled away go too.
    kubectl_ok(
        kc,
        &["scale", "statefulset/db", "-n", "team", "--replicas=1"],
    );
    wait_for(
        Duration::from_secs(60),
        "db-1 and db-2 and their claims gone",
        || async {
            let db: Vec<String> = names(&pods)
                .await
                .into_iter()
                .filter(|n| n.starts_with("db-"))
                .collect();
            (db == ["db-0"] && names(&claims).await == ["data-db-0"]).then_some(())
        },
    )
    .await;

    // A rolling update, its history and an undo.
    let before = pods.get("db-0").await.unwrap().metadata.labels.unwrap()
        ["controller-revision-hash"]
        .clone();
    kubectl_ok(
        kc,
        &[
            "set",
            "image",
            "statefulset/db",
            "-n",
            "team",
            "c=busybox:2",
        ],
    );
    let out = rollout();
    assert!(
        out.contains("partitioned roll out complete: 1 new pods have been updated"),
        "{out}"
    );
    wait_for(
        Duration::from_secs(60),
        "db-0 at the new revision",
        || async {
            let p = pods.get("db-0").await.ok()?;
            let image = p.spec.as_ref()?.containers[0].image.clone()?;
            (image == "busybox:2" && p.metadata.deletion_timestamp.is_none()).then_some(())
        },
    )
    .await;
    let after = pods.get("db-0").await.unwrap().metadata.labels.unwrap()
        ["controller-revision-hash"]
        .clone();
    assert_ne!(before, after);
    let history = kubectl_ok(kc, &["rollout", "history", "statefulset/db", "-n", "team"]);
    assert!(history.lines().any(|l| l.starts_with('2')), "{history}");
    let out = kubectl_ok(kc, &["rollout", "undo", "statefulset/db", "-n", "team"]);
    assert!(out.contains("rolled back"), "{out}");
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "team");
    let img = sets
        .get("db")
        .await
        .unwrap()
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers[0]
        .image
        .clone();
    assert_eq!(img.as_deref(), Some("busybox"));

    // Fixed fields are kube's 422.
    let out = kubectl(
        kc,
        &[
            "patch",
            "statefulset/db",
            "-n",
            "team",
            "--type=merge",
            "-p",
            r#"{"spec":{"serviceName":"other"}}"#,
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("updates to statefulset spec for fields other than"),
        "{err}"
    );

    // Deleting the set deletes its pods and, under whenDeleted: Delete, its claims.
    kubectl_ok(kc, &["delete", "statefulset/db", "-n", "team"]);
    wait_for(
        Duration::from_secs(60),
        "the set's pods and claims gone",
        || async {
            (names(&pods).await.iter().all(|n| !n.starts_with("db-"))
                && names(&claims).await.is_empty())
            .then_some(())
        },
    )
    .await;
}
