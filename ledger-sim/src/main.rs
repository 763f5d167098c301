//! `ledger-sim`: runs seeds of the simulator (`ledger_sim`), one or a swarm.
//!
//! - `ledger-sim run --seed 42 [--trace]`: one run; prints its plan, verdict and trace hash
//!   (and with `--trace` every event). Exit 1 if it found an anomaly.
//! - `ledger-sim swarm --seeds 200 [--first 1] [--replay-every 10]`: many seeds; each failure
//!   is printed with the command that replays it, and every `--replay-every`-th seed is run
//!   twice to check that its trace hash repeats. Ends with a JSON line; exit 1 if any seed
//!   failed or did not replay.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use ledger_sim::{run_plan, Plan, Report, REPLAYABLE};

#[derive(Parser, Debug)]
#[command(
    name = "ledger-sim",
    about = "A whole Ledger cluster in one process, on virtual time, deterministic from a seed"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    /// Where runs keep their nodes' data (a fresh folder per run, removed after it)
    /// [default: /dev/shm if writable, else the system's temporary folder].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Run the servers in a deliberately broken mode, which the checks must flag (builds with
    /// the `negative-control` feature only).
    #[arg(long, global = true, value_enum)]
    negative_control: Option<Control>,
    /// Server log level for the run (`info`, `debug`, ...); logs go to stderr.
    #[arg(long, global = true)]
    log: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// One seed.
    Run {
        #[arg(long)]
        seed: u64,
        /// Print every event of the run.
        #[arg(long)]
        trace: bool,
        /// Run the seed twice and check that both runs give the same trace.
        #[arg(long)]
        replay: bool,
    },
    /// Many seeds, one after another.
    Swarm {
        #[arg(long, default_value_t = 100)]
        seeds: u64,
        #[arg(long, default_value_t = 1)]
        first: u64,
        /// Run every K-th seed twice and compare the traces (0: never).
        #[arg(long, default_value_t = 10)]
        replay_every: u64,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Control {
    /// A retried transfer is applied again (ledger-core's idempotency switched off); clients
    /// resend acknowledged transfers.
    Idempotency,
    /// A write is acknowledged once proposed, before a quorum has it; partitions and crashes
    /// strike.
    EarlyAck,
    /// The log's fsync is skipped but reported done; nodes lose power.
    SkipFsync,
}

fn main() {
    let cli = Cli::parse();
    if let Some(level) = &cli.log {
        tracing_subscriber::fmt()
            .with_env_filter(level.as_str())
            .with_writer(std::io::stderr)
            .without_time()
            .with_ansi(false)
            .init();
    }
    if let Err(e) = enable_control(cli.negative_control) {
        eprintln!("ledger-sim: {e}");
        std::process::exit(2);
    }
    if !REPLAYABLE {
        eprintln!(
            "ledger-sim: built without --cfg tokio_unstable (RUSTFLAGS overrides \
             .cargo/config.toml?): runs are checked, but a seed may not replay exactly"
        );
    }
    let root = cli.data_dir.clone().unwrap_or_else(default_root);
    let code = match cli.command {
        Cmd::Run {
            seed,
            trace,
            replay,
        } => run_one(&root, seed, cli.negative_control, trace, replay),
        Cmd::Swarm {
            seeds,
            first,
            replay_every,
        } => swarm(&root, first, seeds, replay_every, cli.negative_control),
    };
    std::process::exit(code);
}

fn default_root() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    if tempfile::tempdir_in(&shm).is_ok() {
        shm
    } else {
        std::env::temp_dir()
    }
}

#[cfg(feature = "negative-control")]
fn enable_control(control: Option<Control>) -> Result<(), String> {
    match control {
        None => {}
        Some(Control::Idempotency) => ledger_core::negative_control::skip_idempotency(),
        Some(Control::EarlyAck) => ledger_server::negative_control::enable(false, true, false),
        Some(Control::SkipFsync) => ledger_server::negative_control::enable(false, false, true),
    }
    Ok(())
}

#[cfg(not(feature = "negative-control"))]
fn enable_control(control: Option<Control>) -> Result<(), String> {
    match control {
        None => Ok(()),
        Some(_) => Err("this build has no negative controls (feature `negative-control`)".into()),
    }
}

/// The seed's plan, with the faults a negative control needs to show.
fn plan(seed: u64, control: Option<Control>) -> Plan {
    let mut plan = Plan::from_seed(seed);
    match control {
        None => {}
        Some(Control::Idempotency) => plan.faults.resend = plan.faults.resend.max(0.3),
        Some(Control::EarlyAck) => {
            plan.faults.partitions = true;
            plan.faults.crashes = true;
        }
        Some(Control::SkipFsync) => {
            plan.faults.crashes = true;
            plan.faults.power_loss = true;
        }
    }
    plan
}

