//! Maintenance.Snapshot's byte stream.
//!
//! Contract: the client receives the snapshot file (`storage::snapshot`) of one
//! consistent RocksDB snapshot, zero-padded to a multiple of 512 bytes, then the SHA-256
//! of everything before it, as etcd sends its bolt file (etcdctl recognises the trailer
//! by `size % 512 == 32` and checks it; `flotilla snapshot-restore` reads the file and
//! ignores what follows its CRC). `remaining_bytes` counts down the padded data to 0, and
//! the hash goes last with 0, as in etcd.
//!
//! Bounded in every direction:
//! - Disk: nothing is written. A blocking thread walks the RocksDB snapshot and hands
//!   `CHUNK`-sized responses over a channel of `QUEUE` to the gRPC stream (etcd pipes
//!   its bolt snapshot the same way), so one snapshot buffers at most `(QUEUE + 1) *
//!   CHUNK` bytes, and a client that reads slowly slows the walk down.
//! - Length: known before the first byte goes out, from a first walk over the same
//!   RocksDB snapshot that sums the row sizes (`snapshot::encoded_len`): the data is
//!   read twice instead of being stored once.
//! - Time: a client that takes nothing for `STALL_TIMEOUT` is dropped, which releases
//!   the RocksDB snapshot (while it lives, compaction keeps every version it sees).
//! - Concurrency: at most `MAX_CONCURRENT_SNAPSHOTS` at once in a process (a process runs
//!   one member). etcd sets no limit (each of its snapshots holds a bolt read
//!   transaction); here each holds a thread, a RocksDB snapshot and a full read of the
//!   data, so a third is refused at once with RESOURCE_EXHAUSTED
//!   (`KvError::SnapshotsBusy`): a clear error the client can retry, rather than a
//!   request that waits behind two multi-gigabyte transfers.
//!
//! Earlier builds wrote a temporary copy (`snap/client-*.tmp`) first; start-up removes
//! any such copy a crash left behind (`remove_stale_copies`).

use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::etcdserverpb::{ResponseHeader, SnapshotResponse};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tracing::{info, warn};

use super::maintenance::ETCD_VERSION;
use crate::error::KvError;
use crate::storage::snapshot::{self, SnapshotError};
use crate::storage::state_machine::Store;

/// Snapshots streamed at once, at most.
pub const MAX_CONCURRENT_SNAPSHOTS: usize = 2;
static SLOTS: Semaphore = Semaphore::const_new(MAX_CONCURRENT_SNAPSHOTS);
/// Bytes per response.
const CHUNK: usize = 1 << 20;
/// Responses queued for the client, at most.
const QUEUE: usize = 4;
/// How long the stream waits for the client to take a response.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// etcd's snapshot is a whole number of these before its SHA-256 trailer.
const BLOCK: u64 = 512;

pub type SnapshotStream = ReceiverStream<Result<SnapshotResponse, Status>>;

/// Starts streaming a snapshot of `store`, or refuses at once when
/// `MAX_CONCURRENT_SNAPSHOTS` are already running.
pub fn start(store: Arc<Store>, header: Option<ResponseHeader>) -> Result<SnapshotStream, KvError> {
    let permit = SLOTS.try_acquire().map_err(|_| KvError::SnapshotsBusy {
        limit: MAX_CONCURRENT_SNAPSHOTS,
    })?;
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let span = tracing::info_span!(
            "snapshot_stream",
            revision = header.map_or(0, |h| h.revision)
        );
        let _enter = span.enter();
        produce(&store, header, tx);
    });
    Ok(ReceiverStream::new(rx))
}

