//! The log backend (`--audit-log-path`, `-` for standard output): one JSON event per
//! line, written by one thread, with kube's rotation (`--audit-log-maxsize`,
//! `--audit-log-maxbackup`, `--audit-log-maxage`, lumberjack's semantics).
//!
//! Contract: a line handed to [`Sink::send`] is written whole, in the order sent, unless
//! it is dropped; a drop is counted and logged, never silent.
//!
//! Mode: kube's default for the log backend is `blocking` (the request writes its event
//! itself, so a slow disk slows requests and nothing is dropped); `batch` buffers 10,000
//! events and drops beyond. We keep blocking's promise while the disk keeps up and bound
//! what it costs when it does not: requests put lines on a bounded queue
//! ([`QUEUE_LINES`]) that one writer thread drains (a write is a blocking syscall, so it
//! stays off the async workers). A full queue makes the request wait, as blocking does,
//! but at most [`ENQUEUE_WAIT`]; past that the line is dropped and the sink is marked
//! stalled, so later requests drop at once instead of each waiting, until the writer
//! drains a batch again. A stalled disk thus costs requests one bounded wait, not the API.
//!
//! Rotation, as lumberjack (which kube uses): the file is opened for appending (created
//! 0600, its directory 0700, at start: a path that cannot be opened refuses to start);
//! before a write would take it past `maxsize` MB (0: lumberjack's 100 MB) it is renamed
//! to `<name>-<UTC time 2006-01-02T15-04-05.000><ext>` and a new file is started;
//! backups beyond `maxbackup` (0: all kept) and older than `maxage` days (0: no limit,
//! by the time in their name) are removed. Unlike lumberjack, a single line longer than
//! `maxsize` is written (alone in its file) rather than refused.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

/// Lines queued between requests and the writer.
pub const QUEUE_LINES: usize = 10_000;
/// How long a request waits for room in a full queue before its line is dropped.
pub const ENQUEUE_WAIT: Duration = Duration::from_secs(1);
/// lumberjack's size when none is given.
const DEFAULT_MAX_MB: u64 = 100;
const MB: u64 = 1024 * 1024;

/// Where and how the log is written (the flags, checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOptions {
    /// None: standard output (`-`).
    pub path: Option<PathBuf>,
    pub max_size_mb: u64,
    pub max_backups: usize,
    pub max_age_days: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("--audit-log-path {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("--audit-log-maxsize {0} MB is too large")]
    TooLarge(u64),
    #[error("starting the audit log writer: {0}")]
    Thread(std::io::Error),
}

/// The request side: a bounded queue to the writer thread.
pub struct Sink {
    tx: mpsc::Sender<Vec<u8>>,
    state: Arc<State>,
}

/// Shared by the sink and the writer.
#[derive(Default)]
struct State {
    stalled: AtomicBool,
    dropped: AtomicU64,
}

impl Sink {
    /// Opens the log (a failure refuses the start) and starts the writer thread.
    pub fn start(opts: &LogOptions) -> Result<Sink, LogError> {
        let out: Box<dyn Output> = match &opts.path {
            None => Box::new(std::io::stdout()),
            Some(path) => {
                let max = match opts.max_size_mb {
                    0 => DEFAULT_MAX_MB * MB,
                    n => n.checked_mul(MB).ok_or(LogError::TooLarge(n))?,
                };
                Box::new(
                    Rotating::open(path, max, opts.max_backups, opts.max_age_days).map_err(
                        |source| LogError::Open {
                            path: path.display().to_string(),
                            source,
                        },
                    )?,
                )
            }
        };
        let (tx, rx) = mpsc::channel(QUEUE_LINES);
        let state = Arc::new(State::default());
        let st = state.clone();
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || write_loop(rx, out, &st))
            .map_err(LogError::Thread)?;
        Ok(Sink { tx, state })
    }

    /// Queues a line, waiting at most [`ENQUEUE_WAIT`] for room (none while stalled).
    pub async fn send(&self, line: Vec<u8>) {
        let r = if self.state.stalled.load(Ordering::Relaxed) {
            self.tx.try_send(line).map_err(|_| ())
        } else {
            match tokio::time::timeout(ENQUEUE_WAIT, self.tx.send(line)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(()),
                Err(_) => {
                    self.state.stalled.store(true, Ordering::Relaxed);
                    Err(())
                }
            }
        };
        if r.is_err() {
            self.dropped();
        }
    }

    /// Queues a line without waiting (from a `Drop`, outside any runtime).
    pub fn try_send(&self, line: Vec<u8>) {
        if self.tx.try_send(line).is_err() {
            self.dropped();
        }
    }

    fn dropped(&self) {
        let n = self
            .state
            .dropped
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if n.is_power_of_two() {
            tracing::error!(
                dropped = n,
                "audit events dropped: the audit log cannot keep up"
            );
        }
    }

    /// Events dropped so far.
    pub fn dropped_count(&self) -> u64 {
        self.state.dropped.load(Ordering::Relaxed)
    }
}

