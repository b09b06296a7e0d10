//! `flotilla agent-shim`: the supervisor of one container of the process runtime, a process
//! of its own so that containers outlive an agent restart and their exit is still recorded.
//!
//! It starts the container's command in a new process group (the group the agent signals),
//! writes `pid` (the group's id and the start time), copies stdout and stderr into the log
//! file in the CRI format (`<RFC 3339 time> <stream> F <line>`), rotated at
//! `--log-max-size` keeping `--log-max-files` (`logfile.rs`), waits, and writes `exit`
//! (the exit code, 128+signal when killed, and the finish time). A command that cannot be
//! started gets `exit` with code 128 and the reason, as containerd reports a StartError.
//! With `--cgroup`, the command runs inside those cgroups (through `agent-exec`, see
//! `runtime/cgroup.rs`).

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct ShimArgs {
    /// The container's state directory (pid and exit files).
    #[arg(long)]
    pub dir: PathBuf,
    /// The container's log file.
    #[arg(long)]
    pub log: PathBuf,
    /// Rotate the log before it grows past this many bytes (0: never).
    #[arg(long, default_value_t = 0)]
    pub log_max_size: u64,
    /// Log files kept, the current one included (at least 2).
    #[arg(long, default_value_t = 5)]
    pub log_max_files: u32,
    /// Working directory of the command.
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// A cgroup directory the command joins before it runs (repeated per hierarchy).
    #[arg(long)]
    pub cgroup: Vec<PathBuf>,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// Writes `contents` to `dir/name` so readers never see half a file.
pub fn write_atomic(dir: &Path, name: &str, contents: &str) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, dir.join(name))
}

pub fn run(args: ShimArgs) -> i32 {
    let log = match crate::logfile::Rotating::open(&args.log, args.log_max_size, args.log_max_files)
    {
        Ok(f) => Arc::new(Mutex::new(f)),
        Err(e) => {
            let _ = write_exit(
                &args.dir,
                128,
                &format!("opening log {}: {e}", args.log.display()),
            );
            return 1;
        }
    };
    let mut cmd = if args.cgroup.is_empty() {
        let mut c = Command::new(&args.command[0]);
        c.args(&args.command[1..]);
        c
    } else {
        if !executable(&args.command[0], args.workdir.as_deref()) {
            let msg = format!("exec: {:?}: executable file not found", args.command[0]);
            let _ = write_exit(&args.dir, 128, &msg);
            return 0;
        }
        let me = std::env::current_exe().unwrap_or_else(|_| "/proc/self/exe".into());
        let mut c = Command::new(me);
        c.arg("agent-exec");
        for d in &args.cgroup {
            c.arg("--cgroup").arg(d);
        }
        c.arg("--").args(&args.command);
        c
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(wd) = &args.workdir {
        cmd.current_dir(wd);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let msg = format!(
                "exec: {:?}: {}",
                args.command[0],
                match e.kind() {
                    std::io::ErrorKind::NotFound => "executable file not found".to_string(),
                    _ => e.to_string(),
                }
            );
            let _ = write_exit(&args.dir, 128, &msg);
            return 0;
        }
    };
    let started = jiff::Timestamp::now();
    if write_atomic(&args.dir, "pid", &format!("{}\n{started}\n", child.id())).is_err() {
        let _ = child.kill();
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let mut copiers = 0;
    if let Some(out) = child.stdout.take() {
        copiers += 1;
        spawn_copier(out, "stdout", log.clone(), tx.clone());
    }
    if let Some(err) = child.stderr.take() {
        copiers += 1;
        spawn_copier(err, "stderr", log.clone(), tx.clone());
    }
    let code = match child.wait() {
        Ok(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)),
        Err(_) => 255,
    };
    // Output still in the pipes is copied; a process the command left behind holding them
    // open does not keep the exit from being recorded.
    for _ in 0..copiers {
        if rx.recv_timeout(Duration::from_secs(2)).is_err() {
            break;
        }
    }
    let _ = write_exit(&args.dir, code, "");
    0
}

/// `flotilla agent-exec`: what the shim starts instead of the command when the container
/// has cgroups. It moves itself into them and then becomes the command (exec), so the
/// command's every allocation and thread counts against the container's limits and
/// nothing of the shim does.
#[derive(clap::Args, Debug)]
pub struct ExecArgs {
    /// A cgroup directory to join (one per hierarchy).
    #[arg(long)]
    pub cgroup: Vec<PathBuf>,
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

pub fn exec(args: ExecArgs) -> i32 {
    for d in &args.cgroup {
        if let Err(e) = std::fs::write(d.join("cgroup.procs"), "0") {
            eprintln!("joining cgroup {}: {e}", d.display());
            return 128;
        }
    }
    let e = Command::new(&args.command[0])
        .args(&args.command[1..])
        .exec();
    eprintln!("exec: {:?}: {e}", args.command[0]);
    128
}

/// Whether `cmd` names an executable file, directly (a relative path from the working
/// directory the command will have) or through `PATH`, as exec finds it.
fn executable(cmd: &str, workdir: Option<&Path>) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if cmd.contains('/') {
        return match workdir {
            Some(wd) if Path::new(cmd).is_relative() => is_exec(&wd.join(cmd)),
            _ => is_exec(Path::new(cmd)),
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path).any(|d| is_exec(&d.join(cmd)))
}

fn write_exit(dir: &Path, code: i32, message: &str) -> std::io::Result<()> {
    write_atomic(
        dir,
        "exit",
        &format!("{code}\n{}\n{message}", jiff::Timestamp::now()),
    )
}

fn spawn_copier<R: Read + Send + 'static>(
    src: R,
    stream: &'static str,
    log: Arc<Mutex<crate::logfile::Rotating>>,
    done: std::sync::mpsc::Sender<()>,
) {
    std::thread::spawn(move || {
        let mut r = BufReader::new(src);
        let mut line = Vec::new();
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                    }
                    let mut rec =
                        format!("{} {stream} F ", cri_time(jiff::Timestamp::now())).into_bytes();
                    rec.extend_from_slice(&line);
                    rec.push(b'\n');
                    let mut f = log.lock().unwrap_or_else(|e| e.into_inner());
                    let _ = f.write_record(&rec);
                }
            }
        }
        let _ = done.send(());
    });
}

/// RFC 3339 with nanoseconds, as the CRI log format writes times.
pub fn cri_time(t: jiff::Timestamp) -> String {
    format!("{t:.9}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_found_as_exec_finds_them() {
        assert!(executable("sh", None));
        assert!(executable("/bin/sh", None));
        assert!(!executable("no-such-command-here", None));
        assert!(executable("./sh", Some(Path::new("/bin"))));
        assert!(!executable("./sh", Some(Path::new("/nonexistent"))));
        // A directory is not a program.
        assert!(!executable("/bin", None));
    }
}
