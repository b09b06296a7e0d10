//! The member's metrics, with etcd's names so its dashboards and alerts apply
//! (`etcd_server_*`, `etcd_disk_*`, `etcd_network_peer_round_trip_time_seconds`,
//! `etcd_mvcc_db_total_size_in_bytes`), served on `--listen-metrics-urls` at `/metrics`
//! with `/health`, as etcd serves them.
//!
//! The disk and network histograms are observed where the work happens (the log's sync
//! thread, the state machine's batch write, each heartbeat or append to a peer) into one
//! process-wide [`Metrics`]; leadership and proposal gauges are read from Raft's own
//! metrics when the page is rendered.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use flotilla_core::histogram::Histogram;

/// etcd's disk buckets: 1 ms doubling 14 times (to about 8 s).
const DISK_BOUNDS: &[f64] = &[
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192,
];
/// etcd's peer round-trip buckets: 0.1 ms doubling 16 times (to about 3.3 s).
const RTT_BOUNDS: &[f64] = &[
    0.0001, 0.0002, 0.0004, 0.0008, 0.0016, 0.0032, 0.0064, 0.0128, 0.0256, 0.0512, 0.1024, 0.2048,
    0.4096, 0.8192, 1.6384, 3.2768,
];

/// What the member observes as it works.
pub struct Metrics {
    wal_fsync: Mutex<Histogram>,
    backend_commit: Mutex<Histogram>,
    /// Round trips of heartbeats, by peer member ID (hex in the label).
    peer_rtt: Mutex<BTreeMap<u64, Histogram>>,
    pub leader_changes: AtomicU64,
    pub proposals_pending: AtomicI64,
    pub proposals_failed: AtomicU64,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    wal_fsync: Mutex::new(Histogram::new(DISK_BOUNDS)),
    backend_commit: Mutex::new(Histogram::new(DISK_BOUNDS)),
    peer_rtt: Mutex::new(BTreeMap::new()),
    leader_changes: AtomicU64::new(0),
    proposals_pending: AtomicI64::new(0),
    proposals_failed: AtomicU64::new(0),
});

/// The process's metrics.
pub fn global() -> &'static Metrics {
    &METRICS
}

fn observe(h: &Mutex<Histogram>, d: Duration) {
    h.lock()
        .unwrap_or_else(|p| p.into_inner())
        .observe_duration(d);
}

impl Metrics {
    pub fn wal_fsync(&self, d: Duration) {
        observe(&self.wal_fsync, d);
    }
    pub fn backend_commit(&self, d: Duration) {
        observe(&self.backend_commit, d);
    }
    pub fn peer_round_trip(&self, to: u64, d: Duration) {
        self.peer_rtt
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(to)
            .or_insert_with(|| Histogram::new(RTT_BOUNDS))
            .observe_duration(d);
    }
}

/// What Raft says of this member when the page is rendered.
#[derive(Debug, Clone, Copy, Default)]
pub struct RaftView {
    pub has_leader: bool,
    pub is_leader: bool,
    /// Entries committed and applied (the applied index: openraft applies what it commits
    /// before it reports either).
    pub applied: u64,
    pub db_size: u64,
}

fn one(out: &mut String, name: &str, help: &str, kind: &str, v: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
    );
}

/// The text exposition of everything.
pub fn render(m: &Metrics, r: RaftView) -> String {
    let mut out = String::new();
    let o = &mut out;
    one(
        o,
        "etcd_server_has_leader",
        "Whether or not a leader exists. 1 is existence, 0 is not.",
        "gauge",
        u8::from(r.has_leader),
    );
    one(
        o,
        "etcd_server_is_leader",
        "Whether or not this member is a leader. 1 if is, 0 otherwise.",
        "gauge",
        u8::from(r.is_leader),
    );
    one(
        o,
        "etcd_server_leader_changes_seen_total",
        "The number of leader changes seen.",
        "counter",
        m.leader_changes.load(Ordering::Relaxed),
    );
    one(
        o,
        "etcd_server_proposals_committed_total",
        "The total number of consensus proposals committed.",
        "gauge",
        r.applied,
    );
    one(
        o,
        "etcd_server_proposals_applied_total",
        "The total number of consensus proposals applied.",
        "gauge",
        r.applied,
    );
    one(
        o,
        "etcd_server_proposals_pending",
        "The current number of pending proposals to commit.",
        "gauge",
        m.proposals_pending.load(Ordering::Relaxed).max(0),
    );
    one(
        o,
        "etcd_server_proposals_failed_total",
        "The total number of failed proposals seen.",
        "counter",
        m.proposals_failed.load(Ordering::Relaxed),
    );
    one(
        o,
        "etcd_mvcc_db_total_size_in_bytes",
        "Total size of the underlying database physically allocated in bytes.",
        "gauge",
        r.db_size,
    );
    for (h, name, help) in [
        (
            &m.wal_fsync,
            "etcd_disk_wal_fsync_duration_seconds",
            "The latency distributions of fsync called by WAL.",
        ),
        (
            &m.backend_commit,
            "etcd_disk_backend_commit_duration_seconds",
            "The latency distributions of commit called by backend.",
        ),
    ] {
        Histogram::render_header(o, name, help);
        h.lock()
            .unwrap_or_else(|p| p.into_inner())
            .render(o, name, "");
    }
    let rtt = m.peer_rtt.lock().unwrap_or_else(|p| p.into_inner());
    let name = "etcd_network_peer_round_trip_time_seconds";
    Histogram::render_header(o, name, "Round-Trip-Time histogram between peers");
    for (to, h) in rtt.iter() {
        h.render(o, name, &format!("To=\"{to:x}\""));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcds_names_and_types() {
        let m = Metrics {
            wal_fsync: Mutex::new(Histogram::new(DISK_BOUNDS)),
            backend_commit: Mutex::new(Histogram::new(DISK_BOUNDS)),
            peer_rtt: Mutex::new(BTreeMap::new()),
            leader_changes: AtomicU64::new(2),
            proposals_pending: AtomicI64::new(-1),
            proposals_failed: AtomicU64::new(0),
        };
        m.wal_fsync(Duration::from_micros(300));
        m.peer_round_trip(0xabc, Duration::from_millis(1));
        let text = render(
            &m,
            RaftView {
                has_leader: true,
                is_leader: false,
                applied: 42,
                db_size: 4096,
            },
        );
        for line in [
            "etcd_server_has_leader 1",
            "etcd_server_leader_changes_seen_total 2",
            "etcd_server_proposals_committed_total 42",
            "etcd_server_proposals_pending 0",
            "etcd_mvcc_db_total_size_in_bytes 4096",
            "# TYPE etcd_disk_wal_fsync_duration_seconds histogram",
            "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 1",
            "etcd_disk_wal_fsync_duration_seconds_count 1",
            "etcd_network_peer_round_trip_time_seconds_bucket{To=\"abc\",le=\"0.0016\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
