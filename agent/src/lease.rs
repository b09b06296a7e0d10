//! The node's heartbeat: its Lease in kube-node-lease (named after the node, owned by the
//! Node object), renewed every quarter of the lease duration as the kubelet's node lease
//! controller does; a failed renewal is retried at 200 ms doubling to 7 s.

use std::time::Duration;

use flotilla_core::backoff::Backoff;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::api::{Api, PostParams};
use tracing::{debug, warn};

pub const NAMESPACE: &str = "kube-node-lease";

fn spec(node: &str, duration_secs: i32) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(node.to_string()),
        lease_duration_seconds: Some(duration_secs),
        renew_time: Some(MicroTime(jiff::Timestamp::now())),
        ..Default::default()
    }
}

async fn renew_once(api: &Api<Lease>, node: &Node, duration_secs: i32) -> kube::Result<()> {
    let name = node.metadata.name.clone().unwrap_or_default();
    match api.get_opt(&name).await? {
        Some(mut cur) => {
            cur.spec = Some(spec(&name, duration_secs));
            api.replace(&name, &PostParams::default(), &cur).await?;
        }
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(NAMESPACE.into()),
                    owner_references: node.metadata.uid.clone().map(|uid| {
                        vec![OwnerReference {
                            api_version: "v1".into(),
                            kind: "Node".into(),
                            name: name.clone(),
                            uid,
                            ..Default::default()
                        }]
                    }),
                    ..Default::default()
                },
                spec: Some(spec(&name, duration_secs)),
            };
            api.create(&PostParams::default(), &lease).await?;
        }
    }
    Ok(())
}

/// Renews the node's Lease until the task is dropped.
pub async fn keep_renewing(client: kube::Client, node: Node, duration_secs: i32) {
    let api: Api<Lease> = Api::namespaced(client, NAMESPACE);
    let every = Duration::from_secs_f64(f64::from(duration_secs.max(1)) / 4.0);
    let mut retry = Backoff::new(Duration::from_millis(200), Duration::from_secs(7));
    loop {
        match renew_once(&api, &node, duration_secs).await {
            Ok(()) => {
                debug!(node = ?node.metadata.name, "lease renewed");
                retry.reset();
                tokio::time::sleep(every).await;
            }
            Err(e) => {
                warn!(node = ?node.metadata.name, error = %e, "renewing the node lease");
                tokio::time::sleep(retry.next_delay()).await;
            }
        }
    }
}
