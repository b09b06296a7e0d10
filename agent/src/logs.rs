//! Container logs as `kubectl logs` asks for them: since a time, the last N lines, with or
//! without timestamps, up to a byte limit, and followed while the container runs. The
//! parsing and selection are pure; `follow_file` tails a CRI log file (the process
//! runtime's format: `<RFC 3339 time> <stdout|stderr> <F|P> <text>`).

use std::time::Duration;

use bytes::Bytes;
use jiff::Timestamp;
use tokio::sync::mpsc;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogOptions {
    pub follow: bool,
    pub tail_lines: Option<u64>,
    pub since: Option<Timestamp>,
    pub timestamps: bool,
    pub limit_bytes: Option<u64>,
}

impl LogOptions {
    /// From the query of `/containerLogs/...` (the names kubelet and `pods/log` use).
    pub fn from_query(
        q: &std::collections::HashMap<String, String>,
        now: Timestamp,
    ) -> Result<Self, String> {
        let flag = |k: &str| q.get(k).is_some_and(|v| v == "true" || v == "1");
        let num = |k: &str| -> Result<Option<u64>, String> {
            q.get(k)
                .filter(|v| !v.is_empty())
                .map(|v| v.parse::<u64>().map_err(|_| format!("invalid {k}: {v:?}")))
                .transpose()
        };
        let since = match (
            q.get("sinceTime").filter(|v| !v.is_empty()),
            num("sinceSeconds")?,
        ) {
            (Some(t), _) => Some(
                t.parse::<Timestamp>()
                    .map_err(|_| format!("invalid sinceTime: {t:?}"))?,
            ),
            // Seconds reaching back past the start of time mean all of it.
            (None, Some(s)) => Some(
                now.checked_sub(jiff::SignedDuration::from_secs(
                    i64::try_from(s).unwrap_or(i64::MAX),
                ))
                .unwrap_or(Timestamp::MIN),
            ),
            (None, None) => None,
        };
        Ok(LogOptions {
            follow: flag("follow"),
            tail_lines: num("tailLines")?,
            since,
            timestamps: flag("timestamps"),
            limit_bytes: num("limitBytes")?,
        })
    }
}

/// One parsed line of a CRI log file.
#[derive(Debug, Clone, PartialEq)]
pub struct Line<'a> {
    pub time: Timestamp,
    pub time_text: &'a str,
    pub partial: bool,
    pub text: &'a [u8],
}

pub fn parse_line(l: &[u8]) -> Option<Line<'_>> {
    let sp1 = l.iter().position(|b| *b == b' ')?;
    let time_text = std::str::from_utf8(&l[..sp1]).ok()?;
    let rest = &l[sp1 + 1..];
    let sp2 = rest.iter().position(|b| *b == b' ')?;
    let rest = &rest[sp2 + 1..];
    let (tag, text) = match rest.iter().position(|b| *b == b' ') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    Some(Line {
        time: time_text.parse().ok()?,
        time_text,
        partial: tag == b"P",
        text,
    })
}

