//! What an operator relies on, against real processes: metrics that exist and move, readiness
//! that follows a partition, a backup restored into a new cluster with the same digest,
//! membership changes and a node replacement under load, and a rolling restart under load.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger_client::local_cluster::{http_get, LocalCluster, NodeOptions};
use ledger_client::{ClientConfig, LedgerClient, WriteResult};
use ledger_core::{Account, AccountFlags, Transfer};
use support::ledgerctl_json;
use support::Harness;

const BANK: u128 = 1;
const PLAYER: u128 = 2;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn connect(endpoints: Vec<String>) -> LedgerClient {
    LedgerClient::with_config(ClientConfig::new(endpoints))
        .await
        .expect("client")
}

async fn open_accounts(client: &LedgerClient) {
    let accounts = vec![
        Account {
            id: BANK,
            ledger: 1,
            code: 1,
            ..Account::default()
        },
        Account {
            id: PLAYER,
            ledger: 1,
            code: 1,
            flags: AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
            ..Account::default()
        },
    ];
    let results = client.create_accounts(accounts).await.expect("accounts");
    assert!(results.iter().all(|r| r.is_success()), "{results:?}");
}

fn transfer(id: u128) -> Transfer {
    Transfer {
        id,
        debit_account_id: BANK,
        credit_account_id: PLAYER,
        amount: 1,
        ledger: 1,
        code: 1,
        ..Transfer::default()
    }
}

/// Parses Prometheus text into `name{labels}` -> value.
fn scrape(cluster: &LocalCluster, id: u64) -> BTreeMap<String, f64> {
    let (code, body) = http_get(cluster.http_addr(id), "/metrics").expect("metrics answer");
    assert_eq!(code, 200);
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn sum_of(metrics: &BTreeMap<String, f64>, prefix: &str) -> f64 {
    metrics
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v)
        .sum()
}

