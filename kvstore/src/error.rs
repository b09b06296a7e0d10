//! Errors a client can see, each with etcd's gRPC code and message, and the one function
//! that turns them into a `tonic::Status` (`KvError::to_status`).
//!
//! A failure of the member's own storage is its own type, [`StorageFault`] (carried as
//! `KvError::Storage`): on a read a client gets it as an internal error, but where the
//! state machine applies an entry it stops the member (`fatal`), while every other
//! `KvError` is the entry's answer ([`refusal_or_fault`] tells them apart).

use tonic::{Code, Status};

/// An error in etcd's terms. The `Display` text is exactly the message etcd puts in the
/// gRPC status, because clients (etcdctl, client libraries) match on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum KvError {
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: invalid sort option")]
    InvalidSortOption,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted { compact_revision: i64 },
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: member ID already exist")]
    MemberExists,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: given member URLs are invalid")]
    MemberBadUrls,
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: not leader")]
    NotLeader,
    #[error("etcdserver: request timed out")]
    Timeout,
    #[error("etcdserver: request timed out, possibly due to previous leader failure")]
    TimeoutDueToLeaderFail,
    #[error("etcdserver: server stopped")]
    Stopped,
    #[error("etcdserver: not capable")]
    NotCapable,
    #[error("etcdserver: {0}")]
    Unimplemented(String),
    /// The request is malformed in a way etcd reports with its own text.
    #[error("{0}")]
    InvalidArgument(String),
    /// Something failed on this member; the message names the cause.
    #[error("etcdserver: {0}")]
    Internal(String),
    /// This member's storage failed (RocksDB refused a read or write, or a stored row does
    /// not decode).
    #[error("etcdserver: {0}")]
    Storage(StorageFault),
    // etcd's auth errors (rpctypes). New variants go at the end: a `KvError` travels
    // between members in peer replies.
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    #[error("etcdserver: user name already exists")]
    UserAlreadyExists,
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    #[error("etcdserver: user name not found")]
    UserNotFound,
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExists,
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    #[error("etcdserver: revision of auth store is old")]
    AuthOldRevision,
    #[error("etcdserver: permission not given")]
    PermissionNotGiven,
    /// etcd 3.4 sends this one unconverted: code Unknown, its internal text.
    #[error("auth: authentication failed, password was given for no password user")]
    NoPasswordUser,
    /// etcd's `ErrGRPCTooManyRequests`: the member has committed far more than it has
    /// applied (`server::proposer::exceeds_request_limit`), so new proposals are refused
    /// until applying catches up.
    #[error("etcdserver: too many requests")]
    TooManyRequests,
    /// The CORRUPT alarm is active: the cluster refuses writes, compaction and lease
    /// grants and revocations (etcd's `applierV3Corrupt`, `ErrGRPCCorrupt`).
    #[error("etcdserver: corrupt cluster")]
    Corrupt,
    /// Maintenance.Snapshot while `limit` snapshots are already being streamed (not an
    /// etcd error: etcd sets no limit; see `server::snapshot_stream`).
    #[error("etcdserver: too many snapshots in progress (at most {limit} at once); retry when one finishes")]
    SnapshotsBusy { limit: usize },
    /// MoveLeader to a member that is not a voter of the cluster.
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    /// MoveLeader whose transferee did not take over in time.
    #[error("etcdserver: request timed out, leader transfer took too long")]
    TimeoutLeaderTransfer,
}

/// A failure of this member's own storage, as opposed to a refusal of the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[error("storage: {0}")]
pub struct StorageFault(pub String);

impl StorageFault {
    pub fn new(cause: impl std::fmt::Display) -> Self {
        StorageFault(cause.to_string())
    }
}

impl From<StorageFault> for KvError {
    fn from(f: StorageFault) -> Self {
        KvError::Storage(f)
    }
}

/// Splits what executing a command produced: a storage fault (`Err`), which must stop the
/// member, from the command's outcome (`Ok`), success or a refusal, which is recorded as
/// the entry's output.
pub fn refusal_or_fault<T>(r: Result<T, KvError>) -> Result<Result<T, KvError>, StorageFault> {
    match r {
        Err(KvError::Storage(f)) => Err(f),
        other => Ok(other),
    }
}

