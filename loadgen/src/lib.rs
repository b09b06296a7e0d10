//! The load generators behind `flotilla bench`: `kv/` speaks only the etcd v3 gRPC API
//! (`flotilla bench kv`, the same code against etcd and the kvstore), `api.rs` only the
//! Kubernetes API (`flotilla bench api`, against any apiserver). Each run is bounded in
//! count and time and prints markdown tables (or JSON) that BENCHMARKS.md quotes.

pub mod api;
pub mod kv;
