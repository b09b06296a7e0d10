//! Internal calls between members, carried by the peer service's `Call` RPC: what a
//! follower asks of the leader, and what a joining member asks of the cluster.

use serde::{Deserialize, Serialize};

use super::types::{Applied, Command, NodeId};
use crate::error::KvError;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PeerCall {
    /// Propose a command; only the leader accepts.
    Propose(Command),
    /// Confirm leadership with a quorum and return the index a linearizable read must wait for.
    ReadIndex,
    LeaseKeepAlive {
        id: i64,
    },
    LeaseTimeToLive {
        id: i64,
    },
    /// Who is in the cluster (a joining member learns its own ID from this).
    ClusterInfo,
    MemberAdd {
        peer_urls: Vec<String>,
        learner: bool,
    },
    MemberRemove {
        id: NodeId,
    },
    MemberPromote {
        id: NodeId,
    },
    MemberUpdate {
        id: NodeId,
        peer_urls: Vec<String>,
    },
    /// The leader telling a member it was removed from the cluster: it stops.
    Removed {
        cluster_id: u64,
        id: NodeId,
    },
    /// This member's HashKV at `revision` (the corruption check, `server::corrupt`; etcd
    /// asks the same on its peer port, `/members/hashkv`). Any member answers, from its
    /// own state.
    HashKv {
        revision: i64,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PeerReply {
    Applied(Applied),
    ReadIndex(u64),
    /// The lease's TTL, or `None` when it does not exist.
    KeepAlive(Option<i64>),
    /// (granted TTL, remaining seconds), or `None` when the lease does not exist.
    TimeToLive(Option<(i64, i64)>),
    ClusterInfo(ClusterInfo),
    MemberId(NodeId),
    Done,
    Error(KvError),
    HashKv(MemberHash),
}

/// One member's HashKV: etcd's `HashKVResponse` with the answering member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberHash {
    pub member_id: NodeId,
    /// CRC32 of every change in revisions `compact_revision..=hash_revision`.
    pub hash: u32,
    pub hash_revision: i64,
    pub compact_revision: i64,
    /// The member's current revision when it answered (etcd: the response header's).
    pub revision: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub cluster_id: u64,
    pub leader: Option<NodeId>,
    pub members: Vec<MemberInfo>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub id: NodeId,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub learner: bool,
}
