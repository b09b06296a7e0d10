//! The types openraft is instantiated with: what a log entry carries (`Command`), what
//! applying it returns (`Applied`), and what a member is (`Member`).

use std::fmt;

use proto::etcdserverpb::{TxnRequest, TxnResponse};
use serde::{Deserialize, Serialize};

use crate::auth::{needs, AuthOp, Need};
use crate::error::KvError;

pub type NodeId = u64;

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Command,
        R = Applied,
        NodeId = NodeId,
        Node = Member,
);
// The defaults keep 0.9's on-disk shapes: `LeaderId` is the advanced one ({term, node_id}),
// so log entries, votes and log ids written by openraft 0.9 decode unchanged.

use openraft::type_config::alias as a;

pub type Raft = openraft::Raft<TypeConfig, crate::storage::state_machine::StateMachine>;
pub type Entry = a::EntryOf<TypeConfig>;
pub type LogId = a::LogIdOf<TypeConfig>;
pub type Vote = a::VoteOf<TypeConfig>;
pub type LeaderId = a::LeaderIdOf<TypeConfig>;
pub type StoredMembership = a::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = a::SnapshotMetaOf<TypeConfig>;
pub type Snapshot = a::SnapshotOf<TypeConfig, tokio::fs::File>;
pub type StorageError = openraft::StorageError<TypeConfig>;

/// A snapshot's metadata as Flotilla keeps it (`snapshot.meta`) and sends it to a follower:
/// openraft's `SnapshotMeta` and the snapshot's ID, which names its data file. The layout is
/// openraft 0.9's `SnapshotMeta`, so files written by earlier builds decode unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub last_log_id: Option<LogId>,
    pub last_membership: StoredMembership,
    pub snapshot_id: String,
}

impl SnapshotRecord {
    /// `meta` under a new ID made of its last log ID and a random part.
    pub fn new(meta: SnapshotMeta) -> Self {
        let snapshot_id = match &meta.last_log_id {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, rand::random::<u32>()),
            None => format!("0-0-{}", rand::random::<u32>()),
        };
        SnapshotRecord {
            last_log_id: meta.last_log_id,
            last_membership: meta.last_membership,
            snapshot_id,
        }
    }

    /// openraft's view of it.
    pub fn meta(&self) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: self.last_log_id,
            last_membership: self.last_membership.clone(),
        }
    }
}

/// The (committed) leader ID of `term` led by `node`, as log IDs carry it.
pub fn leader(term: u64, node: NodeId) -> LeaderId {
    openraft::impls::leader_id_adv::LeaderId {
        term,
        node_id: node,
    }
}

/// A member as Raft knows it: where its peers reach it. Its name and client URLs are
/// published by the member itself once it runs (see `Command::PublishMember`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub peer_urls: Vec<String>,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.peer_urls.join(","))
    }
}

/// A prost message carried inside a serde type as its protobuf encoding.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Pb<T>(pub T);

impl<T: prost::Message> Serialize for Pb<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0.encode_to_vec())
    }
}

impl<'de, T: prost::Message + Default> Deserialize<'de> for Pb<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes: Vec<u8> = crate::bytes_field::deserialize(d)?;
        T::decode(bytes.as_slice())
            .map(Pb)
            .map_err(serde::de::Error::custom)
    }
}

/// One replicated state-machine command. Put and DeleteRange travel as single-op Txns.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Command {
    Txn(Pb<TxnRequest>),
    Compact {
        revision: i64,
    },
    LeaseGrant {
        id: i64,
        ttl: i64,
    },
    /// Revoked by a client, or expired (decided by the leader).
    LeaseRevoke {
        id: i64,
    },
    /// etcd's AlarmRequest: action 1 activates, 2 deactivates.
    Alarm {
        action: i32,
        member_id: u64,
        alarm: i32,
    },
    PublishMember {
        id: NodeId,
        name: String,
        client_urls: Vec<String>,
    },
    /// Concurrent proposals in one log entry, so that one entry's encoding and apply serve
    /// many of them under load. Each command is applied on its own, with its own revision.
    Batch(Vec<Command>),
    // New variants go at the end: bincode stores the variant index in the log.
    /// A client's command with the user it was checked for (`None`: no credentials). The
    /// state machine checks it again against the auth store as of the entry, so a
    /// permission revoked between the check and the apply is honoured.
    AsUser {
        user: Option<String>,
        cmd: Box<Command>,
    },
    /// A change to users, roles or the enabled flag, or an Authenticate.
    Auth(AuthOp),
}

impl Command {
    /// Roughly how many bytes the command takes in a log entry.
    pub fn size_hint(&self) -> usize {
        match self {
            Command::Txn(t) => prost::Message::encoded_len(&t.0),
            Command::Batch(cmds) => cmds.iter().map(Command::size_hint).sum(),
            Command::PublishMember {
                name, client_urls, ..
            } => 16 + name.len() + client_urls.iter().map(String::len).sum::<usize>(),
            Command::AsUser { user, cmd } => {
                8 + user.as_ref().map_or(0, String::len) + cmd.size_hint()
            }
            Command::Auth(op) => op.size_hint(),
            _ => 32,
        }
    }

    /// What applying this command needs from the caller's permissions when auth is enabled
    /// (nothing for commands etcd does not check: compaction, leases granted, alarms).
    pub fn auth_needs(&self) -> Vec<Need<'_>> {
        let mut out = Vec::new();
        match self {
            Command::Txn(t) => needs::txn(&t.0, &mut out),
            Command::LeaseRevoke { id } => out.push(Need::LeaseKeys(*id)),
            Command::Auth(op) if op.needs_admin() => out.push(Need::Admin),
            _ => {}
        }
        out
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Txn(t) => write!(f, "txn(ops={})", t.0.success.len() + t.0.failure.len()),
            Command::Compact { revision } => write!(f, "compact({revision})"),
            Command::LeaseGrant { id, ttl } => write!(f, "lease-grant({id:x}, {ttl}s)"),
            Command::LeaseRevoke { id } => write!(f, "lease-revoke({id:x})"),
            Command::Alarm {
                action,
                member_id,
                alarm,
            } => write!(f, "alarm({action}, {member_id:x}, {alarm})"),
            Command::PublishMember { id, name, .. } => write!(f, "publish({id:x}, {name})"),
            Command::Batch(cmds) => write!(f, "batch({})", cmds.len()),
            Command::AsUser { user, cmd } => match user {
                Some(u) => write!(f, "as({u}) {cmd}"),
                None => write!(f, "{cmd}"),
            },
            Command::Auth(op) => write!(f, "{op}"),
        }
    }
}

/// What applying one entry produced. `revision` is the store revision after it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Applied {
    pub revision: i64,
    pub output: Result<Output, KvError>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Output {
    Txn(Pb<TxnResponse>),
    LeaseGranted {
        id: i64,
        ttl: i64,
    },
    /// Alarms in force after an Alarm command: (member, alarm type).
    Alarms(Vec<(u64, i32)>),
    /// Blank entries, membership changes and commands with nothing to report.
    Done,
    /// One result per command of a `Command::Batch`, in order.
    Batch(Vec<Applied>),
    // New variants go at the end: an `Applied` travels between members.
    /// An Authenticate applied: the token's counter is this log index.
    Authenticated {
        index: u64,
    },
}
