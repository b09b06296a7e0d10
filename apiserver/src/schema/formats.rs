//! String formats of the OpenAPI schemas, as kube-openapi's default registry (`strfmt`)
//! checks them for custom resources. A format the registry does not know is not checked
//! (kube ignores it); so are `isbn*`, `creditcard` and `ssn` here, which kube checks.

use base64::Engine;
use std::net::{IpAddr, Ipv4Addr};

/// Whether `s` is a valid value of `format`; `None` when the format is not checked.
pub fn check(format: &str, s: &str) -> Option<bool> {
    Some(match format {
        "date" => date(s),
        "date-time" | "datetime" => date_time(s),
        "duration" => duration(s),
        "byte" => base64::engine::general_purpose::STANDARD.decode(s).is_ok(),
        "uri" => uri(s),
        "email" => email(s),
        "hostname" => hostname(s),
        "ipv4" => s.parse::<Ipv4Addr>().is_ok(),
        "ipv6" => s.contains(':') && s.parse::<IpAddr>().is_ok(),
        "cidr" => cidr(s),
        "mac" => mac(s),
        "uuid" => uuid(s, None),
        "uuid3" => uuid(s, Some(b'3')),
        "uuid4" => uuid(s, Some(b'4')),
        "uuid5" => uuid(s, Some(b'5')),
        "bsonobjectid" => s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit()),
        "hexcolor" => hexcolor(s),
        "rgbcolor" => rgbcolor(s),
        "password" => true,
        _ => return None,
    })
}

fn digits(s: &str, n: usize) -> Option<u32> {
    (s.len() == n && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// `2006-01-02`, a real day.
fn date(s: &str) -> bool {
    let mut parts = s.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (Some(y), Some(m), Some(d)) = (digits(y, 4), digits(m, 2), digits(d, 2)) else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

/// RFC 3339 and the layouts strfmt also reads: `2006-01-02T15:04:05[.frac][Z|±07:00|±0700]`,
/// and without seconds when a zone is given.
fn date_time(s: &str) -> bool {
    let Some((d, rest)) = s.split_once(['T', 't']) else {
        return false;
    };
    if !date(d) {
        return false;
    }
    let (time, zone) = match rest.find(['Z', 'z', '+', '-']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let zone_ok = match zone {
        "" => true,
        "Z" | "z" => true,
        z => {
            let z = &z[1..];
            let hm = z.split_once(':').map_or_else(
                || (z.len() == 4).then(|| z.split_at(2)),
                |(h, m)| Some((h, m)),
            );
            matches!(hm, Some((h, m)) if digits(h, 2).is_some_and(|h| h < 24)
                && digits(m, 2).is_some_and(|m| m < 60))
        }
    };
    let (clock, frac) = time.split_once('.').unwrap_or((time, ""));
    if !frac.is_empty() && !frac.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let f: Vec<&str> = clock.split(':').collect();
    let clock_ok = match f.as_slice() {
        [h, m, sec] => {
            digits(h, 2).is_some_and(|h| h < 24)
                && digits(m, 2).is_some_and(|m| m < 60)
                && digits(sec, 2).is_some_and(|s| s < 61)
        }
        [h, m] => {
            !zone.is_empty()
                && frac.is_empty()
                && digits(h, 2).is_some_and(|h| h < 24)
                && digits(m, 2).is_some_and(|m| m < 60)
        }
        _ => false,
    };
    zone_ok && clock_ok
}

/// Go durations and strfmt's spelled units: `1h30m`, `1.5s`, `3 days`, `2w`.
fn duration(s: &str) -> bool {
    const UNITS: &[&str] = &[
        "ns", "us", "µs", "ms", "s", "m", "h", "d", "w", "sec", "secs", "second", "seconds", "min",
        "mins", "minute", "minutes", "hr", "hrs", "hour", "hours", "day", "days", "wk", "wks",
        "week", "weeks",
    ];
    let s = s.trim();
    let mut rest = s;
    let mut any = false;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_end];
        if num.is_empty() || num.parse::<f64>().is_err() {
            return false;
        }
        rest = rest[num_end..].trim_start();
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.' || c == ' ')
            .unwrap_or(rest.len());
        if !UNITS.contains(&&rest[..unit_end]) {
            return false;
        }
        rest = rest[unit_end..].trim_start();
        any = true;
    }
    any
}

/// What Go's `url.ParseRequestURI` takes: an absolute URI (`scheme:...`) or an absolute path.
fn uri(s: &str) -> bool {
    if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    if s.starts_with('/') {
        return true;
    }
    match s.split_once(':') {
        Some((scheme, _)) => {
            let mut b = scheme.bytes();
            b.next().is_some_and(|c| c.is_ascii_alphabetic())
                && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
        }
        None => false,
    }
}

fn email(s: &str) -> bool {
    let addr = match (s.find('<'), s.rfind('>')) {
        (Some(a), Some(b)) if a < b => &s[a + 1..b],
        _ => s,
    };
    match addr.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !addr.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}

/// RFC 1123 host names: dot-separated labels of letters, digits and hyphens, not starting
/// or ending with a hyphen, at most 63 characters each and 255 in all.
fn hostname(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 255
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(bits) = bits.parse::<u8>() else {
        return false;
    };
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => bits <= 32,
        Ok(IpAddr::V6(_)) => bits <= 128,
        Err(_) => false,
    }
}

/// 6, 8 or 20 octets as hex pairs separated by `:` or `-`, or groups of 4 by `.` (Go's
/// `net.ParseMAC`).
fn mac(s: &str) -> bool {
    let hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit());
    let octets = [6usize, 8, 20];
    for sep in [':', '-'] {
        let parts: Vec<&str> = s.split(sep).collect();
        if octets.contains(&parts.len()) && parts.iter().all(|p| hex(p, 2)) {
            return true;
        }
    }
    let parts: Vec<&str> = s.split('.').collect();
    octets.iter().any(|n| parts.len() * 2 == *n) && parts.iter().all(|p| hex(p, 4))
}

