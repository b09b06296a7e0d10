//! A Prometheus histogram: cumulative bucket counts over fixed upper bounds, with the sum
//! and count of what was observed, and its text exposition (format 0.0.4).
//!
//! Contract: a bucket counts every observation at or below its bound, `+Inf` equals the
//! count, and counts saturate rather than wrap. The histogram is plain data: it does no
//! locking and no I/O; a caller shares it behind its own lock and serves the text.

use std::fmt::Write as _;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    bounds: &'static [f64],
    /// `buckets[i]`: observations `<= bounds[i]`.
    buckets: Vec<u64>,
    count: u64,
    sum: f64,
}

impl Histogram {
    /// An empty histogram over `bounds` (ascending upper bounds; `+Inf` is implied).
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: vec![0; bounds.len()],
            count: 0,
            sum: 0.0,
        }
    }

    pub fn observe(&mut self, v: f64) {
        for (b, n) in self.bounds.iter().zip(&mut self.buckets) {
            if v <= *b {
                *n = n.saturating_add(1);
            }
        }
        self.count = self.count.saturating_add(1);
        self.sum += v;
    }

    /// Observes a latency, in seconds.
    pub fn observe_duration(&mut self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    /// Adds `o`'s observations (a histogram over the same bounds) to this one.
    pub fn merge(&mut self, o: &Histogram) {
        debug_assert_eq!(self.bounds, o.bounds, "merging histograms of other buckets");
        for (a, b) in self.buckets.iter_mut().zip(&o.buckets) {
            *a = a.saturating_add(*b);
        }
        self.count = self.count.saturating_add(o.count);
        self.sum += o.sum;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// `(upper bound, observations at or below it)` for each finite bucket.
    pub fn buckets(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        self.bounds
            .iter()
            .copied()
            .zip(self.buckets.iter().copied())
    }

    /// The `# HELP` and `# TYPE` lines of histogram `name`.
    pub fn render_header(out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    }

    /// The `_bucket`, `_sum` and `_count` lines of `name` with `labels` (`k="v",...`, or
    /// empty for none).
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, n) in self.buckets() {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {n}");
        }
        let n = self.count;
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {n}");
        let braced = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braced} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braced} {n}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: &[f64] = &[0.005, 0.1, 1.0];

    #[test]
    fn cumulative_buckets_sum_and_count() {
        let mut h = Histogram::new(B);
        h.observe_duration(Duration::from_millis(3));
        h.observe(0.1);
        h.observe(7.0);
        let got: Vec<(f64, u64)> = h.buckets().collect();
        assert_eq!(got, [(0.005, 1), (0.1, 2), (1.0, 2)]);
        assert_eq!(h.count(), 3);
        assert!((h.sum() - 7.103).abs() < 1e-9);
    }

    #[test]
    fn exposition_with_and_without_labels() {
        let mut h = Histogram::new(B);
        h.observe(0.5);
        let mut out = String::new();
        Histogram::render_header(&mut out, "x_seconds", "Some latency.");
        h.render(&mut out, "x_seconds", "op=\"get\"");
        assert_eq!(
            out,
            "# HELP x_seconds Some latency.\n# TYPE x_seconds histogram\n\
             x_seconds_bucket{op=\"get\",le=\"0.005\"} 0\n\
             x_seconds_bucket{op=\"get\",le=\"0.1\"} 0\n\
             x_seconds_bucket{op=\"get\",le=\"1\"} 1\n\
             x_seconds_bucket{op=\"get\",le=\"+Inf\"} 1\n\
             x_seconds_sum{op=\"get\"} 0.5\n\
             x_seconds_count{op=\"get\"} 1\n"
        );
        let mut out = String::new();
        h.render(&mut out, "y", "");
        assert!(out.starts_with("y_bucket{le=\"0.005\"} 0\n"));
        assert!(out.ends_with("y_sum 0.5\ny_count 1\n"));
    }

    #[test]
    fn merging_adds_everything() {
        let (mut a, mut b) = (Histogram::new(B), Histogram::new(B));
        a.observe(0.001);
        b.observe(0.05);
        b.observe(2.0);
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(a.buckets().map(|(_, n)| n).collect::<Vec<_>>(), [1, 2, 2]);
    }
}
