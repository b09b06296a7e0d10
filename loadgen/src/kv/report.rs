//! One measured row: what ran, how fast, how long operations took, what the servers cost.

use serde::Serialize;

use crate::kv::drive::Outcome;
use crate::kv::hist::Summary;
use crate::kv::{KvBenchFlags, Target, Workload};

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub system: String,
    pub workload: Workload,
    /// What the row measures within the workload (e.g. "put", "keepalive").
    pub name: String,
    pub clients: usize,
    pub conns: usize,
    pub target: Target,
    pub serializable: bool,
    pub ops: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub secs: f64,
    pub ops_per_sec: f64,
    pub latency: Summary,
    pub peak_rss_mib: Option<f64>,
    pub disk_mib: Option<f64>,
    /// CPU milliseconds per operation, of all servers together and of the load generator.
    pub server_cpu_ms_per_op: Option<f64>,
    pub client_cpu_ms_per_op: Option<f64>,
}

impl Row {
    pub fn new(f: &KvBenchFlags, name: &str, o: Outcome, peak_rss_mib: Option<f64>) -> Row {
        Row {
            system: f.system.clone(),
            workload: f.workload,
            name: name.to_string(),
            clients: f.clients,
            conns: f.conns,
            target: f.target,
            serializable: f.serializable,
            ops: o.latencies.count(),
            errors: o.errors,
            first_error: o.first_error.clone(),
            secs: o.elapsed.as_secs_f64(),
            ops_per_sec: o.ops_per_sec(),
            latency: o.latencies.summary(),
            peak_rss_mib,
            disk_mib: None,
            server_cpu_ms_per_op: None,
            client_cpu_ms_per_op: None,
        }
    }

    pub fn set_cpu(&mut self, cpu: Option<crate::kv::server::CpuUse>) {
        let (Some(cpu), true) = (cpu, self.ops > 0) else {
            return;
        };
        let per_op = |secs: f64| secs * 1000.0 / self.ops as f64;
        self.server_cpu_ms_per_op = Some(per_op(cpu.servers));
        self.client_cpu_ms_per_op = Some(per_op(cpu.client));
    }
}

pub fn print_table(rows: &[Row]) {
    println!(
        "| system | measure | clients | conns | target | ops/s | p50 | p90 | p99 | max | errors | peak RSS | server / client CPU per op |"
    );
    println!("|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let l = &r.latency;
        println!(
            "| {} | {} | {} | {} | {:?} | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {} | {} | {} |",
            r.system,
            r.name,
            r.clients,
            r.conns,
            r.target,
            r.ops_per_sec,
            l.p50_ms,
            l.p90_ms,
            l.p99_ms,
            l.max_ms,
            r.errors,
            r.peak_rss_mib
                .map(|m| format!("{m:.0} MiB"))
                .unwrap_or_else(|| "-".into()),
            match (r.server_cpu_ms_per_op, r.client_cpu_ms_per_op) {
                (Some(s), Some(c)) => format!("{:.0} / {:.0} µs", s * 1000.0, c * 1000.0),
                _ => "-".into(),
            }
        );
        if let Some(e) = &r.first_error {
            println!("first error: {e}");
        }
    }
}
