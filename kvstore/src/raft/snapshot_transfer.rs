//! Sending a snapshot to a follower in chunks, and receiving one.
//!
//! openraft 0.10 hands the application a whole snapshot to send (`full_snapshot`) and takes
//! a whole one back (`Raft::install_full_snapshot`); how it travels is ours. It travels as
//! it did under openraft 0.9: one `InstallSnapshot` call per chunk, each carrying the
//! leader's vote, the snapshot's metadata with its ID, the chunk's offset, its bytes and
//! whether it is the last. The receiver writes chunks in order to one file and installs it
//! after the last; a chunk of another snapshot, or out of order, restarts the transfer.

use std::io::SeekFrom;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use openraft::async_runtime::WatchReceiver;

use super::types::{LogId, Raft, Snapshot, SnapshotRecord, Vote};

/// One piece of a snapshot, on its way to a follower.
#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotChunk {
    pub vote: Vote,
    pub meta: SnapshotRecord,
    pub offset: u64,
    #[serde(with = "crate::bytes_field")]
    pub data: Vec<u8>,
    pub done: bool,
}

/// The receiver's answer to a chunk.
#[derive(Debug, Serialize, Deserialize)]
pub enum ChunkReply {
    /// Taken; `vote` is the receiver's (a higher one stops the sender).
    Taken { vote: Vote },
    /// Not the chunk the receiver expects (another snapshot, or a gap): send again from 0.
    Restart,
}

/// Why a chunk was not taken.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    #[error("snapshot at {last:?} is beyond the leadership of the vote {vote} that sent it")]
    BeyondVote { last: Option<LogId>, vote: Vote },
    #[error("receiving a snapshot: {0}")]
    Io(#[from] std::io::Error),
    #[error("installing a snapshot: {0}")]
    Install(String),
}

/// A snapshot being received.
struct Incoming {
    id: String,
    file: tokio::fs::File,
    received: u64,
}

/// The receiving end: at most one snapshot at a time, written to `path`.
pub struct Receiver {
    path: PathBuf,
    incoming: tokio::sync::Mutex<Option<Incoming>>,
}

impl Receiver {
    pub fn new(path: PathBuf) -> Self {
        Receiver {
            path,
            incoming: tokio::sync::Mutex::new(None),
        }
    }

    /// Takes one chunk; after the last, installs the snapshot through `raft`.
    pub async fn receive(
        &self,
        raft: &Raft,
        chunk: SnapshotChunk,
    ) -> Result<ChunkReply, ChunkError> {
        // openraft panics on a snapshot beyond the leadership of the vote that sent it: a
        // member of this cluster does not send one, but a peer's message is checked anyway.
        let vote_term = chunk.vote.leader_id.term;
        if chunk
            .meta
            .last_log_id
            .is_some_and(|l| l.leader_id.term > vote_term)
        {
            return Err(ChunkError::BeyondVote {
                last: chunk.meta.last_log_id,
                vote: chunk.vote,
            });
        }
        let mut incoming = self.incoming.lock().await;
        let same = incoming
            .as_ref()
            .is_some_and(|i| i.id == chunk.meta.snapshot_id);
        if !same {
            if chunk.offset != 0 {
                return Ok(ChunkReply::Restart);
            }
            let file = tokio::fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .read(true)
                .write(true)
                .open(&self.path)
                .await?;
            *incoming = Some(Incoming {
                id: chunk.meta.snapshot_id.clone(),
                file,
                received: 0,
            });
        }
        let Some(inc) = incoming.as_mut() else {
            return Ok(ChunkReply::Restart);
        };
        if chunk.offset != inc.received {
            *incoming = None;
            return Ok(ChunkReply::Restart);
        }
        inc.file.write_all(&chunk.data).await?;
        inc.received = inc.received.saturating_add(chunk.data.len() as u64);
        if chunk.done {
            let Some(mut inc) = incoming.take() else {
                return Ok(ChunkReply::Restart);
            };
            inc.file.flush().await?;
            inc.file.seek(SeekFrom::Start(0)).await?;
            let snapshot = Snapshot {
                meta: chunk.meta.meta(),
                snapshot: inc.file,
            };
            raft.install_full_snapshot(chunk.vote, snapshot)
                .await
                .map_err(|e| ChunkError::Install(e.to_string()))?;
        }
        let vote = raft.metrics().borrow_watched().vote.clone();
        Ok(ChunkReply::Taken { vote })
    }
}

/// Reads `snapshot` from `offset`, up to `size` bytes.
pub async fn read_chunk(
    snapshot: &mut tokio::fs::File,
    offset: u64,
    size: usize,
) -> std::io::Result<Vec<u8>> {
    snapshot.seek(SeekFrom::Start(offset)).await?;
    let mut buf = Vec::with_capacity(size);
    while buf.len() < size {
        if snapshot.read_buf(&mut buf).await? == 0 {
            break;
        }
    }
    Ok(buf)
}