/// The bytes a client gets for one line.
pub fn render(l: &Line, timestamps: bool, out: &mut Vec<u8>) {
    if timestamps {
        out.extend_from_slice(l.time_text.as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(l.text);
    if !l.partial {
        out.push(b'\n');
    }
}

/// What of a whole file's complete lines is sent first: lines since `since`, of those the
/// last `tail_lines`.
pub fn select(content: &[u8], opts: &LogOptions) -> Vec<u8> {
    let lines: Vec<Line> = content
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(parse_line)
        .filter(|l| opts.since.is_none_or(|s| l.time >= s))
        .collect();
    let skip = match opts.tail_lines {
        Some(n) => lines.len().saturating_sub(n as usize),
        None => 0,
    };
    let mut out = Vec::new();
    for l in &lines[skip..] {
        render(l, opts.timestamps, &mut out);
    }
    out
}

/// Sends what `opts` selects of the CRI log `path`, then (when following) what is
/// appended while `running()` says the container runs, until the receiver goes away.
pub async fn follow_file<F>(
    path: &std::path::Path,
    opts: &LogOptions,
    tx: mpsc::Sender<Bytes>,
    running: F,
) where
    F: Fn() -> bool,
{
    let mut budget = opts.limit_bytes.unwrap_or(u64::MAX);
    let content = tokio::fs::read(path).await.unwrap_or_default();
    // Only complete lines now; a trailing partial line is picked up when it completes.
    let done = content
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    if !send(&tx, &mut budget, select(&content[..done], opts)).await || !opts.follow {
        return;
    }
    let mut offset = done as u64;
    let mut pending: Vec<u8> = Vec::new();
    loop {
        if budget == 0 || tx.is_closed() {
            return;
        }
        let alive = running();
        let data = read_from(path, offset).await;
        offset += data.len() as u64;
        pending.extend_from_slice(&data);
        let mut out = Vec::new();
        while let Some(i) = pending.iter().position(|b| *b == b'\n') {
            if let Some(l) = parse_line(&pending[..i]) {
                render(&l, opts.timestamps, &mut out);
            }
            pending.drain(..=i);
        }
        if !out.is_empty() && !send(&tx, &mut budget, out).await {
            return;
        }
        if !alive && data.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `chunk` cut to what is left of the byte budget; false once the receiver is gone.
async fn send(tx: &mpsc::Sender<Bytes>, budget: &mut u64, mut chunk: Vec<u8>) -> bool {
    if (chunk.len() as u64) > *budget {
        chunk.truncate(*budget as usize);
    }
    *budget -= chunk.len() as u64;
    chunk.is_empty() || tx.send(Bytes::from(chunk)).await.is_ok()
}

async fn read_from(path: &std::path::Path, offset: u64) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let Ok(mut f) = tokio::fs::File::open(path).await else {
        return Vec::new();
    };
    if f.seek(std::io::SeekFrom::Start(offset)).await.is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf).await;
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &[u8] = b"2026-12-01T10:00:00.000000001Z stdout F one\n\
2026-12-01T10:00:01.000000000Z stderr F two\n\
2026-12-01T10:00:02.000000000Z stdout P thr\n\
2026-12-01T10:00:02.000000001Z stdout F ee\n";

    #[test]
    fn since_tail_and_timestamps() {
        let all = select(LOG, &LogOptions::default());
        assert_eq!(all, b"one\ntwo\nthree\n");
        let tail = select(
            LOG,
            &LogOptions {
                tail_lines: Some(2),
                ..Default::default()
            },
        );
        assert_eq!(
            tail, b"three\n",
            "a partial line and its end are two records"
        );
        let since = select(
            LOG,
            &LogOptions {
                since: Some("2026-12-01T10:00:01Z".parse().unwrap()),
                timestamps: true,
                ..Default::default()
            },
        );
        assert_eq!(
            String::from_utf8(since).unwrap(),
            "2026-12-01T10:00:01.000000000Z two\n2026-12-01T10:00:02.000000000Z thr2026-12-01T10:00:02.000000001Z ee\n"
        );
    }

    #[test]
    fn query_parameters() {
        let now: Timestamp = "2026-12-01T10:00:10Z".parse().unwrap();
        let q: std::collections::HashMap<String, String> = [
            ("follow", "true"),
            ("tailLines", "5"),
            ("sinceSeconds", "10"),
            ("timestamps", "true"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let o = LogOptions::from_query(&q, now).unwrap();
        assert!(o.follow && o.timestamps);
        assert_eq!(o.tail_lines, Some(5));
        assert_eq!(o.since, Some("2026-12-01T10:00:00Z".parse().unwrap()));
        let bad: std::collections::HashMap<String, String> =
            [("tailLines".to_string(), "x".to_string())].into();
        assert!(LogOptions::from_query(&bad, now).is_err());
    }

    #[test]
    fn a_since_seconds_past_the_start_of_time_is_everything() {
        let now: Timestamp = "2026-12-01T10:00:10Z".parse().unwrap();
        for secs in [
            "9223372036854775807",
            "18446744073709551615",
            "400000000000",
        ] {
            let q: std::collections::HashMap<String, String> =
                [("sinceSeconds".to_string(), secs.to_string())].into();
            let o = LogOptions::from_query(&q, now).unwrap();
            assert_eq!(o.since, Some(Timestamp::MIN), "{secs}");
            assert_eq!(select(LOG, &o), b"one\ntwo\nthree\n");
        }
    }

    #[tokio::test]
    async fn following_a_file_sends_what_is_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, &LOG[..44]).unwrap();
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
        assert_eq!(rx.recv().await.unwrap(), Bytes::from_static(b"one\n"));
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, &LOG[44..]).unwrap();
        let mut got = Vec::new();
        while got.len() < b"two\nthree\n".len() {
            got.extend_from_slice(&rx.recv().await.unwrap());
        }
        assert_eq!(got, b"two\nthree\n");
        running.store(false, std::sync::atomic::Ordering::Relaxed);
        task.await.unwrap();
        assert!(
            rx.recv().await.is_none(),
            "the stream ends with the container"
        );
    }
}
