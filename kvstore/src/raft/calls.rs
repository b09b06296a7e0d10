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
