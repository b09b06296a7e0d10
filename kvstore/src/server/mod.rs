//! A running member: identity, storage, Raft, the gRPC servers and the background tasks.
//!
//! - `node`: the member as services see it; reaching the leader.
//! - `kv`, `watch`, `lease`, `cluster`, `maintenance`: etcd's client services.
//! - `peer`: the member-to-member service; `peer_gate`: its size limits and cluster-ID
//!   check, which every peer request passes first.
//! - `proposer`: batching of proposals on the leader (group commit under load), and the
//!   apply-gap limit ("too many requests").
//! - `snapshot_stream`: Maintenance.Snapshot's bounded byte stream.
//! - `authority`: client connections that accept the URL :authority etcdctl 3.4 sends.
//! - `listener`: accepting plain or TLS connections; `identity`: what the handshake proved.
//! - `auth`: etcd's Auth service (users, roles, tokens; the checks live in `crate::auth`).
//! - `corrupt`: the start-up and periodic corruption checks (HashKV against the peers).

pub mod auth;
mod authority;
pub mod cluster;
pub mod corrupt;
pub mod identity;
pub mod kv;
pub mod leadership;
pub mod lease;
mod listener;
pub mod maintenance;
mod membership;
mod metrics_port;
pub mod node;
pub mod peer;
pub mod peer_gate;
pub mod proposer;
pub mod read_index;
pub mod snapshot_stream;
pub mod watch;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::SnapshotPolicy;
use proto::etcdserverpb::cluster_server::ClusterServer;
use proto::etcdserverpb::kv_server::KvServer;
use proto::etcdserverpb::lease_server::LeaseServer;
use proto::etcdserverpb::maintenance_server::MaintenanceServer;
use proto::etcdserverpb::watch_server::WatchServer;
use tokio::net::TcpListener;
use tokio::sync::watch as signal;
use tracing::{error, info, warn};

use crate::config::{self, ClusterState, KvConfig};
use crate::raft::calls::{PeerCall, PeerReply};
use crate::raft::network::{NetworkFactory, Peers};
use crate::raft::types::{Member, Raft};
use crate::raft::wire::SNAPSHOT_CHUNK_BYTES;
use crate::storage::db::{DataDir, Identity};
use crate::storage::log_store::LogStore;
use crate::storage::state_machine::{StateMachine, Store};
use node::Node;

