//! Throughput and latency of a local 3-member cluster through the etcd gRPC API, printed as a
//! table. `cargo bench --bench kv` (`KV_BENCH_OPS` scales the operation count,
//! `KV_BENCH_FILTER=put` or `=put (256 B)/64` selects rows).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use etcd_client::{Client, GetOptions};

#[derive(Clone, Copy)]
enum Op {
    Put,
    LinearizableGet,
    SerializableGet,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Put => "put (256 B)",
            Op::LinearizableGet => "get, linearizable",
            Op::SerializableGet => "get, serializable",
        }
    }
}

async fn run(
    clients: &[Client],
    op: Op,
    concurrency: usize,
    total: usize,
) -> (f64, Duration, Duration, Duration) {
    let per_task = total / concurrency;
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let mut c = clients[t % clients.len()].clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per_task);
                let value = vec![b'x'; 256];
                for i in 0..per_task {
                    let key = format!("bench/{t}/{}", i % 1000);
                    let began = Instant::now();
                    match op {
                        Op::Put => {
                            c.put(key, value.clone(), None).await.expect("put");
                        }
                        Op::LinearizableGet => {
                            c.get(key, None).await.expect("get");
                        }
                        Op::SerializableGet => {
                            c.get(key, Some(GetOptions::new().with_serializable()))
                                .await
                                .expect("get");
                        }
                    }
                    lat.push(began.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let elapsed = start.elapsed();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    (
        all.len() as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        *all.last().unwrap(),
    )
}

fn main() {
    let ops: usize = std::env::var("KV_BENCH_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    // Only rows whose "operation/clients" contains this, e.g. "put/64".
    let filter = std::env::var("KV_BENCH_FILTER").unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // KV_BENCH_ENDPOINTS=host:port,... measures an already running cluster (etcd, say)
        // with the same client and load instead of starting Flotilla members.
        let external = std::env::var("KV_BENCH_ENDPOINTS").ok();
        let mut _cluster = None;
        let endpoints: Vec<String> = match &external {
            Some(list) => list.split(',').map(str::to_string).collect(),
            None => {
                let c = Cluster::start(3, &[]).await;
                let eps = c.endpoints();
                _cluster = Some(c);
                eps
            }
        };
        // One connection per member, clients spread over them as real clients would be.
        let mut clients = Vec::new();
        for ep in &endpoints {
            clients.push(common::connect(std::slice::from_ref(ep)).await);
        }
        let target = external.as_deref().unwrap_or("Flotilla, 3 members");
        println!("{target} on loopback, {ops} ops per row, clients spread over all members\n");
        println!("| operation | clients | ops/s | p50 | p99 | max |");
        println!("|---|---:|---:|---:|---:|---:|");
        for op in [Op::Put, Op::LinearizableGet, Op::SerializableGet] {
            for conc in [1usize, 16, 64] {
                if !format!("{}/{conc}", op.name()).contains(&filter) {
                    continue;
                }
                let total = if conc == 1 { ops / 10 } else { ops };
                let (rate, p50, p99, max) = run(&clients, op, conc, total).await;
                println!(
                    "| {} | {conc} | {rate:.0} | {:.2} ms | {:.2} ms | {:.2} ms |",
                    op.name(),
                    p50.as_secs_f64() * 1e3,
                    p99.as_secs_f64() * 1e3,
                    max.as_secs_f64() * 1e3
                );
            }
        }
    });
}
