//! One run: a seed's plan played out on a fresh cluster, on one thread and virtual time.
//!
//! Order: start the nodes, create the accounts, then the clients and the nemesis run side by
//! side for the plan's duration; then the network heals, every node is restarted, a probe
//! transfer must be acknowledged, every node must catch up, and the checks run on what each
//! node holds (`check.rs`).

use std::sync::Arc;
use std::time::Duration;

use ledger_core::Transfer;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Mutex as AsyncMutex;

use crate::check::{check, read_state};
use crate::cluster::{SimCluster, Torn};
use crate::plan::Plan;
use crate::trace::Trace;
use crate::workload::{create_accounts, Client, History, Outcome};
use crate::world::{Links, SimClock};

/// Whether two runs of a seed are the same run: only when tokio's own randomness can be
/// seeded, which takes its unstable API (`--cfg tokio_unstable`, set for the workspace in
/// `.cargo/config.toml`). Without it, runs still check everything, but tasks woken at the same
/// virtual instant may run in another order from one run to the next.
pub const REPLAYABLE: bool = cfg!(tokio_unstable);

/// How long the cluster has to take a write and catch up after healing, in virtual time.
const SETTLE: Duration = Duration::from_secs(60);

/// What a run found.
#[derive(Clone, Debug)]
pub struct Report {
    pub plan: Plan,
    pub anomalies: Vec<String>,
    /// Something the simulator itself could not do (a node that would not start, say).
    pub error: Option<String>,
    pub trace: Vec<String>,
    pub trace_hash: u64,
    pub operations: usize,
    pub acknowledged: usize,
    pub virtual_time: Duration,
}

impl Report {
    pub fn valid(&self) -> bool {
        self.anomalies.is_empty() && self.error.is_none()
    }
}

/// Plays seed `seed` with its data under `dir` (a fresh folder), and reports.
pub fn run(seed: u64, dir: &std::path::Path) -> Report {
    run_plan(Plan::from_seed(seed), dir)
}

/// Plays `plan`: see [`run`].
pub fn run_plan(plan: Plan, dir: &std::path::Path) -> Report {
    // Every draw of openraft's and of this run comes from the seed; blocking work runs in
    // place on the one thread (`ledger_server::blocking`).
    ledger_server::raft::runtime::seed_randomness(plan.seed.wrapping_mul(2).wrapping_add(1));
    ledger_server::blocking::run_inline(true);
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_all().start_paused(true);
    // tokio's own draws (which `select!` branch is polled first, which receiver of a watch
    // channel wakes first) come from the seed too; see REPLAYABLE.
    #[cfg(tokio_unstable)]
    builder.rng_seed(tokio::runtime::RngSeed::from_bytes(
        &plan.seed.to_le_bytes(),
    ));
    let runtime = builder.build().expect("a current-thread runtime builds");
    let report = runtime.block_on(play(plan, dir.to_path_buf()));
    drop(runtime);
    report
}

