//! What the servers under load cost: peak resident memory of their processes (reset before
//! a workload through `/proc/<pid>/clear_refs`, read from `VmHWM`), the CPU time they and
//! this client used during it (`/proc/<pid>/stat`), and the size of their data directories.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct Servers {
    pub pids: Vec<u32>,
    pub data_dirs: Vec<PathBuf>,
    /// CPU ticks (servers, this client) when the measurement started.
    cpu_at_start: Mutex<Option<(u64, u64)>>,
}

/// The kernel's unit of `utime` and `stime` in `/proc/<pid>/stat` (USER_HZ, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

/// CPU seconds used during a measurement.
#[derive(Debug, Clone, Copy)]
pub struct CpuUse {
    /// By every server process together.
    pub servers: f64,
    /// By the load generator itself.
    pub client: f64,
}

impl Servers {
    pub fn new(pids: Vec<u32>, data_dirs: Vec<PathBuf>) -> Self {
        Servers {
            pids,
            data_dirs,
            cpu_at_start: Mutex::new(None),
        }
    }

    /// Starts a measurement: every server's peak RSS is set back to its current RSS, and
    /// the CPU time used so far is noted.
    pub fn reset_peaks(&self) {
        for pid in &self.pids {
            // "5" resets the peak resident set size (Linux 4.0+); needs to own the process.
            let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
        }
        if let Ok(mut start) = self.cpu_at_start.lock() {
            *start = self.cpu_ticks();
        }
    }

    /// (servers, client) CPU ticks so far; `None` if a server's could not be read.
    fn cpu_ticks(&self) -> Option<(u64, u64)> {
        let mut servers = 0u64;
        for pid in &self.pids {
            servers = servers.saturating_add(stat_cpu_ticks(&pid.to_string())?);
        }
        Some((servers, stat_cpu_ticks("self")?))
    }

    /// CPU time used since the last `reset_peaks`; `None` without server pids.
    pub fn cpu_use(&self) -> Option<CpuUse> {
        if self.pids.is_empty() {
            return None;
        }
        let start = (*self.cpu_at_start.lock().ok()?)?;
        let now = self.cpu_ticks()?;
        Some(CpuUse {
            servers: now.0.saturating_sub(start.0) as f64 / TICKS_PER_SEC,
            client: now.1.saturating_sub(start.1) as f64 / TICKS_PER_SEC,
        })
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

/// utime + stime of `/proc/<pid>/stat`, in ticks. The fields after the command name (which
/// may hold spaces and parentheses) are counted from its closing parenthesis.
fn stat_cpu_ticks(pid: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_cpu(&text)
}

fn parse_stat_cpu(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')?.checked_add(1)?..];
    // After the name: state is field 3, utime field 14, stime field 15.
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    utime.checked_add(stime)
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
        let me = Servers::new(vec![std::process::id()], vec![]);
        me.reset_peaks();
        assert!(me.peak_rss_mib().is_some_and(|m| m > 0.0));
        assert!(me.cpu_use().is_some());
    }

    #[test]
    fn cpu_ticks_are_utime_plus_stime_even_with_odd_names() {
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194304 100 0 0 0 250 31 0 0 20 0 9 0 1 2 3";
        assert_eq!(parse_stat_cpu(stat), Some(281));
        assert_eq!(parse_stat_cpu("42 (x) S 1"), None);
        assert_eq!(parse_stat_cpu("garbage"), None);
    }
}
