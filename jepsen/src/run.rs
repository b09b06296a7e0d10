//! One test run: cluster up, workload under faults, heal, settle, final reads, HashKV
//! comparison, teardown, checks, report.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use serde_json::json;
use tracing::{info, warn};

use crate::checker::{Validity, Verdict};
use crate::cluster::compose::ComposeCluster;
use crate::cluster::netns::NetnsCluster;
use crate::cluster::{ClusterControl, Start};
use crate::history::Recorder;
use crate::nemesis::Nemesis;
use crate::opts::{ClusterKind, TestOpts};
use crate::report;
use crate::workload::{self, Ctx};

pub struct Outcome {
    pub valid: Validity,
    /// The run could not do everything it should (e.g. the cluster never settled).
    pub incomplete: Option<String>,
    pub dir: PathBuf,
}

/// The binary under test: `--flotilla`, else the one next to this program. Under `cargo
/// run` that one is first brought up to date with the same profile, so a changed kvstore is
/// never tested stale.
fn flotilla_binary(opts: &TestOpts) -> anyhow::Result<PathBuf> {
    let bin = match &opts.flotilla {
        Some(p) => p.clone(),
        None => {
            let dir = std::env::current_exe()?
                .parent()
                .context("locating this program")?
                .to_path_buf();
            if let (Ok(cargo), Ok(manifest)) =
                (std::env::var("CARGO"), std::env::var("CARGO_MANIFEST_DIR"))
            {
                let workspace = Path::new(&manifest).join("..").join("Cargo.toml");
                let mut cmd = std::process::Command::new(cargo);
                cmd.args(["build", "--bin", "flotilla", "--manifest-path"])
                    .arg(&workspace);
                if dir.file_name().is_some_and(|n| n == "release") {
                    cmd.arg("--release");
                }
                info!("building the flotilla binary");
                let status = cmd.status().context("running cargo build")?;
                if !status.success() {
                    bail!("building the flotilla binary failed");
                }
            }
            dir.join("flotilla")
        }
    };
    if !bin.is_file() {
        bail!(
            "no flotilla binary at {} (build it with `cargo build --release`, or pass --flotilla)",
            bin.display()
        );
    }
    Ok(bin.canonicalize()?)
}

fn run_dir(opts: &TestOpts, seed: u64) -> anyhow::Result<PathBuf> {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let nem: Vec<&str> = opts.nemesis.iter().map(|c| c.name()).collect();
    let name = format!(
        "{}-{}-{}-{secs}",
        serde_json::to_value(opts.workload)?.as_str().unwrap_or("w"),
        nem.join("+"),
        seed
    );
    std::fs::create_dir_all(&opts.store)?;
    let dir = opts.store.join(&name);
    std::fs::create_dir_all(&dir)?;
    let latest = opts.store.join("latest");
    let _ = std::fs::remove_file(&latest);
    #[cfg(unix)]
    let _ = std::os::unix::fs::symlink(&name, &latest);
    Ok(dir)
}

