//! Liveness, readiness and startup probes (exec, httpGet, tcpSocket) with the kubelet's
//! timing: first run after initialDelaySeconds from the container's start, then every
//! periodSeconds, each bounded by timeoutSeconds; the result flips only after
//! successThreshold successes or failureThreshold failures in a row. Liveness and
//! readiness wait until a startup probe has passed.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::runtime::Runtime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Liveness,
    Readiness,
    Startup,
}

#[derive(Debug)]
pub struct Prober {
    pub kind: Kind,
    probe: Probe,
    /// When it runs next; `None`: never (a delay past the end of time).
    next: Option<Instant>,
    successes: i32,
    failures: i32,
    /// The probe's verdict so far.
    pub ok: bool,
    /// The last failure's message, for the Unhealthy event.
    pub last_message: Option<String>,
}

fn secs(v: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(v.unwrap_or(default).max(0) as u64)
}

/// `t + d`, or `None` (never) past the end of time.
fn after(t: Instant, d: Duration) -> Option<Instant> {
    t.checked_add(d)
}

impl Prober {
    pub fn new(kind: Kind, probe: Probe, started: Instant) -> Prober {
        let ok = kind == Kind::Liveness;
        Prober {
            kind,
            next: after(started, secs(probe.initial_delay_seconds, 0)),
            probe,
            successes: 0,
            failures: 0,
            ok,
            last_message: None,
        }
    }

    pub fn due(&self, now: Instant) -> bool {
        self.next.is_some_and(|next| now >= next)
    }

    /// Records one run's outcome; returns true when the verdict changed.
    pub fn record(&mut self, outcome: Result<(), String>, now: Instant) -> bool {
        self.next = after(
            now,
            secs(self.probe.period_seconds, 10).max(Duration::from_secs(1)),
        );
        let before = self.ok;
        match outcome {
            Ok(()) => {
                self.failures = 0;
                self.successes = self.successes.saturating_add(1);
                if self.successes >= self.probe.success_threshold.unwrap_or(1).max(1) {
                    self.ok = true;
                }
            }
            Err(m) => {
                self.successes = 0;
                self.failures = self.failures.saturating_add(1);
                self.last_message = Some(m);
                if self.failures >= self.probe.failure_threshold.unwrap_or(3).max(1) {
                    self.ok = false;
                }
            }
        }
        before != self.ok
    }

    /// The probe has failed `failureThreshold` times in a row.
    pub fn failed_out(&self) -> bool {
        self.failures >= self.probe.failure_threshold.unwrap_or(3).max(1)
    }

    pub fn timeout(&self) -> Duration {
        secs(self.probe.timeout_seconds, 1).max(Duration::from_secs(1))
    }

    pub fn probe(&self) -> &Probe {
        &self.probe
    }
}

/// When the next of one container's probes runs: a startup probe until it has passed,
/// then the others (which wait for it). `None` when none ever runs again.
pub fn next_due(probers: &[Prober]) -> Option<Instant> {
    let startup = probers.iter().find(|p| p.kind == Kind::Startup);
    match startup {
        Some(p) if !p.ok => p.next,
        _ => probers
            .iter()
            .filter(|p| p.kind != Kind::Startup)
            .filter_map(|p| p.next)
            .min(),
    }
}

/// The probers a container's spec asks for.
pub fn probers(c: &Container, started: Instant) -> Vec<Prober> {
    let mut out = Vec::new();
    for (kind, p) in [
        (Kind::Startup, &c.startup_probe),
        (Kind::Liveness, &c.liveness_probe),
        (Kind::Readiness, &c.readiness_probe),
    ] {
        if let Some(p) = p {
            out.push(Prober::new(kind, p.clone(), started));
        }
    }
    out
}

fn port(c: &Container, p: &IntOrString) -> Result<u16, String> {
    match p {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port {n}")),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|cp| cp.name.as_deref() == Some(name.as_str()))
            .and_then(|cp| u16::try_from(cp.container_port).ok())
            .ok_or_else(|| format!("no port named {name:?} in the container")),
    }
}

