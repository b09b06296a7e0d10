//! N concurrent clients sharing a bounded number of operations: each takes the next
//! operation number until `total` is reached or the deadline passes.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::kv::hist::Latencies;

/// What a run measured.
pub struct Outcome {
    pub latencies: Latencies,
    pub elapsed: Duration,
    pub errors: u64,
    /// The first error seen, to tell what failed.
    pub first_error: Option<String>,
}

impl Outcome {
    pub fn ops_per_sec(&self) -> f64 {
        self.latencies.count() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs `op(client, n)` for n in 0..total over `clients` tasks; a failed operation counts
/// as an error and is not retried.
pub async fn drive<F, Fut>(
    clients: usize,
    total: u64,
    deadline: tokio::time::Instant,
    op: F,
) -> Outcome
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let op = Arc::new(op);
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients.max(1))
        .map(|c| {
            let (next, op) = (next.clone(), op.clone());
            tokio::spawn(async move {
                let mut lat = Latencies::default();
                let mut errors = 0u64;
                let mut first_error = None;
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= total || tokio::time::Instant::now() >= deadline {
                        break;
                    }
                    let began = Instant::now();
                    match op(c, n).await {
                        Ok(()) => lat.record(began.elapsed()),
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert(e);
                        }
                    }
                }
                (lat, errors, first_error)
            })
        })
        .collect();
    let mut out = Outcome {
        latencies: Latencies::default(),
        elapsed: Duration::ZERO,
        errors: 0,
        first_error: None,
    };
    for t in tasks {
        match t.await {
            Ok((lat, errors, first)) => {
                out.latencies.merge(&lat);
                out.errors += errors;
                if out.first_error.is_none() {
                    out.first_error = first;
                }
            }
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert(e.to_string());
            }
        }
    }
    out.elapsed = start.elapsed();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_operation_runs_once_and_errors_are_counted() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = seen.clone();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let out = drive(4, 100, deadline, move |_, n| {
            let s = s.clone();
            async move {
                s.lock().unwrap().push(n);
                if n % 10 == 0 {
                    Err(format!("op {n}"))
                } else {
                    Ok(())
                }
            }
        })
        .await;
        let mut seen = seen.lock().unwrap().clone();
        seen.sort();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        assert_eq!((out.latencies.count(), out.errors), (90, 10));
        assert!(out.first_error.is_some());
    }
}