fn uuid(s: &str, version: Option<u8>) -> bool {
    let b = s.as_bytes();
    if b.len() != 36 {
        return false;
    }
    let shape = b.iter().enumerate().all(|(i, c)| match i {
        8 | 13 | 18 | 23 => *c == b'-',
        _ => c.is_ascii_hexdigit(),
    });
    let variant = |c: u8| matches!(c.to_ascii_lowercase(), b'8' | b'9' | b'a' | b'b');
    shape && version.is_none_or(|v| b[14] == v && variant(b[19]))
}

fn hexcolor(s: &str) -> bool {
    let h = s.strip_prefix('#').unwrap_or(s);
    (h.len() == 3 || h.len() == 6) && h.bytes().all(|b| b.is_ascii_hexdigit())
}

fn rgbcolor(s: &str) -> bool {
    let Some(inner) = s.strip_prefix("rgb(").and_then(|r| r.strip_suffix(')')) else {
        return false;
    };
    let parts: Vec<&str> = inner.split(',').map(str::trim).collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            let n = p.strip_suffix('%').unwrap_or(p);
            (1..=3).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit())
        })
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn formats_kube_checks() {
        let ok = [
            ("date", "2024-02-29"),
            ("date-time", "2024-02-29T10:11:12Z"),
            ("date-time", "2024-02-29T10:11:12.123+01:00"),
            ("date-time", "2024-02-29T10:11:12"),
            ("duration", "1h30m"),
            ("duration", "3 days"),
            ("byte", "aGVsbG8="),
            ("uri", "https://example.com/x"),
            ("email", "a@example.com"),
            ("hostname", "my-host.example.com"),
            ("ipv4", "10.0.0.1"),
            ("ipv6", "fd00::1"),
            ("cidr", "10.0.0.0/8"),
            ("mac", "00:1a:2b:3c:4d:5e"),
            ("uuid", "123e4567-e89b-12d3-a456-426614174000"),
            ("uuid4", "123e4567-e89b-42d3-a456-426614174000"),
            ("hexcolor", "#ff0000"),
            ("rgbcolor", "rgb(255, 0, 0)"),
        ];
        for (f, v) in ok {
            assert_eq!(check(f, v), Some(true), "{f} {v}");
        }
        let bad = [
            ("date", "2023-02-29"),
            ("date", "2023-2-1"),
            ("date-time", "2024-02-29 10:11:12Z"),
            ("date-time", "yesterday"),
            ("duration", "soon"),
            ("byte", "not base64!"),
            ("uri", "example.com"),
            ("email", "nobody"),
            ("hostname", "-bad-.com"),
            ("ipv4", "10.0.0.256"),
            ("ipv6", "10.0.0.1"),
            ("cidr", "10.0.0.0/33"),
            ("mac", "00:1a:2b"),
            ("uuid", "123e4567e89b12d3a456426614174000"),
            ("uuid4", "123e4567-e89b-12d3-a456-426614174000"),
            ("hexcolor", "#ff00"),
        ];
        for (f, v) in bad {
            assert_eq!(check(f, v), Some(false), "{f} {v}");
        }
        assert_eq!(check("int32", "x"), None);
        assert_eq!(check("isbn", "x"), None);
    }
}
