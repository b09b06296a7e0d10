//! Resource limits of the process runtime's containers: one cgroup per container under
//! `flotilla/<owner>/` at the root of the hierarchy (`owner` tells the runtimes of several
//! agents on one machine apart) (as the kubelet's `kubepods`, so containers
//! outlive a restart of the agent's own service), with cgroup v2 or the v1 `memory` and
//! `cpu` controllers, whichever the machine mounts. A machine where neither is writable
//! runs containers without limits (the agent says so once).
//!
//! The shim moves the command into the container's cgroups between fork and exec, so
//! nothing of it runs outside its limits. A container killed by the kernel's OOM killer
//! is told by the cgroup's `oom_kill` counter.

use std::path::{Path, PathBuf};

/// The limits of one container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub cpu_millis: Option<i64>,
    pub memory_bytes: Option<i64>,
}

/// The CFS period the CPU quota is counted in (the kubelet's).
const CPU_PERIOD_US: i64 = 100_000;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Layout {
    /// cgroup v2: one hierarchy.
    V2 { root: PathBuf },
    /// cgroup v1: the memory and cpu controllers' hierarchies, and cpuacct's (for usage)
    /// where it is mounted apart from cpu.
    V1 {
        memory: PathBuf,
        cpu: PathBuf,
        cpuacct: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroups {
    layout: Layout,
}

/// The files to write, relative to the container's cgroup of each hierarchy, in order:
/// `(hierarchy index, file, value)`; index 0 is memory (or the v2 hierarchy), 1 is cpu.
fn limit_files(v2: bool, l: &Limits) -> Vec<(usize, &'static str, String)> {
    let mut out = Vec::new();
    let quota = l
        .cpu_millis
        .filter(|m| *m > 0)
        .map(|m| (m.saturating_mul(CPU_PERIOD_US) / 1000).max(1000));
    let memory = l.memory_bytes.filter(|b| *b > 0);
    if v2 {
        if let Some(b) = memory {
            out.push((0, "memory.max", b.to_string()));
            out.push((0, "memory.swap.max", "0".into()));
        }
        if let Some(q) = quota {
            out.push((0, "cpu.max", format!("{q} {CPU_PERIOD_US}")));
        }
    } else {
        if let Some(b) = memory {
            out.push((0, "memory.limit_in_bytes", b.to_string()));
        }
        if let Some(q) = quota {
            out.push((1, "cpu.cfs_period_us", CPU_PERIOD_US.to_string()));
            out.push((1, "cpu.cfs_quota_us", q.to_string()));
        }
    }
    out
}

/// Reads `oom_kill <n>` from a `memory.events` (v2) or `memory.oom_control` (v1) file.
fn oom_kills(text: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.strip_prefix("oom_kill "))
        .filter_map(|n| n.trim().parse().ok())
        .next()
        .unwrap_or(0)
}

impl Cgroups {
    /// The machine's cgroups under `/sys/fs/cgroup`, when they can be written.
    pub fn detect(owner: &str) -> Option<Cgroups> {
        Self::at(Path::new("/sys/fs/cgroup"), owner)
    }

    fn at(mount: &Path, owner: &str) -> Option<Cgroups> {
        let base = Path::new("flotilla").join(owner);
        let layout = if mount.join("cgroup.controllers").exists() {
            let root = mount.join(&base);
            std::fs::create_dir_all(&root).ok()?;
            // Every level down to the containers' parent hands on memory and cpu.
            for dir in [mount.to_path_buf(), mount.join("flotilla"), root.clone()] {
                std::fs::write(dir.join("cgroup.subtree_control"), "+memory +cpu").ok()?;
            }
            Layout::V2 { root }
        } else {
            let memory = mount.join("memory").join(&base);
            let cpu = mount.join("cpu").join(&base);
            std::fs::create_dir_all(&memory).ok()?;
            std::fs::create_dir_all(&cpu).ok()?;
            // cpuacct co-mounted with cpu (`cpu,cpuacct`, both names links to it) counts
            // in the cpu group; mounted alone, the container needs a group there too.
            let same = |a: &Path, b: &Path| {
                a.canonicalize()
                    .ok()
                    .is_some_and(|a| b.canonicalize().ok() == Some(a))
            };
            let cpuacct = Some(mount.join("cpuacct"))
                .filter(|m| m.is_dir() && !same(m, &mount.join("cpu")))
                .map(|m| m.join(&base))
                .filter(|d| std::fs::create_dir_all(d).is_ok());
            Layout::V1 {
                memory,
                cpu,
                cpuacct,
            }
        };
        Some(Cgroups { layout })
    }

    /// The container's cgroup directories, one per hierarchy.
    pub fn dirs(&self, id: &str) -> Vec<PathBuf> {
        match &self.layout {
            Layout::V2 { root } => vec![root.join(id)],
            Layout::V1 {
                memory,
                cpu,
                cpuacct,
            } => {
                let mut d = vec![memory.join(id), cpu.join(id)];
                d.extend(cpuacct.as_ref().map(|a| a.join(id)));
                d
            }
        }
    }

    /// The container's groups, to read its usage from.
    pub fn groups(&self, id: &str) -> crate::stats::cgroupfs::Groups {
        use crate::stats::cgroupfs::Groups;
        match &self.layout {
            Layout::V2 { root } => Groups::V2 {
                group: root.join(id),
            },
            Layout::V1 {
                memory,
                cpu,
                cpuacct,
            } => Groups::V1 {
                memory: memory.join(id),
                cpuacct: cpuacct.as_ref().unwrap_or(cpu).join(id),
            },
        }
    }

    /// Creates the container's cgroups with its limits; returns their directories (for the
    /// shim's `--cgroup`).
    pub fn create(&self, id: &str, limits: &Limits) -> std::io::Result<Vec<PathBuf>> {
        let dirs = self.dirs(id);
        for d in &dirs {
            std::fs::create_dir_all(d)?;
        }
        let v2 = matches!(self.layout, Layout::V2 { .. });
        for (i, file, value) in limit_files(v2, limits) {
            let path = dirs[i.min(dirs.len() - 1)].join(file);
            if let Err(e) = std::fs::write(&path, &value) {
                // Without swap the swap limit file is missing; that limit is moot then.
                if file == "memory.swap.max" && e.kind() == std::io::ErrorKind::NotFound {
                    continue;
                }
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("writing {value} to {}: {e}", path.display()),
                ));
            }
        }
        Ok(dirs)
    }

    /// Whether the kernel's OOM killer killed a process of the container.
    pub fn oom_killed(&self, id: &str) -> bool {
        let file = match &self.layout {
            Layout::V2 { root } => root.join(id).join("memory.events"),
            Layout::V1 { memory, .. } => memory.join(id).join("memory.oom_control"),
        };
        std::fs::read_to_string(file).is_ok_and(|t| oom_kills(&t) > 0)
    }

    /// Removes the container's cgroups (once nothing of it runs; otherwise they stay and
    /// the error is returned).
    pub fn remove(&self, id: &str) -> std::io::Result<()> {
        for d in self.dirs(id) {
            match std::fs::remove_dir(&d) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_become_the_files_of_each_version() {
        let l = Limits {
            cpu_millis: Some(250),
            memory_bytes: Some(64 << 20),
        };
        assert_eq!(
            limit_files(false, &l),
            vec![
                (0, "memory.limit_in_bytes", "67108864".to_string()),
                (1, "cpu.cfs_period_us", "100000".to_string()),
                (1, "cpu.cfs_quota_us", "25000".to_string()),
            ]
        );
        assert_eq!(
            limit_files(true, &l),
            vec![
                (0, "memory.max", "67108864".to_string()),
                (0, "memory.swap.max", "0".to_string()),
                (0, "cpu.max", "25000 100000".to_string()),
            ]
        );
        assert!(limit_files(false, &Limits::default()).is_empty());
        // A quota below 1 ms per period is what the kernel refuses; 1m cpu gets the least.
        let tiny = Limits {
            cpu_millis: Some(1),
            memory_bytes: None,
        };
        assert_eq!(limit_files(false, &tiny)[1].2, "1000");
    }

    #[test]
    fn oom_kills_are_read_from_either_file() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        let v2 = "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(oom_kills(v1), 2);
        assert_eq!(oom_kills(v2), 1);
        assert_eq!(oom_kills("oom_kill_disable 0\n"), 0);
    }

    #[test]
    fn a_separately_mounted_cpuacct_gets_a_group_to_count_usage_in() {
        let t = tempfile::tempdir().unwrap();
        for h in ["memory", "cpu", "cpuacct"] {
            std::fs::create_dir_all(t.path().join(h)).unwrap();
        }
        let cg = Cgroups::at(t.path(), "o").expect("layout");
        let dirs = cg.dirs("x");
        assert_eq!(dirs.len(), 3);
        assert_eq!(dirs[2], t.path().join("cpuacct/flotilla/o/x"));
        assert_eq!(
            cg.groups("x"),
            crate::stats::cgroupfs::Groups::V1 {
                memory: t.path().join("memory/flotilla/o/x"),
                cpuacct: t.path().join("cpuacct/flotilla/o/x"),
            }
        );
    }

    #[test]
    fn a_v1_layout_in_a_directory_creates_and_removes_per_container_groups() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("memory")).unwrap();
        std::fs::create_dir_all(t.path().join("cpu")).unwrap();
        let cg = Cgroups::at(t.path(), "0123abcd").expect("layout");
        assert!(t.path().join("memory/flotilla/0123abcd").is_dir());
        let dirs = cg
            .create(
                "u.c.app.0",
                &Limits {
                    cpu_millis: Some(500),
                    memory_bytes: Some(1 << 20),
                },
            )
            .unwrap();
        assert_eq!(dirs.len(), 2);
        let read = |d: &Path, f: &str| std::fs::read_to_string(d.join(f)).unwrap();
        assert_eq!(read(&dirs[0], "memory.limit_in_bytes"), "1048576");
        assert_eq!(read(&dirs[1], "cpu.cfs_quota_us"), "50000");
        // A real cgroup directory holds only kernel files; this one holds what was written.
        for d in &dirs {
            for e in std::fs::read_dir(d).unwrap() {
                std::fs::remove_file(e.unwrap().path()).unwrap();
            }
        }
        cg.remove("u.c.app.0").unwrap();
        assert!(!dirs[0].exists() && !dirs[1].exists());
        cg.remove("u.c.app.0").unwrap();
    }
}
