//! etcd's Lease service, and the leader's expiry loop (`expire_leases`).
//!
//! With auth enabled, as in etcd 3.4: revoking a lease needs WRITE on every key attached
//! to it; granting, keep-alives and reading TTLs need no permission.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use proto::etcdserverpb::lease_server::Lease;
use proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use super::node::Node;
use crate::error::KvError;
use crate::lessor::{revoke_limit, EXPIRY_TICK, LEASE_REVOKE_RATE, MAX_LEASE_TTL, REVOKE_RETRY};
use crate::raft::calls::PeerReply;
use crate::raft::types::{Command, Output};

pub struct LeaseService {
    pub node: Arc<Node>,
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        req: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        // No permission needed, but a token must still be valid.
        self.node.caller_of(&req).await?;
        let req = req.into_inner();
        if req.ttl > MAX_LEASE_TTL {
            return Err(KvError::LeaseTtlTooLarge.into());
        }
        let ttl = req.ttl.max(self.node.config.min_lease_ttl());
        let id = if req.id != 0 {
            req.id
        } else {
            (rand::random::<u64>() >> 1).max(1) as i64
        };
        let applied = self.node.propose(Command::LeaseGrant { id, ttl }).await?;
        let (id, ttl) = match applied.output? {
            Output::LeaseGranted { id, ttl } => (id, ttl),
            other => return Err(KvError::Internal(format!("grant applied as {other:?}")).into()),
        };
        Ok(Response::new(LeaseGrantResponse {
            header: Some(self.node.header(applied.revision)),
            id,
            ttl,
            error: String::new(),
        }))
    }

    async fn lease_revoke(
        &self,
        req: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let who = self.node.caller_of(&req).await?;
        let cmd = Command::LeaseRevoke {
            id: req.into_inner().id,
        };
        let applied = self.node.propose_as(who, cmd).await?;
        applied.output?;
        Ok(Response::new(LeaseRevokeResponse {
            header: Some(self.node.header(applied.revision)),
        }))
    }

    type LeaseKeepAliveStream =
        Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut input = req.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let node = self.node.clone();
        tokio::spawn(async move {
            while let Some(Ok(req)) = input.next().await {
                let reply = match node.lease_keep_alive(req.id).await {
                    // etcd answers TTL 0 for a lease that no longer exists.
                    Ok(ttl) => Ok(LeaseKeepAliveResponse {
                        header: Some(node.header(node.store.revisions().current)),
                        id: req.id,
                        ttl: ttl.unwrap_or(0),
                    }),
                    Err(e) => Err(e.to_status()),
                };
                let failed = reply.is_err();
                if tx.send(reply).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let req = req.into_inner();
        let header = Some(self.node.header(self.node.store.revisions().current));
        let Some((granted, remaining)) = self.node.lease_time_to_live(req.id).await? else {
            // etcd answers TTL -1 for a lease that does not exist.
            return Ok(Response::new(LeaseTimeToLiveResponse {
                header,
                id: req.id,
                ttl: -1,
                ..Default::default()
            }));
        };
        let keys = if req.keys {
            // The deadline came from the leader, but the keys are read here: a follower
            // must first apply everything committed, or it misses a key put just before
            // (the writer's put was acknowledged once the leader applied it).
            self.node.read_barrier().await?;
            self.node.store.read_view().0.lease_keys(req.id)?
        } else {
            Vec::new()
        };
        Ok(Response::new(LeaseTimeToLiveResponse {
            header,
            id: req.id,
            ttl: remaining,
            granted_ttl: granted,
            keys,
        }))
    }

    async fn lease_leases(
        &self,
        _req: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        let leases = self.node.store.read_view().0.leases()?;
        Ok(Response::new(LeaseLeasesResponse {
            header: Some(self.node.header(self.node.store.revisions().current)),
            leases: leases
                .into_iter()
                .map(|(id, _)| LeaseStatus { id })
                .collect(),
        }))
    }
}

/// On the leader, revokes leases whose deadline passed, through the log, as etcd's
/// lessor does: every `EXPIRY_TICK` at most `revoke_limit(LEASE_REVOKE_RATE,
/// EXPIRY_TICK)` leases (500 per 500 ms), earliest deadline first, and never more than
/// `LEASE_REVOKE_RATE` revocations in flight, so a mass expiry cannot flood Raft or pile
/// up tasks when applying is slow. Each revocation is one `LeaseRevoke` proposal (the
/// proposer batches the tick's proposals into few entries); all keys of a lease go in one
/// revision.
pub async fn expire_leases(node: Arc<Node>) {
    let in_flight = Arc::new(Semaphore::new(LEASE_REVOKE_RATE));
    let per_tick = revoke_limit(LEASE_REVOKE_RATE, EXPIRY_TICK);
    let mut tick = tokio::time::interval(EXPIRY_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let room = per_tick.min(in_flight.available_permits());
        let ids = node.store.lessor.expired(REVOKE_RETRY, room);
        if ids.is_empty() {
            continue;
        }
        // Only here, only while leading: never forwarded to another leader, which keeps
        // its own deadlines (a former leader must not revoke a live lease). One
        // confirmation covers the tick's batch; a lease left over is handed out again
        // after REVOKE_RETRY.
        if node.read_index_as_leader().await.is_err() {
            continue;
        }
        let remaining = node.store.lessor.len();
        info!(
            leases = ids.len(),
            known = remaining,
            "revoking expired leases"
        );
        for id in ids {
            let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                break;
            };
            let node = node.clone();
            tokio::spawn(async move {
                let _permit = permit;
                revoke_expired(&node, id).await;
            });
        }
    }
}

async fn revoke_expired(node: &Node, id: i64) {
    let lease = format!("{id:x}");
    match node.propose_as_leader(Command::LeaseRevoke { id }).await {
        PeerReply::Applied(a) => match a.output {
            Ok(_) => debug!(lease = %lease, revision = a.revision, "lease expired"),
            Err(KvError::LeaseNotFound) => {}
            Err(e) => warn!(lease = %lease, error = %e, "revoking expired lease failed"),
        },
        other => warn!(lease = %lease, reply = ?other, "revoking expired lease failed"),
    }
}
