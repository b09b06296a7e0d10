//! Memory-backed volume directories, as the kubelet makes them: a Secret volume (and an
//! emptyDir with `medium: Memory`) is a tmpfs mounted on the volume's directory, so a
//! Secret's bytes never reach the node's disk and vanish with the pod (or a reboot).
//!
//! Mounting needs CAP_SYS_ADMIN. Without it (an agent not run as root) the volume stays a
//! plain directory: the pod directories are 0700, so other host users still cannot read
//! it, but it is on disk; the agent says so once.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::mount::{mount, unmount, MountFlags, UnmountFlags};

/// What a Secret volume's tmpfs may hold: a Secret is at most 1 MiB, and the files are
/// written again at each container start (old and new may briefly coexist).
pub const SECRET_SIZE: u64 = 4 << 20;

/// Whether `dir` is a mount point: it lives on another device than its parent.
pub fn is_mount_point(dir: &Path) -> bool {
    let (Ok(d), Some(Ok(p))) = (
        std::fs::symlink_metadata(dir),
        dir.parent().map(std::fs::symlink_metadata),
    ) else {
        return false;
    };
    d.dev() != p.dev()
}

static WARNED: AtomicBool = AtomicBool::new(false);

/// Makes `dir` a tmpfs of at most `size` bytes (tmpfs's default, half the memory, when
/// None; mode 0755: containers running as any user read the files, whose own modes say
/// who may), unless it already is a mount. Returns whether `dir` is memory-backed; an
/// error only for what is not a lack of privilege.
pub fn ensure(dir: &Path, size: Option<u64>) -> Result<bool, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    if is_mount_point(dir) {
        return Ok(true);
    }
    let opts = match size {
        // At least a page; a size of 0 would mean "unlimited".
        Some(size) => format!("size={},mode=0755", size.clamp(4096, 1 << 50)),
        None => "mode=0755".to_string(),
    };
    let data = std::ffi::CString::new(opts).map_err(|e| format!("tmpfs options: {e}"))?;
    let flags = MountFlags::NOSUID | MountFlags::NODEV;
    match mount("tmpfs", dir, "tmpfs", flags, data.as_c_str()) {
        Ok(()) => Ok(true),
        Err(e) if e == rustix::io::Errno::PERM || e == rustix::io::Errno::ACCESS => {
            if !WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    dir = %dir.display(),
                    "cannot mount tmpfs (the agent is not privileged): Secret volumes are written to disk"
                );
            }
            Ok(false)
        }
        Err(e) => Err(format!("mounting a tmpfs on {}: {e}", dir.display())),
    }
}

/// Unmounts every mount point under `pod_dir/volumes/<plugin>/<volume>` (the only places
/// the agent mounts), so the pod's directory can be removed. Lazy (MNT_DETACH), as the
/// kubelet's cleanup: a container still holding a file cannot keep the pod directory.
pub fn unmount_volumes(pod_dir: &Path) {
    let Ok(plugins) = std::fs::read_dir(pod_dir.join("volumes")) else {
        return;
    };
    for plugin in plugins.flatten() {
        let Ok(vols) = std::fs::read_dir(plugin.path()) else {
            continue;
        };
        for v in vols.flatten() {
            let p = v.path();
            if is_mount_point(&p) {
                if let Err(e) = unmount(&p, UnmountFlags::DETACH) {
                    tracing::warn!(dir = %p.display(), error = %e, "unmounting a volume");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs where the tests run as root (CI does); elsewhere it checks the fallback.
    #[test]
    fn a_tmpfs_is_mounted_found_and_unmounted() {
        let dir = tempfile::tempdir().unwrap();
        let pod_dir = dir.path().join("pod");
        let vol = pod_dir.join("volumes/kubernetes.io~secret/creds");
        let memory = ensure(&vol, Some(SECRET_SIZE)).unwrap();
        assert!(vol.is_dir());
        assert_eq!(is_mount_point(&vol), memory);
        // Idempotent: a second call finds the mount rather than stacking another.
        assert_eq!(ensure(&vol, Some(SECRET_SIZE)).unwrap(), memory);
        if memory {
            std::fs::write(vol.join("token"), b"t0k").unwrap();
            // The size bound holds: 5 MiB do not fit in 4.
            assert!(std::fs::write(vol.join("big"), vec![0u8; 5 << 20]).is_err());
        }
        unmount_volumes(&pod_dir);
        assert!(!is_mount_point(&vol));
        assert!(!vol.join("token").exists());
        std::fs::remove_dir_all(&pod_dir).unwrap();
    }
}
