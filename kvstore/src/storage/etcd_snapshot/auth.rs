//! Users and roles in etcd's records (`authpb`), both ways, and the text a password
//! hash takes there.

use prost::Message;

use super::SnapshotError;
use crate::auth::password::PasswordHash;
use crate::auth::perms::PermType;
use crate::auth::store::AuthState;

const PBKDF2_PREFIX: &str = "pbkdf2-sha256$";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn password_text(h: &PasswordHash) -> String {
    format!(
        "{PBKDF2_PREFIX}{}${}${}",
        h.iterations,
        hex(&h.salt),
        hex(&h.hash)
    )
}

pub(super) fn password_of(text: &[u8]) -> Option<PasswordHash> {
    let rest = std::str::from_utf8(text)
        .ok()?
        .strip_prefix(PBKDF2_PREFIX)?;
    let mut parts = rest.split('$');
    let iterations: u32 = parts.next()?.parse().ok().filter(|n| *n > 0)?;
    let salt = unhex::<16>(parts.next()?)?;
    let hash = unhex::<32>(parts.next()?)?;
    parts.next().is_none().then_some(PasswordHash {
        iterations,
        salt,
        hash,
    })
}

fn perm_type(k: PermType) -> i32 {
    match k {
        PermType::Read => 0,
        PermType::Write => 1,
        PermType::ReadWrite => 2,
    }
}

pub(super) fn rows(
    bucket: &str,
    auth: &AuthState,
    row: &mut dyn FnMut(&[u8], &[u8]) -> Result<(), SnapshotError>,
) -> Result<(), SnapshotError> {
    use proto::authpb;
    match bucket {
        "auth" => {
            row(b"authEnabled", &[u8::from(auth.enabled)])?;
            row(b"authRevision", &auth.revision.to_be_bytes())
        }
        "authUsers" => {
            for (name, u) in &auth.users {
                let pb = authpb::User {
                    name: name.clone().into_bytes(),
                    password: u
                        .password
                        .as_ref()
                        .map(|h| password_text(h).into_bytes())
                        .unwrap_or_default(),
                    roles: u.roles.clone(),
                    options: Some(authpb::UserAddOptions {
                        no_password: u.password.is_none(),
                    }),
                };
                row(name.as_bytes(), &pb.encode_to_vec())?;
            }
            Ok(())
        }
        "authRoles" => {
            for (name, r) in &auth.roles {
                let pb = authpb::Role {
                    name: name.clone().into_bytes(),
                    key_permission: r
                        .perms
                        .iter()
                        .map(|p| authpb::Permission {
                            perm_type: perm_type(p.kind),
                            key: p.key.clone(),
                            range_end: p.range_end.clone(),
                        })
                        .collect(),
                };
                row(name.as_bytes(), &pb.encode_to_vec())?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

pub(super) fn perm_kind(t: i32) -> Option<PermType> {
    match t {
        0 => Some(PermType::Read),
        1 => Some(PermType::Write),
        2 => Some(PermType::ReadWrite),
        _ => None,
    }
}
