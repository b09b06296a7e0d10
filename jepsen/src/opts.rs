//! Command-line options of `jepsen test`.

use std::path::PathBuf;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;

use crate::nemesis::{self, Choice};

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
    /// ConfigMaps through the apiservers as registers (get, put, update with a
    /// resourceVersion, create, delete, list); checked for linearizability and for
    /// resourceVersions that never go back. Needs `--cluster compose`.
    Objects,
    /// Deployments scaled up and down; every pod bound at most once (from the kvstore's
    /// watch), the desired replicas linearizable, every Deployment rolled out after the
    /// heal. Needs `--cluster compose`.
    Pods,
    /// Informers (kube-rs watchers) through the apiservers, following ConfigMaps that
    /// writers put and delete; checked against the kvstore's record of every change: no
    /// gap, nothing out of order, lists that are states the objects were in. Needs
    /// `--cluster compose`.
    Informers,
}

impl Workload {
    /// It runs through the apiservers (`--cluster compose`).
    pub fn needs_apiservers(self) -> bool {
        matches!(
            self,
            Workload::Objects | Workload::Pods | Workload::Informers
        )
    }

    /// Its checker counts on being the only writer of the kvstore (dense revisions).
    pub fn needs_sole_writer(self) -> bool {
        self == Workload::Watch
    }
}

/// The `--nemesis` values: `none`, then every fault of the nemesis table with its help.
fn nemesis_values() -> impl TypedValueParser<Value = Choice> {
    let values = std::iter::once(PossibleValue::new(Choice::NONE)).chain(
        nemesis::ALL
            .iter()
            .map(|f| PossibleValue::new(f.name()).help(f.help())),
    );
    PossibleValuesParser::new(values).map(|name| Choice::named(&name))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClusterKind {
    /// kvstore members as processes in network namespaces of their own.
    Netns,
    /// The masters of deploy/compose.yaml (the whole deployment in containers, from an
    /// image of the binary under test).
    Compose,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadMode {
    Linearizable,
    /// etcd's serializable reads: served by whichever member is asked, possibly stale.
    /// In the objects workload: GET and LIST with resourceVersion "0" (any version).
    Serializable,
}

#[derive(Args, Clone, Debug, Serialize)]
pub struct TestOpts {
    #[arg(long, value_enum, default_value = "register")]
    pub workload: Workload,
    /// Faults to inject, comma-separated; one is chosen (by the seed) for each round.
    #[arg(long, value_parser = nemesis_values(), value_delimiter = ',', default_value = "none")]
    pub nemesis: Vec<Choice>,
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
    /// How the members run.
    #[arg(long, value_enum, default_value = "netns")]
    pub cluster: ClusterKind,
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
    /// With `--cluster compose`: the scheduler's and controller-manager's
    /// `--leader-elect-lease-duration` (kube's default).
    #[arg(long, default_value = "15s")]
    pub lease_duration: String,
    /// Their `--leader-elect-renew-deadline`.
    #[arg(long, default_value = "10s")]
    pub renew_deadline: String,
    /// Their `--leader-elect-retry-period`.
    #[arg(long, default_value = "2s")]
    pub retry_period: String,
    /// With `--cluster compose`: the kvstore members' `--election-timeout` in ms
    /// (etcd's default).
    #[arg(long, default_value_t = 1000)]
    pub election_timeout: u64,
    /// Runs every master's scheduler and controller-manager without leader election, so
    /// all of them act at once: for showing that the checkers catch it.
    #[arg(long, hide = true)]
    pub unsafe_no_leader_election: bool,
}

impl TestOpts {
    /// What the compose deployment's leader election takes from these options (the
    /// environment `deploy/compose.yaml` reads).
    pub fn election_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("FLOTILLA_LEASE_DURATION", self.lease_duration.clone()),
            ("FLOTILLA_RENEW_DEADLINE", self.renew_deadline.clone()),
            ("FLOTILLA_RETRY_PERIOD", self.retry_period.clone()),
            (
                "FLOTILLA_ELECTION_TIMEOUT",
                self.election_timeout.to_string(),
            ),
            (
                "FLOTILLA_LEADER_ELECT",
                (!self.unsafe_no_leader_election).to_string(),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn nemeses(args: &[&str]) -> Option<Vec<&'static str>> {
        let cli = Cli::try_parse_from(["jepsen", "test"].iter().chain(args)).ok()?;
        let Cmd::Test(opts) = cli.cmd;
        Some(opts.nemesis.iter().map(|c| c.name()).collect())
    }

    #[test]
    fn nemesis_values_come_from_the_table() {
        assert_eq!(nemeses(&[]), Some(vec!["none"]));
        assert_eq!(
            nemeses(&["--nemesis", "kill,none,partition-ring,bridge"]),
            Some(vec!["kill", "none", "partition-ring", "bridge"])
        );
        assert_eq!(nemeses(&["--nemesis", "flood"]), None);
        let mut names: Vec<&str> = nemesis::ALL.iter().map(|f| f.name()).collect();
        assert_eq!(
            nemeses(&["--nemesis", names.join(",").as_str()]),
            Some(names.clone())
        );
        names.push(Choice::NONE);
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), nemesis::ALL.len() + 1, "a name twice");

        let mut cmd = Cli::command();
        let help = cmd
            .find_subcommand_mut("test")
            .map(|t| t.render_long_help().to_string())
            .unwrap_or_default();
        assert!(help.contains("- none\n"), "{help}");
        for f in nemesis::ALL {
            assert!(help.contains(&format!("- {}:", f.name())), "{help}");
            assert!(help.contains(f.help()), "{help}");
        }
    }

    #[test]
    fn nemesis_values_serialize_as_their_names() {
        let cli = Cli::try_parse_from(["jepsen", "test", "--nemesis", "partition-one,member"]);
        let Ok(Cli {
            cmd: Cmd::Test(opts),
        }) = cli
        else {
            panic!("parse failed");
        };
        assert_eq!(
            serde_json::to_value(&opts)
                .ok()
                .map(|v| v["nemesis"].clone()),
            Some(serde_json::json!(["partition-one", "member"]))
        );
    }
}