fn play(root: &std::path::Path, seed: u64, control: Option<Control>) -> Report {
    let dir = match tempfile::Builder::new()
        .prefix(&format!("ledger-sim-{seed}-"))
        .tempdir_in(root)
    {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!(
                "ledger-sim: cannot make a folder in {}: {e}",
                root.display()
            );
            std::process::exit(2);
        }
    };
    run_plan(plan(seed, control), dir.path())
}

fn verdict(report: &Report) -> String {
    match (&report.error, report.anomalies.is_empty()) {
        (Some(e), _) => format!("ERROR ({e})"),
        (None, true) => "valid".into(),
        (None, false) => format!("{} ANOMALIES", report.anomalies.len()),
    }
}

fn summary(report: &Report, real: std::time::Duration) -> String {
    format!(
        "seed {}: {}; {} operations, {} acknowledged; {:.1} s virtual in {:.2} s; trace {:016x}",
        report.plan.seed,
        verdict(report),
        report.operations,
        report.acknowledged,
        report.virtual_time.as_secs_f64(),
        real.as_secs_f64(),
        report.trace_hash
    )
}

fn run_one(
    root: &std::path::Path,
    seed: u64,
    control: Option<Control>,
    trace: bool,
    replay: bool,
) -> i32 {
    let started = Instant::now();
    let report = play(root, seed, control);
    let real = started.elapsed();
    if trace {
        for line in &report.trace {
            println!("{line}");
        }
    }
    println!("{}", report.plan);
    for a in &report.anomalies {
        println!("  anomaly: {a}");
    }
    println!("{}", summary(&report, real));
    let mut code = i32::from(!report.valid());
    if report.error.is_some() {
        code = 2;
    }
    if replay {
        let again = play(root, seed, control);
        if again.trace == report.trace {
            println!("replayed: same trace {:016x}", again.trace_hash);
        } else {
            println!(
                "NOT REPLAYED: trace {:016x}, then {:016x}; first difference:\n  {}\n  {}",
                report.trace_hash,
                again.trace_hash,
                first_difference(&report.trace, &again.trace).0,
                first_difference(&report.trace, &again.trace).1
            );
            code = code.max(1);
        }
    }
    code
}

fn first_difference(a: &[String], b: &[String]) -> (String, String) {
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return (x.clone(), y.clone());
        }
    }
    (
        a.get(b.len()).cloned().unwrap_or_default(),
        b.get(a.len()).cloned().unwrap_or_default(),
    )
}

/// CPU seconds this process has used (user and system), from /proc; `None` elsewhere.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5), counted after the command name: utime, stime (ticks).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn swarm(
    root: &std::path::Path,
    first: u64,
    seeds: u64,
    replay_every: u64,
    control: Option<Control>,
) -> i32 {
    let started = Instant::now();
    let cpu_before = cpu_seconds();
    let mut failed = Vec::new();
    let mut not_replayed = Vec::new();
    let (mut operations, mut acknowledged) = (0usize, 0usize);
    for seed in first..first.saturating_add(seeds) {
        let run_started = Instant::now();
        let report = play(root, seed, control);
        operations += report.operations;
        acknowledged += report.acknowledged;
        if !report.valid() {
            println!("{}", summary(&report, run_started.elapsed()));
            println!("  {}", report.plan);
            for a in report.anomalies.iter().take(10) {
                println!("  anomaly: {a}");
            }
            println!("  replay: ledger-sim run --seed {seed} --trace");
            failed.push(seed);
        }
        if replay_every > 0 && (seed - first).is_multiple_of(replay_every) {
            let again = play(root, seed, control);
            if again.trace != report.trace {
                let (a, b) = first_difference(&report.trace, &again.trace);
                println!("seed {seed}: NOT REPLAYED, first difference:\n  {a}\n  {b}");
                not_replayed.push(seed);
            }
        }
        let done = seed - first + 1;
        if done.is_multiple_of(10) || done == seeds {
            eprintln!(
                "{done}/{seeds} seeds, {} failed, {:.0} s",
                failed.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    let real = started.elapsed().as_secs_f64();
    let cpu = match (cpu_before, cpu_seconds()) {
        (Some(a), Some(b)) => b - a,
        _ => real,
    };
    println!(
        "{}",
        serde_json::json!({
            "seeds": seeds,
            "first": first,
            "failed": failed,
            "not_replayed": not_replayed,
            "operations": operations,
            "acknowledged": acknowledged,
            "real_seconds": (real * 10.0).round() / 10.0,
            "cpu_seconds": (cpu * 10.0).round() / 10.0,
            "seeds_per_core_minute": (seeds as f64 * 60.0 / cpu.max(0.001) * 10.0).round() / 10.0,
        })
    );
    i32::from(!failed.is_empty() || !not_replayed.is_empty())
}
