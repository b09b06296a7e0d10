//! Durations as Go writes them (`time.ParseDuration`), for flags and query parameters:
//! `15s`, `500ms`, `1h30m`, `1.5h`, and a bare number of seconds (`40`, `0`, `2.5`) as
//! kube's components also accept.
//!
//! Contract: parsing is exact to the nanosecond (no float rounding), never panics, and
//! fails with a [`DurationError`] on anything else: an empty string, a number without a
//! unit in a sequence, an unknown unit, a sign, or a value past `Duration::MAX`.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("invalid duration {0:?} (like 30s, 5m, 1h30m)")]
    Invalid(String),
    #[error("missing unit in duration {0:?}")]
    MissingUnit(String),
    #[error("unknown unit {unit:?} in duration {input:?} (ns, us, ms, s, m, h)")]
    UnknownUnit { unit: String, input: String },
    #[error("duration {0:?} is out of range")]
    OutOfRange(String),
}

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Parses `s`; see the module doc for the forms accepted.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let is_number = |c: char| c.is_ascii_digit() || c == '.';
    let invalid = || DurationError::Invalid(s.to_string());
    let out_of_range = || DurationError::OutOfRange(s.to_string());
    if s.chars().all(is_number) {
        return scaled(s, NANOS_PER_SEC)
            .ok_or_else(invalid)?
            .ok_or_else(out_of_range)
            .map(from_nanos);
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !is_number(c))
            .ok_or_else(|| DurationError::MissingUnit(s.to_string()))?;
        let (num, tail) = rest.split_at(num_end);
        let unit_end = tail.find(is_number).unwrap_or(tail.len());
        let (unit, after) = tail.split_at(unit_end);
        let per_unit = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => NANOS_PER_SEC,
            "m" => 60 * NANOS_PER_SEC,
            "h" => 3600 * NANOS_PER_SEC,
            _ => {
                return Err(DurationError::UnknownUnit {
                    unit: unit.to_string(),
                    input: s.to_string(),
                })
            }
        };
        let n = scaled(num, per_unit)
            .ok_or_else(invalid)?
            .ok_or_else(out_of_range)?;
        total = total.checked_add(n).ok_or_else(out_of_range)?;
        rest = after;
    }
    if total > max_nanos() {
        return Err(out_of_range());
    }
    Ok(from_nanos(total))
}

fn max_nanos() -> u128 {
    Duration::MAX.as_nanos()
}

fn from_nanos(n: u128) -> Duration {
    let secs = n / u128::from(NANOS_PER_SEC);
    let nanos = n % u128::from(NANOS_PER_SEC);
    Duration::new(
        u64::try_from(secs).unwrap_or(u64::MAX),
        u32::try_from(nanos).unwrap_or(0),
    )
}

/// `num` (digits with at most one `.`) times `per_unit` nanoseconds, truncated to whole
/// nanoseconds: `None` when `num` is not a number, `Some(None)` when the result exceeds
/// `Duration::MAX`.
fn scaled(num: &str, per_unit: u64) -> Option<Option<u128>> {
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
        return None;
    }
    let per_unit = u128::from(per_unit);
    let mut whole: u128 = 0;
    for d in int.bytes() {
        let Some(w) = whole
            .checked_mul(10)
            .and_then(|w| w.checked_add(u128::from(d - b'0')))
            .filter(|w| w.saturating_mul(per_unit) <= max_nanos())
        else {
            return Some(None);
        };
        whole = w;
    }
    // Digits past the 19th change no unit here by a whole nanosecond (an hour is 3.6e12
    // ns), and stopping there keeps `f * per_unit` far inside a u128.
    let (mut f, mut scale) = (0u128, 1u128);
    for d in frac.bytes().take(19) {
        f = f * 10 + u128::from(d - b'0');
        scale *= 10;
    }
    let n = whole * per_unit + f * per_unit / scale;
    Some((n <= max_nanos()).then_some(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_go_writes_them() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("3µs7ns"), Ok(Duration::from_nanos(3007)));
        assert_eq!(parse_duration("0.1s"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration(" 5m "), Ok(Duration::from_secs(300)));
    }

    #[test]
    fn bare_numbers_are_seconds() {
        assert_eq!(parse_duration("40"), Ok(Duration::from_secs(40)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration(".5"), Ok(Duration::from_millis(500)));
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        for bad in [
            "5x",
            "s",
            "5 parsecs",
            "1.2.3s",
            ".",
            "-5s",
            "+5s",
            "1h5",
            "ms5",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            parse_duration("5x"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_duration("1h5"),
            Err(DurationError::MissingUnit(_))
        ));
    }

    #[test]
    fn huge_values_are_out_of_range_not_a_panic() {
        for big in [
            "99999999999999999999999h",
            "18446744073709551616",
            "5124095576030431h5124095576030431h",
            "1e9s",
        ] {
            assert!(parse_duration(big).is_err(), "{big}");
        }
        assert!(matches!(
            parse_duration("99999999999999999999999h"),
            Err(DurationError::OutOfRange(_))
        ));
        assert_eq!(
            parse_duration("18446744073709551615"),
            Ok(Duration::from_secs(u64::MAX))
        );
    }
}
