//! Container logs as `kubectl logs` asks for them: since a time, the last N lines, with or
//! without timestamps, up to a byte limit, and followed while the container runs. The
//! options and the parsing of a CRI log line (the process runtime's format:
//! `<RFC 3339 time> <stdout|stderr> <F|P> <text>`) are here and pure; reading files is
//! `logfile.rs`'s.

use jiff::Timestamp;

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

#[cfg(test)]
mod tests {
    use super::*;

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
        }
    }
}
