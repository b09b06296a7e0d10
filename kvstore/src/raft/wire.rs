//! What travels between members and the bounds on it: every peer message is one gRPC
//! `Payload` (the envelope: a bincode frame and the sender's cluster ID), at most
//! [`MAX_PEER_MESSAGE_BYTES`] long.
//!
//! Anyone who reaches the peer port can send a frame, so decoding one must not trust the
//! lengths written inside it: a frame may declare a string or byte array far larger than
//! itself, which bincode would allocate before finding the bytes missing. [`decode_frame`]
//! decodes under a bincode byte limit picked from the frame's own size, so such a length is
//! refused before anything is allocated for it, and a frame with bytes left over is refused
//! too.
//!
//! Every request carries the sender's cluster ID and a member serves only its own cluster
//! ([`check_cluster_id`]), as etcd's rafthttp checks `X-Etcd-Cluster-ID`: a member of
//! another cluster reusing an address, or a stray client, is refused before anything runs.
//!
//! Sizing: a snapshot travels in chunks of [`SNAPSHOT_CHUNK_BYTES`] (`raft::snapshot_transfer`);
//! AppendEntries carries up to openraft's `max_payload_entries` entries, no more than fit a
//! message (`storage::log_store`, `limited_get_log_entries`); one entry is at most a batch of proposals
//! (`server::proposer`) plus one proposal of at most `--max-request-bytes`, which the
//! config caps (`config::MAX_REQUEST_BYTES_CAP`) so that an entry always fits. A reply to a
//! forwarded write Txn carries its range results, so those are bounded by the same limit.

use bincode::error::DecodeError;
use proto::peer::Payload;
use serde::de::DeserializeOwned;

use super::calls::PeerCall;

/// The largest gRPC message the peer service accepts or sends, each way.
///
/// 64 MiB: far above a snapshot chunk (3 MiB) and a full log entry (at most
/// `MAX_BATCH_BYTES` + `MAX_REQUEST_BYTES_CAP` = 36 MiB), and small enough that a message
/// that is only declared, never sent, costs a bounded buffer (tonic reserves the declared
/// length). etcd's rafthttp bounds a decoded message at 512 MB.
pub const MAX_PEER_MESSAGE_BYTES: usize = 64 << 20;

/// Protobuf framing of the envelope around the frame: two tags, a length and a cluster ID.
const ENVELOPE_BYTES: usize = 32;

/// The largest bincode frame a peer message can hold.
pub const MAX_PEER_FRAME_BYTES: usize = MAX_PEER_MESSAGE_BYTES - ENVELOPE_BYTES;

/// The size of the chunks a snapshot is sent in (openraft's `snapshot_max_chunk_size`,
/// pinned here so the peer limit is known to hold it).
pub const SNAPSHOT_CHUNK_BYTES: u64 = 3 << 20;

/// The start of the status message a member answers a request from another cluster with
/// (etcd's words).
pub const CLUSTER_ID_MISMATCH: &str = "request cluster ID mismatch";

/// The envelope of a request from a member of cluster `cluster_id` (0 before it knows).
pub fn request(cluster_id: u64, data: Vec<u8>) -> Payload {
    Payload { data, cluster_id }
}

/// Whether a member of cluster `local` serves this request: only when the sender is in the
/// same cluster, or when a sender that does not know its cluster yet (a member joining
/// with `--initial-cluster-state existing`, ID 0) asks who is in it (`is_call`: the
/// envelope came through the `Call` RPC). Refused with `FAILED_PRECONDITION`.
pub fn check_cluster_id(
    local: u64,
    envelope: &Payload,
    is_call: bool,
) -> Result<(), tonic::Status> {
    let got = envelope.cluster_id;
    if got == local {
        return Ok(());
    }
    // `ClusterInfo` is a one-byte frame: nothing longer is decoded to find out.
    let joining = got == 0
        && is_call
        && envelope.data.len() <= 8
        && matches!(decode_frame(&envelope.data), Ok(PeerCall::ClusterInfo));
    if joining {
        return Ok(());
    }
    let from = if got == 0 {
        "a sender that does not know its cluster ID, which may only ask for the members".into()
    } else {
        format!("cluster {got:x}")
    };
    Err(tonic::Status::failed_precondition(format!(
        "{CLUSTER_ID_MISMATCH}: this member belongs to cluster {local:x}, the request came from {from}"
    )))
}