/// Waits until every running member answers a linearizable read; returns the members'
/// IDs (0 for one that is not running: it crashed, which the crash checker reports).
async fn settle(ctx: &Ctx, within: Duration) -> Option<Vec<u64>> {
    let deadline = Instant::now() + within;
    let mut ids = Vec::new();
    for node in 0..ctx.cluster.size() {
        if !ctx.cluster.running(node) {
            warn!(node, "member is not running; not waiting for it");
            ids.push(0);
            continue;
        }
        let mut c = ctx.client(node).ok()?;
        loop {
            let ready = c.get("settle-probe", false).await.is_ok();
            if ready {
                if let Ok((id, _)) = c.status().await {
                    ids.push(id);
                    break;
                }
            }
            if Instant::now() > deadline {
                warn!(node, "member did not answer a linearizable read in time");
                return None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            c = ctx.client(node).ok()?;
        }
    }
    Some(ids)
}

/// After heal: every member's HashKV at the same revision must agree.
async fn hash_check(ctx: &Ctx) -> Verdict {
    let mut v = Verdict::new("hash-kv");
    let deadline = Instant::now() + Duration::from_secs(20);
    let Some(rev) = workload::through_any(ctx, deadline, |mut c| async move {
        c.get("hash-probe", false).await.map(|(_, r)| r)
    })
    .await
    else {
        v.unknown("no member answered for the current revision");
        return v;
    };
    let mut hashes = Vec::new();
    for node in 0..ctx.cluster.size() {
        let mut got = None;
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.is_none() && Instant::now() < deadline && ctx.cluster.running(node) {
            if let Ok(mut c) = ctx.client(node) {
                got = c.hash_kv(rev).await.ok();
            }
            if got.is_none() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        hashes.push(got);
    }
    v.stats = json!({"revision": rev, "members": hashes.iter().enumerate().map(|(i, h)| json!({
        "node": ctx.cluster.name(i), "hash": h.map(|h| h.0), "compact-revision": h.map(|h| h.1)
    })).collect::<Vec<_>>()});
    if hashes.iter().any(Option::is_none) {
        v.unknown("some member gave no HashKV");
    }
    let known: Vec<(u32, i64)> = hashes.iter().flatten().copied().collect();
    if known.windows(2).any(|w| w[0] != w[1]) {
        v.anomaly(json!({"type": "hash-mismatch", "revision": rev, "members": v.stats["members"].clone()}));
    }
    v
}

/// Options no run can be made of (the network has room for 200 members).
fn check_opts(opts: &TestOpts) -> anyhow::Result<()> {
    if !(1..=200).contains(&opts.nodes) {
        bail!("--nodes must be between 1 and 200, not {}", opts.nodes);
    }
    if !(opts.nemesis_interval.is_finite() && opts.nemesis_interval > 0.0) {
        bail!(
            "--nemesis-interval must be a positive number of seconds, not {}",
            opts.nemesis_interval
        );
    }
    if !(opts.rate.is_finite() && opts.rate > 0.0) {
        bail!(
            "--rate must be a positive number of operations per second, not {}",
            opts.rate
        );
    }
    Ok(())
}

pub async fn test(opts: TestOpts) -> anyhow::Result<Outcome> {
    check_opts(&opts)?;
    let seed = opts.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64 % 1_000_000_007)
    });
    let bin = flotilla_binary(&opts)?;
    let dir = run_dir(&opts, seed)?;
    info!(dir = %dir.display(), seed, "run starting");
    let mut cfg = serde_json::to_value(&opts)?;
    cfg["seed"] = json!(seed);
    std::fs::write(dir.join("opts.json"), serde_json::to_vec_pretty(&cfg)?)?;

    let mut member_args: Vec<String> =
        ["--heartbeat-interval", "100", "--election-timeout", "1000"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    member_args.extend(opts.member_args.iter().cloned());
    let cluster: Arc<dyn ClusterControl> = match opts.cluster {
        ClusterKind::Netns => {
            if opts.workload.needs_apiservers() {
                bail!(
                    "--workload objects, pods and informers need apiservers: run them with --cluster compose"
                );
            }
            Arc::new(NetnsCluster::create(opts.nodes, &bin, &dir, member_args)?)
        }
        ClusterKind::Compose => {
            if opts.workload.needs_sole_writer() {
                // Its checker counts on revisions being dense (only its writers write);
                // the deployment's own components write to the same kvstore.
                bail!("--workload watch does not run on --cluster compose yet: its checker expects no other writer");
            }
            if !opts.member_args.is_empty() {
                bail!(
                    "--member-arg: the compose cluster's members take deploy/compose.yaml's flags"
                );
            }
            Arc::new(ComposeCluster::create(
                opts.nodes,
                &bin,
                &dir,
                opts.election_env(),
            )?)
        }
    };
    let dyn_cluster = cluster.clone();
    {
        // Ctrl-C: take everything down, keep what was written.
        let c = cluster.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                warn!("interrupted; tearing the cluster down");
                c.teardown();
                std::process::exit(2);
            }
        });
    }
    let result = run_with(&opts, seed, &dir, dyn_cluster.clone()).await;
    dyn_cluster.teardown();
    if !opts.keep_data {
        let _ = std::fs::remove_dir_all(dir.join("data"));
    }
    let (mut verdicts, incomplete, history) = result?;
    let crashes = dyn_cluster.crashed();
    let mut cv = Verdict::new("members-never-crash");
    for (node, status) in &crashes {
        cv.anomaly(
            json!({"type": "member-crashed", "node": dyn_cluster.name(*node), "status": status}),
        );
    }
    cv.stats = json!({"crashes": crashes.len()});
    verdicts.push(cv);

    let windows = report::windows(&history);
    report::write_history(&dir.join("history.jsonl"), &history)?;
    std::fs::write(
        dir.join("timeline.json"),
        serde_json::to_vec_pretty(&windows)?,
    )?;
    std::fs::write(
        dir.join("latency.svg"),
        report::latency_svg(&history, &windows),
    )?;
    std::fs::write(
        dir.join("throughput.svg"),
        report::throughput_svg(&history, &windows),
    )?;
    let valid = verdicts
        .iter()
        .fold(Validity::Valid, |a, v| a.merge(v.valid));
    let results = json!({
        "valid": valid,
        "incomplete": incomplete,
        "seed": seed,
        "workload": opts.workload,
        "nemesis": opts.nemesis,
        "operations": report::counts(&history),
        "faults": windows.len(),
        "heal-to-first-write": report::heal_to_first_write(&history, &windows),
        "checkers": verdicts,
    });
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_vec_pretty(&results)?,
    )?;
    for v in &verdicts {
        println!(
            "{:<22} {:<8} {}",
            v.checker,
            serde_json::to_value(v.valid)?.as_str().unwrap_or("?"),
            v.stats
        );
    }
    println!("operations: {}", results["operations"]);
    println!("report: {}", dir.display());
    Ok(Outcome {
        valid,
        incomplete,
        dir,
    })
}

