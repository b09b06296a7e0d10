//! One file per workload; each returns its rows.

pub mod dataset;
pub mod lease;
pub mod put;
pub mod range;
pub mod txn;
pub mod watch;

use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::PutRequest;
use rand::Rng;
use tonic::transport::Channel;

/// A uniformly random key index in `0..space`.
pub fn random_index(space: u64) -> u64 {
    rand::rng().random_range(0..space.max(1))
}

/// A gRPC failure as text.
pub fn status(e: tonic::Status) -> String {
    format!("{:?}: {}", e.code(), e.message())
}

/// One put, its failure as text.
pub async fn put(mut kv: KvClient<Channel>, key: Vec<u8>, value: Vec<u8>) -> Result<(), String> {
    kv.put(PutRequest {
        key,
        value,
        ..Default::default()
    })
    .await
    .map(|_| ())
    .map_err(status)
}
