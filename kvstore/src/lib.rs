//! Flotilla's kvstore: a Raft-replicated MVCC key-value store speaking the etcd v3 API.
//!
//! # Layout
//! - `config`: etcd's flags, validated into `KvConfig`; member and cluster IDs.
//! - `error`: `KvError`, every client-visible error with etcd's code and message, and
//!   `StorageFault`, a failure of the member's own storage.
//! - `fatal`: fail-stop: the one way a member stops on a storage fault.
//! - `mvcc`: the pure MVCC core (ranges, compares, Txn execution, validation).
//! - `auth`: the pure auth core (users, roles, permission checks, password hashes, simple
//!   tokens).
//! - `storage`: RocksDB: data directory, Raft log (group commit), state machine, snapshots.
//! - `raft`: openraft types, the tonic network, the peer wire format and its bounds,
//!   internal peer calls.
//! - `bytes_field`: `Vec<u8>` fields that serde handles as bytes, not byte by byte.
//! - `watch::hub`: shared fan-out of applied events to watch streams.
//! - `lessor`: lease deadlines, enforced by the leader.
//! - `server`: the running member and its gRPC services.

// openraft's `StorageError` is large and is what its traits return; boxing it at every
// storage call site would only move the allocation around.
#![allow(clippy::result_large_err)]

pub mod auth;
pub mod bytes_field;
pub mod config;
pub mod error;
pub mod fatal;
pub mod lessor;
pub mod metrics;
pub mod mvcc;
pub mod raft;
pub mod server;
pub mod storage;
pub mod tls;
pub mod watch {
    pub mod hub;
}

pub use config::{KvConfig, KvFlags};
