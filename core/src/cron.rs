//! CronJob schedules as kube reads them (robfig/cron's standard parser): five fields
//! (minute, hour, day of month, month, day of week; names, ranges, steps, lists, `?`),
//! the descriptors `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`,
//! `@hourly`, and `@every <duration>`. Matching follows POSIX cron (a restricted day of
//! month and day of week match either) through the `croner` crate; times are the wall
//! clock of a time zone (jiff's, with the zone database bundled).
//!
//! Contract: parsing never panics and rejects what robfig rejects that croner would take
//! (`L`, `W`, `#`, seconds and year fields), with robfig's messages where kube shows them.

use std::time::Duration;

use chrono::{NaiveDate, TimeZone as _};
use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// A parsed schedule.
#[derive(Debug, Clone)]
pub enum Schedule {
    Cron(Box<croner::Cron>),
    /// `@every`: a fixed delay from the previous time, whole seconds.
    Every(Duration),
}

const DESCRIPTORS: &[(&str, &str)] = &[
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

/// Parses a schedule; the error is the message kube's validation shows.
pub fn parse(spec: &str) -> Result<Schedule, String> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err("empty spec string".into());
    }
    let pattern = if let Some(rest) = spec.strip_prefix('@') {
        if let Some(d) = rest.strip_prefix("every ") {
            let d = crate::duration::parse_duration(d.trim())
                .map_err(|e| format!("failed to parse duration {spec}: {e}"))?;
            // robfig rounds the delay down to whole seconds, at least one.
            let secs = d.as_secs().max(1);
            return Ok(Schedule::Every(Duration::from_secs(secs)));
        }
        DESCRIPTORS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(spec))
            .map(|(_, p)| *p)
            .ok_or_else(|| format!("unrecognized descriptor: {spec}"))?
    } else {
        spec
    };
    let fields: Vec<&str> = pattern.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    for f in &fields {
        for token in f.split([',', '-', '/']) {
            if token.contains(['L', 'l', 'W', 'w', '#']) && !is_name(token) {
                return Err(format!(
                    "failed to parse int from {token}: strconv.Atoi: parsing {token:?}: invalid syntax"
                ));
            }
        }
    }
    let parser = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .year(croner::parser::Year::Disallowed)
        .build();
    parser
        .parse(pattern)
        .map(|c| Schedule::Cron(Box::new(c)))
        .map_err(|e| e.to_string())
}

/// Month and weekday names (which may contain the letters above).
fn is_name(token: &str) -> bool {
    const NAMES: &[&str] = &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec", "sun",
        "mon", "tue", "wed", "thu", "fri", "sat",
    ];
    NAMES.iter().any(|n| n.eq_ignore_ascii_case(token))
}

/// The time zone of a CronJob's `timeZone`, checked as kube's validation does: an explicit
/// IANA name (not `Local`), known to the bundled database.
pub fn time_zone(name: &str) -> Result<TimeZone, String> {
    if name.is_empty() {
        return Err("timeZone must be nil or non-empty string".into());
    }
    if name.eq_ignore_ascii_case("local") {
        return Err(
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"
                .into(),
        );
    }
    let part_ok = |p: &str| {
        (1..=14).contains(&p.len())
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'))
            && p != "."
            && p != ".."
            && !p.starts_with('-')
    };
    if !name.split('/').all(part_ok) {
        return Err(format!("unknown time zone {name}"));
    }
    TimeZone::get(name).map_err(|_| format!("unknown time zone {name}"))
}

impl Schedule {
    /// The first scheduled time strictly after `t`, in the wall clock of `tz`. `None` when
    /// the schedule never fires again (a day that never comes, like 30 February).
    pub fn next_after(&self, t: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        match self {
            Schedule::Every(d) => {
                let whole = Timestamp::from_second(t.as_second()).ok()?;
                whole.checked_add(*d).ok()
            }
            Schedule::Cron(c) => {
                let mut civil = tz.to_datetime(t);
                // A wall-clock time may repeat when clocks go back: look a few times.
                for _ in 0..4 {
                    let naive = to_chrono(civil)?;
                    let utc = chrono::Utc.from_utc_datetime(&naive);
                    let next = c.find_next_occurrence(&utc, false).ok()?.naive_utc();
                    civil = from_chrono(next)?;
                    let at = tz.to_ambiguous_timestamp(civil).compatible().ok()?;
                    if at > t {
                        return Some(at);
                    }
                }
                None
            }
        }
    }
}

