//! One harness run: start the cluster, set the workload up, run the clients and the nemesis
//! for the time limit, heal, read every node, check, and write the results.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::json;

use crate::checkers::{self, Verdict};
use crate::cluster::TestCluster;
use crate::history::{History, Kind, Op, Process};
use crate::nemesis::{self, Step};
use crate::report;
use crate::workload::{self, Ctx, Worker};

/// How long healing and the final reads may take before the run counts as a harness failure.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(90);

pub struct RunOptions {
    pub server: PathBuf,
    pub nodes: u64,
    pub workload: String,
    pub nemesis: String,
    pub time_limit: Duration,
    pub seed: u64,
    pub concurrency: usize,
    pub out: PathBuf,
    /// Start the servers in this deliberately broken mode (a [`NEGATIVE_CONTROLS`] name).
    pub negative_control: Option<String>,
    /// The servers' `--latency-profile` (`lan` or `regional`); the `slow` nemesis delays links
    /// up to what it is built for.
    pub latency_profile: String,
    /// The `slow` nemesis's per-direction delay, fixed (default: drawn within the profile's).
    pub slow_delay_ms: Option<u64>,
}

/// The negative controls: deliberately broken servers (builds with the `negative-control`
/// feature), each with the server flags that break it and what the checkers must then find.
pub const NEGATIVE_CONTROLS: &[(&str, &[&str], &str)] = &[
    (
        "idempotency",
        &["--unsafe-skip-idempotency"],
        "retried transfers applied twice (exactly-once)",
    ),
    (
        "stale-reads",
        &["--unsafe-stale-reads"],
        "reads served without confirming leadership (linearizable, under partitions)",
    ),
    (
        "early-ack",
        &["--unsafe-early-ack"],
        "writes acknowledged before a quorum has them (no-lost-writes, under kills)",
    ),
    (
        "skip-fsync",
        &[
            "--unsafe-skip-fsync",
            "--fault-injection",
            "--simulate-power-loss",
        ],
        "log changes reported durable without an fsync (no-lost-writes, under power loss)",
    ),
];

/// What a run found.
pub struct Outcome {
    pub valid: bool,
    pub ops: u64,
    pub verdicts: Vec<(String, Verdict)>,
}

