//! `flotilla bench kv`: a load generator that speaks only the etcd v3 gRPC API, so the very
//! same code drives etcd and Flotilla's kvstore. One run is one workload; it prints a row of
//! throughput, latency (HDR histogram: p50/p90/p99/max) and the servers' peak RSS, as a
//! table line or as JSON for `benches/kv-vs-etcd.sh`.
//!
//! Layout: `conn.rs` (connections, leader discovery), `hist.rs` (latencies), `server.rs`
//! (peak RSS and disk use of the servers), `drive.rs` (N clients sharing a bounded number
//! of operations), `workloads/` (one file per workload), `report.rs` (the row).

pub mod conn;
pub mod drive;
pub mod hist;
pub mod report;
pub mod server;
pub mod workloads;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use conn::Target;
use report::Row;
use server::Servers;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Puts of random keys from the key space.
    Put,
    /// Single-key reads of keys put beforehand.
    Range,
    /// Compare-and-swap on mod_revision, a key per client (the apiserver's update).
    Txn,
    /// One writer, many watchers of one prefix: put sent to event delivered, per watcher.
    Watch,
    /// Grant leases, then keep them alive.
    Lease,
    /// Load a large data set, then range over a 10,000-key prefix of it.
    Dataset,
}

#[derive(clap::Args, Debug, Clone)]
pub struct KvBenchFlags {
    /// Client URLs of the members (host:port, http://host:port or https://host:port),
    /// comma separated; host:port means https:// when --cacert is given.
    #[arg(long, value_delimiter = ',', required = true)]
    pub endpoints: Vec<String>,
    #[arg(long, value_enum)]
    pub workload: Workload,
    /// Concurrent clients (for watch: watchers).
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// gRPC connections the clients share.
    #[arg(long, default_value_t = 1)]
    pub conns: usize,
    #[arg(long, value_enum, default_value_t = Target::Leader)]
    pub target: Target,
    /// Operations in all (for watch: puts; for lease: keep-alives; for dataset: keys).
    #[arg(long, default_value_t = 10_000)]
    pub total: u64,
    /// Stop after this many seconds even if `total` is not reached.
    #[arg(long, default_value_t = 120)]
    pub max_seconds: u64,
    /// Reads: serializable (any member answers from its own state) instead of linearizable.
    #[arg(long)]
    pub serializable: bool,
    /// Distinct keys puts and reads choose from (at least 1).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub key_space: u64,
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Leases to grant and keep alive (lease workload).
    #[arg(long, default_value_t = 10_000)]
    pub leases: u64,
    /// Puts per second of the watch workload's writer.
    #[arg(long, default_value_t = 100)]
    pub put_rate: u64,
    /// What to call the system under test in the output.
    #[arg(long, default_value = "kvstore")]
    pub system: String,
    /// Server pids whose peak RSS is reported (comma separated).
    #[arg(long, value_delimiter = ',')]
    pub pids: Vec<u32>,
    /// Server data directories whose size the dataset workload reports.
    #[arg(long, value_delimiter = ',')]
    pub data_dirs: Vec<PathBuf>,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The CA (PEM) the members' certificates are verified against (as etcd's benchmark).
    #[arg(long)]
    pub cacert: Option<PathBuf>,
    /// A client certificate (PEM) to present.
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    /// The private key (PEM) of --cert.
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
}

/// What every workload gets.
pub struct Ctx {
    pub flags: KvBenchFlags,
    pub pool: Arc<conn::Pool>,
    pub servers: Servers,
    pub deadline: tokio::time::Instant,
}

impl Ctx {
    /// A key of the configured size for index `i` under `prefix` (zero padded, so keys of
    /// one prefix sort by index).
    pub fn key(&self, prefix: &str, i: u64) -> Vec<u8> {
        let digits = self.flags.key_size.saturating_sub(prefix.len()).max(1);
        format!("{prefix}{i:0digits$}").into_bytes()
    }

    pub fn value(&self) -> Vec<u8> {
        vec![b'v'; self.flags.value_size]
    }

    /// A row for this run, with the servers' peak RSS and CPU use since the workload began.
    pub fn row(&self, name: &str, summary: drive::Outcome) -> Row {
        let mut row = Row::new(&self.flags, name, summary, self.servers.peak_rss_mib());
        row.set_cpu(self.servers.cpu_use());
        row
    }
}

/// Runs the workload; returns its rows (some workloads measure more than one thing).
pub async fn run(flags: KvBenchFlags) -> anyhow::Result<Vec<Row>> {
    let tls = match &flags.cacert {
        Some(ca) => Some(
            proto::tls::ClientTls::load(Some(ca), flags.cert.as_deref().zip(flags.key.as_deref()))
                .map_err(anyhow::Error::msg)?,
        ),
        None => None,
    };
    let pool = Arc::new(
        conn::Pool::open(&flags.endpoints, flags.conns, flags.target, tls.as_ref()).await?,
    );
    let ctx = Ctx {
        servers: Servers::new(flags.pids.clone(), flags.data_dirs.clone()),
        deadline: tokio::time::Instant::now() + Duration::from_secs(flags.max_seconds),
        flags,
        pool,
    };
    let rows = match ctx.flags.workload {
        Workload::Put => workloads::put::run(&ctx).await?,
        Workload::Range => workloads::range::run(&ctx).await?,
        Workload::Txn => workloads::txn::run(&ctx).await?,
        Workload::Watch => workloads::watch::run(&ctx).await?,
        Workload::Lease => workloads::lease::run(&ctx).await?,
        Workload::Dataset => workloads::dataset::run(&ctx).await?,
    };
    if ctx.flags.json {
        for r in &rows {
            println!("{}", serde_json::to_string(r)?);
        }
    } else {
        report::print_table(&rows);
    }
    Ok(rows)
}