fn produce(
    store: &Store,
    header: Option<ResponseHeader>,
    tx: mpsc::Sender<Result<SnapshotResponse, Status>>,
) {
    let snap = store.consistent_snapshot();
    let out = Chunks {
        tx: tx.clone(),
        header,
        buf: Vec::with_capacity(CHUNK),
        sha: Sha256::new(),
        sent: 0,
        total: 0,
    };
    let result = snapshot::encoded_len(&store.db, &snap).and_then(|len| {
        let total = padded_len(len)?;
        let out = Chunks { total, ..out };
        let (rows, out) = snapshot::write_to(&store.db, &snap, out)?;
        let bytes = out.finish(len)?;
        Ok((rows, bytes))
    });
    match result {
        Ok((rows, bytes)) => info!(rows, bytes, "snapshot sent"),
        Err(SnapshotError::Io(e)) if client_gone(&e) => {
            info!(cause = %e, "snapshot stream abandoned by the client")
        }
        Err(e) => {
            warn!(error = %e, "snapshot stream failed");
            let status = KvError::internal(e).to_status();
            let _ = send_within(&tx, Err(status), STALL_TIMEOUT);
        }
    }
}

/// The snapshot's length padded up to a whole number of `BLOCK`s.
fn padded_len(len: u64) -> Result<u64, SnapshotError> {
    len.div_ceil(BLOCK)
        .checked_mul(BLOCK)
        .ok_or(SnapshotError::Damaged("snapshot larger than 2^64 bytes"))
}

/// Queues `item` for the client from a blocking thread, waiting at most `within` for
/// room. It polls with a short sleep rather than waiting on a runtime timer, so it works
/// (and cannot panic) even while the runtime shuts down.
fn send_within<T>(tx: &mpsc::Sender<T>, item: T, within: Duration) -> io::Result<()> {
    let deadline = Instant::now() + within;
    let mut pause = Duration::from_millis(1);
    let mut item = item;
    loop {
        match tx.try_send(item) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Closed(_)) => {
                return Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the client went away",
                ))
            }
            Err(TrySendError::Full(back)) => item = back,
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client took nothing for {within:?}"),
            ));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

fn client_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::TimedOut
    )
}

/// Cuts what `snapshot::write_to` writes into responses and hashes them.
struct Chunks {
    tx: mpsc::Sender<Result<SnapshotResponse, Status>>,
    header: Option<ResponseHeader>,
    buf: Vec<u8>,
    sha: Sha256,
    /// Bytes handed to the client so far, and the padded length announced.
    sent: u64,
    total: u64,
}

impl Chunks {
    fn send(&self, resp: SnapshotResponse) -> io::Result<()> {
        send_within(&self.tx, Ok(resp), STALL_TIMEOUT)
    }

    /// Sends what is buffered as one response.
    fn send_buffered(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let blob = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        let sent = self
            .sent
            .checked_add(blob.len() as u64)
            .filter(|s| *s <= self.total)
            .ok_or_else(|| io::Error::other("the snapshot grew while it was streamed"))?;
        self.sent = sent;
        self.sha.update(&blob);
        self.send(SnapshotResponse {
            header: self.header,
            remaining_bytes: self.total - sent,
            blob,
            version: ETCD_VERSION.into(),
        })
    }

    /// Pads the `len` bytes written to the announced length, sends them and then the
    /// SHA-256 trailer; returns the bytes sent.
    fn finish(mut self, len: u64) -> Result<u64, SnapshotError> {
        let written = self.sent.saturating_add(self.buf.len() as u64);
        if written != len {
            return Err(SnapshotError::Damaged(
                "the snapshot changed length while it was streamed",
            ));
        }
        let mut padding = self.total.saturating_sub(written);
        let zeros = [0u8; BLOCK as usize];
        while padding > 0 {
            let n = padding.min(BLOCK) as usize;
            self.write_all(&zeros[..n])?;
            padding -= n as u64;
        }
        self.send_buffered()?;
        if self.sent != self.total {
            return Err(SnapshotError::Damaged(
                "the snapshot changed length while it was streamed",
            ));
        }
        let digest = self.sha.clone().finalize().to_vec();
        let trailer = digest.len() as u64;
        self.send(SnapshotResponse {
            header: self.header,
            remaining_bytes: 0,
            blob: digest,
            version: ETCD_VERSION.into(),
        })?;
        Ok(self.total.saturating_add(trailer))
    }
}

