//! Connections to the cluster under test: `--conns` gRPC connections (HTTP/2, each
//! multiplexing many clients), spread over the members or all to the leader.

use std::time::Duration;

use anyhow::Context;
use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::lease_client::LeaseClient;
use proto::etcdserverpb::maintenance_client::MaintenanceClient;
use proto::etcdserverpb::watch_client::WatchClient;
use proto::etcdserverpb::StatusRequest;
use proto::tls::ClientTls;
use tonic::transport::{Channel, Endpoint};

/// Where clients send their requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// Every connection to the leader.
    Leader,
    /// Connections spread round-robin over every member.
    All,
}

pub struct Pool {
    channels: Vec<Channel>,
}

fn url(e: &str, tls: Option<&ClientTls>) -> String {
    match (e.contains("://"), tls) {
        (true, _) => e.to_string(),
        (false, Some(_)) => format!("https://{e}"),
        (false, None) => format!("http://{e}"),
    }
}

async fn connect(e: &str, tls: Option<&ClientTls>) -> anyhow::Result<Channel> {
    let url = url(e, tls);
    let ep = Endpoint::from_shared(url.clone())?;
    ClientTls::apply(tls, &url, ep)?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_adaptive_window(true)
        .connect()
        .await
        .with_context(|| format!("connecting to {e}"))
}

/// The endpoint of the member that is the leader now.
pub async fn leader(endpoints: &[String], tls: Option<&ClientTls>) -> anyhow::Result<String> {
    for e in endpoints {
        let Ok(ch) = connect(e, tls).await else {
            continue;
        };
        let Ok(s) = MaintenanceClient::new(ch).status(StatusRequest {}).await else {
            continue;
        };
        let s = s.into_inner();
        if s.header.is_some_and(|h| h.member_id == s.leader) {
            return Ok(e.clone());
        }
    }
    anyhow::bail!("no member of {endpoints:?} says it is the leader")
}

impl Pool {
    pub async fn open(
        endpoints: &[String],
        conns: usize,
        target: Target,
        tls: Option<&ClientTls>,
    ) -> anyhow::Result<Pool> {
        let targets = match target {
            Target::Leader => vec![leader(endpoints, tls).await?],
            Target::All => endpoints.to_vec(),
        };
        let mut channels = Vec::with_capacity(conns.max(1));
        for i in 0..conns.max(1) {
            channels.push(connect(&targets[i % targets.len()], tls).await?);
        }
        Ok(Pool { channels })
    }

    /// Client `i`'s connection.
    fn channel(&self, i: usize) -> Channel {
        self.channels[i % self.channels.len()].clone()
    }

    pub fn kv(&self, i: usize) -> KvClient<Channel> {
        KvClient::new(self.channel(i)).max_decoding_message_size(usize::MAX)
    }

    pub fn watch(&self, i: usize) -> WatchClient<Channel> {
        WatchClient::new(self.channel(i))
    }

    pub fn lease(&self, i: usize) -> LeaseClient<Channel> {
        LeaseClient::new(self.channel(i))
    }
}
