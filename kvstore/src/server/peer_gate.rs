//! The door of the peer service: what anyone reaching the peer port meets before any Raft
//! or internal call runs. gRPC messages larger than `wire::MAX_PEER_MESSAGE_BYTES` are
//! refused by tonic before they are read, and a request whose envelope names another
//! cluster is refused with `FAILED_PRECONDITION` "request cluster ID mismatch"
//! (`wire::check_cluster_id`), as etcd refuses a peer of another cluster.

use proto::peer::peer_server::{Peer, PeerServer};
use proto::peer::Payload;
use tonic::{Request, Response, Status};
use tracing::warn;

use crate::raft::wire::{check_cluster_id, MAX_PEER_MESSAGE_BYTES};

/// Wraps a peer service with the cluster-ID check.
pub struct Gate<P> {
    cluster_id: u64,
    inner: P,
}

/// The peer service of a member of `cluster_id`, ready to add to a tonic server.
pub fn service<P: Peer>(cluster_id: u64, inner: P) -> PeerServer<Gate<P>> {
    PeerServer::new(Gate { cluster_id, inner })
        .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES)
}

impl<P> Gate<P> {
    fn admit(&self, req: &Request<Payload>, is_call: bool) -> Result<(), Status> {
        check_cluster_id(self.cluster_id, req.get_ref(), is_call).inspect_err(|e| {
            warn!(
                remote = ?req.remote_addr(),
                sender_cluster = %format!("{:x}", req.get_ref().cluster_id),
                "refused a peer request: {}",
                e.message()
            )
        })
    }
}

#[tonic::async_trait]
impl<P: Peer> Peer for Gate<P> {
    async fn vote(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        self.admit(&req, false)?;
        self.inner.vote(req).await
    }

    async fn append_entries(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        self.admit(&req, false)?;
        self.inner.append_entries(req).await
    }

    async fn install_snapshot(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        self.admit(&req, false)?;
        self.inner.install_snapshot(req).await
    }

    async fn pre_vote(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        self.admit(&req, false)?;
        self.inner.pre_vote(req).await
    }

    async fn transfer_leader(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        self.admit(&req, false)?;
        self.inner.transfer_leader(req).await
    }

    async fn call(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        self.admit(&req, true)?;
        self.inner.call(req).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proto::peer::peer_client::PeerClient;

    use super::*;
    use crate::raft::calls::{PeerCall, PeerReply};
    use crate::raft::network::{CallError, Peers};
    use crate::raft::wire::{decode_frame, request, CLUSTER_ID_MISMATCH};
    use crate::storage::db::encode;

    const CLUSTER: u64 = 0xc1;

    /// Answers every Raft RPC with an empty payload and every call with `Done`.
    struct Stub;

    fn empty() -> Result<Response<Payload>, Status> {
        Ok(Response::new(Payload::default()))
    }

    #[tonic::async_trait]
    impl Peer for Stub {
        async fn vote(&self, _: Request<Payload>) -> Result<Response<Payload>, Status> {
            empty()
        }
        async fn append_entries(&self, _: Request<Payload>) -> Result<Response<Payload>, Status> {
            empty()
        }
        async fn install_snapshot(&self, _: Request<Payload>) -> Result<Response<Payload>, Status> {
            empty()
        }
        async fn pre_vote(&self, _: Request<Payload>) -> Result<Response<Payload>, Status> {
            empty()
        }
        async fn transfer_leader(&self, _: Request<Payload>) -> Result<Response<Payload>, Status> {
            empty()
        }
        async fn call(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
            let _: PeerCall = decode_frame(&req.into_inner().data)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            Ok(Response::new(request(0, encode(&PeerReply::Done))))
        }
    }

    /// A peer server of cluster `CLUSTER` on a loopback port; returns its URL.
    async fn serve() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service(CLUSTER, Stub))
                .serve_with_incoming(incoming),
        );
        url
    }

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_call_from_another_cluster_is_refused_and_one_from_the_same_served() {
        let url = serve().await;
        let peers = Peers::default();
        peers.set_cluster_id(0xbad);
        match peers.call(&url, &PeerCall::ReadIndex, WAIT).await {
            Err(CallError::NotSent(m)) => assert!(m.contains(CLUSTER_ID_MISMATCH), "{m}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        peers.set_cluster_id(CLUSTER);
        assert!(matches!(
            peers.call(&url, &PeerCall::ReadIndex, WAIT).await,
            Ok(PeerReply::Done)
        ));
    }

    #[tokio::test]
    async fn a_raft_rpc_from_another_cluster_is_refused() {
        let url = serve().await;
        let mut client = PeerClient::connect(url).await.unwrap();
        let e = client
            .vote(request(0xbad, vec![1, 2, 3]))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
        assert!(e.message().starts_with(CLUSTER_ID_MISMATCH), "{e:?}");
        for (name, r) in [
            ("append", client.append_entries(request(0, vec![])).await),
            (
                "snapshot",
                client.install_snapshot(request(7, vec![])).await,
            ),
        ] {
            let e = r.unwrap_err();
            assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{name}");
        }
        assert!(client.vote(request(CLUSTER, vec![])).await.is_ok());
    }

    #[tokio::test]
    async fn a_member_that_does_not_know_its_cluster_may_only_ask_for_the_members() {
        let url = serve().await;
        let joining = Peers::default();
        assert!(matches!(
            joining.call(&url, &PeerCall::ClusterInfo, WAIT).await,
            Ok(PeerReply::Done)
        ));
        match joining
            .call(&url, &PeerCall::MemberRemove { id: 1 }, WAIT)
            .await
        {
            Err(CallError::NotSent(m)) => assert!(m.contains(CLUSTER_ID_MISMATCH), "{m}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_message_over_the_limit_is_refused_unread() {
        let url = serve().await;
        let mut client = PeerClient::connect(url)
            .await
            .unwrap()
            .max_encoding_message_size(usize::MAX);
        let e = client
            .append_entries(request(CLUSTER, vec![0; MAX_PEER_MESSAGE_BYTES]))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::OutOfRange, "{e:?}");
        assert!(e.message().contains("too large"), "{e:?}");
    }
}
