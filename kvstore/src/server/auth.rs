//! etcd's Auth service: users, roles, enabling auth, Authenticate and AuthStatus.
//!
//! Contract, as etcd 3.4: while auth is enabled every call but Authenticate and AuthStatus
//! needs the root role (UserGet also answers a user about itself, RoleGet a user about a
//! role it has). Changes are proposed as `Command::Auth` tagged with the caller, checked
//! here first and again when applied; reads are answered from this member's state after a
//! read barrier (etcd answers them through the log, which is equally linearizable).
//! Passwords are hashed here, off the async threads, before anything is proposed;
//! Authenticate checks the password here and proposes only the user's name, the auth
//! revision it checked against and the digest of the new token's random part.

use std::sync::Arc;

use proto::authpb::Permission;
use proto::etcdserverpb::auth_server::Auth;
use proto::etcdserverpb::{
    AuthDisableRequest, AuthDisableResponse, AuthEnableRequest, AuthEnableResponse,
    AuthRoleAddRequest, AuthRoleAddResponse, AuthRoleDeleteRequest, AuthRoleDeleteResponse,
    AuthRoleGetRequest, AuthRoleGetResponse, AuthRoleGrantPermissionRequest,
    AuthRoleGrantPermissionResponse, AuthRoleListRequest, AuthRoleListResponse,
    AuthRoleRevokePermissionRequest, AuthRoleRevokePermissionResponse, AuthStatusRequest,
    AuthStatusResponse, AuthUserAddRequest, AuthUserAddResponse, AuthUserChangePasswordRequest,
    AuthUserChangePasswordResponse, AuthUserDeleteRequest, AuthUserDeleteResponse,
    AuthUserGetRequest, AuthUserGetResponse, AuthUserGrantRoleRequest, AuthUserGrantRoleResponse,
    AuthUserListRequest, AuthUserListResponse, AuthUserRevokeRoleRequest,
    AuthUserRevokeRoleResponse, AuthenticateRequest, AuthenticateResponse, ResponseHeader,
};
use tonic::{Request, Response, Status};
use tracing::info;

use super::node::Node;
use crate::auth::password::{self, PasswordHash};
use crate::auth::perms::{Perm, PermType};
use crate::auth::{token, AuthOp, AuthState, Need};
use crate::error::KvError;
use crate::raft::types::{Command, Output};

/// How often Authenticate checks a password again when the auth store changed between the
/// check and the proposal (etcd retries without bound).
const AUTHENTICATE_ATTEMPTS: usize = 5;

pub struct AuthService {
    pub node: Arc<Node>,
}

type Answer<T> = Result<Response<T>, Status>;

impl AuthService {
    fn header(&self) -> Option<ResponseHeader> {
        Some(self.node.header(self.node.store.revisions().current))
    }

    /// Refuses a request larger than `--max-request-bytes`, and a caller without the root
    /// role while auth is enabled; returns the caller.
    async fn admin<T: prost::Message>(&self, req: &Request<T>) -> Result<Option<String>, KvError> {
        if req.get_ref().encoded_len() > self.node.config.max_request_bytes {
            return Err(KvError::RequestTooLarge);
        }
        let who = self.node.caller_of(req).await?;
        self.node.authorize(who.as_deref(), &[Need::Admin]).await?;
        Ok(who)
    }

    /// Proposes a change for `who`; the header of the revision it was applied at.
    async fn change(
        &self,
        who: Option<String>,
        op: AuthOp,
    ) -> Result<Option<ResponseHeader>, KvError> {
        let applied = self.node.propose_as(who, Command::Auth(op)).await?;
        applied.output?;
        Ok(Some(self.node.header(applied.revision)))
    }

    /// The caller and the auth store once this member has applied everything committed
    /// before the call.
    async fn read<T>(&self, req: &Request<T>) -> Result<(Option<String>, Arc<AuthState>), KvError> {
        let who = self.node.caller_of(req).await?;
        self.node.read_barrier().await?;
        Ok((who, self.node.store.auth()))
    }
}

/// Hashes a password on a blocking thread (PBKDF2 takes tens of milliseconds). A bcrypt
/// hash computed by an etcd 3.5 client cannot be used: the password is needed.
async fn hash(password: String, hashed: &str) -> Result<PasswordHash, KvError> {
    if !hashed.is_empty() {
        return Err(KvError::Unimplemented(
            "hashedPassword is not supported; send the password".into(),
        ));
    }
    tokio::task::spawn_blocking(move || password::hash(password.as_bytes()))
        .await
        .map_err(KvError::internal)?
}

