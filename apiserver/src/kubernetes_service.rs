//! The `kubernetes` Service of the `default` namespace and its endpoints, as
//! kube-apiserver's bootstrap controller and lease endpoint reconciler keep them, so that
//! pods reach the API at `kubernetes.default.svc` (and by `KUBERNETES_SERVICE_HOST`).
//!
//! Every apiserver, every `INTERVAL`:
//! - creates the Service when it is missing: the first address of
//!   `--service-cluster-ip-range`, port 443 named `https`, target the secure port, no
//!   selector (so the endpoints controllers leave it alone);
//! - renews its master lease, `/registry/masterleases/<ip>:<port>` under an etcd lease of
//!   `TTL` (so an apiserver that stops drops out within `TTL` + `INTERVAL`);
//! - writes the Endpoints `kubernetes` (one subset per port) and the EndpointSlices
//!   (`kubernetes` for the lowest port, `kubernetes-<port>` for others: replicas on one
//!   machine differ by port) from the leases alive, only when they differ, and removes
//!   slices of ports no longer served.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use proto::etcdserverpb as pb;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::etcd::Etcd;
use crate::store::{Store, Target, Write};

const INTERVAL: Duration = Duration::from_secs(10);
/// How soon a failed reconcile is tried again.
const RETRY: Duration = Duration::from_secs(1);
const TTL: i64 = 15;
const LEASES: &str = "/registry/masterleases/";
const MANAGER: &str = "kube-apiserver";

/// The live apiservers: port to their addresses, both sorted.
pub type Members = BTreeMap<u16, Vec<IpAddr>>;

/// The members named by master lease keys.
pub fn members(keys: &[Vec<u8>]) -> Members {
    let mut out = Members::new();
    for k in keys {
        let Some(rest) = k.strip_prefix(LEASES.as_bytes()) else {
            continue;
        };
        let Ok(addr) = std::str::from_utf8(rest)
            .unwrap_or("")
            .parse::<std::net::SocketAddr>()
        else {
            continue;
        };
        out.entry(addr.port()).or_default().push(addr.ip());
    }
    for ips in out.values_mut() {
        ips.sort();
        ips.dedup();
    }
    out
}

pub fn service(cluster_ip: Ipv4Addr, port: u16) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": cluster_ip.to_string(),
            "clusterIPs": [cluster_ip.to_string()],
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
            "sessionAffinity": "None",
        },
    })
}

pub fn endpoints(m: &Members) -> Value {
    let subsets: Vec<Value> = m
        .iter()
        .map(|(port, ips)| {
            json!({
                "addresses": ips.iter().map(|ip| json!({"ip": ip.to_string()})).collect::<Vec<_>>(),
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
            })
        })
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": subsets,
    })
}

/// The slices: name to body.
pub fn slices(m: &Members) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (i, (port, ips)) in m.iter().enumerate() {
        let name = if i == 0 {
            "kubernetes".to_string()
        } else {
            format!("kubernetes-{port}")
        };
        let family = if ips.first().is_some_and(IpAddr::is_ipv6) {
            "IPv6"
        } else {
            "IPv4"
        };
        let endpoints: Vec<Value> = ips
            .iter()
            .filter(|ip| ip.is_ipv6() == (family == "IPv6"))
            .map(|ip| json!({"addresses": [ip.to_string()], "conditions": {"ready": true}}))
            .collect();
        out.insert(
            name.clone(),
            json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": name, "namespace": "default",
                             "labels": {"kubernetes.io/service-name": "kubernetes"}},
                "addressType": family,
                "endpoints": endpoints,
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
            }),
        );
    }
    out
}

