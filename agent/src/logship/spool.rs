//! The shipper's bounded on-disk spool: every batch is written here (one segment file per
//! push body, fsynced) before it is sent, and removed once Loki took it, so lines survive
//! a Loki outage and an agent restart. With the spool full, appending waits: the tailers
//! stop reading and the lines wait in the containers' own log files (rotated by their
//! limits), which is the backpressure; nothing already spooled is dropped.
//!
//! Next to the segments, `positions.json` holds, per container ID, the time of its last
//! spooled line, written after the segment that holds it: a restarted shipper goes on
//! after it (a crash between the two sends a batch twice; Loki drops exact duplicates).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
    /// A segment was removed.
    room: Notify,
    /// A segment was added.
    added: Notify,
}

#[derive(Default)]
struct State {
    /// Segment sizes by sequence number.
    segments: BTreeMap<u64, u64>,
    total: u64,
    next: u64,
    /// Container ID to the time (Unix nanoseconds) of its last spooled line.
    positions: BTreeMap<String, i128>,
}

fn segment_name(seq: u64) -> String {
    format!("{seq:020}.json")
}

impl Spool {
    /// The spool in `dir` (made if missing), with what an earlier run left there.
    pub fn open(dir: &Path, max_bytes: u64) -> std::io::Result<Arc<Spool>> {
        std::fs::create_dir_all(dir)?;
        let mut st = State::default();
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let name = e.file_name();
            let Some(seq) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let size = e.metadata()?.len();
            st.segments.insert(seq, size);
            st.total = st.total.saturating_add(size);
            st.next = st.next.max(seq.saturating_add(1));
        }
        if let Ok(text) = std::fs::read_to_string(dir.join("positions.json")) {
            st.positions = serde_json::from_str(&text).unwrap_or_default();
        }
        Ok(Arc::new(Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            state: Mutex::new(st),
            room: Notify::new(),
            added: Notify::new(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes spooled now.
    pub fn bytes(&self) -> u64 {
        self.lock().total
    }

    pub fn segments(&self) -> usize {
        self.lock().segments.len()
    }

    /// The time of the last spooled line of container `id`.
    pub fn position(&self, id: &str) -> Option<i128> {
        self.lock().positions.get(id).copied()
    }

    /// Forgets the positions of containers `keep` says are gone.
    pub fn retain_positions(&self, keep: impl Fn(&str) -> bool) {
        self.lock().positions.retain(|id, _| keep(id));
    }

    /// Writes `body` as the newest segment once there is room for it (at once when the
    /// spool is empty, however large it is), then records `positions`.
    pub async fn append(
        &self,
        body: &[u8],
        positions: &BTreeMap<String, i128>,
    ) -> std::io::Result<()> {
        let len = body.len() as u64;
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let st = self.lock();
                if st.total == 0 || st.total.saturating_add(len) <= self.max_bytes {
                    break;
                }
            }
            room.await;
        }
        let seq = {
            let mut st = self.lock();
            let seq = st.next;
            st.next += 1;
            seq
        };
        let name = segment_name(seq);
        write_durably(&self.dir, &name, body).await?;
        let text = {
            let mut st = self.lock();
            st.segments.insert(seq, len);
            st.total = st.total.saturating_add(len);
            for (id, t) in positions {
                st.positions.insert(id.clone(), *t);
            }
            serde_json::to_vec(&st.positions).unwrap_or_default()
        };
        self.added.notify_one();
        write_durably(&self.dir, "positions.json", &text).await
    }

    /// The oldest segment, waiting for one.
    pub async fn oldest(&self) -> std::io::Result<(u64, Vec<u8>)> {
        loop {
            let added = self.added.notified();
            tokio::pin!(added);
            added.as_mut().enable();
            let first = self.lock().segments.keys().next().copied();
            if let Some(seq) = first {
                let body = tokio::fs::read(self.dir.join(segment_name(seq))).await?;
                return Ok((seq, body));
            }
            added.await;
        }
    }

    /// Removes segment `seq` (sent, or refused for good).
    pub async fn remove(&self, seq: u64) -> std::io::Result<()> {
        match tokio::fs::remove_file(self.dir.join(segment_name(seq))).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        {
            let mut st = self.lock();
            if let Some(size) = st.segments.remove(&seq) {
                st.total = st.total.saturating_sub(size);
            }
        }
        self.room.notify_waiters();
        Ok(())
    }
}

/// Writes `dir/name` through a temporary file, fsynced before it is renamed into place.
async fn write_durably(dir: &Path, name: &str, body: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = tokio::fs::File::create(&tmp).await?;
    f.write_all(body).await?;
    f.sync_all().await?;
    drop(f);
    tokio::fs::rename(&tmp, dir.join(name)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn segments_in_order_bounded_and_kept_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 10).unwrap();
        let pos = |id: &str, t: i128| BTreeMap::from([(id.to_string(), t)]);
        spool.append(b"123456", &pos("c1", 5)).await.unwrap();
        // 6 + 6 > 10: the second waits until the first is gone.
        let s2 = spool.clone();
        let second = tokio::spawn(async move { s2.append(b"abcdef", &pos("c1", 9)).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "the spool is full");
        assert_eq!((spool.segments(), spool.bytes()), (1, 6));
        let (seq, body) = spool.oldest().await.unwrap();
        assert_eq!(body, b"123456");
        spool.remove(seq).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("room made")
            .unwrap()
            .unwrap();
        assert_eq!(spool.position("c1"), Some(9));
        // Reopened: the unsent segment and the positions are still there.
        drop(spool);
        let spool = Spool::open(dir.path(), 10).unwrap();
        assert_eq!((spool.segments(), spool.bytes()), (1, 6));
        assert_eq!(spool.position("c1"), Some(9));
        let (seq, body) = spool.oldest().await.unwrap();
        assert_eq!(body, b"abcdef");
        spool.remove(seq).await.unwrap();
        // A body larger than the bound still goes into an empty spool.
        spool.append(&[b'x'; 30], &BTreeMap::new()).await.unwrap();
        assert_eq!(spool.bytes(), 30);
        spool.retain_positions(|_| false);
        assert_eq!(spool.position("c1"), None);
    }
}
