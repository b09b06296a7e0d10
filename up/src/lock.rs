//! One `flotilla up` per data directory: an exclusive `flock` on `<data-dir>/up.lock`,
//! held for the life of the process (the kernel drops it when the process dies, however
//! it dies, so a crashed run never leaves a stale lock). A second run on a directory in
//! use is refused with the pid of the one that holds it, before it touches any port.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;

use rustix::fs::{flock, FlockOperation};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{dir} is in use by another `flotilla up` (pid {pid}); stop it first (Ctrl-C), or use another --data-dir")]
    InUse { dir: String, pid: String },
    #[error("locking {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Held while the cluster runs; dropping it releases the directory.
pub struct DataDirLock {
    _file: File,
}

pub fn lock(dir: &Path) -> Result<DataDirLock, LockError> {
    let path = dir.join("up.lock");
    let io = |source: std::io::Error| LockError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    if let Err(e) = flock(&file, FlockOperation::NonBlockingLockExclusive) {
        if e == rustix::io::Errno::WOULDBLOCK {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Err(LockError::InUse {
                dir: dir.display().to_string(),
                pid: pid.trim().to_string(),
            });
        }
        return Err(io(e.into()));
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(DataDirLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_holder_and_a_dropped_one_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path()).unwrap();
        // flock locks belong to the open file description: a second open is refused.
        match lock(dir.path()) {
            Err(LockError::InUse { pid, .. }) => assert_eq!(pid, std::process::id().to_string()),
            other => panic!("expected InUse, got {:?}", other.map(|_| ())),
        }
        drop(held);
        lock(dir.path()).unwrap();
    }
}
