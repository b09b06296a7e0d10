//! What the apiserver benchmarks share: sizes from the environment and one markdown row
//! of a latency table (throughput, p50, p90, p99, max).

use std::time::Duration;

pub fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

pub fn row(name: &str, n: usize, elapsed: Duration, mut lat: Vec<Duration>) {
    lat.sort();
    println!(
        "| {name} | {n} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} |",
        n as f64 / elapsed.as_secs_f64(),
        pct(&lat, 0.5),
        pct(&lat, 0.9),
        pct(&lat, 0.99),
        pct(&lat, 1.0)
    );
}
