//! Sets of completion indexes as a Job's status writes them (`completedIndexes`,
//! `failedIndexes`): ascending intervals, `"1,3-5,7"`. Pure.

use std::collections::BTreeSet;

/// At most this many indexes are read from one status (a bound on what a status written
/// by anyone can cost).
const MAX_INDEXES: usize = 1_000_000;

/// The indexes of `s`; malformed parts (a status written by someone else) are skipped,
/// and indexes at or past `limit` (the Job's completions) are dropped.
pub fn parse(s: &str, limit: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => match (a.parse::<i32>(), b.parse::<i32>()) {
                (Ok(a), Ok(b)) => (a, b),
                _ => continue,
            },
            None => match part.parse::<i32>() {
                Ok(v) => (v, v),
                Err(_) => continue,
            },
        };
        let (a, b) = (a.max(0), b.min(limit.saturating_sub(1)));
        if a <= b {
            let room = MAX_INDEXES.saturating_sub(out.len());
            out.extend((a..=b).take(room));
        }
    }
    out
}

/// `"1,3-5,7"` for {1, 3, 4, 5, 7}.
pub fn format(set: &BTreeSet<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == end.checked_add(1).as_ref() {
            end = iter.next().unwrap_or(end);
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_bounds() {
        let s = parse("1,3-5,7", 10);
        assert_eq!(s.iter().copied().collect::<Vec<_>>(), vec![1, 3, 4, 5, 7]);
        assert_eq!(format(&s), "1,3-5,7");
        assert_eq!(format(&parse("", 10)), "");
        assert_eq!(format(&parse("0-9", 5)), "0-4");
        assert_eq!(format(&parse("x,2,a-b,4", 10)), "2,4");
        assert_eq!(format(&[0, 1, 2, 5].into_iter().collect()), "0-2,5");
        assert_eq!(
            format(&parse("2147483646-2147483647", i32::MAX)),
            "2147483646"
        );
    }
}
