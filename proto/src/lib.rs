//! Wire types: the etcd v3 API (packages `mvccpb`, `authpb` and `etcdserverpb`, field for
//! field as etcd defines them, so etcdctl and etcd client libraries interoperate) and
//! Flotilla's own member-to-member transport (`flotilla.peer`).

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

pub mod authpb {
    tonic::include_proto!("authpb");
}

pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

pub mod peer {
    tonic::include_proto!("flotilla.peer");
}

pub mod tls;

/// The end of the range of every key starting with `prefix` (etcd's `WithPrefix`).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Whether a failed call never reached a server (the connection was refused), so it
/// certainly had no effect.
pub fn connection_refused(s: &tonic::Status) -> bool {
    let mut text = s.message().to_string();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(s);
    while let Some(e) = src {
        text.push_str(&e.to_string());
        src = e.source();
    }
    text.contains("Connection refused") || text.contains("tcp connect error")
}

#[cfg(test)]
mod tests {
    #[test]
    fn prefix_end() {
        assert_eq!(super::prefix_end(b"a/"), b"a0");
        assert_eq!(super::prefix_end(b"a\xff"), b"b");
        assert_eq!(super::prefix_end(b"\xff"), b"\0");
    }
}