fn to_pb(p: &Perm) -> Permission {
    Permission {
        perm_type: p.kind.to_pb(),
        key: p.key.clone(),
        range_end: p.range_end.clone(),
    }
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(&self, req: Request<AuthEnableRequest>) -> Answer<AuthEnableResponse> {
        let who = self.admin(&req).await?;
        let header = self.change(who, AuthOp::Enable).await?;
        Ok(Response::new(AuthEnableResponse { header }))
    }

    async fn auth_disable(&self, req: Request<AuthDisableRequest>) -> Answer<AuthDisableResponse> {
        let who = self.admin(&req).await?;
        let header = self.change(who, AuthOp::Disable).await?;
        Ok(Response::new(AuthDisableResponse { header }))
    }

    async fn auth_status(&self, _req: Request<AuthStatusRequest>) -> Answer<AuthStatusResponse> {
        self.node.read_barrier().await?;
        let auth = self.node.store.auth();
        Ok(Response::new(AuthStatusResponse {
            header: self.header(),
            enabled: auth.enabled,
            auth_revision: auth.revision,
        }))
    }

    async fn authenticate(
        &self,
        req: Request<AuthenticateRequest>,
    ) -> Answer<AuthenticateResponse> {
        if prost::Message::encoded_len(req.get_ref()) > self.node.config.max_request_bytes {
            return Err(KvError::RequestTooLarge.into());
        }
        let req = req.into_inner();
        for _ in 0..AUTHENTICATE_ATTEMPTS {
            self.node.read_barrier().await?;
            let auth = self.node.store.auth();
            let stored = auth.password_of(&req.name)?.clone();
            let given = req.password.clone();
            let matches =
                tokio::task::spawn_blocking(move || password::verify(&stored, given.as_bytes()))
                    .await
                    .map_err(KvError::internal)?;
            if !matches {
                info!(user = %req.name, "authentication failed: wrong password");
                return Err(KvError::AuthFailed.into());
            }
            let prefix = token::new_prefix()?;
            let op = AuthOp::Authenticate {
                name: req.name.clone(),
                token: token::digest_of(&prefix),
                checked_revision: auth.revision,
            };
            let applied = self.node.propose(Command::Auth(op)).await?;
            match applied.output {
                Ok(Output::Authenticated { index }) => {
                    return Ok(Response::new(AuthenticateResponse {
                        header: Some(self.node.header(applied.revision)),
                        token: token::format(&prefix, index),
                    }))
                }
                // The password or the user changed meanwhile: check again.
                Err(KvError::AuthOldRevision) => continue,
                Err(e) => return Err(e.into()),
                Ok(other) => {
                    return Err(
                        KvError::Internal(format!("authenticate applied as {other:?}")).into(),
                    )
                }
            }
        }
        Err(KvError::AuthOldRevision.into())
    }

    async fn user_add(&self, req: Request<AuthUserAddRequest>) -> Answer<AuthUserAddResponse> {
        let who = self.admin(&req).await?;
        let req = req.into_inner();
        let no_password = req.options.is_some_and(|o| o.no_password);
        let password = if no_password {
            None
        } else {
            Some(hash(req.password, &req.hashed_password).await?)
        };
        let op = AuthOp::UserAdd {
            name: req.name,
            password,
        };
        let header = self.change(who, op).await?;
        Ok(Response::new(AuthUserAddResponse { header }))
    }

    async fn user_get(&self, req: Request<AuthUserGetRequest>) -> Answer<AuthUserGetResponse> {
        let (who, auth) = self.read(&req).await?;
        let name = &req.get_ref().name;
        auth.check_user_get(who.as_deref(), name)?;
        Ok(Response::new(AuthUserGetResponse {
            header: self.header(),
            roles: auth.user(name)?.roles.clone(),
        }))
    }

    async fn user_list(&self, req: Request<AuthUserListRequest>) -> Answer<AuthUserListResponse> {
        let (who, auth) = self.read(&req).await?;
        auth.check_admin(who.as_deref())?;
        Ok(Response::new(AuthUserListResponse {
            header: self.header(),
            users: auth.users.keys().cloned().collect(),
        }))
    }

    async fn user_delete(
        &self,
        req: Request<AuthUserDeleteRequest>,
    ) -> Answer<AuthUserDeleteResponse> {
        let who = self.admin(&req).await?;
        let name = req.into_inner().name;
        let header = self.change(who, AuthOp::UserDelete { name }).await?;
        Ok(Response::new(AuthUserDeleteResponse { header }))
    }

    async fn user_change_password(
        &self,
        req: Request<AuthUserChangePasswordRequest>,
    ) -> Answer<AuthUserChangePasswordResponse> {
        let who = self.admin(&req).await?;
        let req = req.into_inner();
        // etcd hashes before it looks the user up: so does this.
        let password = hash(req.password, &req.hashed_password).await?;
        let op = AuthOp::UserChangePassword {
            name: req.name,
            password,
        };
        let header = self.change(who, op).await?;
        Ok(Response::new(AuthUserChangePasswordResponse { header }))
    }

    async fn user_grant_role(
        &self,
        req: Request<AuthUserGrantRoleRequest>,
    ) -> Answer<AuthUserGrantRoleResponse> {
        let who = self.admin(&req).await?;
        let req = req.into_inner();
        let op = AuthOp::UserGrantRole {
            user: req.user,
            role: req.role,
        };
        let header = self.change(who, op).await?;
        Ok(Response::new(AuthUserGrantRoleResponse { header }))
    }

    async fn user_revoke_role(
        &self,
        req: Request<AuthUserRevokeRoleRequest>,
    ) -> Answer<AuthUserRevokeRoleResponse> {
        let who = self.admin(&req).await?;
        let req = req.into_inner();
        let op = AuthOp::UserRevokeRole {
            name: req.name,
            role: req.role,
        };
        let header = self.change(who, op).await?;
        Ok(Response::new(AuthUserRevokeRoleResponse { header }))
    }

    async fn role_add(&self, req: Request<AuthRoleAddRequest>) -> Answer<AuthRoleAddResponse> {
        let who = self.admin(&req).await?;
        let name = req.into_inner().name;
        let header = self.change(who, AuthOp::RoleAdd { name }).await?;
        Ok(Response::new(AuthRoleAddResponse { header }))
    }

    async fn role_get(&self, req: Request<AuthRoleGetRequest>) -> Answer<AuthRoleGetResponse> {
        let (who, auth) = self.read(&req).await?;
        let name = &req.get_ref().role;
        auth.check_role_get(who.as_deref(), name)?;
        Ok(Response::new(AuthRoleGetResponse {
            header: self.header(),
            perm: auth.role(name)?.perms.iter().map(to_pb).collect(),
        }))
    }

    async fn role_list(&self, req: Request<AuthRoleListRequest>) -> Answer<AuthRoleListResponse> {
        let (who, auth) = self.read(&req).await?;
        auth.check_admin(who.as_deref())?;
        Ok(Response::new(AuthRoleListResponse {
            header: self.header(),
            roles: auth.roles.keys().cloned().collect(),
        }))
    }

    async fn role_delete(
        &self,
        req: Request<AuthRoleDeleteRequest>,
    ) -> Answer<AuthRoleDeleteResponse> {
        let who = self.admin(&req).await?;
        let name = req.into_inner().role;
        let header = self.change(who, AuthOp::RoleDelete { name }).await?;
        Ok(Response::new(AuthRoleDeleteResponse { header }))
    }

    async fn role_grant_permission(
        &self,
        req: Request<AuthRoleGrantPermissionRequest>,
    ) -> Answer<AuthRoleGrantPermissionResponse> {
        let who = self.admin(&req).await?;
        let req = req.into_inner();
        let perm = req.perm.ok_or(KvError::PermissionNotGiven)?;
        let kind = PermType::from_pb(perm.perm_type).ok_or(KvError::InvalidAuthMgmt)?;
        let op = AuthOp::RoleGrantPermission {
            name: req.name,
            perm: Perm {
                kind,
                key: perm.key,
                range_end: perm.range_end,
            },
        };
        let header = self.change(who, op).await?;
        Ok(Response::new(AuthRoleGrantPermissionResponse { header }))
    }

    async fn role_revoke_permission(
        &self,
        req: Request<AuthRoleRevokePermissionRequest>,
    ) -> Answer<AuthRoleRevokePermissionResponse> {
        let who = self.admin(&req).await?;
        let req = req.into_inner();
        let op = AuthOp::RoleRevokePermission {
            role: req.role,
            key: req.key,
            range_end: req.range_end,
        };
        let header = self.change(who, op).await?;
        Ok(Response::new(AuthRoleRevokePermissionResponse { header }))
    }
}