/// Whether a status is a member's refusal of a request from another cluster.
pub fn is_cluster_mismatch(s: &tonic::Status) -> bool {
    s.code() == tonic::Code::FailedPrecondition && s.message().starts_with(CLUSTER_ID_MISMATCH)
}

/// Why a peer frame was refused.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("peer frame of {len} bytes exceeds the limit of {MAX_PEER_FRAME_BYTES} bytes")]
    TooLarge { len: usize },
    /// A length inside the frame is larger than what the frame holds.
    #[error("peer frame of {len} bytes declares more content than it holds ({cause})")]
    Lies { len: usize, cause: DecodeError },
    #[error("peer frame has {extra} bytes after its content")]
    Trailing { extra: usize },
    #[error("undecodable peer frame: {0}")]
    Malformed(DecodeError),
}

/// Decodes one peer frame (bincode, standard configuration, as `storage::db::encode`
/// writes it).
///
/// bincode's limit counts what decoding will hold in memory: every integer claims its
/// in-memory width (up to 16 bytes, however few its varint took) and every string or byte
/// array its declared length (at most the frame). So a well-formed frame claims at most
/// 17 times its size, and the decoder is given the smallest step of 64 KiB, 1 MiB, 16 MiB,
/// 256 MiB and 2 GiB that holds that: a lying length is refused before allocation, and what
/// the lengths in a frame can make this member allocate stays within a constant factor of
/// its size. Any other sequence is allocated as its elements arrive (serde reserves at
/// most 1 MiB ahead, whatever length it declares).
/// What one byte of a well-formed frame can claim at most: a 1-byte varint of a u128 (16)
/// plus its share of declared lengths (1).
const CLAIM_PER_BYTE: usize = 17;

pub fn decode_frame<T: DeserializeOwned>(frame: &[u8]) -> Result<T, FrameError> {
    let len = frame.len();
    if len > MAX_PEER_FRAME_BYTES {
        return Err(FrameError::TooLarge { len });
    }
    let decoded = match len.saturating_mul(CLAIM_PER_BYTE) {
        0..=65_536 => within::<{ 64 << 10 }, T>(frame),
        65_537..=1_048_576 => within::<{ 1 << 20 }, T>(frame),
        1_048_577..=16_777_216 => within::<{ 16 << 20 }, T>(frame),
        16_777_217..=268_435_456 => within::<{ 256 << 20 }, T>(frame),
        _ => within::<{ 2 << 30 }, T>(frame),
    };
    match decoded {
        Ok((v, used)) if used == len => Ok(v),
        Ok((_, used)) => Err(FrameError::Trailing { extra: len - used }),
        Err(cause @ (DecodeError::LimitExceeded | DecodeError::UnexpectedEnd { .. })) => {
            Err(FrameError::Lies { len, cause })
        }
        Err(e) => Err(FrameError::Malformed(e)),
    }
}

fn within<const LIMIT: usize, T: DeserializeOwned>(
    frame: &[u8],
) -> Result<(T, usize), DecodeError> {
    bincode::serde::decode_from_slice(frame, bincode::config::standard().with_limit::<LIMIT>())
}

#[cfg(test)]
mod tests {
    use openraft::raft::AppendEntriesRequest;
    use openraft::EntryPayload;
    use proto::etcdserverpb::PutRequest;

    use super::*;
    use crate::mvcc::txn::put_as_txn;
    use crate::raft::calls::PeerCall;
    use crate::raft::snapshot_transfer::SnapshotChunk;
    use crate::raft::types::{leader, Command, Entry, LogId, Pb, SnapshotRecord, TypeConfig, Vote};