type RunResult = (Vec<Verdict>, Option<String>, Vec<crate::history::Event>);

async fn run_with(
    opts: &TestOpts,
    seed: u64,
    dir: &Path,
    cluster: Arc<dyn ClusterControl>,
) -> anyhow::Result<RunResult> {
    for node in 0..cluster.size() {
        cluster.start(node, Start::New)?;
    }
    let opts_arc = Arc::new(opts.clone());
    let setup = Ctx {
        cluster: cluster.clone(),
        rec: Recorder::new(Instant::now()),
        opts: opts_arc.clone(),
        seed,
        end: Instant::now(),
    };
    let Some(ids) = settle(&setup, Duration::from_secs(30)).await else {
        bail!(
            "the cluster did not come up within 30 s (member logs in {})",
            dir.display()
        );
    };
    info!(?ids, "cluster up");
    let mut work = workload::new(opts.workload);
    work.prepare(&setup).await?;

    let start = Instant::now();
    let wall_start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    // History times count from here; this lines them up with the members' logs.
    std::fs::write(dir.join("start-unix-ms"), wall_start.to_string())?;
    let rec = Recorder::new(start);
    let end = start + Duration::from_secs(opts.time_limit);
    let ctx = Ctx {
        cluster: cluster.clone(),
        rec: rec.clone(),
        opts: opts_arc,
        seed,
        end,
    };
    let nemesis = Nemesis::new(
        cluster.clone(),
        &opts.nemesis,
        ctx.rng(1),
        rec.clone(),
        Duration::from_secs_f64(opts.nemesis_interval),
        ids,
    );
    let nemesis = tokio::spawn(nemesis.run(end));
    work.run(&ctx).await?;
    info!("workload done; healing");
    nemesis.await?;
    cluster.heal()?;
    let healed = Instant::now();
    let mut incomplete = None;
    if settle(&ctx, Duration::from_secs(60)).await.is_none() {
        incomplete = Some("the cluster did not settle within 60 s of healing".to_string());
    }
    info!("settled; final reads");
    let deadline = Instant::now() + Duration::from_secs(opts.checker_time_limit);
    work.finish(&ctx, healed, dir).await?;
    let hash = hash_check(&ctx).await;
    let history = rec.snapshot();
    info!(events = history.len(), "checking");
    let mut verdicts = work.check(&history, deadline);
    verdicts.push(hash);
    Ok((verdicts, incomplete, history))
}
