//! The apiserver issue's benchmark on this machine: a 3-member kvstore (fsync on) and one
//! apiserver on loopback, loaded by `flotilla bench api` as a separate process (which
//! prints the tables; see `loadgen/src/api.rs`).
//!
//! `cargo bench --workspace --bench api`; `API_BENCH_ARGS` adds flags, e.g.
//! `API_BENCH_ARGS="--pods 2000 --watchers 200 --duration 20s"`.

#[path = "../tests/common/mod.rs"]
#[allow(dead_code)]
mod common;

use common::k8s::{Apiservers, Backend};

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let backend = Backend::flotilla().await;
        let a = Apiservers::start(1, &backend.urls()).await;
        let extra = std::env::var("API_BENCH_ARGS").unwrap_or_default();
        let status = std::process::Command::new(common::BIN)
            .args(["bench", "api", "--kubeconfig"])
            .arg(a.kubeconfig(0))
            .args(extra.split_whitespace())
            .status()
            .expect("running flotilla bench api");
        assert!(status.success(), "flotilla bench api: {status}");
    });
}