/// Streams transfers with fresh ids until stopped; returns how many were acknowledged.
fn writer(
    client: LedgerClient,
    first_id: u128,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<u128> {
    tokio::spawn(async move {
        let mut id = first_id;
        while !stop.load(Ordering::Relaxed) {
            let outcome = client.create_transfer(transfer(id)).await;
            assert!(
                matches!(outcome, Ok(r) if r.is_success()),
                "transfer {id}: {outcome:?}"
            );
            id += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        id - first_id
    })
}

/// Every node applied the same state: returns the common digest.
async fn converged(h: &Harness, ids: &[u64]) -> Vec<u8> {
    support::converged_digest(h, ids, Duration::from_secs(30)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_exist_and_move_with_traffic() {
    let h = Harness::start(3, &[]);
    let leader = h.leader().await;
    let client = connect(h.cluster.endpoints()).await;
    open_accounts(&client).await;
    let before = scrape(&h.cluster, leader);
    for name in [
        "ledger_raft_term",
        "ledger_raft_leader_id",
        "ledger_raft_is_leader",
        "ledger_raft_last_log_index",
        "ledger_raft_committed_index",
        "ledger_raft_applied_index",
        "ledger_group_commit_entries_total",
        "ledger_snapshots_built_total",
        "ledger_log_purges_total",
    ] {
        assert!(before.contains_key(name), "{name} missing from {before:?}");
    }
    assert_eq!(before["ledger_raft_is_leader"], 1.0);
    assert_eq!(before["ledger_raft_leader_id"], leader as f64);
    for i in 0..50u128 {
        client.create_transfer(transfer(100 + i)).await.unwrap();
    }
    let after = scrape(&h.cluster, leader);
    assert!(after["ledger_raft_applied_index"] > before["ledger_raft_applied_index"]);
    assert!(
        after["ledger_group_commit_entries_total"]
            >= before["ledger_group_commit_entries_total"] + 1.0
    );
    let created =
        "ledger_requests_total{service=\"Ledger\",method=\"CreateTransfers\",code=\"Ok\"}";
    assert!(after[created] >= 50.0, "{after:?}");
    assert!(
        after["ledger_events_total{kind=\"transfer\",outcome=\"ok\"}"] >= 50.0,
        "{after:?}"
    );
    let latency_count =
        "ledger_request_duration_seconds_count{service=\"Ledger\",method=\"CreateTransfers\"}";
    assert!(after[latency_count] >= 50.0);
    assert!(
        after
            .iter()
            .filter(
                |(k, _)| k.starts_with("ledger_request_duration_seconds_bucket{")
                    && k.contains("method=\"CreateTransfers\"")
            )
            .map(|(_, v)| v)
            .sum::<f64>()
            > 0.0
    );
    assert!(after
        .keys()
        .any(|k| k.starts_with("ledger_raft_replication_lag_entries{follower=")));
    assert!(
        sum_of(&after, "ledger_rocksdb_size_bytes{") > 0.0,
        "{after:?}"
    );
    assert!(after["ledger_group_commit_batch_requests_count"] >= 1.0);
    // A follower applies the same events and knows it is not the leader.
    let follower = h
        .cluster
        .nodes
        .iter()
        .map(|n| n.id)
        .find(|id| *id != leader)
        .unwrap();
    h.wait_applied(
        follower,
        after["ledger_raft_applied_index"] as u64,
        Duration::from_secs(10),
    )
    .await;
    let f = scrape(&h.cluster, follower);
    assert_eq!(f["ledger_raft_is_leader"], 0.0);
    assert!(f["ledger_events_total{kind=\"transfer\",outcome=\"ok\"}"] >= 50.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_is_neither_ready_nor_healthy_nor_counted_as_leader_within_2_s() {
    let h = Harness::start(3, &["--fault-injection"]);
    let leader = h.leader().await;
    let others: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    assert_eq!(scrape(&h.cluster, leader)["ledger_raft_is_leader"], 1.0);
    support::partition(&h, leader, &others).await;
    for other in &others {
        support::partition(&h, *other, &[leader]).await;
    }
    let cut = Instant::now();
    // openraft still calls it leader; readiness, the admin Status and the metrics must not.
    let deadline = cut + Duration::from_secs(2);
    loop {
        let ready = h.cluster.ready(leader);
        let status = h.status(leader).await.expect("status");
        let is_leader = scrape(&h.cluster, leader)["ledger_raft_is_leader"];
        let reason = ready
            .as_ref()
            .and_then(|(_, body)| body["reason"].as_str().map(str::to_string))
            .unwrap_or_default();
        if matches!(ready, Some((false, _))) && !status.healthy && is_leader == 0.0 {
            assert!(reason.contains("quorum"), "{reason}");
            assert!(
                status.unhealthy_reason.contains("quorum"),
                "{}",
                status.unhealthy_reason
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after {:?}: ready {ready:?}, healthy {}, is_leader {is_leader}",
            cut.elapsed(),
            status.healthy
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ledgerctl cluster status names it unhealthy too.
    let endpoint = h.endpoint(leader);
    let status = ledgerctl_json(&["cluster", "status"], &endpoint);
    let node = status["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["node_id"] == leader)
        .cloned()
        .expect("the isolated node");
    assert_eq!(node["healthy"], false, "{status}");
    for id in [leader].iter().chain(&others) {
        support::partition(&h, *id, &[]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_is_lost_by_a_partitioned_node_and_regained_after_healing() {
    let h = Harness::start(3, &["--fault-injection"]);
    let leader = h.leader().await;
    let ids: Vec<u64> = h.cluster.nodes.iter().map(|n| n.id).collect();
    let follower = *ids.iter().find(|id| **id != leader).unwrap();
    let others: Vec<u64> = ids.iter().copied().filter(|id| *id != follower).collect();
    assert!(matches!(h.cluster.ready(follower), Some((true, _))));
    support::partition(&h, follower, &others).await;
    for other in &others {
        support::partition(&h, *other, &[follower]).await;
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let reason = loop {
        if let Some((false, body)) = h.cluster.ready(follower) {
            break body["reason"].as_str().unwrap_or_default().to_string();
        }
        assert!(Instant::now() < deadline, "a cut-off node stayed ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!reason.is_empty());
    // The majority side stays ready.
    assert!(
        matches!(h.cluster.ready(others[0]), Some((true, _)))
            || matches!(h.cluster.ready(others[1]), Some((true, _)))
    );
    for id in &ids {
        support::partition(&h, *id, &[]).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while !matches!(h.cluster.ready(follower), Some((true, _))) {
        assert!(Instant::now() < deadline, "not ready again after healing");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Two consecutive free ports (gRPC, HTTP) for a node that must know its address in advance.
/// The first of three consecutive free ports (a node's client, HTTP and peer ports).
fn free_port_triple() -> u16 {
    loop {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if port < u16::MAX - 2
            && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", port + 2)).is_ok()
        {
            return port;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_into_a_new_cluster_with_the_same_digest() {
    let h = Harness::start(3, &[]);
    let endpoints = h.cluster.endpoints().join(",");
    let client = connect(h.cluster.endpoints()).await;
    open_accounts(&client).await;
    for i in 0..200u128 {
        client.create_transfer(transfer(1_000 + i)).await.unwrap();
    }
    let file = h.dir.path().join("ledger.lbk");
    let backup = ledgerctl_json(&["backup", "--out", file.to_str().unwrap()], &endpoints);
    let digest = backup["state_digest"].as_str().unwrap().to_string();
    let applied = backup["applied_index"].as_u64().unwrap();
    assert!(applied > 0);
    // The source cluster's own digest at that point: every node agrees on it (no writes since).
    let source = converged(&h, &[1, 2, 3]).await;
    assert_eq!(hex(&source), digest);

    // Restore into a new one-node cluster on new ports.
    let target = tempfile::tempdir().unwrap();
    let port = free_port_triple();
    let server = PathBuf::from(env!("CARGO_BIN_EXE_ledger-server"));
    let node_dir = target.path().join("node1");
    let output = Command::new(&server)
        .args([
            "restore",
            "--from",
            file.to_str().unwrap(),
            "--node-id",
            "1",
        ])
        .arg("--data-dir")
        .arg(&node_dir)
        .args(["--advertise-addr", &format!("127.0.0.1:{port}")])
        .args(["--advertise-peer-addr", &format!("127.0.0.1:{}", port + 2)])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["state_digest"], digest.as_str());
    // Restoring twice into the same directory is refused.
    let again = Command::new(&server)
        .args([
            "restore",
            "--from",
            file.to_str().unwrap(),
            "--node-id",
            "1",
        ])
        .arg("--data-dir")
        .arg(&node_dir)
        .args(["--advertise-addr", &format!("127.0.0.1:{port}")])
        .args(["--advertise-peer-addr", &format!("127.0.0.1:{}", port + 2)])
        .output()
        .unwrap();
    assert!(!again.status.success());

    let options = NodeOptions {
        base_port: Some(port),
        ..NodeOptions::default()
    };
    let restored = LocalCluster::start(&server, target.path(), 1, options).unwrap();
    restored.wait_ready(Duration::from_secs(30)).unwrap();
    let restored_client = connect(restored.endpoints()).await;
    let player = restored_client.lookup_accounts(&[PLAYER]).await.unwrap()[0];
    assert_eq!(player.credits_posted, 200);
    let verify = ledgerctl_json(&["verify"], &restored.endpoints().join(","));
    assert_eq!(verify["ok"], true, "{verify}");
    let status = ledgerctl_json(&["cluster", "status"], &restored.endpoints().join(","));
    assert_eq!(
        status["nodes"][0]["state_digest"],
        digest.as_str(),
        "{status}"
    );
    // The new cluster takes writes.
    let outcome = restored_client.create_transfer(transfer(9_999)).await;
    assert!(matches!(outcome, Ok(r) if r.is_success()), "{outcome:?}");

    // A damaged backup is refused before anything is written.
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    let damaged = target.path().join("damaged.lbk");
    std::fs::write(&damaged, bytes).unwrap();
    let output = Command::new(&server)
        .args([
            "restore",
            "--from",
            damaged.to_str().unwrap(),
            "--node-id",
            "1",
        ])
        .arg("--data-dir")
        .arg(target.path().join("other"))
        .args(["--advertise-addr", "127.0.0.1:1"])
        .args(["--advertise-peer-addr", "127.0.0.1:2"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("damaged"));
    assert!(!target.path().join("other").join("db").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_and_a_node_replacement_under_load_lose_nothing() {
    let mut h = Harness::start(3, &[]);
    let endpoints = h.cluster.endpoints().join(",");
    let client = connect(h.cluster.endpoints()).await;
    open_accounts(&client).await;
    let stop = Arc::new(AtomicBool::new(false));
    let task = writer(client.clone(), 10_000, stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The documented replacement of a node that lost its disk: remove, wipe, start empty,
    // add as a learner (waits until caught up), promote.
    let leader = h.leader().await;
    let victim = h
        .cluster
        .nodes
        .iter()
        .map(|n| n.id)
        .find(|id| *id != leader)
        .unwrap();
    let voters: Vec<String> = h
        .cluster
        .nodes
        .iter()
        .map(|n| n.id)
        .filter(|id| *id != victim)
        .map(|id| id.to_string())
        .collect();
    ledgerctl_json(
        &["cluster", "remove", "--node-id", &victim.to_string()],
        &endpoints,
    );
    let members = ledgerctl_json(&["cluster", "members"], &endpoints);
    assert_eq!(
        members["voters"].as_array().unwrap().len(),
        voters.len(),
        "{members}"
    );
    h.cluster.kill(victim).unwrap();
    h.cluster.wipe(victim).unwrap();
    h.cluster.restart(victim).unwrap();
    let address = h.cluster.grpc_addr(victim).to_string();
    let peer_address = h.cluster.peer_addr(victim).to_string();
    ledgerctl_json(
        &[
            "cluster",
            "add-learner",
            "--node-id",
            &victim.to_string(),
            "--peer-address",
            &peer_address,
            "--address",
            &address,
        ],
        &endpoints,
    );
    let members = ledgerctl_json(&["cluster", "members"], &endpoints);
    assert_eq!(
        members["learners"].as_array().unwrap().len(),
        1,
        "{members}"
    );
    let status = ledgerctl_json(&["cluster", "status"], &endpoints);
    assert!(
        status["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n.get("lag").is_some()),
        "{status}"
    );
    ledgerctl_json(
        &["cluster", "promote", "--node-id", &victim.to_string()],
        &endpoints,
    );
    let members = ledgerctl_json(&["cluster", "members"], &endpoints);
    assert_eq!(members["voters"].as_array().unwrap().len(), 3, "{members}");
    tokio::time::sleep(Duration::from_millis(500)).await;

    stop.store(true, Ordering::Relaxed);
    let acknowledged = task.await.unwrap();
    assert!(acknowledged > 0);
    converged(&h, &[1, 2, 3]).await;
    let player = client.lookup_accounts(&[PLAYER]).await.unwrap()[0];
    assert_eq!(
        player.credits_posted, acknowledged,
        "every acknowledged transfer, once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_keeps_serving_and_loses_nothing() {
    let mut h = Harness::start(3, &[]);
    let client = connect(h.cluster.endpoints()).await;
    open_accounts(&client).await;
    let stop = Arc::new(AtomicBool::new(false));
    let task = writer(client.clone(), 50_000, stop.clone());
    // Followers first, the leader last (openraft 0.9 has no leadership transfer: stopping the
    // leader costs one election, which the client's retries absorb).
    let leader = h.leader().await;
    let mut order: Vec<u64> = h
        .cluster
        .nodes
        .iter()
        .map(|n| n.id)
        .filter(|id| *id != leader)
        .collect();
    order.push(leader);
    for id in order {
        tokio::time::sleep(Duration::from_millis(300)).await;
        h.cluster.signal(id, "TERM").unwrap();
        h.cluster.restart(id).unwrap();
        h.cluster.wait_ready(Duration::from_secs(30)).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let acknowledged = task.await.unwrap();
    converged(&h, &[1, 2, 3]).await;
    let player = client.lookup_accounts(&[PLAYER]).await.unwrap()[0];
    assert_eq!(player.credits_posted, acknowledged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_is_followed_from_the_leader_to_the_apply_on_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let options = NodeOptions {
        extra_args: vec!["--log-format".into(), "json".into()],
        env: vec![("RUST_LOG".into(), "ledger_server=debug,info".into())],
        ..NodeOptions::default()
    };
    let server = PathBuf::from(env!("CARGO_BIN_EXE_ledger-server"));
    let cluster = LocalCluster::start(&server, dir.path(), 3, options).unwrap();
    cluster.wait_ready(Duration::from_secs(60)).unwrap();
    let leader_client = connect(cluster.endpoints()).await;
    open_accounts(&leader_client).await;
    // Through the raw API, with a request id of our own.
    let mut raw = None;
    for endpoint in cluster.endpoints() {
        let mut grpc = ledger_client::proto::ledger::ledger_client::LedgerClient::connect(endpoint)
            .await
            .unwrap();
        let answer = grpc
            .create_transfers(ledger_client::proto::ledger::CreateTransfersRequest {
                transfers: vec![ledger_client::convert::transfer_to_pb(&transfer(77))],
                request_id: "trace-me-0123".into(),
            })
            .await;
        if let Ok(answer) = answer {
            raw = Some(answer.into_inner());
            break;
        }
    }
    let answer = raw.expect("the leader answered");
    assert_eq!(answer.results, vec![0]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logs: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| std::fs::read_to_string(n.data_dir.with_extension("log")).unwrap_or_default())
            .collect();
        let applied_everywhere = logs.iter().all(|l| {
            l.lines()
                .any(|line| line.contains("trace-me-0123") && line.contains("applied"))
        });
        let proposed = logs.iter().any(|l| {
            l.lines()
                .any(|line| line.contains("trace-me-0123") && line.contains("proposing"))
        });
        if applied_everywhere && proposed {
            // JSON lines.
            let line = logs[0]
                .lines()
                .find(|l| l.contains("trace-me-0123"))
                .unwrap();
            assert!(
                serde_json::from_str::<serde_json::Value>(line).is_ok(),
                "{line}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "request id not in every node's log"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
