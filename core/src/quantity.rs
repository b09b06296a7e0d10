//! Resource quantities (`resource.Quantity` strings: "100m", "1.5", "128Mi", "1e3", "2G").
//!
//! Contract: parsing never panics, whatever the string; integer results fit in an `i64`
//! (`None` when they would not). A single quantity fits, but a sum of them may not (two
//! containers may each ask for `5E`): callers add them with `saturating_add`.

/// The quantity as a float of units; `None` when it does not parse.
pub fn parse(q: &str) -> Option<f64> {
    let q = q.trim();
    let end = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(end);
    if num.is_empty() || num == "+" || num == "-" {
        return None;
    }
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => {
            let exp: i32 = s[1..].parse().ok()?;
            10f64.powi(exp)
        }
        _ => return None,
    };
    Some(n * mult)
}

/// The quantity in thousandths of a unit, rounded up (cpu in millicores). `None` when it
/// does not parse or does not fit.
pub fn milli(q: &str) -> Option<i64> {
    scaled(q, 1000.0)
}

/// The quantity in whole units, rounded up (memory and storage in bytes).
pub fn units(q: &str) -> Option<i64> {
    scaled(q, 1.0)
}

fn scaled(q: &str, by: f64) -> Option<i64> {
    let v = parse(q)? * by;
    if !v.is_finite() || v.abs() > 9.0e18 {
        return None;
    }
    Some(v.ceil() as i64)
}

/// A byte count in the form the kubelet reports capacity in: whole kibibytes (`"16384Ki"`),
/// rounded down.
pub fn format_kibi(bytes: u64) -> String {
    format!("{}Ki", bytes / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_memory() {
        assert_eq!(milli("100m"), Some(100));
        assert_eq!(milli("1.5"), Some(1500));
        assert_eq!(milli("2"), Some(2000));
        assert_eq!(units("128Mi"), Some(128 << 20));
        assert_eq!(units("1G"), Some(1_000_000_000));
        assert_eq!(units("1e3"), Some(1000));
        assert_eq!(units("1E"), Some(1_000_000_000_000_000_000));
        assert_eq!(milli("1u"), Some(1));
        assert_eq!(units("abc"), None);
        assert_eq!(units("1Qi"), None);
        assert_eq!(units(""), None);
    }

    #[test]
    fn floats() {
        assert_eq!(parse("100m"), Some(0.1));
        assert_eq!(parse("1Gi"), Some(1073741824.0));
        assert_eq!(parse("2e3"), Some(2000.0));
        assert_eq!(parse("1.5"), Some(1.5));
        assert_eq!(parse("-1"), Some(-1.0));
        assert_eq!(parse("abc"), None);
        assert_eq!(parse("1Xi"), None);
        assert_eq!(parse("+"), None);
        assert_eq!(parse("1e99999999999"), None);
    }

    #[test]
    fn too_large_to_count_is_none() {
        assert_eq!(units("10E"), None);
        assert_eq!(milli("5E"), None);
        assert_eq!(units("1e400"), None);
        assert_eq!(units("-9e18"), Some(-9_000_000_000_000_000_000));
    }

    #[test]
    fn huge_requests_parse_and_sum_with_saturation() {
        // Two containers each requesting `memory: 5E`: each fits an i64, their sum does not.
        let each = units("5E").unwrap();
        assert_eq!(each, 5_000_000_000_000_000_000);
        assert_eq!(each.checked_add(each), None);
        assert_eq!(each.saturating_add(each), i64::MAX);
    }

    #[test]
    fn kibibytes() {
        assert_eq!(format_kibi(16 << 30), "16777216Ki");
        assert_eq!(format_kibi(1023), "0Ki");
        assert_eq!(units(&format_kibi(64 << 20)), Some(64 << 20));
    }
}
