//! resource.Quantity strings ("100m", "1.5", "128Mi", "1e3", "2G") as integers.

/// The quantity in thousandths of a unit, rounded up (cpu in millicores). `None` when it
/// does not parse.
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

/// The quantity as a float of units.
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
}