/// Runs the test. `Err` means the harness itself failed (exit code 2), not the system.
pub async fn run(options: &RunOptions) -> Result<Outcome, String> {
    if !workload::WORKLOADS.contains(&options.workload.as_str()) {
        return Err(format!(
            "unknown workload {:?}; one of {}",
            options.workload,
            workload::WORKLOADS.join(", ")
        ));
    }
    if options.nodes < 3 {
        return Err("--nodes must be 3 or more".into());
    }
    let slow_ms = match options.slow_delay_ms {
        Some(ms) => (ms, ms),
        None => nemesis::slow_delays_ms(&options.latency_profile)?,
    };
    let steps = nemesis::schedule(
        &options.nemesis,
        options.seed,
        options.time_limit,
        options.nodes as usize,
        slow_ms,
    )?;
    std::fs::create_dir_all(&options.out).map_err(|e| format!("{}: {e}", options.out.display()))?;
    let scratch = options.out.join("cluster");
    let _ = std::fs::remove_dir_all(&scratch);
    let mut extra = vec![
        "--snapshot-logs".to_string(),
        "2000".to_string(),
        "--latency-profile".to_string(),
        options.latency_profile.clone(),
    ];
    let mut flags: Vec<&str> = nemesis::server_flags(&options.nemesis).to_vec();
    if let Some(kind) = &options.negative_control {
        let (_, broken, _) = NEGATIVE_CONTROLS
            .iter()
            .find(|(name, _, _)| name == kind)
            .ok_or_else(|| {
                let names: Vec<&str> = NEGATIVE_CONTROLS.iter().map(|(n, _, _)| *n).collect();
                format!(
                    "unknown negative control {kind:?}; one of {}",
                    names.join(", ")
                )
            })?;
        flags.extend_from_slice(broken);
    }
    for flag in flags {
        if !extra.iter().any(|e| e == flag) {
            extra.push(flag.to_string());
        }
    }
    let proxy_clients = options.nemesis == "client-partition";
    let cluster = TestCluster::start(
        &options.server,
        &scratch,
        options.nodes,
        extra,
        proxy_clients,
    )
    .await?;
    let result = drive(options, &cluster, &steps).await;
    cluster.stop().await;
    let (ctx, schedule_log) = result?;
    let history = std::mem::take(&mut ctx.recorder.lock().expect("history lock").history);
    let outcome = check(&history);
    write_outputs(&options.out, options, &history, &outcome, &schedule_log)?;
    // The nodes' data and logs are kept when something was found, for the post-mortem.
    if outcome.valid {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    Ok(outcome)
}

/// Applies every checker.
pub fn check(history: &History) -> Outcome {
    let verdicts: Vec<(String, Verdict)> = checkers::all()
        .iter()
        .map(|c| (c.name().to_string(), c.check(history)))
        .collect();
    Outcome {
        valid: verdicts.iter().all(|(_, v)| v.valid),
        ops: history
            .events
            .iter()
            .filter(|e| matches!(e.process, Process::Client(_)) && e.kind == Kind::Invoke)
            .count() as u64,
        verdicts,
    }
}

async fn drive(
    options: &RunOptions,
    cluster: &TestCluster,
    steps: &[Step],
) -> Result<(Arc<Ctx>, Vec<String>), String> {
    let ctx = Arc::new(Ctx::new());
    let endpoints = cluster.client_endpoints();
    let setup_client = workload::client_for(&endpoints, 0).await?;
    workload::set_up(&ctx, &setup_client, &options.workload).await?;
    ctx.recorder
        .lock()
        .expect("history lock")
        .history
        .setup
        .nodes = cluster.ids.clone();

    let started = Instant::now();
    let until = started + options.time_limit;
    let mut workers = Vec::new();
    for index in 0..options.concurrency {
        let client = workload::client_for(&endpoints, index).await?;
        let worker = Worker::new(
            index,
            options.concurrency,
            &options.workload,
            client,
            options.seed,
        );
        workers.push(tokio::spawn(worker.run(ctx.clone(), until)));
    }
    if matches!(options.workload.as_str(), "bank" | "idempotency") {
        for (node, endpoint) in endpoints.iter().enumerate() {
            workers.push(tokio::spawn(workload::node_reader(
                ctx.clone(),
                endpoint.clone(),
                node,
                workload::workload_accounts(&options.workload),
                until,
            )));
        }
    }
    if options.nemesis == "clock" {
        let client = workload::client_for(&endpoints, 0).await?;
        workers.push(tokio::spawn(workload::hold_prober(
            ctx.clone(),
            client,
            options.seed,
            until,
        )));
    }
    let mut log = Vec::new();
    let mut rng = StdRng::seed_from_u64(options.seed);
    for step in steps {
        let at = started + Duration::from_millis(step.at_ms);
        tokio::time::sleep_until(at.into()).await;
        let name = step.fault.name().to_string();
        let active = match nemesis::start(cluster, &step.fault, &mut rng).await {
            Ok(active) => active,
            Err(e) => {
                // The fault could not start (no leader to target, say): note it and go on.
                log.push(format!("{} ms: {name} not started: {e}", step.at_ms));
                continue;
            }
        };
        ctx.record(
            Process::Nemesis,
            Kind::Info,
            Op::Fault {
                name: name.clone(),
                start: true,
                detail: active.detail.clone(),
            },
            None,
        );
        log.push(format!("{} ms: {name} {}", step.at_ms, active.detail));
        tokio::time::sleep(Duration::from_millis(step.hold_ms)).await;
        let stopped = nemesis::stop(cluster, &active).await;
        ctx.record(
            Process::Nemesis,
            Kind::Info,
            Op::Fault {
                name,
                start: false,
                detail: active.detail.clone(),
            },
            stopped.as_ref().err().cloned(),
        );
    }
    for worker in workers {
        worker
            .await
            .map_err(|e| format!("a client task failed: {e}"))?;
    }

    // Heal, settle what is unknown, prove the cluster takes writes, then read every node.
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    // A cluster that cannot be healed (no leader: every node crashes on the same entry, say)
    // is a finding, not a harness failure: the probe write then fails and `convergence` says so.
    match cluster.heal().await {
        Ok(exited) => log.extend(exited),
        Err(e) => log.push(format!("heal failed: {e}")),
    }
    let client = workload::client_for(&endpoints, 0).await?;
    workload::settle_unknowns(&ctx, &client, u64::MAX >> 1, deadline).await;
    workload::probe_write(&ctx, &client, deadline).await;
    let target = converge(cluster, deadline).await;
    for id in cluster.ids.clone() {
        let status = cluster.status(id).await;
        let read = match status {
            Some(s) => {
                let digest: String = s.state_digest.iter().map(|b| format!("{b:02x}")).collect();
                workload::final_read(
                    &ctx,
                    &options.workload,
                    id,
                    cluster.endpoint(id),
                    s.applied_index,
                    digest,
                )
                .await
            }
            None => Err(format!("node {id} does not answer")),
        };
        match read {
            Ok(op) => ctx.record(Process::Harness, Kind::Ok, op, None),
            Err(e) => log.push(format!("final read of node {id} failed: {e}")),
        }
    }
    if let Err(e) = target {
        log.push(e);
    }
    Ok((ctx, log))
}

/// Waits until every node has applied the same index (nothing in flight any more).
async fn converge(cluster: &TestCluster, deadline: Instant) -> Result<u64, String> {
    loop {
        let mut applied = Vec::new();
        for id in &cluster.ids {
            applied.push(
                cluster
                    .status(*id)
                    .await
                    .map(|s| (s.applied_index, s.last_log_index)),
            );
        }
        let all: Option<Vec<(u64, u64)>> = applied.iter().copied().collect();
        if let Some(all) = &all {
            let max_log = all.iter().map(|(_, l)| *l).max().unwrap_or(0);
            if all.iter().all(|(a, _)| *a == all[0].0) && all[0].0 >= max_log {
                return Ok(all[0].0);
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "nodes did not converge: applied/last log {applied:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn write_outputs(
    out: &Path,
    options: &RunOptions,
    history: &History,
    outcome: &Outcome,
    schedule_log: &[String],
) -> Result<(), String> {
    let write = |name: &str, contents: String| {
        std::fs::write(out.join(name), contents).map_err(|e| format!("{name}: {e}"))
    };
    write("history.jsonl", history.to_jsonl())?;
    let checkers: serde_json::Map<String, serde_json::Value> = outcome
        .verdicts
        .iter()
        .map(|(name, v)| {
            (
                name.clone(),
                json!({"valid": v.valid, "anomalies": v.anomalies, "stats": v.stats}),
            )
        })
        .collect();
    let results = json!({
        "valid": outcome.valid,
        "checkers": checkers,
        "ops": outcome.ops,
        "seed": options.seed,
        "workload": options.workload,
        "nemesis": options.nemesis,
        "nodes": options.nodes,
        "time_limit_s": options.time_limit.as_secs(),
        "negative_control": options.negative_control,
        "latency_profile": options.latency_profile,
        "slow_delay_ms": options.slow_delay_ms,
        "faults": schedule_log,
    });
    write(
        "results.json",
        serde_json::to_string_pretty(&results).expect("json"),
    )?;
    write(
        "report.html",
        report::html(options, history, outcome, schedule_log),
    )?;
    Ok(())
}
