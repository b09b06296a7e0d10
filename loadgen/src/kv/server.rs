//! What the servers under load cost: peak resident memory of their processes (reset before
//! a workload through `/proc/<pid>/clear_refs`, read from `VmHWM`) and the size of their
//! data directories.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default)]
pub struct Servers {
    pub pids: Vec<u32>,
    pub data_dirs: Vec<PathBuf>,
}

impl Servers {
    /// Starts a measurement: every server's peak RSS is set back to its current RSS.
    pub fn reset_peaks(&self) {
        for pid in &self.pids {
            // "5" resets the peak resident set size (Linux 4.0+); needs to own the process.
            let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
        }
    }

    /// The largest peak RSS among the servers since the last reset, in MiB.
    pub fn peak_rss_mib(&self) -> Option<f64> {
        self.pids
            .iter()
            .filter_map(|pid| status_kib(*pid, "VmHWM:"))
            .max()
            .map(|kib| kib as f64 / 1024.0)
    }

    /// The largest data directory, in MiB.
    pub fn disk_mib(&self) -> Option<f64> {
        self.data_dirs
            .iter()
            .map(|d| dir_bytes(d))
            .max()
            .map(|b| b as f64 / (1024.0 * 1024.0))
    }
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_kib(&text, field)
}

fn parse_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn dir_bytes(d: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(d) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_in_kib() {
        let s = "Name:\tetcd\nVmPeak:\t  900 kB\nVmHWM:\t  123456 kB\nVmRSS:\t 100 kB\n";
        assert_eq!(parse_kib(s, "VmHWM:"), Some(123456));
        assert_eq!(parse_kib(s, "VmSwap:"), None);
    }

    #[test]
    fn the_peak_of_this_process_is_read() {
        let me = Servers {
            pids: vec![std::process::id()],
            data_dirs: vec![],
        };
        me.reset_peaks();
        assert!(me.peak_rss_mib().is_some_and(|m| m > 0.0));
    }
}
