//! The replicated changes to the auth store (`AuthOp`) and what applying one means for the
//! tokens each member keeps (`Effect`); `store::AuthState::apply` applies them.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::password::PasswordHash;
use super::perms::Perm;
use super::token::Digest;

/// One replicated change to the auth store, or an Authenticate that issues a token. Only
/// ever append variants: the log stores the variant's index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthOp {
    Enable,
    Disable,
    /// `password: None` is etcd's `--no-password`.
    UserAdd {
        name: String,
        password: Option<PasswordHash>,
    },
    UserDelete {
        name: String,
    },
    UserChangePassword {
        name: String,
        password: PasswordHash,
    },
    UserGrantRole {
        user: String,
        role: String,
    },
    UserRevokeRole {
        name: String,
        role: String,
    },
    RoleAdd {
        name: String,
    },
    RoleDelete {
        name: String,
    },
    RoleGrantPermission {
        name: String,
        perm: Perm,
    },
    RoleRevokePermission {
        role: String,
        key: Vec<u8>,
        range_end: Vec<u8>,
    },
    /// The password was checked against revision `checked_revision` by the member that
    /// proposed this; `token` is the digest of the token's random prefix.
    Authenticate {
        name: String,
        token: Digest,
        checked_revision: u64,
    },
}

impl AuthOp {
    /// Everything but Authenticate needs the root role when auth is enabled.
    pub fn needs_admin(&self) -> bool {
        !matches!(self, AuthOp::Authenticate { .. })
    }

    /// Roughly how many bytes the op takes in a log entry.
    pub fn size_hint(&self) -> usize {
        use AuthOp::*;
        let payload = match self {
            Enable | Disable => 0,
            UserAdd { name, .. }
            | UserDelete { name }
            | UserChangePassword { name, .. }
            | RoleAdd { name }
            | RoleDelete { name }
            | Authenticate { name, .. } => name.len(),
            UserGrantRole { user, role } => user.len() + role.len(),
            UserRevokeRole { name, role } => name.len() + role.len(),
            RoleGrantPermission { name, perm } => {
                name.len() + perm.key.len() + perm.range_end.len()
            }
            RoleRevokePermission {
                role,
                key,
                range_end,
            } => role.len() + key.len() + range_end.len(),
        };
        payload + 96
    }
}

impl fmt::Display for AuthOp {
    /// Names and keys, never a password hash or a token digest.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use AuthOp::*;
        match self {
            Enable => write!(f, "auth-enable"),
            Disable => write!(f, "auth-disable"),
            UserAdd { name, .. } => write!(f, "user-add({name})"),
            UserDelete { name } => write!(f, "user-delete({name})"),
            UserChangePassword { name, .. } => write!(f, "user-passwd({name})"),
            UserGrantRole { user, role } => write!(f, "user-grant({user}, {role})"),
            UserRevokeRole { name, role } => write!(f, "user-revoke({name}, {role})"),
            RoleAdd { name } => write!(f, "role-add({name})"),
            RoleDelete { name } => write!(f, "role-delete({name})"),
            RoleGrantPermission { name, perm } => write!(
                f,
                "role-grant({name}, {:?}, {:?}..{:?})",
                perm.kind,
                String::from_utf8_lossy(&perm.key),
                String::from_utf8_lossy(&perm.range_end)
            ),
            RoleRevokePermission { role, key, .. } => {
                write!(f, "role-revoke({role}, {:?})", String::from_utf8_lossy(key))
            }
            Authenticate { name, .. } => write!(f, "authenticate({name})"),
        }
    }
}

/// What applying an op means for the tokens each member keeps in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Nothing,
    /// Register a token for `user` (its prefix digest) under the entry's log index.
    Issue {
        user: String,
        token: Digest,
    },
    /// Forget the user's tokens (deleted, or new password).
    RevokeUser(String),
    /// Forget every token (auth disabled).
    RevokeAll,
}
