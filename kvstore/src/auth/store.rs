//! The auth store: users, roles, the enabled flag and the auth revision, and how the
//! replicated changes to them (`op::AuthOp`) apply, with etcd 3.4's rules and errors
//! (`auth/store.go`).
//!
//! Contract: `AuthState::apply` is a pure function of the state and the op, so every member
//! that applies the same ops in the same order holds the same state. An op that is refused
//! leaves the state untouched. Every op that changes something, enabling included, raises
//! the revision by one (etcd leaves it as it is on enable); an op that changes nothing (a
//! role granted twice, enabling when enabled) and Authenticate leave it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::op::{AuthOp, Effect};
use super::password::PasswordHash;
use super::perms::Perm;
use crate::error::KvError;

/// The user that must exist, with the role of the same name, before auth can be enabled;
/// the role grants every permission.
pub const ROOT: &str = "root";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// `None` for a user added without a password: only a TLS client certificate with its
    /// name as common name identifies it.
    pub password: Option<PasswordHash>,
    /// Sorted, without duplicates.
    pub roles: Vec<String>,
}

impl User {
    pub fn has_root_role(&self) -> bool {
        self.roles
            .binary_search_by(|r| r.as_str().cmp(ROOT))
            .is_ok()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// Sorted by key; at most one per (key, range_end).
    pub perms: Vec<Perm>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthState {
    pub enabled: bool,
    /// 1 for a new store (as etcd), +1 per change.
    pub revision: u64,
    pub users: BTreeMap<String, User>,
    pub roles: BTreeMap<String, Role>,
}

impl Default for AuthState {
    fn default() -> Self {
        AuthState {
            enabled: false,
            revision: 1,
            users: BTreeMap::new(),
            roles: BTreeMap::new(),
        }
    }
}

/// etcd 3.5's `isValidPermissionRange`: a key, and an end that is empty, `"\0"` or above it.
pub fn valid_perm_range(key: &[u8], range_end: &[u8]) -> bool {
    !key.is_empty() && (range_end.is_empty() || range_end == [0] || range_end > key)
}

impl AuthState {
    /// Applies one op (see the module contract).
    pub fn apply(&mut self, op: AuthOp) -> Result<Effect, KvError> {
        use AuthOp::*;
        let effect = match op {
            Enable => {
                if self.enabled {
                    return Ok(Effect::Nothing);
                }
                let root = self.users.get(ROOT).ok_or(KvError::RootUserNotExist)?;
                if !root.has_root_role() {
                    return Err(KvError::RootRoleNotExist);
                }
                self.enabled = true;
                Effect::Nothing
            }
            Disable => {
                if !self.enabled {
                    return Ok(Effect::Nothing);
                }
                self.enabled = false;
                Effect::RevokeAll
            }
            UserAdd { name, password } => {
                if name.is_empty() {
                    return Err(KvError::UserEmpty);
                }
                if self.users.contains_key(&name) {
                    return Err(KvError::UserAlreadyExists);
                }
                let roles = Vec::new();
                self.users.insert(name, User { password, roles });
                Effect::Nothing
            }
            UserDelete { name } => {
                if self.enabled && name == ROOT {
                    return Err(KvError::InvalidAuthMgmt);
                }
                self.users.remove(&name).ok_or(KvError::UserNotFound)?;
                Effect::RevokeUser(name)
            }
            UserChangePassword { name, password } => {
                let user = self.users.get_mut(&name).ok_or(KvError::UserNotFound)?;
                user.password = Some(password);
                Effect::RevokeUser(name)
            }
            UserGrantRole { user, role } => {
                // etcd lets the root role be granted before it exists.
                let role_exists = role == ROOT || self.roles.contains_key(&role);
                let u = self.users.get_mut(&user).ok_or(KvError::UserNotFound)?;
                if !role_exists {
                    return Err(KvError::RoleNotFound);
                }
                match u.roles.binary_search(&role) {
                    Ok(_) => return Ok(Effect::Nothing),
                    Err(i) => u.roles.insert(i, role),
                }
                Effect::Nothing
            }
            UserRevokeRole { name, role } => {
                if self.enabled && name == ROOT && role == ROOT {
                    return Err(KvError::InvalidAuthMgmt);
                }
                let u = self.users.get_mut(&name).ok_or(KvError::UserNotFound)?;
                let i = u
                    .roles
                    .binary_search(&role)
                    .map_err(|_| KvError::RoleNotGranted)?;
                u.roles.remove(i);
                Effect::Nothing
            }
            RoleAdd { name } => {
                if name.is_empty() {
                    return Err(KvError::RoleEmpty);
                }
                if self.roles.contains_key(&name) {
                    return Err(KvError::RoleAlreadyExists);
                }
                self.roles.insert(name, Role::default());
                Effect::Nothing
            }
            RoleDelete { name } => {
                if self.enabled && name == ROOT {
                    return Err(KvError::InvalidAuthMgmt);
                }
                self.roles.remove(&name).ok_or(KvError::RoleNotFound)?;
                for u in self.users.values_mut() {
                    u.roles.retain(|r| *r != name);
                }
                Effect::Nothing
            }
            RoleGrantPermission { name, perm } => {
                if !valid_perm_range(&perm.key, &perm.range_end) {
                    return Err(KvError::InvalidAuthMgmt);
                }
                let role = self.roles.get_mut(&name).ok_or(KvError::RoleNotFound)?;
                match role
                    .perms
                    .iter_mut()
                    .find(|p| p.key == perm.key && p.range_end == perm.range_end)
                {
                    Some(existing) => existing.kind = perm.kind,
                    None => {
                        let i = role.perms.partition_point(|p| p.key <= perm.key);
                        role.perms.insert(i, perm);
                    }
                }
                Effect::Nothing
            }
            RoleRevokePermission {
                role,
                key,
                range_end,
            } => {
                let role = self.roles.get_mut(&role).ok_or(KvError::RoleNotFound)?;
                let before = role.perms.len();
                role.perms
                    .retain(|p| !(p.key == key && p.range_end == range_end));
                if role.perms.len() == before {
                    return Err(KvError::PermissionNotGranted);
                }
                Effect::Nothing
            }
            Authenticate {
                name,
                token,
                checked_revision,
            } => {
                if !self.enabled {
                    return Err(KvError::AuthNotEnabled);
                }
                match self.users.get(&name) {
                    Some(u) if u.password.is_some() => {}
                    _ => return Err(KvError::AuthFailed),
                }
                // The password was checked against an older store: check it again.
                if checked_revision != self.revision {
                    return Err(KvError::AuthOldRevision);
                }
                return Ok(Effect::Issue { user: name, token });
            }
        };
        self.revision = self.revision.saturating_add(1);
        Ok(effect)
    }

    pub fn user(&self, name: &str) -> Result<&User, KvError> {
        self.users.get(name).ok_or(KvError::UserNotFound)
    }

    pub fn role(&self, name: &str) -> Result<&Role, KvError> {
        self.roles.get(name).ok_or(KvError::RoleNotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::password::hash_with;
    use crate::auth::perms::PermType;

    fn pw() -> Option<PasswordHash> {
        Some(hash_with(b"pw", 1).unwrap())
    }

    fn add_user(s: &mut AuthState, name: &str) {
        s.apply(AuthOp::UserAdd {
            name: name.into(),
            password: pw(),
        })
        .unwrap();
    }

    fn grant(s: &mut AuthState, user: &str, role: &str) -> Result<Effect, KvError> {
        s.apply(AuthOp::UserGrantRole {
            user: user.into(),
            role: role.into(),
        })
    }

    fn perm(kind: PermType, key: &str, end: &str) -> Perm {
        Perm {
            kind,
            key: key.into(),
            range_end: end.into(),
        }
    }

    #[test]
    fn enabling_needs_root_with_the_root_role() {
        let mut s = AuthState::default();
        assert_eq!(s.apply(AuthOp::Enable), Err(KvError::RootUserNotExist));
        add_user(&mut s, ROOT);
        assert_eq!(s.apply(AuthOp::Enable), Err(KvError::RootRoleNotExist));
        // The root role may be granted before it exists (etcdctl's `auth enable` adds it).
        grant(&mut s, ROOT, ROOT).unwrap();
        let rev = s.revision;
        s.apply(AuthOp::Enable).unwrap();
        assert!(s.enabled);
        assert_eq!(s.revision, rev + 1);
        // Enabling twice changes nothing.
        s.apply(AuthOp::Enable).unwrap();
        assert_eq!(s.revision, rev + 1);
        assert_eq!(s.apply(AuthOp::Disable), Ok(Effect::RevokeAll));
        assert_eq!(s.apply(AuthOp::Disable), Ok(Effect::Nothing));
    }

    #[test]
    fn root_is_protected_while_auth_is_enabled() {
        let mut s = AuthState::default();
        add_user(&mut s, ROOT);
        s.apply(AuthOp::RoleAdd { name: ROOT.into() }).unwrap();
        grant(&mut s, ROOT, ROOT).unwrap();
        s.apply(AuthOp::Enable).unwrap();
        let before = s.clone();
        for op in [
            AuthOp::UserDelete { name: ROOT.into() },
            AuthOp::RoleDelete { name: ROOT.into() },
            AuthOp::UserRevokeRole {
                name: ROOT.into(),
                role: ROOT.into(),
            },
        ] {
            assert_eq!(s.apply(op), Err(KvError::InvalidAuthMgmt));
        }
        assert_eq!(s, before, "a refused op changes nothing");
        s.apply(AuthOp::Disable).unwrap();
        s.apply(AuthOp::UserRevokeRole {
            name: ROOT.into(),
            role: ROOT.into(),
        })
        .unwrap();
    }

    #[test]
    fn users_and_roles_answer_with_etcds_errors() {
        let mut s = AuthState::default();
        let err = |s: &mut AuthState, op| s.apply(op).unwrap_err();
        assert_eq!(
            err(
                &mut s,
                AuthOp::UserAdd {
                    name: "".into(),
                    password: pw()
                }
            ),
            KvError::UserEmpty
        );
        add_user(&mut s, "alice");
        assert_eq!(
            err(
                &mut s,
                AuthOp::UserAdd {
                    name: "alice".into(),
                    password: None
                }
            ),
            KvError::UserAlreadyExists
        );
        assert_eq!(
            err(&mut s, AuthOp::RoleAdd { name: "".into() }),
            KvError::RoleEmpty
        );
        s.apply(AuthOp::RoleAdd { name: "app".into() }).unwrap();
        assert_eq!(
            err(&mut s, AuthOp::RoleAdd { name: "app".into() }),
            KvError::RoleAlreadyExists
        );
        assert_eq!(grant(&mut s, "bob", "app"), Err(KvError::UserNotFound));
        assert_eq!(grant(&mut s, "alice", "nope"), Err(KvError::RoleNotFound));
        grant(&mut s, "alice", "app").unwrap();
        let rev = s.revision;
        grant(&mut s, "alice", "app").unwrap();
        assert_eq!(s.revision, rev, "granting twice is a no-op");
        assert_eq!(
            err(
                &mut s,
                AuthOp::UserRevokeRole {
                    name: "alice".into(),
                    role: "x".into()
                }
            ),
            KvError::RoleNotGranted
        );
        assert_eq!(
            err(
                &mut s,
                AuthOp::RoleRevokePermission {
                    role: "app".into(),
                    key: b"k".to_vec(),
                    range_end: vec![]
                }
            ),
            KvError::PermissionNotGranted
        );
        assert_eq!(
            err(
                &mut s,
                AuthOp::RoleGrantPermission {
                    name: "nope".into(),
                    perm: perm(PermType::Read, "k", "")
                }
            ),
            KvError::RoleNotFound
        );
        assert_eq!(
            err(
                &mut s,
                AuthOp::RoleGrantPermission {
                    name: "app".into(),
                    perm: perm(PermType::Read, "b", "a")
                }
            ),
            KvError::InvalidAuthMgmt
        );
        assert_eq!(
            err(&mut s, AuthOp::UserDelete { name: "bob".into() }),
            KvError::UserNotFound
        );
        assert_eq!(
            err(&mut s, AuthOp::RoleDelete { name: "x".into() }),
            KvError::RoleNotFound
        );
        assert_eq!(s.user("bob").unwrap_err(), KvError::UserNotFound);
        assert_eq!(s.role("x").unwrap_err(), KvError::RoleNotFound);
    }

    #[test]
    fn permissions_are_kept_sorted_and_regranting_updates_the_type() {
        let mut s = AuthState::default();
        s.apply(AuthOp::RoleAdd { name: "app".into() }).unwrap();
        for p in [
            perm(PermType::Read, "k1", ""),
            perm(PermType::ReadWrite, "app/", "app0"),
            perm(PermType::Write, "z", "\0"),
            perm(PermType::Write, "k1", ""),
        ] {
            s.apply(AuthOp::RoleGrantPermission {
                name: "app".into(),
                perm: p,
            })
            .unwrap();
        }
        assert_eq!(
            s.role("app").unwrap().perms,
            vec![
                perm(PermType::ReadWrite, "app/", "app0"),
                perm(PermType::Write, "k1", ""),
                perm(PermType::Write, "z", "\0"),
            ]
        );
        s.apply(AuthOp::RoleRevokePermission {
            role: "app".into(),
            key: b"z".to_vec(),
            range_end: b"\0".to_vec(),
        })
        .unwrap();
        assert_eq!(s.role("app").unwrap().perms.len(), 2);
    }

    #[test]
    fn deleting_a_role_takes_it_from_every_user_and_deleting_a_user_revokes_its_tokens() {
        let mut s = AuthState::default();
        add_user(&mut s, "alice");
        s.apply(AuthOp::RoleAdd { name: "app".into() }).unwrap();
        grant(&mut s, "alice", "app").unwrap();
        s.apply(AuthOp::RoleDelete { name: "app".into() }).unwrap();
        assert!(s.user("alice").unwrap().roles.is_empty());
        assert_eq!(
            s.apply(AuthOp::UserChangePassword {
                name: "alice".into(),
                password: hash_with(b"x", 1).unwrap()
            }),
            Ok(Effect::RevokeUser("alice".into()))
        );
        assert_eq!(
            s.apply(AuthOp::UserDelete {
                name: "alice".into()
            }),
            Ok(Effect::RevokeUser("alice".into()))
        );
    }

    #[test]
    fn authenticate_issues_a_token_only_against_the_checked_revision() {
        let mut s = AuthState::default();
        let auth = |name: &str, rev| AuthOp::Authenticate {
            name: name.into(),
            token: [7; 32],
            checked_revision: rev,
        };
        assert_eq!(s.apply(auth("root", 1)), Err(KvError::AuthNotEnabled));
        add_user(&mut s, ROOT);
        grant(&mut s, ROOT, ROOT).unwrap();
        s.apply(AuthOp::Enable).unwrap();
        s.apply(AuthOp::UserAdd {
            name: "cert".into(),
            password: None,
        })
        .unwrap();
        let rev = s.revision;
        assert_eq!(s.apply(auth("nobody", rev)), Err(KvError::AuthFailed));
        assert_eq!(s.apply(auth("cert", rev)), Err(KvError::AuthFailed));
        assert_eq!(s.apply(auth(ROOT, rev - 1)), Err(KvError::AuthOldRevision));
        assert_eq!(
            s.apply(auth(ROOT, rev)),
            Ok(Effect::Issue {
                user: ROOT.into(),
                token: [7; 32]
            })
        );
        assert_eq!(s.revision, rev, "authenticating changes no revision");
    }
}
