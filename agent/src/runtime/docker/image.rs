//! Images the agent makes itself, as there may be no registry: the infra ("pause") image
//! that holds each pod's network namespace is a statically linked busybox imported as a
//! one-file root filesystem (`POST /images/create?fromSrc=-`, what `docker import` does).

use std::path::Path;

use bytes::Bytes;
use hyper::Method;

use super::client::{enc, Docker, DockerError};

/// The infra image, built when missing.
pub const INFRA_IMAGE: &str = "flotilla/pause:1";

/// Where a statically linked busybox is looked for (Debian's busybox-static installs the
/// first).
pub const BUSYBOX_PATHS: &[&str] = &["/bin/busybox", "/usr/bin/busybox"];

/// An entry of a root filesystem to import.
pub enum Entry<'a> {
    File {
        path: &'a str,
        mode: u32,
        data: &'a [u8],
    },
    Symlink {
        path: &'a str,
        target: &'a str,
    },
}

fn octal(field: &mut [u8], v: u64) {
    let s = format!("{:0width$o}", v, width = field.len() - 1);
    field[..s.len()].copy_from_slice(s.as_bytes());
}

/// A POSIX ustar archive of `entries` (paths relative, no longer than 100 bytes).
pub fn tar(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut h = [0u8; 512];
        let (path, mode, size, kind, link) = match e {
            Entry::File { path, mode, data } => (*path, *mode, data.len() as u64, b'0', ""),
            Entry::Symlink { path, target } => (*path, 0o777, 0, b'2', *target),
        };
        h[..path.len().min(100)].copy_from_slice(&path.as_bytes()[..path.len().min(100)]);
        octal(&mut h[100..108], u64::from(mode));
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        octal(&mut h[124..136], size);
        octal(&mut h[136..148], 0);
        h[156] = kind;
        h[157..157 + link.len().min(100)].copy_from_slice(&link.as_bytes()[..link.len().min(100)]);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
        out.extend_from_slice(&h);
        if let Entry::File { data, .. } = e {
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// Whether `bytes` is an ELF executable without a program interpreter (statically linked).
pub fn is_static_elf(bytes: &[u8]) -> bool {
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let mut phoff = [0u8; 8];
    phoff.copy_from_slice(&bytes[0x20..0x28]);
    let phoff = u64::from_le_bytes(phoff) as usize;
    let (size, n) = (u16_at(0x36), u16_at(0x38));
    (0..n).all(|i| {
        let o = phoff + i * size;
        o + 4 <= bytes.len()
            && u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) != 3
    })
}

/// A statically linked busybox from this machine, or why there is none.
pub fn static_busybox() -> Result<Vec<u8>, String> {
    for p in BUSYBOX_PATHS {
        if let Ok(b) = std::fs::read(Path::new(p)) {
            if is_static_elf(&b) {
                return Ok(b);
            }
        }
    }
    Err(format!(
        "building the infra image {INFRA_IMAGE} needs a statically linked busybox at {} (Debian: apt-get install busybox-static)",
        BUSYBOX_PATHS.join(" or ")
    ))
}

/// Imports a root filesystem as image `repo:tag` with Dockerfile `changes` (`CMD [...]`).
pub async fn import(
    docker: &Docker,
    image: &str,
    rootfs: Vec<u8>,
    changes: &[&str],
) -> Result<(), DockerError> {
    let (repo, tag) = image.rsplit_once(':').unwrap_or((image, "latest"));
    let mut path = format!(
        "/images/create?fromSrc=-&repo={}&tag={}",
        enc(repo),
        enc(tag)
    );
    for c in changes {
        path.push_str(&format!("&changes={}", enc(c)));
    }
    docker
        .progress(
            Method::POST,
            &path,
            Some(Bytes::from(rootfs)),
            "application/x-tar",
        )
        .await
        .map(|_| ())
}

/// Whether image `name` is present.
pub async fn present(
    docker: &Docker,
    name: &str,
) -> Result<Option<serde_json::Value>, DockerError> {
    match docker
        .json(Method::GET, &format!("/images/{}/json", enc(name)), None)
        .await
    {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.status() == Some(404) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The infra process: waits for SIGTERM and exits 0.
pub const INFRA_CMD: &str = r#"CMD ["/busybox", "sh", "-c", "trap 'exit 0' TERM INT; while :; do /busybox sleep 3600 & wait $!; done"]"#;

/// Makes sure the infra image exists, importing it from a static busybox when missing.
pub async fn ensure_infra(docker: &Docker) -> Result<(), String> {
    if present(docker, INFRA_IMAGE)
        .await
        .map_err(|e| e.to_string())?
        .is_some()
    {
        return Ok(());
    }
    let busybox = static_busybox()?;
    let rootfs = tar(&[Entry::File {
        path: "busybox",
        mode: 0o755,
        data: &busybox,
    }]);
    import(docker, INFRA_IMAGE, rootfs, &[INFRA_CMD])
        .await
        .map_err(|e| format!("importing {INFRA_IMAGE}: {e}"))?;
    tracing::info!(image = INFRA_IMAGE, "infra image built");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_headers_are_valid_ustar() {
        let t = tar(&[
            Entry::File {
                path: "bin/x",
                mode: 0o755,
                data: b"hello",
            },
            Entry::Symlink {
                path: "bin/y",
                target: "x",
            },
        ]);
        assert_eq!(t.len(), 512 + 512 + 512 + 1024);
        assert_eq!(&t[257..262], b"ustar");
        assert_eq!(&t[124..135], b"00000000005");
        // The checksum counts the header with its own field as spaces.
        let mut h = t[..512].to_vec();
        let stored = u64::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
        h[148..156].copy_from_slice(b"        ");
        assert_eq!(stored, h.iter().map(|b| u64::from(*b)).sum::<u64>());
        assert_eq!(&t[512..517], b"hello");
        assert_eq!(t[1024 + 156], b'2');
    }

    #[test]
    fn static_and_dynamic_executables_are_told_apart() {
        // The test binary itself is dynamically linked (it has an interpreter).
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(!is_static_elf(&me));
        assert!(!is_static_elf(b"#!/bin/sh\n"));
    }
}
