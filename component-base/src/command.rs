//! Running a system command (`nft`, `ip`, `iptables`, `conntrack`): its input written,
//! its stdout returned, bounded in time (the child is killed past the limit) and every
//! failure an error naming the command with its stderr (at most 2000 bytes of it).
//! Nothing here retries: callers do, with backoff.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("running `{cmd}`: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Failed {
        cmd: String,
        status: String,
        stderr: String,
    },
    #[error("`{cmd}` did not finish within {secs} s")]
    Timeout { cmd: String, secs: u64 },
}

/// The most of a failed command's stderr kept in its error.
const STDERR_KEPT: usize = 2000;

/// Runs `prog args`, with `stdin` as its input when given; its stdout.
pub async fn run(
    prog: &str,
    args: &[&str],
    stdin: Option<&str>,
    timeout: Duration,
) -> Result<String, CommandError> {
    let cmd = || format!("{prog} {}", args.join(" "));
    let mut child = tokio::process::Command::new(prog)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| CommandError::Spawn { cmd: cmd(), source })?;
    let work = async {
        if let (Some(text), Some(mut w)) = (stdin, child.stdin.take()) {
            w.write_all(text.as_bytes())
                .await
                .map_err(|source| CommandError::Spawn { cmd: cmd(), source })?;
            drop(w);
        }
        child
            .wait_with_output()
            .await
            .map_err(|source| CommandError::Spawn { cmd: cmd(), source })
    };
    let out = tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| CommandError::Timeout {
            cmd: cmd(),
            secs: timeout.as_secs(),
        })??;
    if !out.status.success() {
        let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if stderr.len() > STDERR_KEPT {
            let mut n = STDERR_KEPT;
            while !stderr.is_char_boundary(n) {
                n -= 1;
            }
            stderr.truncate(n);
            stderr.push_str(" …");
        }
        return Err(CommandError::Failed {
            cmd: cmd(),
            status: out.status.to_string(),
            stderr,
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn output_failure_and_time_are_bounded() {
        let out = run("sh", &["-c", "cat"], Some("in"), Duration::from_secs(5)).await;
        assert_eq!(out.unwrap(), "in");
        let e = run(
            "sh",
            &["-c", "echo bad >&2; exit 2"],
            None,
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("bad"), "{e}");
        let e = run("sleep", &["5"], None, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(matches!(e, CommandError::Timeout { .. }), "{e}");
        let e = run("no-such-program-here", &[], None, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(e, CommandError::Spawn { .. }), "{e}");
    }
}