/// How long a stopping member waits for its clients' requests and streams to finish.
const SHUTDOWN_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);
/// gRPC framing on top of `--max-request-bytes`, as etcd allows.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    DataDir(#[from] crate::storage::db::DataDirError),
    #[error("cannot listen on {addr}: {cause}")]
    Listen {
        addr: SocketAddr,
        cause: std::io::Error,
    },
    #[error("joining the cluster: {0}")]
    Join(String),
    #[error("starting raft: {0}")]
    Raft(String),
    #[error("opening the state machine: {0}")]
    Store(crate::error::KvError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The start-up corruption check found this member's data differs from a peer's.
    #[error(transparent)]
    Corrupt(#[from] corrupt::CorruptError),
}

/// Works out who this member is: from its data directory, or for a new member from the
/// flags (`new`) or from the running cluster (`existing`).
async fn identity(cfg: &KvConfig, dir: &DataDir, peers: &Peers) -> Result<Identity, StartError> {
    if let Some(id) = dir.identity()? {
        if id.name != cfg.name {
            warn!(stored = %id.name, flag = %cfg.name, "--name differs from the name this data directory was created with; keeping the stored identity");
        }
        return Ok(id);
    }
    let identity = match cfg.cluster_state {
        ClusterState::New => {
            let ids: Vec<u64> = cfg
                .initial_cluster
                .iter()
                .map(|(_, urls)| config::member_id(urls, &cfg.token))
                .collect();
            Identity {
                format: String::new(),
                name: cfg.name.clone(),
                member_id: config::member_id(&cfg.advertise_peer_urls, &cfg.token),
                cluster_id: config::cluster_id(&ids, &cfg.token),
            }
        }
        ClusterState::Existing => join_existing(cfg, peers).await?,
    };
    let identity = Identity {
        format: crate::storage::db::FORMAT.into(),
        ..identity
    };
    dir.write_identity(&identity)?;
    Ok(identity)
}

async fn join_existing(cfg: &KvConfig, peers: &Peers) -> Result<Identity, StartError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last_err = String::from("no other member in --initial-cluster");
    while Instant::now() < deadline {
        for (name, urls) in &cfg.initial_cluster {
            if *name == cfg.name {
                continue;
            }
            for url in urls {
                match peers
                    .call(url, &PeerCall::ClusterInfo, Duration::from_secs(2))
                    .await
                {
                    Ok(PeerReply::ClusterInfo(info)) => {
                        let me = info.members.iter().find(|m| {
                            m.peer_urls
                                .iter()
                                .any(|u| cfg.advertise_peer_urls.contains(u))
                        });
                        return match me {
                            Some(m) => Ok(Identity {
                                format: String::new(),
                                name: cfg.name.clone(),
                                member_id: m.id,
                                cluster_id: info.cluster_id,
                            }),
                            None => Err(StartError::Join(format!(
                                "the cluster at {url} has no member with peer URLs {}; add it first with MemberAdd (etcdctl member add)",
                                cfg.advertise_peer_urls.join(",")
                            ))),
                        };
                    }
                    Ok(other) => last_err = format!("{url}: unexpected reply {other:?}"),
                    Err(e) => last_err = e.to_string(),
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(StartError::Join(last_err))
}

/// Binds every address; an https:// one gets `tls` (which the config guarantees exists).
async fn bind(
    addrs: &[config::Listen],
    tls: &Option<Arc<rustls::ServerConfig>>,
) -> Result<Vec<(TcpListener, Option<Arc<rustls::ServerConfig>>)>, StartError> {
    let mut out = Vec::new();
    for l in addrs {
        let listener = TcpListener::bind(l.addr)
            .await
            .map_err(|cause| StartError::Listen {
                addr: l.addr,
                cause,
            })?;
        out.push((listener, if l.tls { tls.clone() } else { None }));
    }
    Ok(out)
}

fn server_tls(
    files: &Option<config::TlsFiles>,
) -> Result<Option<Arc<rustls::ServerConfig>>, StartError> {
    files
        .as_ref()
        .map(crate::tls::server_config)
        .transpose()
        .map_err(StartError::Tls)
}

/// Runs a member until `external` turns true (the binary sets it on SIGTERM or SIGINT) or
/// the cluster tells the member it was removed.
pub async fn run(cfg: KvConfig, mut external: signal::Receiver<bool>) -> Result<(), StartError> {
    // Stops on the caller's signal (once leadership is handed over, see below), or when the
    // cluster tells this member it was removed.
    let (stop, mut shutdown) = signal::channel(false);
    let dir = DataDir::new(&cfg.data_dir);
    // Refuse a foreign or damaged directory before binding or talking to anyone.
    dir.identity()?;
    let peer_tls = server_tls(&cfg.peer_tls)?;
    let client_tls = server_tls(&cfg.client_tls)?;
    let peers = Peers::new(
        cfg.peer_tls
            .as_ref()
            .map(|t| proto::tls::ClientTls::load(t.trusted_ca.as_deref(), Some((&t.cert, &t.key))))
            .transpose()
            .map_err(|e| StartError::Tls(crate::tls::TlsError::Config(e)))?,
    );
    let ident = identity(&cfg, &dir, &peers).await?;
    peers.set_cluster_id(ident.cluster_id);
    info!(name = %cfg.name, member = %format!("{:x}", ident.member_id), cluster = %format!("{:x}", ident.cluster_id), data_dir = %cfg.data_dir.display(), "starting member");

    let db = dir.open_db()?;
    snapshot_stream::remove_stale_copies(&dir.snap_dir());
    let store = Store::open(db.clone(), cfg.watch_broadcast_capacity).map_err(StartError::Store)?;
    if cfg.initial_corrupt_check {
        // Before this member listens, as etcd checks before serving peers: members
        // restarting together then find each other down at once instead of waiting out a
        // timeout on a port that is bound but not served.
        let members = store
            .state()
            .membership
            .membership()
            .nodes()
            .map(|(id, m)| (*id, m.peer_urls.clone()))
            .collect();
        corrupt::initial_check(
            &store,
            &peers,
            ident.member_id,
            members,
            cfg.request_timeout(),
        )
        .await?;
    }
    let peer_listeners = bind(&cfg.listen_peer, &peer_tls).await?;
    let client_listeners = bind(&cfg.listen_client, &client_tls).await?;
    let metrics_listeners = bind(
        &cfg.listen_metrics,
        &metrics_port::tls_for_metrics(&client_tls),
    )
    .await?;
    let raft_config = openraft::Config {
        cluster_name: format!("{:x}", ident.cluster_id),
        heartbeat_interval: cfg.heartbeat.as_millis() as u64,
        // openraft makes a follower wait a leader lease (= election_timeout_max) on top of
        // its randomized election timeout before it campaigns. With [E/2, E) that is
        // 1.5E-2E after it last heard from the leader, close to etcd's E-2E; mapping the
        // flag to [E, 2E) as etcd does would make failover take 3E-4E.
        election_timeout_min: cfg.election.as_millis() as u64 / 2,
        election_timeout_max: cfg.election.as_millis() as u64,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_count),
        max_in_snapshot_log_to_keep: cfg.snapshot_count.min(5000),
        install_snapshot_timeout: 10_000,
        snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
        // etcd's PreVote: a member that cannot win (back from a partition, or with a stale
        // log) asks before it raises its term, so it does not unseat a healthy leader.
        enable_pre_vote: Some(true),
        // A leader that lost its quorum goes quiet for a while (after its lease ran out),
        // so it stops renewing its followers' leases and they can elect (the availability
        // half of etcd's CheckQuorum; `leadership` is the other half).
        quorum_loss_probe_interval: Some(2 * cfg.election.as_millis() as u64),
        // A restarted leader does not resume leading on its own: its applied state and
        // commit index are not synced, so it rejoins through an election as etcd's does.
        enable_leader_restore: Some(false),
        ..Default::default()
    }
    .validate()
    .map_err(|e| StartError::Raft(e.to_string()))?;
    let raft = Raft::new(
        ident.member_id,
        Arc::new(raft_config),
        NetworkFactory {
            peers: peers.clone(),
        },
        LogStore::new(db.clone()),
        StateMachine::new(store.clone(), dir.snap_dir()),
    )
    .await
    .map_err(|e| StartError::Raft(e.to_string()))?;

    // A member of a new cluster initialises Raft until that has happened once (a restored
    // data directory has state but no Raft log yet).
    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
    if cfg.cluster_state == ClusterState::New && !initialized {
        let members: BTreeMap<u64, Member> = cfg
            .initial_cluster
            .iter()
            .map(|(_, urls)| {
                (
                    config::member_id(urls, &cfg.token),
                    Member {
                        peer_urls: urls.clone(),
                    },
                )
            })
            .collect();
        // Every member initialises with the same membership; openraft allows that.
        if let Err(e) = raft.initialize(members).await {
            warn!(error = %e, "raft already initialised");
        }
    }

    let proposer = proposer::Proposer::start(raft.clone());
    let reads = read_index::ReadIndexer::start(raft.clone());
    let node = Arc::new(Node {
        id: ident.member_id,
        cluster_id: ident.cluster_id,
        config: cfg.clone(),
        raft,
        store,
        peers,
        proposer,
        reads,
        stop,
        snapshots: crate::raft::snapshot_transfer::Receiver::new(
            crate::storage::state_machine::incoming_path(&dir.snap_dir()),
        ),
        leadership: tokio::sync::watch::channel(node::Leadership::default()).0,
    });
    {
        let node = node.clone();
        tokio::spawn(async move {
            let _ = external.wait_for(|s| *s).await;
            // While every port still serves: a leader hands over first (etcd does on
            // SIGTERM), so its clients and the cluster see no election timeout.
            leadership::hand_over(&node).await;
            let _ = node.stop.send(true);
        });
    }
    for (l, tls) in metrics_listeners {
        tokio::spawn(metrics_port::serve(l, tls, node.clone(), shutdown.clone()));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (l, tls) in peer_listeners {
        let svc = peer_gate::service(node.cluster_id, peer::PeerService { node: node.clone() });
        let mut stop = shutdown.clone();
        tasks.spawn(async move {
            let incoming = listener::incoming(l, tls);
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        });
    }
    let limit = cfg.max_request_bytes + GRPC_OVERHEAD_BYTES;
    for (l, tls) in client_listeners {
        let n = node.clone();
        let mut stop = shutdown.clone();
        tasks.spawn(async move {
            // etcd's Go clients may send a URL as the :authority (see authority.rs); that
            // is read inside TLS.
            let incoming = tokio_stream::StreamExt::map(listener::incoming(l, tls), |conn| {
                conn.map(authority::AuthorityTolerant::new)
            });
            tonic::transport::Server::builder()
                .add_service(
                    KvServer::new(kv::KvService { node: n.clone() })
                        .max_decoding_message_size(limit),
                )
                .add_service(
                    WatchServer::new(watch::WatchService { node: n.clone() })
                        .max_decoding_message_size(limit),
                )
                .add_service(
                    LeaseServer::new(lease::LeaseService { node: n.clone() })
                        .max_decoding_message_size(limit),
                )
                .add_service(
                    ClusterServer::new(cluster::ClusterService { node: n.clone() })
                        .max_decoding_message_size(limit),
                )
                .add_service(
                    MaintenanceServer::new(maintenance::MaintenanceService { node: n.clone() })
                        .max_decoding_message_size(limit),
                )
                .add_service(
                    proto::etcdserverpb::auth_server::AuthServer::new(auth::AuthService {
                        node: n.clone(),
                    })
                    .max_decoding_message_size(limit),
                )
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        });
    }
    let mut background = vec![
        tokio::spawn(leadership::watch(node.clone())),
        tokio::spawn(lease::expire_leases(node.clone())),
        tokio::spawn(node.clone().publish_self()),
    ];
    if let Some(every) = cfg.corrupt_check_time {
        background.push(tokio::spawn(corrupt::monitor(node.clone(), every)));
    }
    info!(client_urls = %cfg.advertise_client_urls.join(","), peer_urls = %cfg.advertise_peer_urls.join(","), "serving");

    let _ = shutdown.wait_for(|s| *s).await;
    info!("shutting down");
    for t in background {
        t.abort();
    }
    if let Err(e) = node.raft.shutdown().await {
        error!(error = %e, "raft shutdown");
    }
    // Servers stop taking connections at once and finish what is in flight; a client
    // that keeps a stream open (a watch) would hold them forever, so after
    // SHUTDOWN_DRAIN its connection is closed (etcd's GracefulStop, then Stop).
    let drain = async {
        while let Some(r) = tasks.join_next().await {
            if let Ok(Err(e)) = r {
                warn!(error = %e, "server stopped with an error");
            }
        }
    };
    if tokio::time::timeout(SHUTDOWN_DRAIN, drain).await.is_err() {
        warn!(
            after = ?SHUTDOWN_DRAIN,
            "clients still connected (open watches): closing their connections"
        );
        tasks.abort_all();
    }
    let _ = db.flush_wal(true);
    info!("stopped");
    Ok(())
}
