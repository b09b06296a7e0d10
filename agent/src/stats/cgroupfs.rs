//! Usage read from the kernel, as cAdvisor reads it for the kubelet: a container's CPU
//! time and memory from its cgroups (v1 `cpuacct` and `memory`, or v2's one group), the
//! node's from `/proc/stat` and `/proc/meminfo`. The working set is usage less inactive
//! file pages (kube's definition: what the kernel cannot drop under pressure, the figure
//! evictions and `kubectl top` use). Parsers are pure; the readers only open files.

use std::path::{Path, PathBuf};

use super::Usage;

/// The value of `key` in a `key value` file (`memory.stat`, `cpu.stat`).
fn stat_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn number(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// Usage from cgroup v1 files: `cpuacct.usage` (ns), `memory.usage_in_bytes`,
/// `memory.stat` (`total_inactive_file`, the hierarchy's, as cAdvisor takes it).
pub fn parse_v1(cpuacct_usage: &str, memory_usage: &str, memory_stat: &str) -> Option<Usage> {
    let memory = number(memory_usage)?;
    let inactive = stat_value(memory_stat, "total_inactive_file").unwrap_or(0);
    Some(Usage {
        cpu_ns: number(cpuacct_usage)?,
        memory_bytes: memory,
        working_set_bytes: memory.saturating_sub(inactive),
        rss_bytes: stat_value(memory_stat, "total_rss"),
    })
}

/// Usage from cgroup v2 files: `cpu.stat` (`usage_usec`), `memory.current`, `memory.stat`
/// (`inactive_file`, `anon`).
pub fn parse_v2(cpu_stat: &str, memory_current: &str, memory_stat: &str) -> Option<Usage> {
    let memory = number(memory_current)?;
    let inactive = stat_value(memory_stat, "inactive_file").unwrap_or(0);
    Some(Usage {
        cpu_ns: stat_value(cpu_stat, "usage_usec")?.saturating_mul(1000),
        memory_bytes: memory,
        working_set_bytes: memory.saturating_sub(inactive),
        rss_bytes: stat_value(memory_stat, "anon"),
    })
}

/// Where a process's cgroups are, from its `/proc/<pid>/cgroup`: the v2 group, or the v1
/// `memory` and `cpuacct` groups (each under the directory its hierarchy's controllers
/// name, as mounted under `/sys/fs/cgroup`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Groups {
    V1 { memory: PathBuf, cpuacct: PathBuf },
    V2 { group: PathBuf },
}

pub fn groups_of(proc_cgroup: &str, mount: &Path) -> Option<Groups> {
    let (mut memory, mut cpuacct, mut unified) = (None, None, None);
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let rel = path.trim_start_matches('/');
        if controllers.is_empty() {
            unified = Some(mount.join(rel));
        }
        for c in controllers.split(',') {
            match c {
                "memory" => memory = Some(mount.join(controllers).join(rel)),
                "cpuacct" => cpuacct = Some(mount.join(controllers).join(rel)),
                _ => {}
            }
        }
    }
    match (memory, cpuacct, unified) {
        (Some(memory), Some(cpuacct), _) => Some(Groups::V1 { memory, cpuacct }),
        (None, None, Some(group)) => Some(Groups::V2 { group }),
        _ => None,
    }
}

/// Reads a group's usage now.
pub fn read(groups: &Groups) -> Option<Usage> {
    let file = |p: &Path, f: &str| std::fs::read_to_string(p.join(f)).ok();
    match groups {
        Groups::V1 { memory, cpuacct } => parse_v1(
            &file(cpuacct, "cpuacct.usage")?,
            &file(memory, "memory.usage_in_bytes")?,
            &file(memory, "memory.stat").unwrap_or_default(),
        ),
        Groups::V2 { group } => parse_v2(
            &file(group, "cpu.stat")?,
            &file(group, "memory.current")?,
            &file(group, "memory.stat").unwrap_or_default(),
        ),
    }
}

/// The usage of process `pid`'s cgroups (a container's main process: the runtime put it
/// and all it starts there). `None` when it is gone or its groups cannot be read.
pub fn read_pid(pid: i32) -> Option<Usage> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    read(&groups_of(&text, Path::new("/sys/fs/cgroup"))?)
}

/// The clock ticks of `/proc/stat` per second (`USER_HZ`, 100 on every Linux ABI).
const USER_HZ: u64 = 100;

