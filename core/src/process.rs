//! The process metrics every Prometheus client library exports (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_start_time_seconds`, `process_open_fds`),
//! computed from the texts of Linux's `/proc/self/stat`, `/proc/self/status` and
//! `/proc/stat`, which the caller reads.

use std::fmt::Write;

/// Linux reports process times in USER_HZ ticks, 100 per second on every architecture it
/// exposes to user space this way.
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessSample {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub start_time_seconds: f64,
    pub open_fds: u64,
}

/// The sample from `/proc/self/stat` (`self_stat`), `/proc/self/status` (`self_status`),
/// `/proc/stat` (`machine_stat`, for the boot time) and the number of open descriptors;
/// `None` when a text lacks what it should hold.
pub fn sample(
    self_stat: &str,
    self_status: &str,
    machine_stat: &str,
    open_fds: u64,
) -> Option<ProcessSample> {
    // The command name (field 2) may hold spaces and parentheses: fields start after the
    // last ')'. Field 3 (state) is index 0, so field n is index n - 3.
    let (_, rest) = self_stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let num = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    let (utime, stime, start) = (num(14)?, num(15)?, num(22)?);
    let rss_kb: u64 = self_status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let btime: u64 = machine_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(ProcessSample {
        cpu_seconds: utime.saturating_add(stime) as f64 / TICKS_PER_SECOND,
        resident_bytes: rss_kb.saturating_mul(1024),
        start_time_seconds: btime as f64 + start as f64 / TICKS_PER_SECOND,
        open_fds,
    })
}

/// The exposition of `s`, with the client libraries' help texts.
pub fn render(out: &mut String, s: &ProcessSample) {
    for (name, kind, help, value) in [
        (
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            s.cpu_seconds.to_string(),
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            s.resident_bytes.to_string(),
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            s.start_time_seconds.to_string(),
        ),
        (
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            s.open_fds.to_string(),
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_from_recorded_proc_files() {
        // A command name with a space and a ')' in it.
        let stat = "4242 (my (cmd) x) S 1 4242 4242 0 -1 4194560 2000 0 0 0 250 50 0 0 20 0 8 0 \
                    12345 100000000 2500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let status = "Name:\tx\nVmPeak:\t  9999 kB\nVmRSS:\t   10000 kB\nThreads:\t8\n";
        let machine = "cpu  1 2 3 4\nbtime 1700000000\nprocesses 5\n";
        let s = sample(stat, status, machine, 12).unwrap();
        assert_eq!(s.cpu_seconds, 3.0, "250 + 50 ticks");
        assert_eq!(s.resident_bytes, 10_240_000);
        assert!(
            (s.start_time_seconds - 1_700_000_123.45).abs() < 1e-3,
            "{s:?}"
        );
        assert_eq!(s.open_fds, 12);
        let mut out = String::new();
        render(&mut out, &s);
        assert!(out.contains("\nprocess_cpu_seconds_total 3\n"), "{out}");
        assert!(out.contains("# TYPE process_resident_memory_bytes gauge\n"));
        assert!(out.ends_with("process_open_fds 12\n"));
        assert_eq!(sample("garbage", status, machine, 0), None);
        assert_eq!(sample(stat, "", machine, 0), None);
    }
}
