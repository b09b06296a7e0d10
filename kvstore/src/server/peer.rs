//! The peer service: receives Raft RPCs and the internal calls of other members. Requests
//! reach it through `peer_gate`, which has checked their size and cluster ID.

use std::sync::Arc;

use proto::peer::peer_server::Peer;
use proto::peer::Payload;
use tonic::{Request, Response, Status};

use super::node::{Node, Retry};
use crate::raft::calls::{PeerCall, PeerReply};
use crate::raft::network::RpcReply;
use crate::raft::snapshot_transfer::{ChunkError, ChunkReply};
use crate::raft::wire::{decode_frame, FrameError};
use crate::storage::db::encode;

pub struct PeerService {
    pub node: Arc<Node>,
}

fn bad(e: FrameError) -> Status {
    Status::invalid_argument(e.to_string())
}

/// openraft's answer to an RPC, or why Raft could not give one.
fn rpc_reply<T, E: std::fmt::Display>(r: Result<T, E>) -> RpcReply<T> {
    r.map_err(|e| e.to_string())
}

fn reply<T: serde::Serialize>(v: &T) -> Result<Response<Payload>, Status> {
    Ok(Response::new(Payload {
        data: encode(v),
        cluster_id: 0,
    }))
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn vote(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let rpc = decode_frame(&req.into_inner().data).map_err(bad)?;
        reply(&rpc_reply(self.node.raft.vote(rpc).await))
    }

    async fn pre_vote(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let rpc = decode_frame(&req.into_inner().data).map_err(bad)?;
        reply(&rpc_reply(self.node.raft.pre_vote(rpc).await))
    }

    async fn append_entries(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let rpc = decode_frame(&req.into_inner().data).map_err(bad)?;
        reply(&rpc_reply(self.node.raft.append_entries(rpc).await))
    }

    async fn install_snapshot(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let chunk = decode_frame(&req.into_inner().data).map_err(bad)?;
        match self.node.snapshots.receive(&self.node.raft, chunk).await {
            Ok(r) => reply::<RpcReply<_>>(&Ok(r)),
            Err(e @ ChunkError::BeyondVote { .. }) => Err(Status::invalid_argument(e.to_string())),
            Err(e) => reply::<RpcReply<ChunkReply>>(&Err(e.to_string())),
        }
    }

    async fn transfer_leader(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let rpc = decode_frame(&req.into_inner().data).map_err(bad)?;
        reply(&rpc_reply(self.node.raft.handle_transfer_leader(rpc).await))
    }

    async fn call(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let call: PeerCall = decode_frame(&req.into_inner().data).map_err(bad)?;
        let node = &self.node;
        let not_leader = || PeerReply::Error(crate::error::KvError::NotLeader);
        let out = match call {
            PeerCall::Propose(cmd) => node.propose_as_leader(cmd).await,
            PeerCall::ReadIndex => match node.read_index_as_leader().await {
                Ok(i) => PeerReply::ReadIndex(i),
                Err(Retry::Again) => not_leader(),
                Err(Retry::Fail(e)) => PeerReply::Error(e),
            },
            lease @ (PeerCall::LeaseKeepAlive { .. } | PeerCall::LeaseTimeToLive { .. }) => {
                match node.lease_local(&lease).await {
                    Ok(r) => r,
                    Err(Retry::Again) => not_leader(),
                    Err(Retry::Fail(e)) => PeerReply::Error(e),
                }
            }
            PeerCall::ClusterInfo => PeerReply::ClusterInfo(node.cluster_info()),
            PeerCall::Removed { cluster_id, id }
                if cluster_id == node.cluster_id && id == node.id =>
            {
                tracing::warn!("this member was removed from the cluster; shutting down");
                let _ = node.stop.send(true);
                PeerReply::Done
            }
            PeerCall::Removed { .. } => PeerReply::Error(crate::error::KvError::MemberNotFound),
            PeerCall::HashKv { revision } => {
                match super::corrupt::hash_at_blocking(node.store.clone(), node.id, revision).await
                {
                    Ok(h) => PeerReply::HashKv(h),
                    Err(e) => PeerReply::Error(e),
                }
            }
            change => match node.change_members_local(change).await {
                Ok(r) => r,
                Err(Retry::Again) => not_leader(),
                Err(Retry::Fail(e)) => PeerReply::Error(e),
            },
        };
        reply(&out)
    }
}