/// Where lines go: standard output or the rotating file.
trait Output: Send {
    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()>;
    fn flush_all(&mut self) -> std::io::Result<()>;
}

impl Output for std::io::Stdout {
    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        self.lock().write_all(line)
    }
    fn flush_all(&mut self) -> std::io::Result<()> {
        self.lock().flush()
    }
}

impl Output for Rotating {
    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        self.write_at(line, SystemTime::now())
    }
    fn flush_all(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Drains the queue in batches until every sender is gone.
fn write_loop(mut rx: mpsc::Receiver<Vec<u8>>, mut out: Box<dyn Output>, state: &State) {
    let mut failures = 0u64;
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < 512 {
            match rx.try_recv() {
                Ok(l) => batch.push(l),
                Err(_) => break,
            }
        }
        let mut result = Ok(());
        for line in &batch {
            result = result.and_then(|()| out.write_line(line));
        }
        let result = result.and_then(|()| out.flush_all());
        if let Err(e) = result {
            failures = failures.saturating_add(1);
            if failures.is_power_of_two() {
                tracing::error!(error = %e, failures, "writing the audit log failed");
            }
        }
        state.stalled.store(false, Ordering::Relaxed);
    }
}

/// lumberjack's backup time format, `2006-01-02T15-04-05.000`, in UTC.
fn backup_stamp(t: SystemTime) -> String {
    // 2006-01-02T15:04:05.000000Z → 2006-01-02T15-04-05.000
    let iso = super::event::format_micro(t);
    iso.chars()
        .take(23)
        .map(|c| if c == ':' { '-' } else { c })
        .collect()
}

/// Whether `s` has the shape of [`backup_stamp`]'s output.
fn is_stamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 23
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 | 13 | 16 => *c == b'-',
            10 => *c == b'T',
            19 => *c == b'.',
            _ => c.is_ascii_digit(),
        })
}

/// The file and what rotation needs to know.
pub struct Rotating {
    path: PathBuf,
    file: File,
    size: u64,
    max: u64,
    max_backups: usize,
    max_age_days: u64,
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

impl Rotating {
    pub fn open(
        path: &Path,
        max: u64,
        max_backups: usize,
        max_age_days: u64,
    ) -> std::io::Result<Rotating> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(Rotating {
            path: path.to_path_buf(),
            file,
            size,
            max,
            max_backups,
            max_age_days,
        })
    }

    /// The name's stem and extension: `audit.log` → (`audit`, `.log`).
    fn parts(&self) -> (String, String) {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match name.rfind('.').filter(|&i| i > 0) {
            Some(i) => (name[..i].to_string(), name[i..].to_string()),
            None => (name, String::new()),
        }
    }

    fn dir(&self) -> PathBuf {
        self.path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }

    /// Writes a line at `now`, rotating first when it would not fit.
    pub fn write_at(&mut self, line: &[u8], now: SystemTime) -> std::io::Result<()> {
        let len = u64::try_from(line.len()).unwrap_or(u64::MAX);
        if self.size > 0 && self.size.saturating_add(len) > self.max {
            self.rotate(now)?;
        }
        self.file.write_all(line)?;
        self.size = self.size.saturating_add(len);
        Ok(())
    }

    fn rotate(&mut self, now: SystemTime) -> std::io::Result<()> {
        self.file.flush()?;
        let (stem, ext) = self.parts();
        let dir = self.dir();
        // Two rotations within a millisecond get the next free millisecond.
        let mut at = now;
        let mut backup = dir.join(format!("{stem}-{}{ext}", backup_stamp(at)));
        for _ in 0..1000 {
            if !backup.exists() {
                break;
            }
            at = at.checked_add(Duration::from_millis(1)).unwrap_or(at);
            backup = dir.join(format!("{stem}-{}{ext}", backup_stamp(at)));
        }
        std::fs::rename(&self.path, &backup)?;
        self.file = open_append(&self.path)?;
        self.size = 0;
        self.remove_old(now);
        Ok(())
    }

