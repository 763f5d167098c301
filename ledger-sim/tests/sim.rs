//! The simulator end to end: seeds run valid on the server's real code, a seed replays to the
//! same trace, and the checks flag the server's deliberately broken modes.

use std::process::Command;
use std::sync::Mutex;

use ledger_sim::{run, REPLAYABLE};

/// A run seeds process-wide generators (openraft's, `blocking::run_inline`): one at a time.
static ONE_RUN_AT_A_TIME: Mutex<()> = Mutex::new(());

fn play(seed: u64) -> ledger_sim::Report {
    let _turn = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().expect("temp dir");
    run(seed, dir.path())
}

#[test]
fn seeds_run_valid_on_the_real_node_code() {
    let mut acknowledged = 0;
    for seed in 1..=8 {
        let report = play(seed);
        assert!(
            report.valid(),
            "seed {seed}: {:?} {:#?}\n{}",
            report.error,
            report.anomalies,
            report.trace.join("\n")
        );
        acknowledged += report.acknowledged;
    }
    assert!(
        acknowledged > 1_000,
        "the clients got work done: {acknowledged}"
    );
}

#[test]
fn a_seed_replays_to_the_same_trace_and_another_seed_differs() {
    const {
        assert!(
            REPLAYABLE,
            "built without --cfg tokio_unstable: .cargo/config.toml was overridden"
        )
    };
    // Seeds with crashes, partitions, loss and snapshots among them (see `ledger-sim run`).
    for seed in [2, 5, 51] {
        let first = play(seed);
        let again = play(seed);
        assert_eq!(first.trace, again.trace, "seed {seed} replays");
        assert!(
            first.trace.len() > 20,
            "a trace of a whole run: {:?}",
            first.trace
        );
    }
    assert_ne!(play(3).trace_hash, play(4).trace_hash);
}

/// Runs the binary (a negative control switches a process-wide mode on for good).
#[cfg(feature = "negative-control")]
fn sim(args: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_ledger-sim"))
        .args(args)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .expect("ledger-sim runs");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[cfg(feature = "negative-control")]
#[test]
fn the_checks_flag_a_server_that_applies_a_retried_transfer_twice() {
    let (code, out) = sim(&["run", "--seed", "1", "--negative-control", "idempotency"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("anomaly: invariants"), "{out}");
}

#[cfg(feature = "negative-control")]
#[test]
fn the_checks_flag_a_server_that_reports_fsyncs_it_skipped() {
    let (code, out) = sim(&["run", "--seed", "3", "--negative-control", "skip-fsync"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("anomaly: lost write"), "{out}");
}

#[cfg(feature = "negative-control")]
#[test]
fn the_checks_flag_a_server_that_acknowledges_writes_before_a_quorum_has_them() {
    let (code, out) = sim(&["run", "--seed", "1", "--negative-control", "early-ack"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("anomaly: lost write"), "{out}");
}

#[test]
fn a_plain_run_of_the_binary_is_valid_and_prints_how_to_replay() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_ledger-sim"))
        .args(["run", "--seed", "7", "--replay", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("ledger-sim runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("seed 7: valid"), "{text}");
    assert!(text.contains("replayed: same trace"), "{text}");
}