impl Write for Chunks {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK.saturating_sub(self.buf.len());
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.send_buffered()?;
        }
        Ok(n)
    }

    /// Responses go out whole; `finish` sends the last one.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Removes the temporary copies (`client-*.tmp`) an earlier build's Maintenance.Snapshot
/// left in `snap_dir` when it crashed mid-stream.
pub fn remove_stale_copies(snap_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(snap_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with("client-") && name.ends_with(".tmp")) {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => info!(file = %entry.path().display(), "removed a stale snapshot copy"),
            Err(e) => {
                warn!(file = %entry.path().display(), error = %e, "cannot remove a stale snapshot copy")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_padded_to_whole_blocks() {
        assert_eq!(padded_len(0).unwrap(), 0);
        assert_eq!(padded_len(1).unwrap(), 512);
        assert_eq!(padded_len(512).unwrap(), 512);
        assert_eq!(padded_len(513).unwrap(), 1024);
        assert!(padded_len(u64::MAX).is_err());
    }

    #[test]
    fn only_stale_client_copies_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join("client-123.tmp");
        let keep = [
            dir.path().join("snapshot.meta"),
            dir.path().join("1-2-3.snap"),
        ];
        std::fs::write(&stale, b"x").unwrap();
        for k in &keep {
            std::fs::write(k, b"x").unwrap();
        }
        remove_stale_copies(dir.path());
        assert!(!stale.exists());
        assert!(keep.iter().all(|k| k.exists()));
        remove_stale_copies(&dir.path().join("absent"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chunks_pad_hash_and_count_down_like_etcd() {
        let (tx, mut rx) = mpsc::channel(QUEUE);
        let data: Vec<u8> = (0..(CHUNK + 700)).map(|i| (i % 251) as u8).collect();
        let len = data.len() as u64;
        let writer = {
            let data = data.clone();
            tokio::task::spawn_blocking(move || {
                let mut out = Chunks {
                    tx,
                    header: None,
                    buf: Vec::new(),
                    sha: Sha256::new(),
                    sent: 0,
                    total: padded_len(len).unwrap(),
                };
                out.write_all(&data).unwrap();
                out.finish(len).unwrap()
            })
        };
        let mut got = Vec::new();
        let mut remaining = Vec::new();
        while let Some(r) = rx.recv().await {
            let r = r.unwrap();
            remaining.push(r.remaining_bytes);
            got.extend_from_slice(&r.blob);
        }
        let sent = writer.await.unwrap();
        assert_eq!(sent, got.len() as u64);
        assert_eq!(got.len() as u64 % BLOCK, 32, "etcdctl's trailer rule");
        let (body, trailer) = got.split_at(got.len() - 32);
        assert_eq!(&body[..data.len()], &data[..]);
        assert!(body[data.len()..].iter().all(|b| *b == 0));
        assert_eq!(Sha256::digest(body).as_slice(), trailer);
        assert_eq!(remaining.last(), Some(&0));
        assert!(remaining.windows(2).all(|w| w[0] >= w[1]));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_goes_away_ends_the_stream() {
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let err = tokio::task::spawn_blocking(move || {
            let mut out = Chunks {
                tx,
                header: None,
                buf: Vec::new(),
                sha: Sha256::new(),
                sent: 0,
                total: (2 * CHUNK) as u64,
            };
            out.write_all(&vec![0u8; 2 * CHUNK]).unwrap_err()
        })
        .await
        .unwrap();
        assert!(client_gone(&err), "{err}");
    }

    #[test]
    fn a_client_that_takes_nothing_times_out() {
        let (tx, _rx) = mpsc::channel(1);
        send_within(&tx, 1u8, Duration::from_millis(50)).unwrap();
        let err = send_within(&tx, 2u8, Duration::from_millis(50)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(client_gone(&err));
    }
}
