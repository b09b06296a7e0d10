//! etcd's Maintenance service.
//!
//! With auth enabled, Defragment, Hash, HashKV, Snapshot and MoveLeader need the root role
//! (etcd 3.4's `authMaintenanceServer`; MoveLeader is checked here too); Status and Alarm
//! need none.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use proto::etcdserverpb::maintenance_server::Maintenance;
use proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse,
    DowngradeRequest, DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse,
    MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest,
    StatusResponse,
};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::info;

use super::node::Node;
use crate::auth::Need;
use crate::error::KvError;
use crate::raft::types::{Command, Output};
use crate::storage::db::{cf, STATE_CFS};
use crate::storage::snapshot;

/// The etcd version clients see; they enable features by it.
pub const ETCD_VERSION: &str = "3.5.17";
const SNAPSHOT_CHUNK: usize = 1 << 20;

pub struct MaintenanceService {
    pub node: Arc<Node>,
}

impl MaintenanceService {
    fn header(&self) -> Option<proto::etcdserverpb::ResponseHeader> {
        Some(self.node.header(self.node.store.revisions().current))
    }

    /// Refuses a caller without the root role while auth is enabled.
    async fn admin<T>(&self, req: &Request<T>) -> Result<(), KvError> {
        let who = self.node.caller_of(req).await?;
        self.node.authorize(who.as_deref(), &[Need::Admin]).await
    }
}

fn alarm_name(a: i32) -> &'static str {
    match a {
        1 => "NOSPACE",
        2 => "CORRUPT",
        _ => "NONE",
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        // No permission needed, but a token must still be valid.
        self.node.caller_of(&req).await?;
        let req = req.into_inner();
        let alarms = match req.action {
            0 => self.node.store.state().alarms,
            1 | 2 => {
                let applied = self
                    .node
                    .propose(Command::Alarm {
                        action: req.action,
                        member_id: req.member_id,
                        alarm: req.alarm,
                    })
                    .await?;
                match applied.output? {
                    Output::Alarms(a) => a,
                    _ => Vec::new(),
                }
            }
            other => {
                return Err(KvError::InvalidArgument(format!(
                    "etcdserver: unknown alarm action {other}"
                ))
                .into())
            }
        };
        let alarms = alarms
            .into_iter()
            .filter(|(m, a)| {
                req.action != 0
                    || ((req.member_id == 0 || *m == req.member_id)
                        && (req.alarm == 0 || *a == req.alarm))
            })
            .map(|(member_id, alarm)| AlarmMember { member_id, alarm })
            .collect();
        Ok(Response::new(AlarmResponse {
            header: self.header(),
            alarms,
        }))
    }

    async fn status(
        &self,
        _req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let node = &self.node;
        let m = node.raft.metrics().borrow().clone();
        let st = node.store.state();
        let size = node.store.db_size() as i64;
        let is_learner = !st.membership.membership().voter_ids().any(|v| v == node.id);
        Ok(Response::new(StatusResponse {
            header: self.header(),
            version: ETCD_VERSION.into(),
            db_size: size,
            leader: m.current_leader.unwrap_or(0),
            raft_index: m.last_log_index.unwrap_or(0),
            raft_term: m.current_term,
            raft_applied_index: st.applied.map_or(0, |l| l.index),
            errors: st
                .alarms
                .iter()
                .map(|(m, a)| format!("memberID:{m} alarm:{}", alarm_name(*a)))
                .collect(),
            db_size_in_use: size,
            is_learner,
            storage_version: String::new(),
            db_size_quota: node.config.quota_backend_bytes as i64,
            downgrade_info: None,
        }))
    }

    async fn defragment(
        &self,
        req: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        self.admin(&req).await?;
        let db = self.node.store.db.clone();
        let before = self.node.store.db_size();
        tokio::task::spawn_blocking(move || {
            for name in STATE_CFS {
                db.compact_range_cf(cf(&db, name), None::<&[u8]>, None::<&[u8]>);
            }
        })
        .await
        .map_err(KvError::internal)?;
        info!(before, after = self.node.store.db_size(), "defragmented");
        Ok(Response::new(DefragmentResponse {
            header: self.header(),
        }))
    }

    async fn hash(&self, req: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        self.admin(&req).await?;
        let (hash, _) = tokio::task::block_in_place(|| {
            let (view, revs) = self.node.store.read_view();
            view.hash(revs.compacted, revs.current).map(|h| (h, revs))
        })?;
        Ok(Response::new(HashResponse {
            header: self.header(),
            hash,
        }))
    }

    async fn hash_kv(
        &self,
        req: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        self.admin(&req).await?;
        let requested = req.into_inner().revision;
        let (hash, rev, revs) = tokio::task::block_in_place(|| {
            let (view, revs) = self.node.store.read_view();
            let rev = revs.check_read(requested)?;
            view.hash(revs.compacted, rev).map(|h| (h, rev, revs))
        })?;
        Ok(Response::new(HashKvResponse {
            header: Some(self.node.header(revs.current)),
            hash,
            compact_revision: revs.compacted,
            hash_revision: rev,
        }))
    }

    type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

    async fn snapshot(
        &self,
        req: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        self.admin(&req).await?;
        let store = self.node.store.clone();
        let path = self
            .node
            .config
            .data_dir
            .join("snap")
            .join(format!("client-{}.tmp", rand::random::<u64>()));
        let write_path = path.clone();
        tokio::task::spawn_blocking(move || {
            let snap = store.consistent_snapshot();
            snapshot::write(&store.db, &snap, &write_path)
        })
        .await
        .map_err(KvError::internal)?
        .map_err(KvError::internal)?;
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(KvError::internal)?;
        let size = file.metadata().await.map_err(KvError::internal)?.len();
        let _ = tokio::fs::remove_file(&path).await; // the open handle keeps the data
                                                     // As etcd does, the stream is padded to a multiple of 512 bytes and ends with the
                                                     // SHA-256 of what precedes it; etcdctl checks for that trailer.
        let padded = size.div_ceil(512) * 512;
        let total = padded + 32;
        let header = self.header();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut sha = Sha256::new();
            let mut sent = 0u64;
            while sent < total {
                let mut buf = vec![0u8; SNAPSHOT_CHUNK];
                let n = if sent < size {
                    match file.read(&mut buf).await {
                        Ok(0) => {
                            let _ = tx
                                .send(Err(KvError::internal("snapshot file shrank").to_status()))
                                .await;
                            return;
                        }
                        Ok(n) => n,
                        Err(e) => {
                            let _ = tx.send(Err(KvError::internal(e).to_status())).await;
                            return;
                        }
                    }
                } else if sent < padded {
                    (padded - sent) as usize // zero padding
                } else {
                    buf[..32].copy_from_slice(&sha.clone().finalize());
                    32
                };
                buf.truncate(n);
                if sent < padded {
                    sha.update(&buf);
                }
                sent += n as u64;
                let resp = SnapshotResponse {
                    header,
                    remaining_bytes: total - sent,
                    blob: buf,
                    version: ETCD_VERSION.into(),
                };
                if tx.send(Ok(resp)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn move_leader(
        &self,
        req: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        self.admin(&req).await?;
        Err(KvError::Unimplemented("leader transfer is not supported by this build".into()).into())
    }

    async fn downgrade(
        &self,
        _req: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        Err(KvError::Unimplemented("downgrade is not supported".into()).into())
    }
}
