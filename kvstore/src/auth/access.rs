//! Who may do what, asked of an `AuthState` (etcd 3.4's `isOpPermitted`,
//! `IsAdminPermitted`, `CheckPassword` and the UserGet/RoleGet exceptions).
//!
//! Contract: with auth disabled everything is allowed. With auth enabled a request without
//! a user is refused with "user name is empty"; a user with the root role may do
//! everything; any other user may read or write exactly what the permissions of its roles
//! cover (see `perms`), and is refused with "permission denied" otherwise, including when
//! it does not exist; admin calls need the root role ("user name not found" for a user
//! that does not exist).

use super::needs::Need;
use super::password::PasswordHash;
use super::perms::{permits, Access, Perm};
use super::store::{AuthState, User};
use crate::error::KvError;

/// The keys attached to a lease, read from the store the check runs against.
pub type LeaseKeys<'a> = dyn FnMut(i64) -> Result<Vec<Vec<u8>>, KvError> + 'a;

impl AuthState {
    fn perms_of<'a>(&'a self, user: &'a User) -> impl Iterator<Item = &'a Perm> + 'a {
        user.roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .flat_map(|r| r.perms.iter())
    }

    /// Checks every need in order and returns the first refusal.
    pub fn check(
        &self,
        user: Option<&str>,
        needs: &[Need<'_>],
        lease_keys: &mut LeaseKeys<'_>,
    ) -> Result<(), KvError> {
        if !self.enabled || needs.is_empty() {
            return Ok(());
        }
        let name = user.filter(|n| !n.is_empty()).ok_or(KvError::UserEmpty)?;
        let found = self.users.get(name);
        if found.is_some_and(User::has_root_role) {
            return Ok(());
        }
        for need in needs {
            let (access, key, range_end) = match need {
                Need::Admin => {
                    self.check_admin(Some(name))?;
                    continue;
                }
                Need::Read { key, range_end } => (Access::Read, *key, *range_end),
                Need::Write { key, range_end } => (Access::Write, *key, *range_end),
                Need::LeaseKeys(id) => {
                    let u = found.ok_or(KvError::PermissionDenied)?;
                    for key in lease_keys(*id)? {
                        if !permits(self.perms_of(u), Access::Write, &key, &[]) {
                            return Err(KvError::PermissionDenied);
                        }
                    }
                    continue;
                }
            };
            let u = found.ok_or(KvError::PermissionDenied)?;
            if !permits(self.perms_of(u), access, key, range_end) {
                return Err(KvError::PermissionDenied);
            }
        }
        Ok(())
    }

    /// etcd's `IsAdminPermitted`: the caller has the root role (or auth is disabled).
    pub fn check_admin(&self, user: Option<&str>) -> Result<(), KvError> {
        if !self.enabled {
            return Ok(());
        }
        let name = user.filter(|n| !n.is_empty()).ok_or(KvError::UserEmpty)?;
        if !self
            .users
            .get(name)
            .ok_or(KvError::UserNotFound)?
            .has_root_role()
        {
            return Err(KvError::PermissionDenied);
        }
        Ok(())
    }

    /// UserGet: an admin, or a user asking about itself.
    pub fn check_user_get(&self, caller: Option<&str>, name: &str) -> Result<(), KvError> {
        match self.check_admin(caller) {
            Err(_) if caller == Some(name) => Ok(()),
            other => other,
        }
    }

    /// RoleGet: an admin, or a user that has the role.
    pub fn check_role_get(&self, caller: Option<&str>, role: &str) -> Result<(), KvError> {
        match self.check_admin(caller) {
            Err(e) => {
                let has = caller
                    .and_then(|c| self.users.get(c))
                    .is_some_and(|u| u.roles.iter().any(|r| r == role));
                if has {
                    Ok(())
                } else {
                    Err(e)
                }
            }
            ok => ok,
        }
    }

    /// The stored password to check an Authenticate against (etcd's `CheckPassword`,
    /// before the hash comparison).
    pub fn password_of(&self, name: &str) -> Result<&PasswordHash, KvError> {
        if !self.enabled {
            return Err(KvError::AuthNotEnabled);
        }
        let user = self.users.get(name).ok_or(KvError::AuthFailed)?;
        user.password.as_ref().ok_or(KvError::NoPasswordUser)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::password::hash_with;
    use crate::auth::perms::PermType;
    use crate::auth::store::ROOT;
    use crate::auth::AuthOp;

    /// root (root role), alice (role app: readwrite app/ prefix, read k1), carol (no roles),
    /// auth enabled.
    fn state() -> AuthState {
        let mut s = AuthState::default();
        let ops = vec![
            AuthOp::UserAdd {
                name: ROOT.into(),
                password: Some(hash_with(b"r", 1).unwrap()),
            },
            AuthOp::UserGrantRole {
                user: ROOT.into(),
                role: ROOT.into(),
            },
            AuthOp::UserAdd {
                name: "alice".into(),
                password: Some(hash_with(b"pw", 1).unwrap()),
            },
            AuthOp::UserAdd {
                name: "carol".into(),
                password: None,
            },
            AuthOp::RoleAdd { name: "app".into() },
            AuthOp::RoleGrantPermission {
                name: "app".into(),
                perm: Perm {
                    kind: PermType::ReadWrite,
                    key: b"app/".to_vec(),
                    range_end: b"app0".to_vec(),
                },
            },
            AuthOp::RoleGrantPermission {
                name: "app".into(),
                perm: Perm {
                    kind: PermType::Read,
                    key: b"k1".to_vec(),
                    range_end: vec![],
                },
            },
            AuthOp::UserGrantRole {
                user: "alice".into(),
                role: "app".into(),
            },
            AuthOp::Enable,
        ];
        for op in ops {
            s.apply(op).unwrap();
        }
        s
    }

    fn no_leases(_: i64) -> Result<Vec<Vec<u8>>, KvError> {
        Ok(Vec::new())
    }

    fn check(s: &AuthState, user: Option<&str>, needs: &[Need<'_>]) -> Result<(), KvError> {
        s.check(user, needs, &mut no_leases)
    }

    fn read<'a>(key: &'a [u8], range_end: &'a [u8]) -> Need<'a> {
        Need::Read { key, range_end }
    }

    fn write<'a>(key: &'a [u8]) -> Need<'a> {
        Need::Write {
            key,
            range_end: b"",
        }
    }

    #[test]
    fn users_get_what_their_roles_grant_and_root_gets_everything() {
        let s = state();
        assert_eq!(
            check(
                &s,
                Some("alice"),
                &[write(b"app/x"), read(b"app/", b"app0")]
            ),
            Ok(())
        );
        assert_eq!(check(&s, Some("alice"), &[read(b"k1", b"")]), Ok(()));
        assert_eq!(
            check(&s, Some("alice"), &[write(b"k1")]),
            Err(KvError::PermissionDenied)
        );
        assert_eq!(
            check(&s, Some("alice"), &[read(b"other", b"")]),
            Err(KvError::PermissionDenied)
        );
        assert_eq!(
            check(&s, Some("carol"), &[read(b"app/x", b"")]),
            Err(KvError::PermissionDenied)
        );
        assert_eq!(
            check(&s, Some("ghost"), &[read(b"app/x", b"")]),
            Err(KvError::PermissionDenied)
        );
        assert_eq!(
            check(&s, Some(ROOT), &[read(b"\0", b"\0"), Need::Admin]),
            Ok(())
        );
        assert_eq!(
            check(&s, None, &[read(b"app/x", b"")]),
            Err(KvError::UserEmpty)
        );
        assert_eq!(
            check(&s, Some(""), &[read(b"app/x", b"")]),
            Err(KvError::UserEmpty)
        );
        // Nothing needed, nothing checked.
        assert_eq!(check(&s, None, &[]), Ok(()));
    }

    #[test]
    fn with_auth_disabled_everything_is_allowed() {
        let mut s = state();
        s.apply(AuthOp::Disable).unwrap();
        assert_eq!(check(&s, None, &[read(b"x", b""), Need::Admin]), Ok(()));
        assert_eq!(s.check_admin(None), Ok(()));
    }

    #[test]
    fn admin_calls_need_the_root_role() {
        let s = state();
        assert_eq!(s.check_admin(Some(ROOT)), Ok(()));
        assert_eq!(s.check_admin(Some("alice")), Err(KvError::PermissionDenied));
        assert_eq!(s.check_admin(Some("ghost")), Err(KvError::UserNotFound));
        assert_eq!(s.check_admin(None), Err(KvError::UserEmpty));
        assert_eq!(
            check(&s, Some("alice"), &[Need::Admin]),
            Err(KvError::PermissionDenied)
        );
        // Users may read themselves and roles they have.
        assert_eq!(s.check_user_get(Some("alice"), "alice"), Ok(()));
        assert_eq!(
            s.check_user_get(Some("alice"), ROOT),
            Err(KvError::PermissionDenied)
        );
        assert_eq!(s.check_role_get(Some("alice"), "app"), Ok(()));
        assert_eq!(
            s.check_role_get(Some("alice"), ROOT),
            Err(KvError::PermissionDenied)
        );
        assert_eq!(s.check_role_get(None, "app"), Err(KvError::UserEmpty));
    }

    #[test]
    fn a_lease_may_be_used_only_by_who_may_write_all_its_keys() {
        let s = state();
        let mut keys = |id: i64| -> Result<Vec<Vec<u8>>, KvError> {
            Ok(match id {
                1 => vec![b"app/a".to_vec(), b"app/b".to_vec()],
                _ => vec![b"app/a".to_vec(), b"secret".to_vec()],
            })
        };
        assert_eq!(
            s.check(Some("alice"), &[Need::LeaseKeys(1)], &mut keys),
            Ok(())
        );
        assert_eq!(
            s.check(Some("alice"), &[Need::LeaseKeys(2)], &mut keys),
            Err(KvError::PermissionDenied)
        );
        assert_eq!(
            s.check(Some(ROOT), &[Need::LeaseKeys(2)], &mut keys),
            Ok(())
        );
    }

    #[test]
    fn passwords_are_looked_up_as_etcd_does() {
        let mut s = state();
        assert!(s.password_of("alice").is_ok());
        assert_eq!(s.password_of("ghost").unwrap_err(), KvError::AuthFailed);
        assert_eq!(s.password_of("carol").unwrap_err(), KvError::NoPasswordUser);
        s.apply(AuthOp::Disable).unwrap();
        assert_eq!(s.password_of("alice").unwrap_err(), KvError::AuthNotEnabled);
    }
}
