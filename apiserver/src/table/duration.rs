//! Ages as `kubectl get` prints them (apimachinery's `HumanDuration`): a few significant
//! units, coarser as the age grows, with years of exactly 365 days.

/// `secs` is whole seconds (truncated toward zero) between the time and now.
pub fn human(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let (d, h) = (hours / 24, hours % 24);
        return if h == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{h}h")
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    let (y, d) = (hours / 24 / 365, (hours / 24) % 365);
    if hours < 24 * 365 * 8 && d != 0 {
        return format!("{y}y{d}d");
    }
    format!("{y}y")
}

/// The age of an RFC 3339 timestamp at `now` (Unix seconds); `<unknown>` when absent.
pub fn since(ts: Option<&str>, now: i64) -> String {
    match ts.and_then(parse) {
        Some(t) => human(now - t),
        None => "<unknown>".into(),
    }
}

/// Unix seconds of an RFC 3339 timestamp.
pub fn parse(ts: &str) -> Option<i64> {
    ts.parse::<k8s_openapi::jiff::Timestamp>()
        .ok()
        .map(|t| t.as_second())
}

#[cfg(test)]
mod tests {
    use super::human;

    #[test]
    fn boundaries_as_kubectl_prints_them() {
        let h = 3600;
        let d = 24 * h;
        let y = 365 * d;
        let cases = [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (182, "3m2s"),
            (599, "9m59s"),
            (600, "10m"),
            (179 * 60, "179m"),
            (3 * h, "3h"),
            (3 * h + 5 * 60, "3h5m"),
            (8 * h, "8h"),
            (47 * h, "47h"),
            (2 * d, "2d"),
            (2 * d + 3 * h, "2d3h"),
            (8 * d, "8d"),
            (729 * d, "729d"),
            (2 * y, "2y"),
            (2 * y + 3 * d, "2y3d"),
            (8 * y + 3 * d, "8y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human(secs), want, "{secs} s");
        }
    }
}
