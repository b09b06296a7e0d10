//! Consensus plumbing: the openraft type configuration, the network over tonic, the peer
//! wire format and its bounds, and the internal calls members make on each other.

pub mod calls;
pub mod network;
pub mod snapshot_transfer;
pub mod types;
pub mod wire;