async fn play(plan: Plan, dir: std::path::PathBuf) -> Report {
    let started = tokio::time::Instant::now();
    let trace = Trace::new();
    trace.event(&plan);
    let mut rng = StdRng::seed_from_u64(plan.seed);
    // A minority of nodes has a bad clock (skewed, drifting, jumping); the rest agree.
    let bad_clocks: Vec<u64> = if plan.faults.clock_skew > Duration::ZERO || plan.faults.clock_jumps
    {
        let count = rng.gen_range(1..=(plan.nodes - 1) / 2);
        rand::seq::index::sample(&mut rng, plan.nodes as usize, count as usize)
            .into_iter()
            .map(|i| i as u64 + 1)
            .collect()
    } else {
        Vec::new()
    };
    let clocks: Vec<Arc<SimClock>> = (1..=plan.nodes)
        .map(|id| {
            let (skew, drift) = if bad_clocks.contains(&id) {
                (plan.faults.clock_skew, 500)
            } else {
                (crate::plan::GOOD_CLOCK_SKEW, 50)
            };
            let skew_ns = skew.as_nanos() as i64;
            let offset = rng.gen_range(-skew_ns..=skew_ns);
            let drift = rng.gen_range(-drift..=drift);
            Arc::new(SimClock::new(offset, drift, rng.gen()))
        })
        .collect();
    trace.event(format!("bad clocks on nodes {bad_clocks:?}"));
    let links = Arc::new(Links::new(
        rng.gen(),
        plan.faults.loss,
        plan.faults.duplicate,
        plan.faults.delay_max,
    ));
    let mut report = Report {
        plan: plan.clone(),
        anomalies: Vec::new(),
        error: None,
        trace: Vec::new(),
        trace_hash: 0,
        operations: 0,
        acknowledged: 0,
        virtual_time: Duration::ZERO,
    };
    let history: History = Arc::default();
    let outcome = async {
        let cluster = SimCluster::start(
            dir,
            plan.snapshot_logs,
            clocks,
            links.clone(),
            trace.clone(),
        )
        .await?;
        let cluster = Arc::new(AsyncMutex::new(cluster));
        create_accounts(&cluster, plan.accounts).await?;
        trace.event(format!("{} accounts created", plan.accounts));
        let monitor = tokio::spawn(monitor(cluster.clone(), trace.clone()));
        let until = tokio::time::Instant::now() + plan.duration;
        let clients: Vec<_> = (0..plan.clients)
            .map(|i| {
                let client = Client::new(
                    i,
                    rng.gen(),
                    plan.accounts,
                    plan.faults.resend,
                    history.clone(),
                    trace.clone(),
                );
                tokio::spawn(client.run(cluster.clone(), until))
            })
            .collect();
        let nemesis = nemesis(
            &plan,
            rng.gen(),
            &bad_clocks,
            cluster.clone(),
            until,
            trace.clone(),
        )
        .await;
        for client in clients {
            client.await.map_err(|e| format!("a client failed: {e}"))?;
        }
        nemesis?;

        // Heal: mend the network, restart every node, and let the cluster settle.
        links.heal();
        trace.event("heal");
        {
            let mut c = cluster.lock().await;
            for id in c.ids() {
                c.restart(id).await?;
            }
        }
        let probe = Transfer {
            id: u128::MAX - 1,
            debit_account_id: 1,
            credit_account_id: 2,
            amount: 1,
            ledger: crate::workload::LEDGER,
            code: 1,
            ..Default::default()
        };
        let probe_history: History = Arc::default();
        let mut prober = Client::new(
            usize::MAX - 1,
            rng.gen(),
            plan.accounts,
            0.0,
            probe_history,
            trace.clone(),
        );
        let probed = prober.submit_until(&cluster, &probe, SETTLE).await;
        trace.event(format!("probe: {probed:?}"));
        let mut anomalies = Vec::new();
        if probed != Outcome::Acknowledged {
            anomalies.push(format!(
                "liveness: no write acknowledged within {} s of healing ({probed:?})",
                SETTLE.as_secs()
            ));
        }
        let states = settle(&cluster, &trace).await;
        monitor.abort();
        if let Ok(Err(e)) = monitor.await {
            return Err(e);
        }
        let history = history.lock().unwrap_or_else(|p| p.into_inner()).clone();
        anomalies.extend(check(&states, &history, Some(&probe)));
        let cluster = Arc::try_unwrap(cluster)
            .map_err(|_| "the cluster is still shared at the end".to_string())?
            .into_inner();
        cluster.stop().await;
        Ok::<_, String>((anomalies, history))
    }
    .await;
    match outcome {
        Ok((anomalies, history)) => {
            report.operations = history.len();
            report.acknowledged = history
                .iter()
                .filter(|op| op.outcome == Outcome::Acknowledged)
                .count();
            report.anomalies = anomalies;
        }
        Err(e) => report.error = Some(e),
    }
    report.virtual_time = started.elapsed();
    for a in &report.anomalies {
        trace.event(format!("ANOMALY {a}"));
    }
    report.trace = trace.lines();
    report.trace_hash = trace.hash();
    report
}