/// The node's CPU time from `/proc/stat`'s `cpu` line: user, nice, system, irq, softirq
/// and steal (not idle or iowait), in ns.
pub fn node_cpu_ns(proc_stat: &str) -> Option<u64> {
    let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let busy = [0usize, 1, 2, 5, 6, 7]
        .iter()
        .map(|i| f.get(*i).copied().unwrap_or(0))
        .fold(0u64, u64::saturating_add);
    Some(busy.saturating_mul(1_000_000_000 / USER_HZ))
}

/// The node's memory from `/proc/meminfo` (kB): usage is MemTotal − MemFree, the working
/// set that less `Inactive(file)`.
pub fn node_memory(meminfo: &str) -> Option<(u64, u64)> {
    let kb = |key: &str| -> Option<u64> {
        meminfo.lines().find_map(|l| {
            let rest = l.strip_prefix(key)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
    };
    let usage = kb("MemTotal")?
        .saturating_sub(kb("MemFree")?)
        .saturating_mul(1024);
    let inactive = kb("Inactive(file)").unwrap_or(0).saturating_mul(1024);
    Some((usage, usage.saturating_sub(inactive)))
}

/// The node's usage now.
pub fn read_node() -> Option<Usage> {
    let cpu_ns = node_cpu_ns(&std::fs::read_to_string("/proc/stat").ok()?)?;
    let (memory, ws) = node_memory(&std::fs::read_to_string("/proc/meminfo").ok()?)?;
    Some(Usage {
        cpu_ns,
        memory_bytes: memory,
        working_set_bytes: ws,
        rss_bytes: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_files_give_cpu_and_the_working_set() {
        let stat = "cache 4096\nrss 1000\ntotal_cache 8192\ntotal_rss 2097152\ntotal_inactive_file 1048576\ninactive_file 5\n";
        let u = parse_v1("123456789\n", "5242880\n", stat).unwrap();
        assert_eq!(
            u,
            Usage {
                cpu_ns: 123_456_789,
                memory_bytes: 5_242_880,
                working_set_bytes: 4_194_304,
                rss_bytes: Some(2_097_152),
            }
        );
        // Inactive file pages above usage (a racy read) floor at zero, never underflow.
        let u = parse_v1("1", "10", "total_inactive_file 20\n").unwrap();
        assert_eq!(u.working_set_bytes, 0);
        assert!(parse_v1("x", "10", "").is_none());
    }

    #[test]
    fn v2_files_give_cpu_in_ns_and_the_working_set() {
        let cpu = "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\nnr_periods 0\n";
        let mem = "anon 4096\nfile 8192\ninactive_file 3000\nactive_file 5192\n";
        let u = parse_v2(cpu, "16384\n", mem).unwrap();
        assert_eq!(u.cpu_ns, 2_500_000);
        assert_eq!((u.memory_bytes, u.working_set_bytes), (16_384, 13_384));
        assert_eq!(u.rss_bytes, Some(4096));
        assert!(
            parse_v2("user_usec 1\n", "1", "").is_none(),
            "no usage_usec"
        );
    }

    #[test]
    fn a_process_groups_are_found_in_either_layout() {
        let mount = Path::new("/sys/fs/cgroup");
        let v1 = "12:pids:/docker/abc\n4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n";
        assert_eq!(
            groups_of(v1, mount),
            Some(Groups::V1 {
                memory: mount.join("memory/docker/abc"),
                cpuacct: mount.join("cpu,cpuacct/docker/abc"),
            })
        );
        let split = "2:cpuacct:/flotilla/a/x\n1:cpu:/flotilla/a/x\n4:memory:/flotilla/a/x\n";
        assert_eq!(
            groups_of(split, mount),
            Some(Groups::V1 {
                memory: mount.join("memory/flotilla/a/x"),
                cpuacct: mount.join("cpuacct/flotilla/a/x"),
            })
        );
        let v2 = "0::/system.slice/docker-abc.scope\n";
        assert_eq!(
            groups_of(v2, mount),
            Some(Groups::V2 {
                group: mount.join("system.slice/docker-abc.scope")
            })
        );
        assert_eq!(groups_of("garbage", mount), None);
    }

    #[test]
    fn the_node_counts_busy_ticks_and_memory_less_inactive_file() {
        let stat = "cpu  100 20 30 1000 50 6 7 8 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        // user + nice + system + irq + softirq + steal = 100+20+30+6+7+8 ticks of 10 ms.
        assert_eq!(node_cpu_ns(stat), Some(171 * 10_000_000));
        let meminfo = "MemTotal:       1000 kB\nMemFree:         200 kB\nMemAvailable:    600 kB\nInactive(file):  300 kB\n";
        assert_eq!(node_memory(meminfo), Some((800 * 1024, 500 * 1024)));
        assert_eq!(node_memory("MemTotal: 5 kB\n"), None);
    }
}
