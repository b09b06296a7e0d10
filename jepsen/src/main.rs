//! `jepsen test ...`: starts a Flotilla kvstore cluster in network namespaces, runs a
//! workload under faults, checks the history and writes a report.
//! Exit status: 0 valid, 1 an anomaly was found, 2 the run or a checker could not decide.

mod api;
mod checker;
mod client;
mod cluster;
mod history;
mod nemesis;
mod opts;
mod report;
mod run;
mod workload;

use clap::Parser;

use crate::checker::Validity;
use crate::opts::{Cli, Cmd};

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            // kube-rs logs every failed request at ERROR; the history records them.
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube_client=off".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("jepsen: starting the runtime: {e}");
            std::process::exit(2);
        }
    };
    let code = rt.block_on(async {
        match cli.cmd {
            Cmd::Test(opts) => match run::test(opts).await {
                Ok(o) => {
                    if let Some(why) = &o.incomplete {
                        eprintln!("jepsen: incomplete run: {why}");
                    }
                    match (o.valid, &o.incomplete) {
                        (Validity::Invalid, _) => {
                            eprintln!(
                                "jepsen: INVALID: anomalies found (see {}/results.json)",
                                o.dir.display()
                            );
                            1
                        }
                        (Validity::Valid, None) => {
                            eprintln!("jepsen: valid");
                            0
                        }
                        _ => {
                            eprintln!(
                                "jepsen: UNKNOWN: could not decide (see {}/results.json)",
                                o.dir.display()
                            );
                            2
                        }
                    }
                }
                Err(e) => {
                    eprintln!("jepsen: the run could not be completed: {e:#}");
                    2
                }
            },
        }
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    std::process::exit(code);
}