    /// Removes backups beyond `max_backups` (newest kept) and older than `max_age_days`.
    fn remove_old(&self, now: SystemTime) {
        let (stem, ext) = self.parts();
        let prefix = format!("{stem}-");
        let Ok(entries) = std::fs::read_dir(self.dir()) else {
            return;
        };
        let mut backups: Vec<(String, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let stamp = name.strip_prefix(&prefix)?.strip_suffix(ext.as_str())?;
                is_stamp(stamp).then(|| (stamp.to_string(), e.path()))
            })
            .collect();
        // The stamp sorts as the time it names; newest first.
        backups.sort_by(|a, b| b.0.cmp(&a.0));
        let cutoff = (self.max_age_days > 0).then(|| {
            let age = Duration::from_secs(self.max_age_days.saturating_mul(86_400));
            backup_stamp(now.checked_sub(age).unwrap_or(UNIX_EPOCH))
        });
        for (i, (stamp, path)) in backups.iter().enumerate() {
            let too_many = self.max_backups > 0 && i >= self.max_backups;
            let too_old = cutoff.as_ref().is_some_and(|c| stamp < c);
            if too_many || too_old {
                if let Err(e) = std::fs::remove_file(path) {
                    tracing::warn!(path = %path.display(), error = %e, "removing an old audit log");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn rotates_by_size_keeps_maxbackup_and_drops_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs").join("audit.log");
        let day = Duration::from_secs(86_400);
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut r = Rotating::open(&path, 10, 2, 3).unwrap();
        let logs = dir.path().join("logs");
        r.write_at(b"aaaa\n", t0).unwrap();
        r.write_at(b"bbbb\n", t0).unwrap();
        assert_eq!(names(&logs), ["audit.log"]);
        // The third line does not fit: the file becomes a backup named by the time.
        r.write_at(b"cccc\n", t0).unwrap();
        assert_eq!(
            names(&logs),
            ["audit-2023-11-14T22-13-20.000.log", "audit.log"]
        );
        assert_eq!(
            std::fs::read_to_string(logs.join("audit-2023-11-14T22-13-20.000.log")).unwrap(),
            "aaaa\nbbbb\n"
        );
        // A second rotation in the same millisecond takes the next one.
        r.write_at(b"dddddd\n", t0).unwrap();
        assert_eq!(
            names(&logs),
            [
                "audit-2023-11-14T22-13-20.000.log",
                "audit-2023-11-14T22-13-20.001.log",
                "audit.log"
            ]
        );
        // A line longer than the limit is written alone.
        r.write_at(b"a line longer than ten bytes\n", t0 + day)
            .unwrap();
        let all = names(&logs);
        assert_eq!(all.len(), 3, "{all:?}: maxbackup 2");
        assert!(all.contains(&"audit-2023-11-15T22-13-20.000.log".to_string()));
        assert!(!all.contains(&"audit-2023-11-14T22-13-20.000.log".to_string()));
        // Four days on, everything but the newest day's is too old.
        r.write_at(b"x\n", t0 + day * 5).unwrap();
        let all = names(&logs);
        assert_eq!(
            all,
            ["audit-2023-11-19T22-13-20.000.log", "audit.log"],
            "{all:?}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "x\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Other files in the directory are never touched.
        std::fs::write(logs.join("audit-notes.log"), "keep").unwrap();
        r.write_at(b"0123456789\n", t0 + day * 5).unwrap();
        assert!(names(&logs).contains(&"audit-notes.log".to_string()));
    }

    #[test]
    fn reopening_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit");
        let t = SystemTime::now();
        Rotating::open(&path, 100, 0, 0)
            .unwrap()
            .write_at(b"one\n", t)
            .unwrap();
        Rotating::open(&path, 100, 0, 0)
            .unwrap()
            .write_at(b"two\n", t)
            .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
        assert!(is_stamp("2023-11-14T22-13-20.000"));
        assert!(!is_stamp("2023-11-14T22-13-20"));
    }

    #[tokio::test]
    async fn lines_reach_the_file_in_order_and_a_bad_path_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let sink = Sink::start(&LogOptions {
            path: Some(path.clone()),
            max_size_mb: 0,
            max_backups: 0,
            max_age_days: 0,
        })
        .unwrap();
        for i in 0..100 {
            sink.send(format!("{i}\n").into_bytes()).await;
        }
        let want: String = (0..100).map(|i| format!("{i}\n")).collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&path).unwrap_or_default() != want {
            assert!(std::time::Instant::now() < deadline, "lines not written");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(sink.dropped_count(), 0);
        let file = dir.path().join("a-file");
        std::fs::write(&file, "").unwrap();
        let e = Sink::start(&LogOptions {
            path: Some(file.join("audit.log")),
            max_size_mb: 0,
            max_backups: 0,
            max_age_days: 0,
        })
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(e.starts_with("--audit-log-path "), "{e}");
    }
}
