//! Command-line options of `jepsen test`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;

#[derive(Parser, Debug)]
#[command(
    name = "jepsen",
    about = "Fault injection and history checking for Flotilla's kvstore",
    version
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Start a fresh cluster, run a workload under faults, check what clients saw.
    Test(TestOpts),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Independent registers: read, write, compare-and-set; checked for linearizability.
    Register,
    /// Unique inserts; every acknowledged insert must survive.
    Set,
    /// Watchers of one prefix, checked against etcd's watch guarantees.
    Watch,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NemesisKind {
    None,
    /// SIGKILL a member (the leader half of the time), restart it later.
    Kill,
    /// SIGSTOP a member (the leader half of the time), SIGCONT it later.
    Pause,
    /// Isolate one random member.
    PartitionOne,
    /// Isolate the current leader.
    PartitionLeader,
    /// Cut the members into two random halves.
    PartitionHalves,
    /// Every member sees a majority, no two the same one.
    PartitionRing,
    /// Two halves joined by one member that sees both.
    Bridge,
    /// Remove a member, wipe it, add it back.
    Member,
    /// Compact the key space while reads and watches run.
    Compact,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadMode {
    Linearizable,
    /// etcd's serializable reads: served by whichever member is asked, possibly stale.
    Serializable,
}

#[derive(Args, Clone, Debug, Serialize)]
pub struct TestOpts {
    #[arg(long, value_enum, default_value = "register")]
    pub workload: Workload,
    /// Faults to inject, comma-separated; one is chosen (by the seed) for each round.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "none")]
    pub nemesis: Vec<NemesisKind>,
    /// Seconds of workload (faults included).
    #[arg(long, default_value_t = 30)]
    pub time_limit: u64,
    /// Client processes.
    #[arg(long, default_value_t = 10)]
    pub concurrency: usize,
    /// Operations per second, all clients together.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Seed for every random choice of the harness (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where runs are stored (one directory per run, and `latest`).
    #[arg(long, default_value = "store")]
    pub store: PathBuf,
    /// Members in the cluster.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    #[arg(long, value_enum, default_value = "linearizable")]
    pub read_mode: ReadMode,
    /// Mean seconds between faults, and mean length of a fault.
    #[arg(long, default_value_t = 4.0)]
    pub nemesis_interval: f64,
    /// Milliseconds a client waits for an answer before the outcome is unknown.
    #[arg(long, default_value_t = 3000)]
    pub op_timeout_ms: u64,
    /// Seconds the checkers may search before they answer unknown.
    #[arg(long, default_value_t = 120)]
    pub checker_time_limit: u64,
    /// Register operations per key before clients move to a fresh key.
    #[arg(long, default_value_t = 200)]
    pub ops_per_key: u32,
    /// The flotilla binary (default: the one next to this program).
    #[arg(long)]
    pub flotilla: Option<PathBuf>,
    /// Extra flags for every member, e.g. `--member-arg=--snapshot-count=500`.
    #[arg(long = "member-arg", allow_hyphen_values = true)]
    pub member_args: Vec<String>,
    /// Keep the members' data directories in the run's directory.
    #[arg(long)]
    pub keep_data: bool,
}