    fn chunk(data: Vec<u8>) -> SnapshotChunk {
        SnapshotChunk {
            vote: Vote::new_committed(3, 1),
            meta: SnapshotRecord {
                last_log_id: None,
                last_membership: Default::default(),
                snapshot_id: String::new(),
            },
            offset: 0,
            data,
            done: false,
        }
    }
    use crate::storage::db::encode;

    /// bincode's varint for a length: 253 then the u64, little-endian, for anything above
    /// u32::MAX.
    fn length(n: u64) -> Vec<u8> {
        encode(&n)
    }

    fn frame(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    #[test]
    fn only_requests_from_the_same_cluster_are_served() {
        let read = encode(&PeerCall::ReadIndex);
        assert!(check_cluster_id(0xabc, &request(0xabc, read.clone()), true).is_ok());
        let e = check_cluster_id(0xabc, &request(0xdef, read.clone()), true).unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
        assert!(is_cluster_mismatch(&e), "{e:?}");
        assert!(
            e.message().contains("abc") && e.message().contains("def"),
            "{e:?}"
        );
        // Raft RPCs are refused the same way.
        assert!(is_cluster_mismatch(
            &check_cluster_id(0xabc, &request(0xdef, vec![]), false).unwrap_err()
        ));
    }

    #[test]
    fn a_sender_without_a_cluster_id_may_only_ask_for_the_members() {
        let info = encode(&PeerCall::ClusterInfo);
        assert!(check_cluster_id(0xabc, &request(0, info.clone()), true).is_ok());
        // Not through a Raft RPC, and nothing else.
        assert!(check_cluster_id(0xabc, &request(0, info), false).is_err());
        for call in [
            PeerCall::ReadIndex,
            PeerCall::MemberRemove { id: 1 },
            PeerCall::Removed {
                cluster_id: 0xabc,
                id: 1,
            },
        ] {
            let e = check_cluster_id(0xabc, &request(0, encode(&call)), true).unwrap_err();
            assert!(is_cluster_mismatch(&e), "{call:?}: {e:?}");
        }
    }

    #[test]
    fn real_messages_round_trip() {
        let txn = put_as_txn(PutRequest {
            key: b"k".to_vec(),
            value: vec![7; 100_000],
            ..Default::default()
        });
        let entries: Vec<Entry> = (1..=40)
            .map(|i| Entry {
                log_id: LogId::new(leader(3, 1), i),
                payload: EntryPayload::Normal(Command::Txn(Pb(txn.clone()))),
            })
            .collect();
        let append = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(3, 1),
            prev_log_id: None,
            entries,
            leader_commit: None,
        };
        let bytes = encode(&append);
        assert!(bytes.len() > 1 << 20, "spans the 16 MiB step");
        let back: AppendEntriesRequest<TypeConfig> = decode_frame(&bytes).unwrap();
        assert_eq!(back.entries.len(), 40);

        let call = PeerCall::MemberAdd {
            peer_urls: vec!["http://10.0.0.1:2380".into()],
            learner: false,
        };
        let back: PeerCall = decode_frame(&encode(&call)).unwrap();
        assert!(matches!(back, PeerCall::MemberAdd { peer_urls, .. } if peer_urls.len() == 1));

        // A full snapshot chunk fits in a peer message.
        let bytes = encode(&chunk(vec![0xAB; SNAPSHOT_CHUNK_BYTES as usize]));
        assert!(bytes.len() < MAX_PEER_FRAME_BYTES);
        let back: SnapshotChunk = decode_frame(&bytes).unwrap();
        assert_eq!(back.data.len(), SNAPSHOT_CHUNK_BYTES as usize);
    }