/// Waits until every node has applied the same index (or [`SETTLE`] passes), then reads each
/// node's state.
async fn settle(cluster: &AsyncMutex<SimCluster>, trace: &Trace) -> Vec<crate::check::NodeState> {
    let give_up = tokio::time::Instant::now() + SETTLE;
    loop {
        let applied: Vec<Option<u64>> = {
            let c = cluster.lock().await;
            c.ids()
                .into_iter()
                .map(|id| {
                    c.node(id).map(|n| {
                        let m = n.raft.metrics().borrow().clone();
                        m.last_applied.map(|l| l.index).unwrap_or(0)
                    })
                })
                .collect()
        };
        let caught_up = applied.iter().all(|a| a.is_some() && *a == applied[0]);
        if caught_up || tokio::time::Instant::now() >= give_up {
            trace.event(format!("settled: applied {applied:?}"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let c = cluster.lock().await;
    let states: Vec<_> = c
        .ids()
        .into_iter()
        .filter_map(|id| c.node(id).map(|n| read_state(id, &n)))
        .collect();
    for s in &states {
        trace.event(format!(
            "node {}: applied {}, {} transfers, digest {:032x}",
            s.id,
            s.applied_index,
            s.transfers.len(),
            s.digest
        ));
    }
    states
}

/// A node's term and the leader it knows of.
type View = (u64, Option<u64>);

/// Records each node's view of who leads, whenever it changes; restarts a node whose Raft
/// stopped on a fatal error (a failed fsync), as its service manager would restart the
/// process that exits then (`ledger-server` `main.rs`).
async fn monitor(cluster: Arc<AsyncMutex<SimCluster>>, trace: Trace) -> Result<(), String> {
    let mut last = Vec::new();
    loop {
        let view: Vec<(u64, Option<View>)> = {
            let mut c = cluster.lock().await;
            for id in c.ids() {
                let failed =
                    c.node(id)
                        .and_then(|n| match &n.raft.metrics().borrow().running_state {
                            Err(openraft::error::Fatal::Stopped) | Ok(()) => None,
                            Err(fatal) => Some(fatal.to_string()),
                        });
                if let Some(fatal) = failed {
                    trace.event(format!("node {id} stopped: {fatal}"));
                    c.crash(id).await;
                    c.restart(id).await?;
                }
            }
            c.ids()
                .into_iter()
                .map(|id| {
                    let seen = c.node(id).map(|n| {
                        let m = n.raft.metrics().borrow().clone();
                        (m.current_term, m.current_leader)
                    });
                    (id, seen)
                })
                .collect()
        };
        if view != last {
            let text: Vec<String> = view
                .iter()
                .map(|(id, seen)| match seen {
                    Some((term, Some(leader))) => format!("{id}:t{term}/L{leader}"),
                    Some((term, None)) => format!("{id}:t{term}/-"),
                    None => format!("{id}:down"),
                })
                .collect();
            trace.event(format!("views {}", text.join(" ")));
            last = view;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Strikes the plan's faults at random moments until `until`.
async fn nemesis(
    plan: &Plan,
    seed: u64,
    bad_clocks: &[u64],
    cluster: Arc<AsyncMutex<SimCluster>>,
    until: tokio::time::Instant,
    trace: Trace,
) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let faults = &plan.faults;
    let n = plan.nodes;
    let mut down: Vec<u64> = Vec::new();
    loop {
        let pause = Duration::from_millis(rng.gen_range(200..=3_000));
        if tokio::time::Instant::now() + pause >= until {
            break;
        }
        tokio::time::sleep(pause).await;
        let mut c = cluster.lock().await;
        match rng.gen_range(0..5) {
            0 if faults.partitions => {
                c.links.heal_cuts();
                match rng.gen_range(0..3) {
                    0 => {
                        let alone = rng.gen_range(1..=n);
                        for other in (1..=n).filter(|&o| o != alone) {
                            c.links.cut(alone, other);
                            c.links.cut(other, alone);
                        }
                        trace.event(format!("partition: node {alone} cut off"));
                    }
                    1 => {
                        let (from, to) = (rng.gen_range(1..=n), rng.gen_range(1..=n));
                        if from != to {
                            c.links.cut(from, to);
                            trace.event(format!("partition: link {from} -> {to} cut one way"));
                        }
                    }
                    _ => trace.event("partition healed"),
                }
            }
            1 if faults.crashes => {
                // Crash one node while a majority is up; restart one that is down otherwise.
                if (down.len() as u64) < (n - 1) / 2 && rng.gen_bool(0.6) {
                    let id = rng.gen_range(1..=n);
                    if !down.contains(&id) {
                        if faults.power_loss && rng.gen_bool(0.5) {
                            let torn = torn_bytes(&mut rng);
                            c.lose_power(id, torn).await?;
                        } else {
                            c.crash(id).await;
                        }
                        down.push(id);
                    }
                } else if !down.is_empty() {
                    let id = down.remove(rng.gen_range(0..down.len()));
                    c.restart(id).await?;
                }
            }
            3 if faults.power_loss && rng.gen_bool(0.2) => {
                // The whole cluster loses power, and comes back.
                trace.event("power loss of the whole cluster");
                for id in 1..=n {
                    let torn = torn_bytes(&mut rng);
                    c.lose_power(id, torn).await?;
                }
                down.clear();
                for id in 1..=n {
                    c.restart(id).await?;
                }
            }
            4 if faults.fsync_errors => {
                let id = rng.gen_range(1..=n);
                c.fail_next_fsync(id);
            }
            2 if faults.clock_jumps && !bad_clocks.is_empty() => {
                let id = bad_clocks[rng.gen_range(0..bad_clocks.len())];
                let delta_ms: i64 = rng.gen_range(-30_000..=30_000);
                c.clock(id).jump(delta_ms * 1_000_000);
                trace.event(format!("clock of node {id} jumps {delta_ms} ms"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Half the time, a write torn at the tail of a log (`cluster::Torn`).
fn torn_bytes(rng: &mut StdRng) -> Option<Torn> {
    if !rng.gen_bool(0.5) {
        return None;
    }
    Some(if rng.gen_bool(0.5) {
        Torn::Zeros(rng.gen_range(1..=64))
    } else {
        let length = rng.gen_range(100..=1_000);
        Torn::CutRecord {
            crc: rng.gen(),
            length,
            payload: (0..rng.gen_range(0..usize::from(length) / 2))
                .map(|_| rng.gen())
                .collect(),
        }
    })
}
