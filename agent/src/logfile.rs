//! CRI log files on disk (the process runtime's; Docker keeps its own, rotated by its
//! json-file driver with the same limits): the shim writes them through [`Rotating`], and
//! `kubectl logs` reads them through [`follow_file`].
//!
//! Rotation, as the kubelet's `--container-log-max-size` and `--container-log-max-files`
//! promise: a record that would take the file past the size first moves it to `<log>.1`
//! (`.1` to `.2`, and so on; the oldest beyond `max-files - 1` is removed), so a
//! container's logs never hold more than `max-files` files of at most the size each
//! (a single record larger than the size still goes whole into a file of its own).
//! Readers see only the current file, as `kubectl logs` does with the kubelet.
//!
//! Reading: `tailLines` finds where the last lines start by reading backwards from the
//! end in blocks, and everything else is read forward in blocks, so no file is loaded
//! whole; following keeps the file open and, once the path names a new file (rotated)
//! and the old one is drained, goes on in the new one from its start.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::logs::{parse_line, render, LogOptions};

/// How much is read at once.
const BLOCK: usize = 64 * 1024;

/// `<log>.<i>`: the `i`-th newest rotated file.
pub fn rotated(path: &Path, i: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

/// A log file that rotates itself; `max_size` 0 never rotates.
pub struct Rotating {
    path: PathBuf,
    file: std::fs::File,
    size: u64,
    max_size: u64,
    max_files: u32,
}

impl Rotating {
    pub fn open(path: &Path, max_size: u64, max_files: u32) -> std::io::Result<Rotating> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let size = file.metadata()?.len();
        Ok(Rotating {
            path: path.to_path_buf(),
            file,
            size,
            max_size,
            max_files: max_files.max(2),
        })
    }

    /// Appends one whole record, rotating first when it would not fit.
    pub fn write_record(&mut self, rec: &[u8]) -> std::io::Result<()> {
        let len = rec.len() as u64;
        if self.max_size > 0 && self.size > 0 && self.size.saturating_add(len) > self.max_size {
            self.rotate()?;
        }
        self.file.write_all(rec)?;
        self.size = self.size.saturating_add(len);
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let keep = self.max_files - 1;
        match std::fs::remove_file(rotated(&self.path, keep)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        for i in (1..keep).rev() {
            match std::fs::rename(rotated(&self.path, i), rotated(&self.path, i + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(&self.path, rotated(&self.path, 1))?;
        self.file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// Where the last `n` complete lines of `f` start, reading backwards from its end (a last
/// line without its newline yet is not one of them).
pub fn tail_offset(f: &mut std::fs::File, n: u64) -> std::io::Result<u64> {
    let len = f.metadata()?.len();
    if n == 0 {
        return Ok(len);
    }
    let mut end = len;
    // The newline met first from the end ends the last complete line; every one after it
    // starts one more line before.
    let mut last_end_seen = false;
    let mut seen = 0u64;
    let mut buf = vec![0u8; BLOCK];
    while end > 0 {
        let start = end.saturating_sub(BLOCK as u64);
        let chunk = &mut buf[..(end - start) as usize];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(chunk)?;
        for (i, b) in chunk.iter().enumerate().rev() {
            if *b != b'\n' {
                continue;
            }
            if !last_end_seen {
                last_end_seen = true;
                continue;
            }
            seen += 1;
            if seen == n {
                return Ok(start + i as u64 + 1);
            }
        }
        end = start;
    }
    Ok(0)
}

/// Sends `chunk` cut to what is left of the byte budget; false once the receiver is gone.
async fn send(tx: &mpsc::Sender<Bytes>, budget: &mut u64, mut chunk: Vec<u8>) -> bool {
    if (chunk.len() as u64) > *budget {
        chunk.truncate(*budget as usize);
    }
    *budget -= chunk.len() as u64;
    chunk.is_empty() || tx.send(Bytes::from(chunk)).await.is_ok()
}

/// The records of `pending` that are complete, rendered as `opts` asks (lines before
/// `since` left out); they leave `pending`.
fn drain_lines(pending: &mut Vec<u8>, opts: &LogOptions) -> Vec<u8> {
    let mut out = Vec::new();
    let mut used = 0;
    while let Some(i) = pending[used..].iter().position(|b| *b == b'\n') {
        if let Some(l) = parse_line(&pending[used..used + i]) {
            if opts.since.is_none_or(|s| l.time >= s) {
                render(&l, opts.timestamps, &mut out);
            }
        }
        used += i + 1;
    }
    pending.drain(..used);
    out
}

fn inode(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// The file written after the one with inode `ino`, once `path` names another file: the
/// rotated file one newer than it (several rotations may have passed while it was read),
/// or `path` itself when it is not found among them.
fn next_file(path: &Path, ino: u64) -> PathBuf {
    for i in 1..=64 {
        match inode(&rotated(path, i)) {
            Some(x) if x == ino => {
                return if i == 1 {
                    path.to_path_buf()
                } else {
                    rotated(path, i - 1)
                }
            }
            Some(_) => {}
            None => break,
        }
    }
    path.to_path_buf()
}

/// Sends what `opts` selects of the CRI log `path`, then (when following) what is
/// appended while `running()` says the container runs, across rotations, until the
/// receiver goes away.
pub async fn follow_file<F>(path: &Path, opts: &LogOptions, tx: mpsc::Sender<Bytes>, running: F)
where
    F: Fn() -> bool,
{
    let mut budget = opts.limit_bytes.unwrap_or(u64::MAX);
    let Ok(file) = std::fs::File::open(path) else {
        return;
    };
    let tail = opts.tail_lines;
    let opened = tokio::task::spawn_blocking(move || {
        let mut f = file;
        let ino = f.metadata()?.ino();
        let start = match tail {
            Some(n) => tail_offset(&mut f, n)?,
            None => 0,
        };
        f.seek(SeekFrom::Start(start))?;
        Ok::<_, std::io::Error>((f, ino))
    })
    .await;
    let Ok(Ok((file, mut ino))) = opened else {
        return;
    };
    let mut file = tokio::fs::File::from_std(file);
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; BLOCK];
    // What is there now, then (following) what comes.
    let mut caught_up = false;
    loop {
        if budget == 0 || tx.is_closed() {
            return;
        }
        let alive = caught_up && running();
        let n = {
            use tokio::io::AsyncReadExt;
            file.read(&mut buf).await.unwrap_or(0)
        };
        pending.extend_from_slice(&buf[..n]);
        let out = drain_lines(&mut pending, opts);
        if !out.is_empty() && !send(&tx, &mut budget, out).await {
            return;
        }
        if n > 0 {
            continue;
        }
        if !caught_up {
            if !opts.follow {
                return;
            }
            caught_up = true;
            continue;
        }
        // Drained: a rotation moved this file away, so go on in the next one.
        if inode(path).is_some_and(|i| i != ino) {
            if let Ok(f) = tokio::fs::File::open(next_file(path, ino)).await {
                if let Ok(m) = f.metadata().await {
                    file = f;
                    ino = m.ino();
                    pending.clear();
                    continue;
                }
            }
        }
        if !alive {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: usize) -> Vec<u8> {
        // All of one length.
        format!(
            "2026-12-01T10:00:{:02}.000000000Z stdout F line {i:05}\n",
            i % 60
        )
        .into_bytes()
    }

    #[test]
    fn rotation_keeps_at_most_max_files_of_at_most_max_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let rec_len = record(0).len() as u64;
        let mut w = Rotating::open(&path, rec_len * 10, 3).unwrap();
        for i in 0..45 {
            w.write_record(&record(i)).unwrap();
        }
        let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).ok();
        assert_eq!(len(&path), Some(rec_len * 5), "records 40-44");
        assert_eq!(len(&rotated(&path, 1)), Some(rec_len * 10), "30-39");
        assert_eq!(len(&rotated(&path, 2)), Some(rec_len * 10), "20-29");
        assert_eq!(
            len(&rotated(&path, 3)),
            None,
            "max-files 3 counts the current one"
        );
        let newest_rotated = std::fs::read_to_string(rotated(&path, 1)).unwrap();
        assert!(
            newest_rotated.starts_with("2026-12-01T10:00:30"),
            "{newest_rotated}"
        );
        // A record larger than the size goes whole into a file of its own.
        let mut w = Rotating::open(&path, 8, 3).unwrap();
        w.write_record(&record(1)).unwrap();
        assert_eq!(len(&path), Some(rec_len));
        // Reopened, it counts what the file holds.
        let mut w2 = Rotating::open(&path, rec_len * 2, 3).unwrap();
        w2.write_record(&record(2)).unwrap();
        w2.write_record(&record(3)).unwrap();
        assert_eq!(len(&path), Some(rec_len), "rotated before the third record");
    }

    #[test]
    fn the_tail_is_found_from_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        // More than one block, so the search crosses blocks.
        let all: Vec<u8> = (0..3000).flat_map(record).collect();
        assert!(all.len() > 2 * BLOCK);
        std::fs::write(&path, &all).unwrap();
        let mut f = std::fs::File::open(&path).unwrap();
        let rec_len = record(0).len() as u64;
        let len = all.len() as u64;
        assert_eq!(tail_offset(&mut f, 1).unwrap(), len - rec_len);
        assert_eq!(tail_offset(&mut f, 2000).unwrap(), len - 2000 * rec_len);
        assert_eq!(
            tail_offset(&mut f, 5000).unwrap(),
            0,
            "fewer lines than asked"
        );
        assert_eq!(tail_offset(&mut f, 0).unwrap(), len);
        // A last line without its newline yet is not one of the complete lines.
        std::fs::write(&path, b"a\nb\nc").unwrap();
        let mut f = std::fs::File::open(&path).unwrap();
        assert_eq!(
            tail_offset(&mut f, 1).unwrap(),
            2,
            "b is the last complete line"
        );
    }

    /// All of `path` that `opts` selects, without following.
    async fn read_all(path: &Path, opts: LogOptions) -> String {
        let (tx, mut rx) = mpsc::channel(1024);
        follow_file(path, &opts, tx, || false).await;
        let mut out = Vec::new();
        while let Some(b) = rx.recv().await {
            out.extend_from_slice(&b);
        }
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn since_tail_limit_and_timestamps() {
        const LOG: &[u8] = b"2026-12-01T10:00:00.000000001Z stdout F one\n\
2026-12-01T10:00:01.000000000Z stderr F two\n\
2026-12-01T10:00:02.000000000Z stdout P thr\n\
2026-12-01T10:00:02.000000001Z stdout F ee\n";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, LOG).unwrap();
        assert_eq!(
            read_all(&path, LogOptions::default()).await,
            "one\ntwo\nthree\n"
        );
        let tail = LogOptions {
            tail_lines: Some(2),
            ..Default::default()
        };
        assert_eq!(
            read_all(&path, tail).await,
            "three\n",
            "a partial line and its end are two records"
        );
        let since = LogOptions {
            since: Some("2026-12-01T10:00:01Z".parse().unwrap()),
            timestamps: true,
            ..Default::default()
        };
        assert_eq!(
            read_all(&path, since).await,
            "2026-12-01T10:00:01.000000000Z two\n2026-12-01T10:00:02.000000000Z thr2026-12-01T10:00:02.000000001Z ee\n"
        );
        let limited = LogOptions {
            limit_bytes: Some(6),
            ..Default::default()
        };
        assert_eq!(read_all(&path, limited).await, "one\ntw");
        let everything = LogOptions {
            since: Some(jiff::Timestamp::MIN),
            ..Default::default()
        };
        assert_eq!(read_all(&path, everything).await, "one\ntwo\nthree\n");
    }

    #[tokio::test]
    async fn following_goes_on_across_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let rec_len = record(0).len() as u64;
        let mut w = Rotating::open(&path, rec_len * 2, 5).unwrap();
        w.write_record(&record(1)).unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let r = running.clone();
        let p = path.clone();
        let task = tokio::spawn(async move {
            let opts = LogOptions {
                follow: true,
                ..Default::default()
            };
            follow_file(&p, &opts, tx, move || {
                r.load(std::sync::atomic::Ordering::Relaxed)
            })
            .await;
        });
        assert_eq!(
            rx.recv().await.unwrap(),
            Bytes::from_static(b"line 00001\n")
        );
        // Records 2-5 rotate the file twice while it is followed.
        for i in 2..6 {
            w.write_record(&record(i)).unwrap();
        }
        let mut got = Vec::new();
        let want = b"line 00002\nline 00003\nline 00004\nline 00005\n";
        while got.len() < want.len() {
            got.extend_from_slice(&rx.recv().await.unwrap());
        }
        assert_eq!(got, want);
        running.store(false, std::sync::atomic::Ordering::Relaxed);
        task.await.unwrap();
        assert!(
            rx.recv().await.is_none(),
            "the stream ends with the container"
        );
    }
}
