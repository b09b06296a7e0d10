//! Key permissions and the one question asked of them: does a set of permissions cover a
//! key or a range for reading or writing.
//!
//! Contract (etcd 3.4's `auth/range_perm_cache.go`): a permission with an empty `range_end`
//! covers its key alone, one with `range_end == "\0"` every key from its key onwards, any
//! other `[key, range_end)`. A request for one key (empty `range_end`) is allowed when some
//! permission of the right kind contains the key; a request for a range when the union of
//! those permissions covers all of it, `"\0"` meaning up to the end of the key space. Unlike
//! etcd, a range whose end is not above its key (it selects nothing) is treated as a request
//! for its first key, so it never tells more than that key's permission.

use serde::{Deserialize, Serialize};

/// What a request does with keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// etcd's `authpb.Permission.Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PermType {
    Read,
    Write,
    ReadWrite,
}

impl PermType {
    /// From the protobuf enum value; `None` for a value etcd does not define.
    pub fn from_pb(v: i32) -> Option<Self> {
        match v {
            0 => Some(PermType::Read),
            1 => Some(PermType::Write),
            2 => Some(PermType::ReadWrite),
            _ => None,
        }
    }

    pub fn to_pb(self) -> i32 {
        match self {
            PermType::Read => 0,
            PermType::Write => 1,
            PermType::ReadWrite => 2,
        }
    }

    pub fn allows(self, access: Access) -> bool {
        matches!(
            (self, access),
            (PermType::ReadWrite, _)
                | (PermType::Read, Access::Read)
                | (PermType::Write, Access::Write)
        )
    }
}

/// One permission of a role, as granted (etcd's range conventions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Perm {
    pub kind: PermType,
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
}

/// The exclusive end of `[key, range_end)` under etcd's conventions; `None` is the end of
/// the key space.
fn end_of(key: &[u8], range_end: &[u8]) -> Option<Vec<u8>> {
    match range_end {
        [] => {
            let mut end = Vec::with_capacity(key.len() + 1);
            end.extend_from_slice(key);
            end.push(0);
            Some(end)
        }
        [0] => None,
        end => Some(end.to_vec()),
    }
}

/// `a >= b` for interval ends (`None` above everything).
fn reaches(a: &Option<Vec<u8>>, b: &Option<Vec<u8>>) -> bool {
    match (a, b) {
        (None, _) => true,
        (_, None) => false,
        (Some(a), Some(b)) => a >= b,
    }
}

/// Whether `perms` allow `access` on `[key, range_end)` (etcd's conventions, see the
/// module contract).
pub fn permits<'a>(
    perms: impl IntoIterator<Item = &'a Perm>,
    access: Access,
    key: &[u8],
    range_end: &[u8],
) -> bool {
    let mut ivs: Vec<(&[u8], Option<Vec<u8>>)> = perms
        .into_iter()
        .filter(|p| p.kind.allows(access))
        .map(|p| (p.key.as_slice(), end_of(&p.key, &p.range_end)))
        .collect();
    let want = match range_end {
        [] | [0] => end_of(key, range_end),
        end if end > key => Some(end.to_vec()),
        // Selects nothing: asked as its first key.
        _ => end_of(key, &[]),
    };
    ivs.sort_by(|a, b| a.0.cmp(b.0));
    // Sweep in order of start: [key, reached) is covered so far.
    let mut reached = Some(key.to_vec());
    for (begin, end) in ivs {
        if let Some(r) = &reached {
            if begin > r.as_slice() {
                // Starts are sorted: nothing later closes the gap.
                return false;
            }
        }
        if !reaches(&reached, &end) {
            reached = end;
        }
        if reaches(&reached, &want) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(kind: PermType, key: &str, end: &str) -> Perm {
        Perm {
            kind,
            key: key.into(),
            range_end: end.into(),
        }
    }

    fn read(perms: &[Perm], key: &str, end: &str) -> bool {
        permits(perms, Access::Read, key.as_bytes(), end.as_bytes())
    }

    fn write(perms: &[Perm], key: &str, end: &str) -> bool {
        permits(perms, Access::Write, key.as_bytes(), end.as_bytes())
    }

    #[test]
    fn a_single_key_permission_covers_that_key_only() {
        let p = [perm(PermType::Read, "k1", "")];
        assert!(read(&p, "k1", ""));
        assert!(!read(&p, "k10", ""));
        assert!(!read(&p, "k", ""));
        assert!(!write(&p, "k1", ""));
        // A range of exactly that key: [k1, k1\0).
        assert!(read(&p, "k1", "k1\0"));
        assert!(!read(&p, "k1", "k2"));
    }

    #[test]
    fn a_prefix_permission_covers_keys_and_ranges_inside_it() {
        let p = [perm(PermType::ReadWrite, "app/", "app0")];
        assert!(write(&p, "app/x", ""));
        assert!(read(&p, "app/", "app0"));
        assert!(read(&p, "app/a", "app/b"));
        assert!(!read(&p, "app/", "app1"));
        assert!(!read(&p, "ap", "app0"));
        assert!(!read(&p, "other", ""));
        assert!(!read(&p, "app/", "\0"));
        assert!(!read(&p, "app0", ""));
    }

    #[test]
    fn from_key_permissions_are_open_ended() {
        let p = [perm(PermType::Write, "z", "\0")];
        assert!(write(&p, "z", ""));
        assert!(write(&p, "zzz", "\0"));
        assert!(write(&p, "za", "zb"));
        assert!(!write(&p, "y", "\0"));
        assert!(!read(&p, "z", ""));
        let all = [perm(PermType::Read, "\0", "\0")];
        assert!(read(&all, "\0", "\0"));
        assert!(read(&all, "anything", ""));
    }

    #[test]
    fn adjacent_and_overlapping_permissions_add_up() {
        let p = [
            perm(PermType::Read, "b", "d"),
            perm(PermType::Read, "a", "b"),
            perm(PermType::ReadWrite, "c", "f"),
        ];
        assert!(read(&p, "a", "f"));
        assert!(!read(&p, "a", "g"));
        assert!(write(&p, "c", "f"));
        assert!(!write(&p, "b", "f"));
        // A gap is never bridged.
        let gap = [
            perm(PermType::Read, "a", "b"),
            perm(PermType::Read, "c", "d"),
        ];
        assert!(!read(&gap, "a", "d"));
        assert!(read(&gap, "c", "d"));
        // A point permission right at the end of a range extends it by that key.
        let pt = [
            perm(PermType::Read, "a", "b"),
            perm(PermType::Read, "b", ""),
        ];
        assert!(read(&pt, "a", "b\0"));
        assert!(!read(&pt, "a", "b\0\0"));
    }

    #[test]
    fn nothing_granted_allows_nothing() {
        assert!(!read(&[], "a", ""));
        assert!(!read(&[], "a", "b"));
        assert!(!read(&[], "a", "\0"));
    }

    #[test]
    fn an_empty_range_is_asked_as_its_first_key() {
        let p = [perm(PermType::Read, "m", "")];
        assert!(read(&p, "m", "a"));
        assert!(!read(&p, "n", "a"));
    }
}