fn to_chrono(d: DateTime) -> Option<chrono::NaiveDateTime> {
    NaiveDate::from_ymd_opt(
        i32::from(d.year()),
        u32::try_from(d.month()).ok()?,
        u32::try_from(d.day()).ok()?,
    )?
    .and_hms_opt(
        u32::try_from(d.hour()).ok()?,
        u32::try_from(d.minute()).ok()?,
        u32::try_from(d.second()).ok()?,
    )
}

fn from_chrono(d: chrono::NaiveDateTime) -> Option<DateTime> {
    use chrono::{Datelike, Timelike};
    DateTime::new(
        i16::try_from(d.year()).ok()?,
        i8::try_from(d.month()).ok()?,
        i8::try_from(d.day()).ok()?,
        i8::try_from(d.hour()).ok()?,
        i8::try_from(d.minute()).ok()?,
        i8::try_from(d.second()).ok()?,
        0,
    )
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(spec: &str, after: &str, tz: &str) -> String {
        let tz = time_zone(tz).unwrap();
        parse(spec)
            .unwrap()
            .next_after(ts(after), &tz)
            .unwrap()
            .to_string()
    }

    #[test]
    fn standard_fields_and_descriptors() {
        let utc = "Etc/UTC";
        assert_eq!(
            next("*/15 * * * *", "2026-01-01T00:07:30Z", utc),
            "2026-01-01T00:15:00Z"
        );
        assert_eq!(
            next("@hourly", "2026-01-01T00:00:00Z", utc),
            "2026-01-01T01:00:00Z"
        );
        assert_eq!(
            next("@midnight", "2026-01-01T10:00:00Z", utc),
            "2026-01-02T00:00:00Z"
        );
        // Monday is 1, Sunday 0, names work: 2026-01-01 is a Thursday.
        assert_eq!(
            next("0 9 * * 1", "2026-01-01T00:00:00Z", utc),
            "2026-01-05T09:00:00Z"
        );
        assert_eq!(
            next("0 9 * * SUN", "2026-01-01T00:00:00Z", utc),
            "2026-01-04T09:00:00Z"
        );
        assert_eq!(
            next("0 0 1 FEB ?", "2026-01-01T00:00:00Z", utc),
            "2026-02-01T00:00:00Z"
        );
        // Day of month and day of week both restricted: either matches (POSIX).
        assert_eq!(
            next("0 0 10 * 1", "2026-01-06T00:00:00Z", utc),
            "2026-01-10T00:00:00Z"
        );
        assert_eq!(
            next("@every 90s", "2026-01-01T00:00:00.5Z", utc),
            "2026-01-01T00:01:30Z"
        );
    }

    #[test]
    fn wall_clock_of_the_time_zone() {
        // 09:00 in New York: 14:00 UTC in winter, 13:00 in summer.
        assert_eq!(
            next("0 9 * * *", "2026-01-01T00:00:00Z", "America/New_York"),
            "2026-01-01T14:00:00Z"
        );
        assert_eq!(
            next("0 9 * * *", "2026-07-01T00:00:00Z", "America/New_York"),
            "2026-07-01T13:00:00Z"
        );
        // Clocks go back at 02:00 on 2026-11-01: 01:30 happens twice, fires once.
        let tz = time_zone("America/New_York").unwrap();
        let s = parse("30 1 * * *").unwrap();
        let first = s.next_after(ts("2026-11-01T04:00:00Z"), &tz).unwrap();
        assert_eq!(first.to_string(), "2026-11-01T05:30:00Z");
        let after = s.next_after(first, &tz).unwrap();
        assert_eq!(after.to_string(), "2026-11-02T06:30:00Z");
    }

    #[test]
    fn rejects_what_kube_rejects() {
        for (spec, msg) in [
            ("", "empty spec string"),
            ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
            (
                "0 * * * * *",
                "expected exactly 5 fields, found 6: [0 * * * * *]",
            ),
            ("@fortnightly", "unrecognized descriptor: @fortnightly"),
            ("0 0 L * *", "failed to parse int from L"),
            ("0 0 * * 5#2", "failed to parse int from 5#2"),
            ("@every soon", "failed to parse duration @every soon"),
        ] {
            let err = parse(spec).unwrap_err();
            assert!(err.starts_with(msg), "{spec}: {err}");
        }
        assert!(parse("61 * * * *").is_err());
        assert!(parse("0 0 * * mon-fri").is_ok());
        assert!(time_zone("Europe/Berlin").is_ok());
        assert_eq!(
            time_zone("Mars/Olympus").unwrap_err(),
            "unknown time zone Mars/Olympus"
        );
        assert!(time_zone("LOCAL")
            .unwrap_err()
            .contains("explicit time zone"));
        assert!(time_zone("../etc/passwd").is_err());
    }
}
