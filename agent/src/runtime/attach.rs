//! A command run in a container with the caller's streams attached (`kubectl exec`, the
//! kubelet's `/exec`): what a runtime hands back for the agent's port to splice onto a
//! WebSocket.
//!
//! Contract: `output` carries the command's stdout (1) and stderr (2), or the terminal (1)
//! with a tty, and ends when the command's output ends; `exit` then resolves to its exit
//! code. Dropping `stdin` closes the command's stdin. Dropping the whole session ends the
//! command's connection to the caller; the command itself may go on (as with the kubelet).

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::sync::mpsc;

use super::Result;

/// Which streams the caller attaches, and whether the command gets a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Streams {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// A terminal's size in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TermSize {
    pub width: u16,
    pub height: u16,
}

/// Which output stream a chunk came from.
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;

pub struct Session {
    /// The command's stdin, when attached; dropping it closes stdin.
    pub stdin: Option<mpsc::Sender<Bytes>>,
    /// The command's output as `(STDOUT | STDERR, bytes)`; ends with the output.
    pub output: mpsc::Receiver<(u8, Bytes)>,
    /// Terminal size changes, when the command has a terminal.
    pub resize: Option<mpsc::Sender<TermSize>>,
    /// The exit code, once the output has ended.
    pub exit: BoxFuture<'static, Result<i32>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("stdin", &self.stdin.is_some())
            .field("resize", &self.resize.is_some())
            .finish()
    }
}

/// A session over a child process started with piped stdin, stdout and stderr (the
/// process runtime's commands: no terminal).
pub fn from_child(mut child: tokio::process::Child) -> Session {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (out_tx, output) = mpsc::channel(16);
    let pipe = |r: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>, stream: u8| {
        let tx = out_tx.clone();
        tokio::spawn(async move {
            let Some(mut r) = r else { return };
            let mut buf = vec![0u8; 32 * 1024];
            while let Ok(n) = r.read(&mut buf).await {
                if n == 0
                    || tx
                        .send((stream, Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                {
                    break;
                }
            }
        })
    };
    let out = pipe(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        STDOUT,
    );
    let err = pipe(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        STDERR,
    );
    drop(out_tx);
    let stdin = child.stdin.take().map(|mut w| {
        let (tx, mut rx) = mpsc::channel::<Bytes>(16);
        tokio::spawn(async move {
            while let Some(b) = rx.recv().await {
                if w.write_all(&b).await.is_err() {
                    return;
                }
            }
            let _ = w.shutdown().await;
        });
        tx
    });
    let exit = Box::pin(async move {
        let _ = tokio::join!(out, err);
        let status = child.wait().await?;
        // Killed by a signal: the shell's 128 + signal.
        use std::os::unix::process::ExitStatusExt;
        Ok(status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(-1))
    });
    Session {
        stdin,
        output,
        resize: None,
        exit,
    }
}

/// Splits the Docker daemon's multiplexed output (an 8-byte header: the stream, three
/// zero bytes and the big-endian payload length; then the payload) into its frames.
#[derive(Debug, Default)]
pub struct Demux {
    buf: Vec<u8>,
}

impl Demux {
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole frame, if one has arrived.
    pub fn next_frame(&mut self) -> Option<(u8, Bytes)> {
        let header: [u8; 8] = self.buf.get(..8)?.try_into().ok()?;
        let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let end = len.checked_add(8)?;
        if self.buf.len() < end {
            return None;
        }
        let payload = Bytes::copy_from_slice(&self.buf[8..end]);
        self.buf.drain(..end);
        Some((header[0], payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demux_waits_for_whole_frames() {
        let mut d = Demux::default();
        d.push(&[1, 0, 0, 0, 0, 0, 0, 3, b'a']);
        assert_eq!(d.next_frame(), None);
        d.push(&[b'b', b'c', 2, 0, 0, 0, 0, 0, 0, 0, 2]);
        assert_eq!(d.next_frame(), Some((1, Bytes::from_static(b"abc"))));
        assert_eq!(d.next_frame(), Some((2, Bytes::new())));
        assert_eq!(d.next_frame(), None);
    }

    #[tokio::test]
    async fn a_child_gets_stdin_and_gives_both_outputs_and_its_code() {
        let child = tokio::process::Command::new("sh")
            .args(["-c", "cat; echo oops >&2; exit 3"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut s = from_child(child);
        let stdin = s.stdin.take().unwrap();
        stdin.send(Bytes::from_static(b"hello")).await.unwrap();
        drop(stdin);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        while let Some((stream, b)) = s.output.recv().await {
            if stream == STDOUT {
                out.extend_from_slice(&b)
            } else {
                err.extend_from_slice(&b)
            }
        }
        assert_eq!(out, b"hello");
        assert_eq!(err, b"oops\n");
        assert_eq!(s.exit.await.unwrap(), 3);
    }
}
