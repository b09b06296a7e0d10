//! etcd's Cluster service: membership as Raft applies it.
//!
//! With auth enabled, changing the membership needs the root role (etcd's
//! `checkMembershipOperationPermission`); listing it needs none.

use std::sync::Arc;

use proto::etcdserverpb::cluster_server::Cluster;
use proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use tonic::{Request, Response, Status};

use super::node::Node;
use crate::auth::Need;
use crate::error::KvError;
use crate::raft::calls::{MemberInfo, PeerCall, PeerReply};

pub struct ClusterService {
    pub node: Arc<Node>,
}

fn to_pb(m: &MemberInfo) -> Member {
    Member {
        id: m.id,
        name: m.name.clone(),
        peer_ur_ls: m.peer_urls.clone(),
        client_ur_ls: m.client_urls.clone(),
        is_learner: m.learner,
    }
}

impl ClusterService {
    /// Waits until this member has applied the change it just asked for, so the member list
    /// it answers with includes it.
    async fn members_after_change(&self) -> Result<Vec<Member>, KvError> {
        self.node.read_barrier().await?;
        Ok(self.node.cluster_info().members.iter().map(to_pb).collect())
    }

    fn header(&self) -> Option<proto::etcdserverpb::ResponseHeader> {
        Some(self.node.header(self.node.store.revisions().current))
    }

    /// Refuses a caller without the root role while auth is enabled.
    async fn admin<T>(&self, req: &Request<T>) -> Result<(), KvError> {
        let who = self.node.caller_of(req).await?;
        self.node.authorize(who.as_deref(), &[Need::Admin]).await
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        req: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        self.admin(&req).await?;
        let req = req.into_inner();
        let call = PeerCall::MemberAdd {
            peer_urls: req.peer_ur_ls.clone(),
            learner: req.is_learner,
        };
        let PeerReply::MemberId(id) = self.node.change_members(call).await? else {
            return Err(KvError::internal("member add: unexpected reply").into());
        };
        let members = self.members_after_change().await?;
        let member = members
            .iter()
            .find(|m| m.id == id)
            .cloned()
            .unwrap_or(Member {
                id,
                peer_ur_ls: req.peer_ur_ls,
                is_learner: req.is_learner,
                ..Default::default()
            });
        Ok(Response::new(MemberAddResponse {
            header: self.header(),
            member: Some(member),
            members,
        }))
    }

    async fn member_remove(
        &self,
        req: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        self.admin(&req).await?;
        self.node
            .change_members(PeerCall::MemberRemove {
                id: req.into_inner().id,
            })
            .await?;
        let members = self.members_after_change().await?;
        Ok(Response::new(MemberRemoveResponse {
            header: self.header(),
            members,
        }))
    }

    async fn member_update(
        &self,
        req: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        self.admin(&req).await?;
        let req = req.into_inner();
        self.node
            .change_members(PeerCall::MemberUpdate {
                id: req.id,
                peer_urls: req.peer_ur_ls,
            })
            .await?;
        let members = self.members_after_change().await?;
        Ok(Response::new(MemberUpdateResponse {
            header: self.header(),
            members,
        }))
    }

    async fn member_list(
        &self,
        req: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        if req.into_inner().linearizable {
            self.node.read_barrier().await?;
        }
        let members = self.node.cluster_info().members.iter().map(to_pb).collect();
        Ok(Response::new(MemberListResponse {
            header: self.header(),
            members,
        }))
    }

    async fn member_promote(
        &self,
        req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        self.admin(&req).await?;
        self.node
            .change_members(PeerCall::MemberPromote {
                id: req.into_inner().id,
            })
            .await?;
        let members = self.members_after_change().await?;
        Ok(Response::new(MemberPromoteResponse {
            header: self.header(),
            members,
        }))
    }
}
