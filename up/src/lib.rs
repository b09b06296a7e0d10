//! `flotilla up`: a whole cluster on this machine in one command. It runs the `flotilla`
//! binary's components as child processes (kvstore members, then an apiserver, a scheduler
//! and a controller-manager per master, then the agents), waits for each step, shows
//! progress, and on Ctrl-C stops them, agents first (their pods with them), each tier in
//! parallel. The data directory keeps everything, so running it again resumes the same
//! cluster. The tests start clusters through the same code.
//!
//! Layout:
//! - `run.rs`: the flags and the steps (check, start in order with readiness waits, wait
//!   for Ctrl-C, stop).
//! - `ports.rs`: which port each component gets (pure, checked before anything starts).
//! - `supervisor.rs`: the child processes, stopped tier by tier; children die with it.
//! - `lock.rs`: one `flotilla up` per data directory.
//! - `identities.rs`: each component's token and kubeconfig, so it acts as itself.
//! - `pki.rs`: the kvstore's CA and certificates (mTLS between members and apiservers).
//! - `deploy/`: `flotilla deploy`, the same components on hosts (containers) of their own.
//! - `prometheus.rs`: `prometheus.yml`, a scrape configuration for every component, and
//!   the rights Prometheus needs.

pub mod deploy;
pub mod identities;
pub mod lock;
pub mod pki;
pub mod ports;
pub mod prometheus;
mod run;
pub mod supervisor;

pub use run::{run, UpFlags, UpRuntime};
pub use supervisor::die_with_supervisor;
