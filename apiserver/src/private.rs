//! Files that hold credentials (keys, tokens, kubeconfigs): created readable by their owner
//! only from the moment they exist (mode 0600 at open, not chmod after writing), in
//! directories only their owner can list (0700).

use std::io::Write;
use std::path::{Path, PathBuf};

/// Creates `dir` and its missing parents 0700; an existing directory is left as it is.
pub fn dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

/// Creates `path` new (it must not exist) with mode 0600 and writes `contents`.
pub fn create_new(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

/// Replaces `path` with `contents` in one rename, the new file 0600 from its creation; its
/// directory is created (0700) when missing.
pub fn replace(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        dir(d)?;
    }
    let tmp = sibling(path, "tmp");
    let _ = std::fs::remove_file(&tmp);
    create_new(&tmp, contents)?;
    std::fs::rename(&tmp, path)
}

/// `.<name>.<suffix>.<pid>` next to `path`.
pub fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let dir = path.parent().unwrap_or(Path::new("."));
    dir.join(format!(
        ".{}.{suffix}.{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("f"),
        std::process::id()
    ))
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn files_are_0600_and_directories_0700() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("pki/a.key");
        super::replace(&p, b"secret").unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&p), 0o600);
        assert_eq!(mode(&t.path().join("pki")), 0o700);
        super::replace(&p, b"again").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"again");
        assert!(super::create_new(&p, b"x").is_err());
    }
}
