//! What the node reports about the machine: cpus, memory, disk under the root directory,
//! identity (machine-id, boot-id), kernel and OS, read once at start.

use std::net::IpAddr;
use std::path::Path;

#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub cpus: u32,
    pub memory_bytes: u64,
    pub ephemeral_bytes: u64,
    pub hostname: String,
    pub machine_id: String,
    pub boot_id: String,
    pub kernel: String,
    pub os_image: String,
    /// Go's GOARCH names (amd64, arm64, ...).
    pub arch: String,
}

fn read_trim(p: &str) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// MemTotal from /proc/meminfo, in bytes.
pub fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// PRETTY_NAME from /etc/os-release.
pub fn parse_os_release(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with("PRETTY_NAME="))?;
    Some(line["PRETTY_NAME=".len()..].trim_matches('"').to_string())
}

pub fn goarch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

impl Machine {
    pub fn read(root_dir: &Path) -> Machine {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| parse_meminfo(&t))
            .unwrap_or(0);
        let ephemeral_bytes = rustix::fs::statvfs(root_dir)
            .map(|s| s.f_blocks.saturating_mul(s.f_frsize))
            .unwrap_or(0);
        let uname = rustix::system::uname();
        Machine {
            cpus,
            memory_bytes,
            ephemeral_bytes,
            hostname: read_trim("/proc/sys/kernel/hostname").unwrap_or_else(|| "localhost".into()),
            machine_id: read_trim("/etc/machine-id").unwrap_or_default(),
            boot_id: read_trim("/proc/sys/kernel/random/boot_id").unwrap_or_default(),
            kernel: uname.release().to_string_lossy().into_owned(),
            os_image: std::fs::read_to_string("/etc/os-release")
                .ok()
                .and_then(|t| parse_os_release(&t))
                .unwrap_or_else(|| "Linux".into()),
            arch: goarch().to_string(),
        }
    }
}

/// The address other machines reach this one at: the source address of a route out
/// (no packet is sent), else loopback.
pub fn default_ip() -> IpAddr {
    let probe = || -> std::io::Result<IpAddr> {
        let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
        s.connect("10.255.255.255:9")?;
        Ok(s.local_addr()?.ip())
    };
    probe().unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        assert_eq!(
            parse_meminfo("MemTotal:       24576000 kB\nMemFree: 1 kB\n"),
            Some(24576000 * 1024)
        );
        assert_eq!(
            parse_os_release("NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"),
            Some("Debian GNU/Linux 12 (bookworm)".into())
        );
        let m = Machine::read(Path::new("/"));
        assert!(m.cpus >= 1 && m.memory_bytes > 0 && m.ephemeral_bytes > 0);
    }
}
