//! Fail-stop: how a member stops when its own storage fails.
//!
//! A member whose RocksDB refused a write, or handed back a row that does not decode, can
//! no longer tell what it holds: going on would let it diverge silently from the other
//! replicas (an entry counted as applied that was not), acknowledge log entries it did not
//! keep, or serve a state that has stopped moving. etcd panics in these places; a member
//! here logs the cause at error level and exits with [`STORAGE_FAULT_EXIT_CODE`], always
//! through [`storage_fault`]. On restart it recovers from what is on disk (every apply and
//! append is atomic) or refuses to start, and the cluster carries on without it meanwhile.
//!
//! What is a storage fault is a type: `error::StorageFault` (inside a `KvError`, the
//! `Storage` variant). A request the state machine refuses (a compare that fails, a missing
//! lease, a compacted revision) is not one: it stays the entry's output.

use openraft::errors::Fatal;

use crate::raft::types::TypeConfig;

/// The exit status of a member stopped by a storage fault (sysexits' `EX_IOERR`).
pub const STORAGE_FAULT_EXIT_CODE: i32 = 74;

/// Stops the member: logs `cause` and exits the process with [`STORAGE_FAULT_EXIT_CODE`].
/// Nothing after a storage fault may be written, acknowledged or served, so this returns
/// to no one (in unit tests it panics with the same message instead, so a test can see it).
pub fn storage_fault(cause: impl std::fmt::Display) -> ! {
    let message = format!(
        "storage fault, stopping this member so it cannot diverge from the cluster: {cause}"
    );
    tracing::error!(exit_code = STORAGE_FAULT_EXIT_CODE, "{message}");
    stop(message)
}

/// Openraft stopped its core with `fatal`: a storage error there (reading the log, a
/// snapshot install that failed) is a storage fault of this member. A core that panicked
/// stops the member the same way: what it holds can no longer move.
pub fn on_raft_fatal(fatal: &Fatal<TypeConfig>) {
    match fatal {
        Fatal::StorageError(e) => {
            storage_fault(format_args!("raft stopped on a storage error: {e}"))
        }
        Fatal::Panicked => storage_fault("raft's core panicked"),
        Fatal::Stopped => {}
    }
}

#[cfg(not(test))]
fn stop(_message: String) -> ! {
    std::process::exit(STORAGE_FAULT_EXIT_CODE)
}

#[cfg(test)]
fn stop(message: String) -> ! {
    panic!("{message}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "storage fault, stopping this member")]
    fn a_raft_storage_error_stops_the_member() {
        use openraft::errors::ErrorSource;
        let e = openraft::StorageError::<TypeConfig>::write_logs(ErrorSource::from_string("disk"));
        on_raft_fatal(&Fatal::StorageError(e));
    }

    #[test]
    fn a_normal_raft_stop_does_not() {
        on_raft_fatal(&Fatal::Stopped);
    }
}
