//! Byte layouts of MVCC keys in the store.
//!
//! Versions of one key must sort together and newest first, and keys must keep their order,
//! so a key is escaped into a prefix-free, order-preserving form (`0x00` becomes
//! `0x00 0xFF`, and `0x00 0x01` ends it) and the inverted revision is appended:
//!
//! ```text
//! kv CF:  escape(key) ++ be64(!mod_revision)        -> stored version (see `StoredVersion`)
//! rev CF: be64(main_revision) ++ be64(sub_revision)  -> key
//! ```

/// Where a range request ends, decoded from etcd's `range_end` conventions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeEnd {
    /// `range_end` empty: exactly one key.
    Single,
    /// `range_end` is `"\0"`: every key `>= key`.
    Unbounded,
    /// Every key in `[key, end)`.
    Until(Vec<u8>),
}

impl RangeEnd {
    pub fn from_request(range_end: &[u8]) -> Self {
        match range_end {
            [] => RangeEnd::Single,
            [0] => RangeEnd::Unbounded,
            end => RangeEnd::Until(end.to_vec()),
        }
    }

    /// Whether `k` lies in the range that starts at `start`.
    pub fn contains(&self, start: &[u8], k: &[u8]) -> bool {
        match self {
            RangeEnd::Single => k == start,
            RangeEnd::Unbounded => k >= start,
            RangeEnd::Until(end) => k >= start && k < end.as_slice(),
        }
    }
}

/// Appends the escaped, terminated form of `key` to `out`.
pub fn escape_into(key: &[u8], out: &mut Vec<u8>) {
    out.reserve(key.len() + 2);
    for &b in key {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0, 1]);
}

pub fn escape(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 10);
    escape_into(key, &mut out);
    out
}

/// Splits an escaped key off the front of `data`, returning the key and the rest.
pub fn unescape(data: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut key = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        let b = data[i];
        if b == 0 {
            match data.get(i + 1)? {
                0xFF => key.push(0),
                1 => return Some((key, &data[i + 2..])),
                _ => return None,
            }
            i += 2;
        } else {
            key.push(b);
            i += 1;
        }
    }
    None
}

/// The kv CF key of `key` at `rev`.
pub fn version_key(key: &[u8], rev: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 10);
    escape_into(key, &mut out);
    out.extend_from_slice(&(!(rev as u64)).to_be_bytes());
    out
}

/// Decodes a kv CF key into the user key and its revision.
pub fn decode_version_key(data: &[u8]) -> Option<(Vec<u8>, i64)> {
    let (key, rest) = unescape(data)?;
    let inv: [u8; 8] = rest.try_into().ok()?;
    Some((key, !u64::from_be_bytes(inv) as i64))
}

/// The rev CF key of a change.
pub fn revision_key(main: i64, sub: i64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&(main as u64).to_be_bytes());
    out[8..].copy_from_slice(&(sub as u64).to_be_bytes());
    out
}

pub fn decode_revision_key(data: &[u8]) -> Option<(i64, i64)> {
    if data.len() != 16 {
        return None;
    }
    let main = u64::from_be_bytes(data[..8].try_into().ok()?) as i64;
    let sub = u64::from_be_bytes(data[8..].try_into().ok()?) as i64;
    Some((main, sub))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_preserves_order_and_is_prefix_free() {
        let mut keys: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"a".to_vec(),
            b"a\0".to_vec(),
            b"a\0\0".to_vec(),
            b"a\x01".to_vec(),
            b"ab".to_vec(),
            b"b".to_vec(),
            vec![0xFF, 0],
            vec![0xFF],
        ];
        keys.sort();
        for w in keys.windows(2) {
            let (a, b) = (escape(&w[0]), escape(&w[1]));
            assert!(a < b, "{:?} !< {:?}", w[0], w[1]);
            assert!(!b.starts_with(&a));
        }
        for k in &keys {
            assert_eq!(unescape(&escape(k)).unwrap().0, *k);
        }
    }

    #[test]
    fn versions_sort_newest_first_within_a_key() {
        assert!(version_key(b"k", 9) < version_key(b"k", 3));
        assert!(version_key(b"k", 1) < version_key(b"k\0", 9));
        assert_eq!(
            decode_version_key(&version_key(b"a\0b", 42)),
            Some((b"a\0b".to_vec(), 42))
        );
    }
}
