//! One file per workload; each returns its rows.

pub mod dataset;
pub mod lease;
pub mod put;
pub mod range;
pub mod txn;
pub mod watch;

use rand::Rng;

/// A uniformly random key index in `0..space`.
pub fn random_index(space: u64) -> u64 {
    rand::rng().random_range(0..space.max(1))
}

/// A gRPC failure as text.
pub fn status(e: tonic::Status) -> String {
    format!("{:?}: {}", e.code(), e.message())
}
