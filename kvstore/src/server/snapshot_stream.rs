//! Maintenance.Snapshot's byte stream.
//!
//! Contract: the client receives etcd's snapshot: the bolt file of one consistent RocksDB
//! snapshot in etcd's format (`storage::etcd_snapshot`), then the SHA-256 of it, as etcd
//! sends its own, so `etcdctl snapshot save` stores a file that `etcdctl snapshot status`
//! and `snapshot restore` (and `flotilla snapshot-restore`) take. `remaining_bytes`
//! counts down the data to 0, and the hash goes last with 0, as in etcd. A bolt file is
//! whole pages, so its length is a multiple of 512 and etcdctl finds the trailer.
//!
//! Bounded in every direction:
//! - Disk: nothing is written. A blocking thread walks the RocksDB snapshot and hands
//!   `CHUNK`-sized responses over a channel of `QUEUE` to the gRPC stream (etcd pipes
//!   its bolt snapshot the same way), so one snapshot buffers at most `(QUEUE + 1) *
//!   CHUNK` bytes, and a client that reads slowly slows the walk down.
//! - Length: known before the first byte goes out, from a first walk over the same
//!   RocksDB snapshot that lays out the file's pages (`etcd_snapshot::plan`; it keeps in
//!   memory only one key per live key untouched since the last compaction): the data is
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
use crate::storage::etcd_snapshot;
use crate::storage::snapshot::SnapshotError;
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
    let result = etcd_snapshot::plan(&store.db, &snap).and_then(|prepared| {
        let total = prepared.plan.bytes();
        let out = Chunks { total, ..out };
        let out = etcd_snapshot::write_data_to(&store.db, &snap, &prepared, out)?;
        let bytes = out.finish(total)?;
        Ok((prepared.plan.pages(), bytes))
    });
    match result {
        Ok((pages, bytes)) => info!(pages, bytes, "snapshot sent"),
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

/// Cuts what `etcd_snapshot::write_data_to` writes into responses and hashes them.
struct Chunks {
    tx: mpsc::Sender<Result<SnapshotResponse, Status>>,
    header: Option<ResponseHeader>,
    buf: Vec<u8>,
    sha: Sha256,
    /// Bytes handed to the client so far, and the length announced.
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

    /// Sends what is left of the `len` bytes written, then the SHA-256 trailer; returns
    /// the bytes sent.
    fn finish(mut self, len: u64) -> Result<u64, SnapshotError> {
        self.send_buffered()?;
        if self.sent != len || self.sent != self.total {
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
    async fn chunks_hash_and_count_down_like_etcd() {
        let (tx, mut rx) = mpsc::channel(QUEUE);
        let data: Vec<u8> = (0..(CHUNK + 4096)).map(|i| (i % 251) as u8).collect();
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
                    total: len,
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
        assert_eq!(got.len() % 512, 32, "etcdctl's trailer rule");
        let (body, trailer) = got.split_at(got.len() - 32);
        assert_eq!(body, &data[..]);
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
