//! `flotilla deploy lb`: the apiservers' front, a TCP load balancer (layer 4, as haproxy
//! in `mode tcp` in front of kubeadm's masters). TLS goes through it untouched: clients
//! verify the apiserver's certificate (which names the front) and authenticate to the
//! apiserver itself, so the front holds no key and no token and can decide nothing about
//! a request.
//!
//! Contract:
//! - a connection goes to an apiserver whose `/readyz` answered "ok" last (round robin);
//!   `/readyz` fails when that apiserver cannot read the kvstore linearizably, so an
//!   apiserver cut off from the kvstore's quorum stops getting clients within about
//!   [`FALL`] checks;
//! - when an apiserver is marked down, the connections to it are closed (haproxy's
//!   `on-marked-down shutdown-sessions`): clients, watches above all, reconnect to one that
//!   answers instead of waiting on one that cannot;
//! - when none is up, connections still go to any that accepts (the checks may be what
//!   fails), trying each in turn;
//! - at most `--max-connections` at once; one more is closed as soon as it is accepted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(clap::Args, Debug, Clone)]
pub struct LbFlags {
    /// The front's directory as `flotilla deploy init` wrote it (the deployment's shape,
    /// the cluster CA).
    #[arg(long, default_value = "/cluster")]
    pub cluster_dir: PathBuf,
    /// Where clients connect.
    #[arg(long, default_value = "0.0.0.0:6443")]
    pub listen: SocketAddr,
    /// How often each apiserver's /readyz is asked.
    #[arg(long, default_value = "1s", value_parser = flotilla_core::duration::parse_duration)]
    pub check_interval: Duration,
    /// Connections served at once.
    #[arg(long, default_value_t = 10_000)]
    pub max_connections: usize,
}

/// Failed checks in a row that mark an apiserver down; one success marks it up.
const FALL: u32 = 2;
/// How long one check may take (the apiserver's own kvstore check waits 2 s).
const CHECK_TIMEOUT: Duration = Duration::from_millis(2_500);
/// How long connecting to an apiserver may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

struct Backend {
    addr: SocketAddr,
    /// Whether its last checks passed.
    up: watch::Sender<bool>,
}

/// The order to try backends in for the `n`th connection: the ones up from `n` on round
/// robin, then the ones down (a last resort). Pure.
pub fn order(up: &[bool], n: usize) -> Vec<usize> {
    let len = up.len();
    if len == 0 {
        return Vec::new();
    }
    let rotated = (0..len).map(|i| (n % len + i) % len);
    let (mut first, rest): (Vec<usize>, Vec<usize>) = rotated.partition(|&i| up[i]);
    first.extend(rest);
    first
}

pub async fn run(
    flags: LbFlags,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let topology = super::layout::read_topology(&flags.cluster_dir)?;
    if flags.max_connections == 0 {
        anyhow::bail!("--max-connections must be at least 1");
    }
    let ca = flags.cluster_dir.join("ca.crt");
    let backends: Arc<Vec<Backend>> = Arc::new(
        topology
            .apiservers()
            .into_iter()
            .map(|addr| Backend {
                addr,
                // Down until its first check passes.
                up: watch::channel(false).0,
            })
            .collect(),
    );
    for (i, b) in backends.iter().enumerate() {
        // Anonymous: kube allows /readyz to anyone.
        let client = super::probe::client(b.addr, &ca, None, CHECK_TIMEOUT).await?;
        tokio::spawn(check(backends.clone(), i, client, flags.check_interval));
    }
    let listener = TcpListener::bind(flags.listen)
        .await
        .with_context(|| format!("binding {}", flags.listen))?;
    println!(
        "front listening on {}, in front of {}",
        flags.listen,
        backends
            .iter()
            .map(|b| b.addr.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let slots = Arc::new(tokio::sync::Semaphore::new(flags.max_connections));
    let next = AtomicUsize::new(0);
    loop {
        let (conn, _) = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return Ok(()),
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, say: wait rather than spin.
                    eprintln!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let up: Vec<bool> = backends.iter().map(|b| *b.up.borrow()).collect();
        let tries = order(&up, next.fetch_add(1, Ordering::Relaxed));
        let backends = backends.clone();
        tokio::spawn(async move {
            let _permit = permit;
            splice(conn, &backends, &tries).await;
        });
    }
}

/// Connects `conn` to the first of `tries` that accepts, until either side closes or that
/// backend is marked down.
async fn splice(mut conn: TcpStream, backends: &[Backend], tries: &[usize]) {
    let _ = conn.set_nodelay(true);
    for &i in tries {
        let b = &backends[i];
        let mut down = b.up.subscribe();
        let was_up = *down.borrow_and_update();
        let Ok(Ok(mut upstream)) =
            tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(b.addr)).await
        else {
            continue;
        };
        let _ = upstream.set_nodelay(true);
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream) => {}
            // A connection made to a backend already down (the last resort) stays.
            _ = down.wait_for(|up| !*up), if was_up => {}
        }
        return;
    }
}

/// Asks backend `i`'s /readyz every `interval`; marks it down after [`FALL`] failures in a
/// row and up after one success, saying so.
async fn check(backends: Arc<Vec<Backend>>, i: usize, client: kube::Client, interval: Duration) {
    let b = &backends[i];
    let mut failed = 0u32;
    loop {
        let ok = tokio::time::timeout(CHECK_TIMEOUT, super::probe::get(&client, "/readyz"))
            .await
            .is_ok_and(|r| r.is_ok_and(|t| t.trim() == "ok"));
        failed = if ok { 0 } else { failed.saturating_add(1) };
        let was_up = *b.up.borrow();
        let now_up = ok || (was_up && failed < FALL);
        let changed =
            b.up.send_if_modified(|up| std::mem::replace(up, now_up) != now_up);
        if changed {
            println!(
                "apiserver {} is {}",
                b.addr,
                if now_up {
                    "up"
                } else {
                    "down: its connections are closed"
                }
            );
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_up_first_round_robin_then_the_rest() {
        assert_eq!(order(&[true, true, true], 0), [0, 1, 2]);
        assert_eq!(order(&[true, true, true], 4), [1, 2, 0]);
        assert_eq!(order(&[true, false, true], 1), [2, 0, 1]);
        assert_eq!(order(&[false, false], 7), [1, 0]);
        assert!(order(&[], 3).is_empty());
    }
}
