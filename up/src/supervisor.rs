//! The children of `flotilla up`: started in tiers (kvstore, apiservers, schedulers and
//! controller-managers, agents), stopped tier by tier in reverse, every process of a tier
//! at once, so stopping a cluster takes about as long as its slowest component rather
//! than the sum of all of them.
//!
//! Contract: no child outlives the supervisor. Each child is started with
//! [`SUPERVISOR_ENV`] naming this process; [`die_with_supervisor`], called first thing in
//! the child, asks the kernel for SIGTERM when its parent dies (`PR_SET_PDEATHSIG`), so a
//! supervisor killed with SIGKILL takes its kvstore members, apiservers and agents with
//! it instead of leaving them holding the ports. Children get their own process group, so
//! a Ctrl-C in the terminal reaches the supervisor alone, which stops them in order.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// Set in a child's environment to the supervisor's pid.
pub const SUPERVISOR_ENV: &str = "FLOTILLA_SUPERVISOR_PID";

/// Called at the start of every component: when started by `flotilla up`, die with it.
/// Exits at once when the supervisor is already gone (it died between fork and here).
pub fn die_with_supervisor() {
    let Some(want) = std::env::var_os(SUPERVISOR_ENV) else {
        return;
    };
    // Not inherited further: the agent's own children (container shims) must outlive it.
    std::env::remove_var(SUPERVISOR_ENV);
    if rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM))
        .is_err()
    {
        return;
    }
    let parent = rustix::process::Pid::as_raw(rustix::process::getppid());
    if want.to_str() != Some(parent.to_string().as_str()) {
        std::process::exit(1);
    }
}

/// The order components start in; they stop in the reverse order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    Kvstore,
    Apiserver,
    Controllers,
    Agents,
}

impl Tier {
    fn describe(self) -> &'static str {
        match self {
            Tier::Kvstore => "kvstore members",
            Tier::Apiserver => "apiservers",
            Tier::Controllers => "schedulers and controller-managers",
            Tier::Agents => "agents and their pods",
        }
    }
}

pub struct Proc {
    pub name: String,
    pub tier: Tier,
    pub child: Child,
    pub log: PathBuf,
}

#[derive(Default)]
pub struct Procs(pub Vec<Proc>);

impl Procs {
    pub fn spawn(
        &mut self,
        tier: Tier,
        name: &str,
        logs: &Path,
        args: &[String],
    ) -> anyhow::Result<()> {
        let log = logs.join(format!("{name}.log"));
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        let child = command(args)?
            .stdout(f.try_clone()?)
            .stderr(f)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        self.0.push(Proc {
            name: name.to_string(),
            tier,
            child,
            log,
        });
        Ok(())
    }

    /// As [`Procs::spawn`], with the child's output on this process's standard output,
    /// each line after `<name> | ` (a container's log, where one process runs several
    /// components).
    pub fn spawn_prefixed(
        &mut self,
        tier: Tier,
        name: &str,
        args: &[String],
    ) -> anyhow::Result<()> {
        let mut child = command(args)?
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let out = child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn std::io::Read + Send>);
        let err = child
            .stderr
            .take()
            .map(|e| Box::new(e) as Box<dyn std::io::Read + Send>);
        for stream in [out, err].into_iter().flatten() {
            let prefix = format!("{name} | ");
            std::thread::spawn(move || {
                use std::io::{BufRead, Write};
                for line in std::io::BufReader::new(stream).split(b'\n') {
                    let Ok(line) = line else { break };
                    let mut o = std::io::stdout().lock();
                    let _ = o.write_all(prefix.as_bytes());
                    let _ = o.write_all(&line);
                    let _ = o.write_all(b"\n");
                }
            });
        }
        self.0.push(Proc {
            name: name.to_string(),
            tier,
            child,
            log: PathBuf::new(),
        });
        Ok(())
    }

    /// The first child that has exited, with its status.
    pub fn exited(&mut self) -> Option<(String, PathBuf, std::process::ExitStatus)> {
        for p in &mut self.0 {
            if let Ok(Some(st)) = p.child.try_wait() {
                return Some((p.name.clone(), p.log.clone(), st));
            }
        }
        None
    }

    /// Stops every child: tier by tier from the last, SIGTERM to the whole tier at once,
    /// SIGKILL to whatever of it still runs after `grace`. `progress` hears each tier
    /// before (with its size) and after (with how long it took).
    pub fn stop(
        &mut self,
        grace: Duration,
        mut progress: impl FnMut(&str, usize, Option<Duration>),
    ) {
        while let Some(tier) = self.0.iter().map(|p| p.tier).max() {
            let (mut batch, rest): (Vec<Proc>, Vec<Proc>) = std::mem::take(&mut self.0)
                .into_iter()
                .partition(|p| p.tier == tier);
            self.0 = rest;
            progress(tier.describe(), batch.len(), None);
            let started = Instant::now();
            for p in &mut batch {
                if let Ok(None) = p.child.try_wait() {
                    let pid = rustix::process::Pid::from_child(&p.child);
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
                }
            }
            let deadline = started + grace;
            loop {
                batch.retain_mut(|p| !matches!(p.child.try_wait(), Ok(Some(_)) | Err(_)));
                if batch.is_empty() {
                    break;
                }
                if Instant::now() >= deadline {
                    for p in &mut batch {
                        let _ = p.child.kill();
                        let _ = p.child.wait();
                    }
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            progress(tier.describe(), 0, Some(started.elapsed()));
        }
    }
}

/// This binary with `args`, dying with this process, in a process group of its own.
fn command(args: &[String]) -> anyhow::Result<Command> {
    let mut c = Command::new(std::env::current_exe()?);
    c.args(args)
        .env(SUPERVISOR_ENV, std::process::id().to_string())
        .stdin(Stdio::null())
        .process_group(0);
    Ok(c)
}

impl Drop for Procs {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10), |_, _, _| {});
    }
}
