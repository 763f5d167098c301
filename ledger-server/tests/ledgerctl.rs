//! `ledgerctl` end to end against real processes: local up, cluster status, bench, verify,
//! local down, each with `--json` parsed back.

use std::path::PathBuf;
use std::process::Command;

fn ledgerctl() -> PathBuf {
    let server = PathBuf::from(env!("CARGO_BIN_EXE_ledger-server"));
    let path = server.with_file_name("ledgerctl");
    assert!(
        path.exists(),
        "ledgerctl is built beside ledger-server by `cargo test --workspace`"
    );
    path
}

fn run_json(args: &[&str], endpoints: Option<&str>) -> serde_json::Value {
    let mut command = Command::new(ledgerctl());
    command.args(args).arg("--json");
    if let Some(endpoints) = endpoints {
        command.env("LEDGER_ENDPOINTS", endpoints);
    }
    let output = command.output().expect("ledgerctl runs");
    assert!(
        output.status.success(),
        "ledgerctl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let line = stdout.lines().last().expect("one JSON line");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[test]
fn local_cluster_status_bench_verify_and_down() {
    let dir = tempfile::tempdir().unwrap();
    let server = env!("CARGO_BIN_EXE_ledger-server");
    let dir_arg = dir.path().to_str().unwrap();
    let up = run_json(
        &[
            "local", "up", "--nodes", "3", "--dir", dir_arg, "--server", server,
        ],
        None,
    );
    let endpoints: Vec<String> = up["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    assert_eq!(endpoints.len(), 3);
    assert_eq!(up["pids"].as_array().unwrap().len(), 3);
    let endpoints = endpoints.join(",");

    let status = run_json(&["cluster", "status"], Some(&endpoints));
    let nodes = status["nodes"].as_array().unwrap();
    assert_eq!(
        nodes.iter().filter(|n| n["state"] == "Leader").count(),
        1,
        "{status}"
    );

    let bench = run_json(
        &[
            "bench",
            "--accounts",
            "100",
            "--clients",
            "4",
            "--seconds",
            "2",
        ],
        Some(&endpoints),
    );
    assert_eq!(bench["system"], "ledger");
    assert!(bench["ops"].as_u64().unwrap() > 0, "{bench}");
    assert_eq!(bench["errors"], 0, "{bench}");

    let verify = run_json(&["verify"], Some(&endpoints));
    assert_eq!(verify["ok"], true, "{verify}");

    let members = run_json(&["cluster", "members"], Some(&endpoints));
    assert_eq!(members["voters"].as_array().unwrap().len(), 3);

    let down = run_json(&["local", "down", "--dir", dir_arg], None);
    assert_eq!(down["stopped"], 3);
    // Nothing answers any more.
    let output = Command::new(ledgerctl())
        .args(["cluster", "status"])
        .env("LEDGER_ENDPOINTS", &endpoints)
        .output()
        .unwrap();
    assert!(!output.status.success(), "a stopped cluster still answers");
}

#[test]
fn bad_input_gets_a_one_line_error_and_a_non_zero_exit() {
    let output = Command::new(ledgerctl())
        .args(["bench", "--clients", "0"])
        .env("LEDGER_ENDPOINTS", "http://127.0.0.1:1")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("ledgerctl: "), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    let output = Command::new(ledgerctl())
        .args(["cluster", "status"])
        .env("LEDGER_ENDPOINTS", "http://127.0.0.1:1")
        .output()
        .unwrap();
    assert!(!output.status.success(), "an unreachable cluster must fail");
}
