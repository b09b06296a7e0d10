//! etcd's Maintenance service.
//!
//! With auth enabled, Defragment, Hash, HashKV, Snapshot and MoveLeader need the root role
//! (etcd 3.4's `authMaintenanceServer`; MoveLeader is checked here too); Status and Alarm
//! need none.

use openraft::async_runtime::WatchReceiver;
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
use tonic::{Request, Response, Status};
use tracing::info;

use super::node::Node;
use super::snapshot_stream;
use crate::auth::Need;
use crate::error::KvError;
use crate::raft::types::{Command, Output};
use crate::storage::db::{cf, STATE_CFS};

/// The etcd version clients see; they enable features by it.
pub const ETCD_VERSION: &str = "3.5.17";

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
        let m = node.raft.metrics().borrow_watched().clone();
        let st = node.store.state();
        let size = node.store.db_size() as i64;
        let is_learner = !st.membership.membership().voter_ids().any(|v| v == node.id);
        Ok(Response::new(StatusResponse {
            header: self.header(),
            version: ETCD_VERSION.into(),
            db_size: size,
            leader: node.leader_id().unwrap_or(0),
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

    /// Streams a consistent snapshot as etcd does, without a copy on disk and at most
    /// `snapshot_stream::MAX_CONCURRENT_SNAPSHOTS` at once (see `snapshot_stream`).
    async fn snapshot(
        &self,
        req: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        self.admin(&req).await?;
        let stream = snapshot_stream::start(self.node.store.clone(), self.header())?;
        Ok(Response::new(Box::pin(stream)))
    }

    async fn move_leader(
        &self,
        req: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        self.admin(&req).await?;
        let to = req.into_inner().target_id;
        super::leadership::transfer(&self.node, to, self.node.config.request_timeout()).await?;
        Ok(Response::new(MoveLeaderResponse {
            header: self.header(),
        }))
    }

    async fn downgrade(
        &self,
        _req: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        Err(KvError::Unimplemented("downgrade is not supported".into()).into())
    }
}