impl KvError {
    pub fn code(&self) -> Code {
        use KvError::*;
        match self {
            EmptyKey | KeyNotFound | ValueProvided | LeaseProvided | TooManyOps | DuplicateKey
            | InvalidSortOption | RequestTooLarge | MemberBadUrls | InvalidArgument(_)
            | UserEmpty | RoleEmpty | AuthFailed | InvalidAuthMgmt | AuthOldRevision
            | PermissionNotGiven => Code::InvalidArgument,
            Compacted { .. } | FutureRevision | LeaseTtlTooLarge => Code::OutOfRange,
            NoSpace | TooManyRequests | SnapshotsBusy { .. } => Code::ResourceExhausted,
            LeaseNotFound | MemberNotFound => Code::NotFound,
            LeaseExists
            | MemberExists
            | PeerUrlExists
            | MemberNotLearner
            | LearnerNotReady
            | NotEnoughStartedMembers
            | NotLeader
            | NotCapable
            | RootUserNotExist
            | RootRoleNotExist
            | UserAlreadyExists
            | UserNotFound
            | RoleAlreadyExists
            | RoleNotFound
            | RoleNotGranted
            | PermissionNotGranted
            | AuthNotEnabled
            | BadLeaderTransferee => Code::FailedPrecondition,
            PermissionDenied => Code::PermissionDenied,
            InvalidAuthToken => Code::Unauthenticated,
            NoPasswordUser => Code::Unknown,
            NoLeader | Timeout | TimeoutDueToLeaderFail | Stopped | TimeoutLeaderTransfer => {
                Code::Unavailable
            }
            Unimplemented(_) => Code::Unimplemented,
            Internal(_) | Storage(_) => Code::Internal,
            Corrupt => Code::DataLoss,
        }
    }

    pub fn to_status(&self) -> Status {
        Status::new(self.code(), self.to_string())
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        KvError::Internal(cause.to_string())
    }

    /// The error of a read that only the storage can fail (a state-machine row), as a
    /// storage fault.
    pub fn into_fault(self) -> StorageFault {
        match self {
            KvError::Storage(f) => f,
            other => StorageFault::new(other),
        }
    }
}

impl From<KvError> for Status {
    fn from(e: KvError) -> Status {
        e.to_status()
    }
}

impl From<rocksdb::Error> for KvError {
    fn from(e: rocksdb::Error) -> Self {
        KvError::Storage(StorageFault::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_outcomes_and_storage_failures_are_faults() {
        for refusal in [
            KvError::LeaseNotFound,
            KvError::NoSpace,
            KvError::FutureRevision,
            KvError::Compacted {
                compact_revision: 5,
            },
            KvError::internal("a batch inside a batch"),
        ] {
            assert_eq!(
                refusal_or_fault::<()>(Err(refusal.clone())),
                Ok(Err(refusal))
            );
        }
        assert_eq!(refusal_or_fault(Ok::<_, KvError>(7)), Ok(Ok(7)));
        let fault = KvError::from(StorageFault::new("IO error: No space left on device"));
        assert_eq!(
            refusal_or_fault::<()>(Err(fault)),
            Err(StorageFault::new("IO error: No space left on device"))
        );
    }

    #[test]
    fn auth_errors_carry_etcds_codes_and_messages() {
        for (e, code, msg) in [
            (
                KvError::PermissionDenied,
                Code::PermissionDenied,
                "etcdserver: permission denied",
            ),
            (
                KvError::UserEmpty,
                Code::InvalidArgument,
                "etcdserver: user name is empty",
            ),
            (
                KvError::AuthFailed,
                Code::InvalidArgument,
                "etcdserver: authentication failed, invalid user ID or password",
            ),
            (
                KvError::InvalidAuthToken,
                Code::Unauthenticated,
                "etcdserver: invalid auth token",
            ),
            (
                KvError::UserNotFound,
                Code::FailedPrecondition,
                "etcdserver: user name not found",
            ),
            (
                KvError::RootRoleNotExist,
                Code::FailedPrecondition,
                "etcdserver: root user does not have root role",
            ),
            (
                KvError::NoPasswordUser,
                Code::Unknown,
                "auth: authentication failed, password was given for no password user",
            ),
            (
                KvError::Corrupt,
                Code::DataLoss,
                "etcdserver: corrupt cluster",
            ),
        ] {
            let s = e.to_status();
            assert_eq!((s.code(), s.message()), (code, msg));
        }
    }

    #[test]
    fn too_many_requests_is_etcds_resource_exhausted() {
        let s = KvError::TooManyRequests.to_status();
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(s.message(), "etcdserver: too many requests");
    }

    #[test]
    fn a_storage_fault_reads_as_before_to_a_client() {
        let s = KvError::Storage(StorageFault::new("malformed kv row")).to_status();
        assert_eq!(s.code(), Code::Internal);
        assert_eq!(s.message(), "etcdserver: storage: malformed kv row");
    }
}
