//! `ledgerctl` end to end against real processes: local up, cluster status, bench, verify,
//! local down, each with `--json` parsed back.

use std::path::PathBuf;
use std::process::Command;

mod support;

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
    // Each node's pid, as `local up` printed them: the process to signal is named.
    let mut pids: Vec<u64> = nodes.iter().map(|n| n["pid"].as_u64().unwrap()).collect();
    let mut started: Vec<u64> = up["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect();
    pids.sort_unstable();
    started.sort_unstable();
    assert_eq!(pids, started, "{status}");

    // The bench's accounts are its own (1..=100 and its bank).
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

/// Runs ledgerctl against `endpoints`; returns (success, stdout, stderr).
fn run_raw(args: &[&str], endpoints: &str) -> (bool, String, String) {
    let output = Command::new(ledgerctl())
        .args(args)
        .env("LEDGER_ENDPOINTS", endpoints)
        .output()
        .expect("ledgerctl runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn data_commands_accounts_transfers_history_bets_and_the_example_program() {
    let h = support::Harness::start(3, &[]);
    let endpoints = h.cluster.endpoints().join(",");
    let e = endpoints.as_str();
    let ok = |args: &[&str]| -> serde_json::Value { run_json(args, Some(e)) };
    let first_result =
        |v: &serde_json::Value| v["results"][0]["result"].as_str().unwrap().to_string();

    ok(&[
        "account", "create", "--id", "1000001", "--ledger", "1", "--code", "1",
    ]);
    let player = ok(&[
        "account",
        "create",
        "--id",
        "1000002",
        "--ledger",
        "1",
        "--code",
        "1",
        "--flags",
        "debits_must_not_exceed_credits,history",
    ]);
    assert_eq!(first_result(&player), "created");
    let t = [
        "transfer", "create", "--id", "10", "--debit", "1000001", "--credit", "1000002",
        "--amount", "100",
    ];
    assert_eq!(first_result(&ok(&t)), "created");
    // Re-running a command is harmless: `exists`, exit 0.
    assert_eq!(first_result(&ok(&t)), "exists");

    // A business rejection: non-zero exit, one line naming the result code.
    let (success, _, stderr) = run_raw(
        &[
            "transfer", "create", "--id", "11", "--debit", "1000002", "--credit", "1000001",
            "--amount", "1000",
        ],
        e,
    );
    assert!(!success);
    assert!(stderr.contains("exceeds_credits"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");

    // Two-phase: reserve 30, post 20 of it.
    ok(&[
        "transfer",
        "create",
        "--id",
        "12",
        "--debit",
        "1000002",
        "--credit",
        "1000001",
        "--amount",
        "30",
        "--pending",
    ]);
    assert_eq!(ok(&["transfer", "pending", "12"])["status"], "pending");
    assert_eq!(
        first_result(&ok(&[
            "transfer",
            "post",
            "--id",
            "13",
            "--pending-id",
            "12",
            "--amount",
            "20"
        ])),
        "created"
    );
    assert_eq!(ok(&["transfer", "pending", "12"])["status"], "posted");

    // A linked batch from a file: the second fails, so neither applies.
    let file = h.dir.path().join("chain.jsonl");
    std::fs::write(
        &file,
        "{\"id\": 20, \"debit_account_id\": 1000001, \"credit_account_id\": 1000002, \"amount\": 5, \"ledger\": 1, \"code\": 1, \"flags\": [\"linked\"]}\n\
         {\"id\": \"21\", \"debit_account_id\": 1000001, \"credit_account_id\": 999, \"amount\": 5, \"ledger\": 1, \"code\": 1}\n",
    )
    .unwrap();
    let (success, stdout, stderr) =
        run_raw(&["transfer", "create", "--file", file.to_str().unwrap()], e);
    assert!(!success, "{stdout}");
    // Each failed event's code is said once, on stderr, in one line.
    assert!(
        stdout.is_empty(),
        "failures are not repeated on stdout: {stdout}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("transfer 20: linked_event_failed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("transfer 21: credit_account_not_found"),
        "{stderr}"
    );
    // With --json, the results are on stdout only.
    let (success, stdout, stderr) = run_raw(
        &[
            "--json",
            "transfer",
            "create",
            "--file",
            file.to_str().unwrap(),
        ],
        e,
    );
    assert!(!success && stderr.is_empty(), "{stderr}");
    let results: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON");
    assert_eq!(results["ok"], false);
    assert_eq!(results["results"][1]["result"], "id_already_failed");
    // An event with id 0 is refused once, by its own result code.
    let (success, stdout, stderr) = run_raw(
        &[
            "transfer", "create", "--id", "0", "--debit", "1000001", "--credit", "1000002",
            "--amount", "1",
        ],
        e,
    );
    assert!(!success && stdout.is_empty(), "{stdout}");
    assert_eq!(stderr.trim(), "ledgerctl: transfer 0: id_must_not_be_zero");
    // Flags are lists in JSON.
    assert_eq!(
        ok(&["transfer", "get", "12"])["transfers"][0]["flags"],
        serde_json::json!(["pending"])
    );
    assert_eq!(
        ok(&["transfer", "get", "13"])["transfers"][0]["flags"],
        serde_json::json!(["post_pending_transfer"])
    );
    // Empty answers are explicit: a missing account fails, an account without the history
    // flag says why, and a history with nothing in it says so.
    let (success, _, stderr) = run_raw(&["history", "424242"], e);
    assert!(!success && stderr.contains("no account 424242"), "{stderr}");
    let (success, _, stderr) = run_raw(&["history", "1000001", "--balances"], e);
    assert!(!success && stderr.contains("--flags history"), "{stderr}");
    let (success, stdout, _) = run_raw(&["history", "1000002", "--code", "77"], e);
    assert!(success && stdout.contains("no transfers match"), "{stdout}");

    let got = ok(&["account", "get", "1000002"]);
    assert_eq!(got["accounts"][0]["credits_posted"], "100");
    assert_eq!(got["accounts"][0]["debits_posted"], "20");
    let listed = ok(&["account", "list", "--after", "1000000"]);
    assert_eq!(listed["accounts"].as_array().unwrap().len(), 2, "{listed}");
    let history = ok(&["history", "1000002"]);
    let ids: Vec<&str> = history["transfers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["10", "12", "13"]);
    let balances = ok(&[
        "history",
        "1000002",
        "--balances",
        "--reverse",
        "--limit",
        "1",
    ]);
    assert_eq!(balances["balances"][0]["debits_posted"], "20");

    // A market, a bet on it, the settlement.
    ok(&[
        "market",
        "create",
        "--id",
        "500",
        "--house",
        "1000001",
        "--liability-limit",
        "100000",
    ]);
    let placed = ok(&[
        "bet",
        "place",
        "--id",
        "600",
        "--player",
        "1000002",
        "--market",
        "500",
        "--selection",
        "1",
        "--stake",
        "10",
        "--odds",
        "2.5",
    ]);
    assert_eq!(first_result(&placed), "created");
    assert_eq!(ok(&["bet", "get", "600"])["bets"][0]["status"], "open");
    assert_eq!(
        first_result(&ok(&[
            "market",
            "settle",
            "--id",
            "700",
            "--market",
            "500",
            "--winners",
            "1"
        ])),
        "created"
    );
    let bet = ok(&["bet", "get", "600"]);
    assert_eq!(bet["bets"][0]["status"], "won");
    assert_eq!(bet["bets"][0]["potential_payout"], "25");
    assert_eq!(
        ok(&["market", "bets", "500"])["bets"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        ok(&["market", "get", "500"])["markets"][0]["status"],
        "settled"
    );
    let (success, _, stderr) = run_raw(&["bet", "void", "600"], e);
    assert!(!success && stderr.starts_with("ledgerctl: "), "{stderr}");

    // The example betting service runs against the same cluster.
    let server = PathBuf::from(env!("CARGO_BIN_EXE_ledger-server"));
    let example = server.parent().unwrap().join("examples").join("betting");
    assert!(
        example.exists(),
        "examples are built by `cargo test --workspace --all-targets`"
    );
    let output = Command::new(example)
        .env("LEDGER_ENDPOINTS", e)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("settled: 10 bets won, 10 lost"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_and_a_bench_right_after_the_leader_is_killed_succeed() {
    let mut h = support::Harness::start(3, &[]);
    let endpoints = h.cluster.endpoints().join(",");
    run_json(
        &[
            "account", "create", "--id", "5001", "--ledger", "1", "--code", "1",
        ],
        Some(&endpoints),
    );
    run_json(
        &[
            "account", "create", "--id", "5002", "--ledger", "1", "--code", "1",
        ],
        Some(&endpoints),
    );
    let leader = h.leader().await;
    h.cluster.kill(leader).expect("kill the leader");
    // At once, with every endpoint (the dead one first or not): the others still name the dead
    // node as leader for about a second; both commands must wait for the new leader.
    let started = std::time::Instant::now();
    // The bench's accounts are its own (1..=100 and its bank).
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
    assert!(bench["ops"].as_u64().is_some_and(|n| n > 0), "{bench}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "the bench finished within its deadline"
    );
    // Again for a single write: the node comes back, the new leader is killed, a write follows
    // at once.
    h.cluster.restart(leader).expect("restart");
    h.cluster
        .wait_ready(support::READY_TIMEOUT)
        .expect("ready again");
    let leader = h.leader().await;
    h.cluster.kill(leader).expect("kill the new leader");
    let started = std::time::Instant::now();
    let write = run_json(
        &[
            "transfer", "create", "--id", "10", "--debit", "5001", "--credit", "5002", "--amount",
            "5",
        ],
        Some(&endpoints),
    );
    assert_eq!(write["results"][0]["result"], "created", "{write}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "the write finished within its deadline"
    );
}

#[test]
fn local_up_on_a_folder_that_holds_a_cluster_starts_that_cluster_again() {
    let dir = tempfile::tempdir().unwrap();
    let server = env!("CARGO_BIN_EXE_ledger-server");
    let dir_arg = dir.path().to_str().unwrap();
    let up = [
        "local", "up", "--nodes", "3", "--dir", dir_arg, "--server", server,
    ];
    let first = run_json(&up, None);
    let endpoints = first["endpoints"].clone();
    let joined = |e: &serde_json::Value| -> String {
        e.as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap().to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    run_json(
        &[
            "account", "create", "--id", "1", "--ledger", "1", "--code", "1",
        ],
        Some(&joined(&endpoints)),
    );
    // While it runs, a second `up` refuses and names the way out.
    let (ok, _, stderr) = run_raw(&up, "http://127.0.0.1:1");
    assert!(!ok, "a running cluster is not started twice");
    assert!(stderr.contains("local down"), "{stderr}");
    // Stopped, then up again on the same folder: the same ports, the same data, and writes.
    run_json(&["local", "down", "--dir", dir_arg], None);
    let again = run_json(&up, None);
    assert_eq!(again["endpoints"], endpoints, "the nodes keep their ports");
    let found = run_json(&["account", "get", "1"], Some(&joined(&endpoints)));
    assert!(found.to_string().contains("\"1\""), "{found}");
    // The README's failover step: kill the leader by name, and writes go on.
    let killed = run_json(&["local", "kill-leader", "--dir", dir_arg], None);
    let pids: Vec<u64> = again["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect();
    assert!(pids.contains(&killed["pid"].as_u64().unwrap()), "{killed}");
    // With the leader down, verify checks the live nodes and names the down one.
    let (ok, stdout, stderr) = run_raw(&["verify"], &joined(&endpoints));
    assert!(!ok, "a node was not checked: verify must not pass");
    assert_eq!(
        stdout.lines().filter(|l| l.contains("digest")).count(),
        2,
        "the live nodes are checked: {stdout}"
    );
    assert!(stderr.contains("not checked"), "{stderr}");
    run_json(
        &[
            "account", "create", "--id", "2", "--ledger", "1", "--code", "1",
        ],
        Some(&joined(&endpoints)),
    );
    // A different size is refused rather than half-started.
    run_json(&["local", "down", "--dir", dir_arg], None);
    let (ok, _, stderr) = run_raw(
        &[
            "local", "up", "--nodes", "5", "--dir", dir_arg, "--server", server,
        ],
        "http://127.0.0.1:1",
    );
    assert!(!ok);
    assert!(stderr.contains("3 nodes"), "{stderr}");
}

#[test]
fn cluster_init_bootstraps_nodes_started_without_init_once() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("peer-secret");
    ledger_client::local_cluster::write_peer_secret(&secret).unwrap();
    let server = env!("CARGO_BIN_EXE_ledger-server");
    let mut children = Vec::new();
    let mut addrs = Vec::new();
    for id in 1..=3u64 {
        let data = dir.path().join(format!("node{id}"));
        let child = Command::new(server)
            .args(["--node-id", &id.to_string()])
            .arg("--data-dir")
            .arg(&data)
            .args(["--grpc-addr", "127.0.0.1:0", "--peer-addr", "127.0.0.1:0"])
            .args(["--http-addr", "127.0.0.1:0"])
            .arg("--peer-secret-file")
            .arg(&secret)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        children.push(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let written: ledger_client::local_cluster::NodeAddrs = loop {
            if let Ok(bytes) = std::fs::read(data.join("addrs.json")) {
                if let Ok(a) = serde_json::from_slice(&bytes) {
                    break a;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "node {id} did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        addrs.push(written);
    }
    let members: Vec<String> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={},{}", i + 1, a.grpc, a.peer))
        .collect();
    let mut init = vec!["cluster", "init"];
    for m in &members {
        init.extend(["--member", m.as_str()]);
    }
    let first = format!("http://{}", addrs[0].grpc);
    let done = run_json(&init, Some(&first));
    assert_eq!(done["voters"], serde_json::json!([1, 2, 3]), "{done}");
    // The cluster works: a write through any endpoint reaches the new leader.
    let endpoints: Vec<String> = addrs.iter().map(|a| format!("http://{}", a.grpc)).collect();
    run_json(
        &[
            "account", "create", "--id", "1", "--ledger", "1", "--code", "1",
        ],
        Some(&endpoints.join(",")),
    );
    // Once only: a second init is refused and changes nothing.
    let (ok, _, stderr) = run_raw(&init, &first);
    assert!(!ok, "a second init must be refused");
    assert!(!stderr.is_empty());
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Runs `ledgerctl` with a 1 s connect timeout and a 2 s deadline; returns its exit code, its
/// stderr and how long it took.
fn fails_fast(args: &[&str]) -> (Option<i32>, String, std::time::Duration) {
    let started = std::time::Instant::now();
    let output = Command::new(ledgerctl())
        .args(["--connect-timeout", "1s", "--timeout", "2s"])
        .args(args)
        .env_remove("LEDGER_ENDPOINTS")
        .env_remove("LEDGER_TLS_CA")
        .output()
        .expect("ledgerctl runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        started.elapsed(),
    )
}

/// Every connection-level mistake ends within 3 s with exit code 1, says "not sent" or "not
/// applied" (never "outcome unknown" for a call that never reached a node), and gives a hint.
#[test]
fn connection_mistakes_fail_fast_with_a_hint_and_never_as_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_ledger-server"));
    let plain = ledger_client::local_cluster::LocalCluster::start(
        &binary,
        &dir.path().join("plain"),
        1,
        Default::default(),
    )
    .expect("a plaintext node");
    plain.wait_ready(support::READY_TIMEOUT).expect("ready");
    let grpc = plain.grpc_addr(1).to_string();
    let http = plain.http_addr(1).to_string();

    // A TLS node, for the plaintext-against-TLS and wrong-CA mistakes.
    let certs = dir.path().join("certs");
    let other = dir.path().join("other-certs");
    for out in [&certs, &other] {
        let made = Command::new(ledgerctl())
            .args(["certs", "--out", out.to_str().unwrap(), "--nodes", "1"])
            .output()
            .expect("certs");
        assert!(made.status.success());
    }
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pem = |name: &str| certs.join(name).to_str().unwrap().to_string();
    let mut tls_node = Command::new(&binary)
        .args(["--node-id", "1", "--init", "--data-dir"])
        .arg(dir.path().join("tls-data"))
        .args(["--grpc-addr", &format!("127.0.0.1:{tls_port}")])
        .args(["--peer-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .args([
            "--tls-cert",
            &pem("node-1.pem"),
            "--tls-key",
            &pem("node-1-key.pem"),
        ])
        .args(["--tls-ca", &pem("ca.pem")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("a TLS node");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "the TLS node listens");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    let other_ca = other.join("ca.pem");

    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--endpoints".into(), "http://127.0.0.1:1".into()],
            "nothing listens there",
        ),
        (
            vec![
                "--endpoints".into(),
                "http://no-such-host.invalid:7000".into(),
            ],
            "does not resolve",
        ),
        (
            vec!["--endpoints".into(), format!("http://{http}")],
            "HTTP port",
        ),
        (
            vec!["--endpoints".into(), format!("ftp://{grpc}")],
            "use http:// or https://",
        ),
        (
            vec![
                "--endpoints".into(),
                format!("http://{grpc}"),
                "--tls-ca".into(),
                not_pem.to_str().unwrap().into(),
            ],
            "no PEM certificate",
        ),
        (
            vec!["--endpoints".into(), format!("http://127.0.0.1:{tls_port}")],
            "speaks TLS",
        ),
        (
            vec![
                "--endpoints".into(),
                format!("https://127.0.0.1:{tls_port}"),
                "--tls-ca".into(),
                other_ca.to_str().unwrap().into(),
            ],
            "not signed by the CA given",
        ),
    ];
    for (flags, hint) in cases {
        let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
        args.extend(["account", "get", "1"]);
        let (code, stderr, took) = fails_fast(&args);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(hint),
            "{args:?}: expected {hint:?} in {stderr}"
        );
        assert!(
            !stderr.contains("outcome unknown after"),
            "{args:?}: {stderr}"
        );
        assert!(
            took < std::time::Duration::from_secs(3),
            "{args:?} took {took:?}"
        );
    }
    let _ = tls_node.kill();
    let _ = tls_node.wait();
}

#[test]
fn completions_cover_every_command_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let output = Command::new(ledgerctl())
            .args(["completions", shell])
            .output()
            .expect("ledgerctl runs");
        assert!(output.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&output.stdout);
        for word in ["cluster", "replace", "kill-leader", "connect-timeout"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let refused = Command::new(ledgerctl())
        .args(["completions", "tcsh"])
        .output()
        .expect("ledgerctl runs");
    assert_eq!(
        refused.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}
