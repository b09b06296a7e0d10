//! Wire types: the etcd v3 API (packages `mvccpb` and `etcdserverpb`, field for field as
//! etcd defines them, so etcdctl and etcd client libraries interoperate) and Flotilla's own
//! member-to-member transport (`flotilla.peer`).

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

pub mod peer {
    tonic::include_proto!("flotilla.peer");
}
