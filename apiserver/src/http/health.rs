//! `/livez`, `/readyz` and `/healthz`, as kube-apiserver answers them: "ok" when every
//! check passes, otherwise 500 with one `[+]name ok` / `[-]name failed` line per check;
//! `?verbose` lists the checks either way and `/readyz/<check>` runs one. The checks:
//! `ping` (the process serves), `etcd` (a linearizable read of the kvstore succeeds, so a
//! quorum answers), and for readiness `watch-cache` (the cache holds its first list).

use std::collections::HashMap;
use std::time::Duration;

use http::{Response, StatusCode};

use super::{full, Body, Shared};

/// How long the kvstore check waits for its read.
const ETCD_CHECK: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    Live,
    Ready,
}

impl Probe {
    fn path(self) -> &'static str {
        match self {
            Probe::Live => "livez",
            Probe::Ready => "readyz",
        }
    }
}

fn checks(probe: Probe) -> &'static [&'static str] {
    match probe {
        Probe::Live => &["ping", "etcd"],
        Probe::Ready => &["ping", "etcd", "watch-cache"],
    }
}

async fn run(shared: &Shared, check: &str) -> Result<(), String> {
    match check {
        "ping" => Ok(()),
        "etcd" => match tokio::time::timeout(ETCD_CHECK, shared.etcd.current_revision()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {ETCD_CHECK:?}")),
        },
        _ => match shared.store.cache.revision() {
            Some(_) => Ok(()),
            None => Err("not synced yet".into()),
        },
    }
}

/// Renders the probe's report from each check's outcome.
pub fn report(
    probe: Probe,
    results: &[(&str, Result<(), String>)],
    verbose: bool,
) -> (StatusCode, String) {
    let failed = results.iter().any(|(_, r)| r.is_err());
    if !failed && !verbose {
        return (StatusCode::OK, "ok".into());
    }
    let mut out = String::new();
    for (name, r) in results {
        match r {
            Ok(()) => out.push_str(&format!("[+]{name} ok\n")),
            // The reason goes to the log, not to whoever asks (kube-apiserver's way).
            Err(_) => out.push_str(&format!("[-]{name} failed: reason withheld\n")),
        }
    }
    if failed {
        out.push_str(&format!("{} check failed", probe.path()));
        (StatusCode::INTERNAL_SERVER_ERROR, out)
    } else {
        out.push_str(&format!("{} check passed", probe.path()));
        (StatusCode::OK, out)
    }
}

/// Answers `/<probe>[/<check>]`.
pub async fn serve(
    shared: &Shared,
    probe: Probe,
    path: &str,
    q: &HashMap<String, String>,
) -> Response<Body> {
    let one = path
        .trim_matches('/')
        .split('/')
        .nth(1)
        .filter(|c| !c.is_empty());
    let names: Vec<&str> = match one {
        Some(c) => checks(probe).iter().copied().filter(|n| *n == c).collect(),
        None => checks(probe).to_vec(),
    };
    let (code, text) = if names.is_empty() {
        (StatusCode::NOT_FOUND, "404 page not found".to_string())
    } else {
        let mut results = Vec::new();
        for n in names {
            let r = run(shared, n).await;
            if let Err(e) = &r {
                tracing::warn!(probe = probe.path(), check = n, error = %e, "health check failed");
            }
            results.push((n, r));
        }
        report(probe, &results, q.contains_key("verbose"))
    };
    Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header("x-content-type-options", "nosniff")
        .body(full(text))
        .unwrap_or_else(|_| Response::new(full("")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_as_kube_apiserver() {
        let ok = [("ping", Ok(())), ("etcd", Ok(()))];
        assert_eq!(
            report(Probe::Live, &ok, false),
            (StatusCode::OK, "ok".into())
        );
        assert_eq!(
            report(Probe::Live, &ok, true),
            (
                StatusCode::OK,
                "[+]ping ok\n[+]etcd ok\nlivez check passed".into()
            )
        );
        let bad = [("ping", Ok(())), ("etcd", Err("no quorum".to_string()))];
        assert_eq!(
            report(Probe::Ready, &bad, false),
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "[+]ping ok\n[-]etcd failed: reason withheld\nreadyz check failed".into()
            )
        );
    }
}
