//! `ledger-jepsen`: runs a Jepsen-style test against a real Ledger cluster on this machine.
//!
//! Exit code: 0 when every checker is valid, 1 when an anomaly was found, 2 when the harness
//! itself failed (could not start the cluster, bad arguments): what the system did and what
//! the harness did are kept apart.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use jepsen_tests::history::History;
use jepsen_tests::run::{run, Outcome, RunOptions};

#[derive(Parser)]
#[command(name = "ledger-jepsen", version, about = "Partition tests for Ledger")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct RunArgs {
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// bank, idempotency or bets.
    #[arg(long, default_value = "bank")]
    workload: String,
    /// none, kill, pause, partition, slow, membership or all.
    #[arg(long, default_value = "partition")]
    nemesis: String,
    /// Seconds of workload (healing and checking come after).
    #[arg(long, default_value_t = 30)]
    time_limit: u64,
    /// Seeds the fault schedule and the clients' choices: the same seed replays the same
    /// faults.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Logical clients.
    #[arg(long, default_value_t = 10)]
    concurrency: usize,
    /// Where results.json, history.jsonl and report.html go.
    #[arg(long, default_value = "jepsen-out")]
    out: PathBuf,
    /// The ledger-server binary (default: next to this one).
    #[arg(long)]
    server: Option<PathBuf>,
    /// The servers' latency profile: lan or regional (round trips up to 300 ms).
    #[arg(long, default_value = "lan")]
    latency_profile: String,
    /// The slow nemesis's delay per direction, in ms (default: drawn from the range the
    /// profile is built for: lan 5-50, regional 50-150).
    #[arg(long)]
    slow_delay_ms: Option<u64>,
    /// Run the servers in a deliberately broken mode (needs a build with the
    /// `negative-control` feature); the run must report anomalies: idempotency (the default),
    /// stale-reads, early-ack or skip-fsync (docs/testing.md).
    #[arg(long, num_args = 0..=1, default_missing_value = "idempotency")]
    negative_control: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Start a cluster, run a workload under a nemesis, check the history.
    Run(RunArgs),
    /// Check a recorded history again (history.jsonl of an earlier run) with every checker.
    Check {
        /// The history.jsonl file.
        history: PathBuf,
    },
}

fn main() -> ExitCode {
    let RunArgs {
        nodes,
        workload,
        nemesis,
        time_limit,
        seed,
        concurrency,
        out,
        server,
        latency_profile,
        slow_delay_ms,
        negative_control,
    } = match Cli::parse().command {
        Command::Check { history } => return check(&history),
        Command::Run(args) => args,
    };
    let server = match server {
        Some(path) => path,
        None => match std::env::current_exe() {
            Ok(me) => me.with_file_name("ledger-server"),
            Err(e) => {
                eprintln!("ledger-jepsen: cannot find itself: {e}");
                return ExitCode::from(2);
            }
        },
    };
    if !server.exists() {
        eprintln!(
            "ledger-jepsen: no server binary at {}; pass --server",
            server.display()
        );
        return ExitCode::from(2);
    }
    if concurrency == 0 || time_limit == 0 {
        eprintln!("ledger-jepsen: --concurrency and --time-limit must be 1 or more");
        return ExitCode::from(2);
    }
    let options = RunOptions {
        server,
        nodes,
        workload,
        nemesis,
        time_limit: Duration::from_secs(time_limit),
        seed,
        concurrency,
        out,
        negative_control,
        latency_profile,
        slow_delay_ms,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("ledger-jepsen: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(&options)) {
        Ok(outcome) => {
            print_verdicts(&outcome);
            println!(
                "{} ops, workload {}, nemesis {}, seed {}: {} ({})",
                outcome.ops,
                options.workload,
                options.nemesis,
                options.seed,
                if outcome.valid {
                    "valid"
                } else {
                    "ANOMALIES FOUND"
                },
                options.out.join("report.html").display()
            );
            if outcome.valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("ledger-jepsen: harness failed: {e}");
            ExitCode::from(2)
        }
    }
}

fn print_verdicts(outcome: &Outcome) {
    for (name, verdict) in &outcome.verdicts {
        let mark = if verdict.valid { "valid" } else { "INVALID" };
        println!("{name:<20} {mark}");
        for anomaly in verdict.anomalies.iter().take(5) {
            println!("    {anomaly}");
        }
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    let history = match std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|text| History::from_jsonl(&text))
    {
        Ok(history) => history,
        Err(e) => {
            eprintln!("ledger-jepsen: {}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    let outcome = jepsen_tests::run::check(&history);
    print_verdicts(&outcome);
    println!(
        "{} ops: {}",
        outcome.ops,
        if outcome.valid {
            "valid"
        } else {
            "ANOMALIES FOUND"
        }
    );
    if outcome.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