/// Runs a probe once against container `id` at `pod_ip`.
pub async fn run(
    p: &Probe,
    c: &Container,
    id: &str,
    pod_ip: &str,
    runtime: &dyn Runtime,
    timeout: Duration,
) -> Result<(), String> {
    if let Some(e) = &p.exec {
        let cmd = e.command.clone().unwrap_or_default();
        let r = runtime
            .exec(id, &cmd, timeout)
            .await
            .map_err(|e| e.to_string())?;
        return if r.exit_code == 0 {
            Ok(())
        } else {
            Err(format!(
                "exec probe: command {cmd:?} exited with {}: {}",
                r.exit_code,
                r.output.trim()
            ))
        };
    }
    if let Some(h) = &p.http_get {
        let host = h.host.clone().unwrap_or_else(|| pod_ip.to_string());
        let port = port(c, &h.port)?;
        let path = h.path.clone().unwrap_or_else(|| "/".into());
        if h.scheme.as_deref() == Some("HTTPS") {
            return Err("HTTPS probes are not supported by this agent yet".into());
        }
        let fut = async {
            let mut s = tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| format!("Get \"http://{host}:{port}{path}\": {e}"))?;
            let mut req = format!(
                "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n"
            );
            for hdr in h.http_headers.iter().flatten() {
                req.push_str(&format!("{}: {}\r\n", hdr.name, hdr.value));
            }
            req.push_str("\r\n");
            s.write_all(req.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; 64];
            let mut n = 0;
            while n < 12 {
                let r = s.read(&mut buf[n..]).await.map_err(|e| e.to_string())?;
                if r == 0 {
                    break;
                }
                n += r;
            }
            let line = String::from_utf8_lossy(&buf[..n]).to_string();
            let code: u16 = line
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| format!("malformed HTTP response {line:?}"))?;
            if (200..400).contains(&code) {
                Ok(())
            } else {
                Err(format!("HTTP probe failed with statuscode: {code}"))
            }
        };
        return tokio::time::timeout(timeout, fut)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "Get \"http://{host}:{port}{path}\": context deadline exceeded"
                ))
            });
    }
    if let Some(t) = &p.tcp_socket {
        let host = t.host.clone().unwrap_or_else(|| pod_ip.to_string());
        let port = port(c, &t.port)?;
        return match tokio::time::timeout(
            timeout,
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("dial tcp {host}:{port}: {e}")),
            Err(_) => Err(format!("dial tcp {host}:{port}: i/o timeout")),
        };
    }
    Err("probe has no handler".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_and_periods() {
        let probe = Probe {
            initial_delay_seconds: Some(5),
            period_seconds: Some(2),
            failure_threshold: Some(2),
            success_threshold: Some(1),
            ..Default::default()
        };
        let t0 = Instant::now();
        let mut p = Prober::new(Kind::Readiness, probe.clone(), t0);
        assert!(!p.ok && !p.due(t0) && p.due(t0 + Duration::from_secs(5)));
        assert!(p.record(Ok(()), t0 + Duration::from_secs(5)));
        assert!(p.ok && !p.due(t0 + Duration::from_secs(6)));
        assert!(!p.record(Err("x".into()), t0 + Duration::from_secs(7)));
        assert!(p.ok, "one failure is under the threshold");
        assert!(p.record(Err("y".into()), t0 + Duration::from_secs(9)));
        assert!(!p.ok);
        assert_eq!(p.last_message.as_deref(), Some("y"));
        // Liveness starts out passing.
        assert!(Prober::new(Kind::Liveness, probe, t0).ok);
    }

    #[test]
    fn huge_probe_settings_do_not_overflow() {
        let probe = Probe {
            initial_delay_seconds: Some(i32::MAX),
            period_seconds: Some(i32::MAX),
            timeout_seconds: Some(i32::MAX),
            failure_threshold: Some(i32::MAX),
            success_threshold: Some(i32::MIN),
            ..Default::default()
        };
        let t0 = Instant::now();
        let mut p = Prober::new(Kind::Liveness, probe, t0);
        assert!(!p.due(t0 + Duration::from_secs(3600)));
        assert_eq!(p.timeout(), Duration::from_secs(i32::MAX as u64));
        p.record(Ok(()), t0);
        assert!(p.ok);
        // Counters saturate instead of overflowing after i32::MAX results in a row.
        p.failures = i32::MAX - 1;
        p.record(Err("x".into()), t0);
        p.record(Err("y".into()), t0);
        assert_eq!(p.failures, i32::MAX);
        assert!(!p.ok);
        p.successes = i32::MAX;
        p.record(Ok(()), t0);
        assert_eq!(p.successes, i32::MAX);
        assert!(p.ok);
        // A time past the end of time is never due.
        p.next = after(t0, Duration::MAX);
        assert_eq!(p.next, None);
        assert!(!p.due(t0 + Duration::from_secs(1 << 40)));
        assert_eq!(next_due(std::slice::from_ref(&p)), None);
        let mut neg = Prober::new(
            Kind::Readiness,
            Probe {
                initial_delay_seconds: Some(i32::MIN),
                period_seconds: Some(i32::MIN),
                timeout_seconds: Some(i32::MIN),
                ..Default::default()
            },
            t0,
        );
        assert!(neg.due(t0));
        neg.record(Ok(()), t0);
        assert!(
            neg.due(t0 + Duration::from_secs(1)),
            "a period under 1 s is 1 s"
        );
        assert_eq!(neg.timeout(), Duration::from_secs(1));
    }
}