    #[test]
    fn a_string_declaring_a_terabyte_is_refused_before_allocation() {
        // PeerCall::MemberAdd (variant 5), peer_urls: one string of 2^40 bytes, then nothing.
        // Decoded without a limit, bincode would allocate 1 TiB here and abort the process.
        let f = frame(&[&[5, 1], &length(1 << 40)]);
        match decode_frame::<PeerCall>(&f) {
            Err(FrameError::Lies {
                cause: DecodeError::LimitExceeded,
                ..
            }) => {}
            other => panic!("expected a refused length, got {other:?}"),
        }
    }

    #[test]
    fn a_byte_array_declaring_a_terabyte_is_refused_before_allocation() {
        // PeerCall::Propose (0) of Command::Txn (0), whose protobuf bytes claim 2^40 bytes.
        let f = frame(&[&[0, 0], &length(1 << 40), b"tiny"]);
        match decode_frame::<PeerCall>(&f) {
            Err(FrameError::Lies {
                cause: DecodeError::LimitExceeded,
                ..
            }) => {}
            other => panic!("expected a refused length, got {other:?}"),
        }
    }

    #[test]
    fn a_vec_declaring_a_terabyte_is_refused() {
        // A snapshot chunk whose data (a serde sequence of bytes) claims 2^40 elements: serde
        // allocates at most 1 MiB ahead, then the frame runs out.
        let mut chunk = encode(&chunk(Vec::new()));
        // The empty data is the one-byte length 0 just before the trailing `done` flag.
        let done = chunk.pop().unwrap();
        assert_eq!(chunk.pop(), Some(0));
        chunk.extend(length(1 << 40));
        chunk.extend([1, 2, 3, done]);
        assert!(matches!(
            decode_frame::<SnapshotChunk>(&chunk),
            Err(FrameError::Lies { .. })
        ));
    }

    #[test]
    fn a_length_a_little_beyond_the_frame_is_refused() {
        // A 12-byte frame whose string claims 1000 bytes (within the 4 KiB step): bincode
        // finds the bytes missing.
        let f = frame(&[&[5, 1], &length(1000), b"http://x"]);
        assert!(matches!(
            decode_frame::<PeerCall>(&f),
            Err(FrameError::Lies { .. })
        ));
    }

    #[test]
    fn frames_of_many_small_integers_decode() {
        // Entries whose integers take one varint byte each but claim eight: the claim is
        // several times the frame (a cluster test's snapshot install met this).
        let entries: Vec<Entry> = (1..=500)
            .map(|i| Entry {
                log_id: LogId::new(leader(1, 1), i),
                payload: EntryPayload::Blank,
            })
            .collect();
        let append = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(1, 1),
            prev_log_id: None,
            entries,
            leader_commit: None,
        };
        let bytes = encode(&append);
        let back: AppendEntriesRequest<TypeConfig> = decode_frame(&bytes).unwrap();
        assert_eq!(back.entries.len(), 500);
    }

    #[test]
    fn leftover_bytes_and_oversized_frames_are_refused() {
        let mut f = encode(&PeerCall::ReadIndex);
        f.push(0);
        assert!(matches!(
            decode_frame::<PeerCall>(&f),
            Err(FrameError::Trailing { extra: 1 })
        ));
        let huge = vec![0u8; MAX_PEER_FRAME_BYTES + 1];
        assert!(matches!(
            decode_frame::<PeerCall>(&huge),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn lengths_add_up_against_one_limit() {
        // MemberAdd with two peer URLs in a 3 KiB frame (the 64 KiB step): the first string
        // is really there, the second claims another 70,000 bytes, which together with the
        // first exceed the step, so it is refused before anything is allocated for it.
        let first = vec![b'a'; 3000];
        let f = frame(&[&[5, 2], &length(3000), &first, &length(70_000)]);
        match decode_frame::<PeerCall>(&f) {
            Err(FrameError::Lies {
                cause: DecodeError::LimitExceeded,
                ..
            }) => {}
            other => panic!("expected a refused length, got {other:?}"),
        }
    }
}