/// Keeps the Service and its endpoints until the task is dropped.
pub async fn run(
    store: Arc<Store>,
    etcd: Arc<Etcd>,
    me: std::net::SocketAddr,
    cluster_ip: Ipv4Addr,
) {
    loop {
        // A failure (at start-up: the store not ready yet) is retried within a second,
        // so pods starting meanwhile soon find the Service (and its variables).
        let wait = match reconcile(&store, &etcd, me, cluster_ip).await {
            Ok(()) => INTERVAL,
            Err(e) => {
                tracing::debug!(error = %e, "the kubernetes service: will retry");
                RETRY
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// Drops this apiserver's master lease (at shutdown), bounded in time.
pub async fn resign(etcd: &Etcd, me: std::net::SocketAddr) {
    let del = etcd.txn(pb::TxnRequest {
        success: vec![pb::RequestOp {
            request: Some(pb::request_op::Request::RequestDeleteRange(
                pb::DeleteRangeRequest {
                    key: format!("{LEASES}{me}").into_bytes(),
                    ..Default::default()
                },
            )),
        }],
        ..Default::default()
    });
    let _ = tokio::time::timeout(Duration::from_secs(2), del).await;
}

fn target(
    store: &Store,
    group: &str,
    version: &str,
    plural: &str,
    name: Option<&str>,
) -> Result<Target, ApiError> {
    Ok(Target {
        kind: store
            .kinds
            .find(group, version, plural)
            .ok_or(ApiError::NoRoute)?,
        namespace: Some("default".into()),
        name: name.map(String::from),
    })
}

async fn reconcile(
    store: &Store,
    etcd: &Etcd,
    me: std::net::SocketAddr,
    cluster_ip: Ipv4Addr,
) -> Result<(), ApiError> {
    let w = Write::new(MANAGER, false);
    let svc = target(store, "", "v1", "services", Some("kubernetes"))?;
    if let Err(ApiError::NotFound { .. }) = store.get(&svc, None).await {
        let body = serde_json::to_vec(&service(cluster_ip, me.port())).unwrap_or_default();
        match store
            .create(&target(store, "", "v1", "services", None)?, &body, &w)
            .await
        {
            Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let lease = etcd.lease_grant(TTL).await.map_err(ApiError::from)?;
    let key = format!("{LEASES}{me}").into_bytes();
    etcd.txn(pb::TxnRequest {
        success: vec![pb::RequestOp {
            request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                key,
                value: me.ip().to_string().into_bytes(),
                lease,
                ..Default::default()
            })),
        }],
        ..Default::default()
    })
    .await
    .map_err(ApiError::from)?;
    let mut end = LEASES.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    let r = etcd
        .range(pb::RangeRequest {
            key: LEASES.as_bytes().to_vec(),
            range_end: end,
            keys_only: true,
            ..Default::default()
        })
        .await
        .map_err(ApiError::from)?;
    let keys: Vec<Vec<u8>> = r.kvs.into_iter().map(|kv| kv.key).collect();
    let m = members(&keys);
    if m.is_empty() {
        return Ok(());
    }
    put(
        store,
        &target(store, "", "v1", "endpoints", Some("kubernetes"))?,
        endpoints(&m),
        &w,
    )
    .await?;
    let wanted = slices(&m);
    for (name, body) in &wanted {
        let t = target(
            store,
            "discovery.k8s.io",
            "v1",
            "endpointslices",
            Some(name),
        )?;
        put(store, &t, body.clone(), &w).await?;
    }
    // Slices of ports no longer served.
    let all = target(store, "discovery.k8s.io", "v1", "endpointslices", None)?;
    let opts = crate::store::ListOptions {
        labels: crate::selector::LabelSelector::parse("kubernetes.io/service-name=kubernetes")
            .map_err(|e| ApiError::Internal(e.to_string()))?,
        ..Default::default()
    };
    for item in store.list(&all, &opts).await?.items {
        let v: Value = serde_json::from_slice(&item).unwrap_or_default();
        let name = v["metadata"]["name"].as_str().unwrap_or("");
        if name.starts_with("kubernetes") && !wanted.contains_key(name) {
            let t = target(
                store,
                "discovery.k8s.io",
                "v1",
                "endpointslices",
                Some(name),
            )?;
            let _ = store.delete(&t, &Default::default()).await;
        }
    }
    Ok(())
}

/// Creates `want` or updates the stored object to it, when their contents differ.
async fn put(store: &Store, t: &Target, mut want: Value, w: &Write) -> Result<(), ApiError> {
    let fields = ["subsets", "endpoints", "ports", "addressType"];
    match store.get(t, None).await {
        Err(ApiError::NotFound { .. }) => {
            let collection = Target {
                name: None,
                ..t.clone()
            };
            let body = serde_json::to_vec(&want).unwrap_or_default();
            match store.create(&collection, &body, w).await {
                Ok(_) | Err(ApiError::AlreadyExists { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
        Ok(bytes) => {
            let have: Value = serde_json::from_slice(&bytes).unwrap_or_default();
            if fields.iter().all(|f| have.get(*f) == want.get(*f)) {
                return Ok(());
            }
            want["metadata"]["resourceVersion"] = have["metadata"]["resourceVersion"].clone();
            let body = serde_json::to_vec(&want).unwrap_or_default();
            store.update(t, &body, None, w).await.map(|_| ())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_group_by_port() {
        let keys: Vec<Vec<u8>> = [
            "/registry/masterleases/10.0.0.2:6443",
            "/registry/masterleases/10.0.0.1:6443",
            "/registry/masterleases/127.0.0.1:7443",
            "/registry/masterleases/garbage",
        ]
        .iter()
        .map(|k| k.as_bytes().to_vec())
        .collect();
        let m = members(&keys);
        assert_eq!(m.len(), 2);
        assert_eq!(
            m[&6443],
            [
                "10.0.0.1".parse::<IpAddr>().unwrap(),
                "10.0.0.2".parse().unwrap()
            ]
        );
        let e = endpoints(&m);
        assert_eq!(e["subsets"][0]["addresses"][1]["ip"], "10.0.0.2");
        assert_eq!(e["subsets"][1]["ports"][0]["port"], 7443);
        let s = slices(&m);
        assert_eq!(
            s.keys().collect::<Vec<_>>(),
            ["kubernetes", "kubernetes-7443"]
        );
        assert_eq!(s["kubernetes"]["endpoints"][0]["addresses"][0], "10.0.0.1");
        assert_eq!(
            service("10.96.0.1".parse().unwrap(), 6443)["spec"]["ports"][0]["targetPort"],
            6443
        );
    }
}
