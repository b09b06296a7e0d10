//! Resource quantities (`resource.Quantity` strings: "100m", "1.5", "128Mi", "1e3", "2G").
//!
//! Contract: parsing never panics, whatever the string; integer results fit in an `i64`
//! (`None` when they would not, or [`saturating_milli`] and [`saturating_units`], which
//! clamp to the `i64` bounds). A single quantity fits, but a sum of them may not (two
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
    if n == 0.0 {
        // Zero times any scale, even one past f64's range ("0e400"), is zero, not NaN.
        return Some(0.0);
    }
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
    Some(ceil(v) as i64)
}

/// Rounds up, except that a value within float error of a whole number is that number:
/// `150000000n` is 150 millicores exactly, as kube's exact arithmetic has it, not the 151
/// that ceil of 150.00000000000003 would give.
fn ceil(v: f64) -> f64 {
    let r = v.round();
    if (v - r).abs() <= r.abs().max(1.0) * 1e-12 {
        r
    } else {
        v.ceil()
    }
}

/// [`milli`], but a quantity beyond the `i64` range is clamped to it (`"5E"` of cpu is
/// `i64::MAX` millicores) instead of `None`: for requests and capacities, where a value
/// too large to count must still be too large, not zero. `None` only when it does not
/// parse.
pub fn saturating_milli(q: &str) -> Option<i64> {
    saturating_scaled(q, 1000.0)
}

/// [`units`], clamped to the `i64` range as [`saturating_milli`].
pub fn saturating_units(q: &str) -> Option<i64> {
    saturating_scaled(q, 1.0)
}

fn saturating_scaled(q: &str, by: f64) -> Option<i64> {
    let v = parse(q)? * by;
    if v.is_nan() {
        return None;
    }
    // `as` saturates at the i64 bounds (and infinities go to them).
    Some(ceil(v) as i64)
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
    fn float_error_does_not_round_a_whole_value_up() {
        assert_eq!(milli("150000000n"), Some(150));
        assert_eq!(milli("1.1"), Some(1100));
        assert_eq!(milli("1n"), Some(1), "a real fraction still rounds up");
        assert_eq!(units("0.1"), Some(1));
        assert_eq!(saturating_milli("123456789n"), Some(124));
    }

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
    fn out_of_range_quantities_saturate_where_asked() {
        assert_eq!(saturating_milli("5E"), Some(i64::MAX));
        assert_eq!(saturating_milli("100m"), Some(100));
        assert_eq!(saturating_units("9999999999999999999999Ki"), Some(i64::MAX));
        assert_eq!(saturating_units("1e400"), Some(i64::MAX));
        assert_eq!(saturating_units("-1e400"), Some(i64::MIN));
        assert_eq!(saturating_units("1e-400"), Some(0));
        assert_eq!(saturating_units("0e400"), Some(0));
        assert_eq!(saturating_units("9223372036854775807"), Some(i64::MAX));
        assert_eq!(saturating_units("abc"), None);
        assert_eq!(units("0e400"), Some(0));
        assert_eq!(parse("0e400"), Some(0.0));
        for q in [
            "5E",
            "8Ei",
            "1e18",
            "1e400",
            "-1e400",
            "1e-400",
            "9223372036854775807",
            "-9223372036854775808",
            "99999999999999999999999999999999999999999E",
            "1e2147483647",
            "1e-2147483648",
            ".",
            "+.",
            "-0",
            "0.000000001n",
        ] {
            // None of these may panic, whatever they come to.
            let _ = (
                parse(q),
                milli(q),
                units(q),
                saturating_milli(q),
                saturating_units(q),
            );
        }
    }

    #[test]
    fn kibibytes() {
        assert_eq!(format_kibi(16 << 30), "16777216Ki");
        assert_eq!(format_kibi(1023), "0Ki");
        assert_eq!(units(&format_kibi(64 << 20)), Some(64 << 20));
    }
}
