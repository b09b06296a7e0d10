//! What a master asks the kvstore members through their client port (with the apiservers'
//! client certificate): the member list, and which member leads.

use std::time::Duration;

use proto::etcdserverpb::cluster_client::ClusterClient;
use proto::etcdserverpb::maintenance_client::MaintenanceClient;
use proto::etcdserverpb::{Member, MemberListRequest, StatusRequest};
use tonic::transport::{Channel, Endpoint};

use super::layout::MasterDir;
use super::topology::{self as t, Host, Topology};

/// The client TLS of a master's directory.
pub fn tls(dir: &MasterDir) -> anyhow::Result<proto::tls::ClientTls> {
    let etcd = dir.etcd_pki();
    proto::tls::ClientTls::load(
        Some(&etcd.join("ca.crt")),
        Some((
            &etcd.join("apiserver-etcd-client.crt"),
            &etcd.join("apiserver-etcd-client.key"),
        )),
    )
    .map_err(anyhow::Error::msg)
}

async fn connect(h: &Host, tls: &proto::tls::ClientTls, timeout: Duration) -> Option<Channel> {
    let url = t::client_url(h);
    let ep = Endpoint::from_shared(url.clone())
        .and_then(|ep| proto::tls::ClientTls::apply(Some(tls), &url, ep))
        .ok()?
        .connect_timeout(timeout)
        .timeout(timeout);
    tokio::time::timeout(timeout, ep.connect()).await.ok()?.ok()
}

/// The member list (linearizable) from the first of `hosts` that answers within `timeout`.
pub async fn list<'a>(
    hosts: impl IntoIterator<Item = &'a Host>,
    tls: &proto::tls::ClientTls,
    timeout: Duration,
) -> Option<Vec<Member>> {
    for h in hosts {
        let Some(channel) = connect(h, tls, timeout).await else {
            continue;
        };
        let req = MemberListRequest { linearizable: true };
        if let Ok(r) = ClusterClient::new(channel).member_list(req).await {
            return Some(r.into_inner().members);
        }
    }
    None
}

/// The name of the master whose member leads, as `me`'s member sees it.
pub async fn leader(
    topology: &Topology,
    me: &Host,
    tls: &proto::tls::ClientTls,
    timeout: Duration,
) -> anyhow::Result<String> {
    let channel = connect(me, tls, timeout)
        .await
        .ok_or_else(|| anyhow::anyhow!("{}'s kvstore member does not answer", me.name))?;
    let status = MaintenanceClient::new(channel)
        .status(StatusRequest {})
        .await?
        .into_inner();
    let members = list([me], tls, timeout)
        .await
        .ok_or_else(|| anyhow::anyhow!("no member list from {}", me.name))?;
    let m = members
        .iter()
        .find(|m| m.id == status.leader)
        .ok_or_else(|| anyhow::anyhow!("no leader known"))?;
    topology
        .masters
        .iter()
        .find(|h| m.peer_ur_ls.contains(&t::peer_url(h)))
        .map(|h| h.name.clone())
        .ok_or_else(|| anyhow::anyhow!("the leader ({:x}) is no master of cluster.json", m.id))
}
