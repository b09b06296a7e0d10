//! Everything a member keeps on disk, in one RocksDB database (see `db`).
//!
//! - `db`: data directory, identity, column families, encoding.
//! - `log_store`: the Raft log and vote, with group commit.
//! - `mvcc_store`: the MVCC key space, leases, history, compaction, hash.
//! - `state_machine`: `Store`, the read handle, and openraft's `StateMachine` over it;
//!   `state_machine/apply.rs` applies entries, `state_machine/snapshots.rs` builds,
//!   installs and serves the state machine's snapshots.
//! - `snapshot`: the snapshot file format.
//! - `restore`: seeding a new member from a snapshot file.

pub mod bolt;
pub mod db;
pub mod etcd_snapshot;
pub mod log_store;
pub mod mvcc_store;
pub mod restore;
pub mod snapshot;
pub mod state_machine;
#[cfg(test)]
mod tests;
