//! Secure by default, against real processes: forged Raft messages from callers without the
//! cluster's credentials change nothing on either port, a node that is no longer a member is
//! refused, and a node on a non-loopback address refuses to start without TLS and tokens
//! unless told `--insecure`, and then says so.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ledger_client::local_cluster::http_get;
use ledger_client::proto::admin::ChangeMembershipRequest;
use ledger_client::proto::raft::raft_client::RaftClient;
use ledger_client::proto::raft::RaftRequest;
use ledger_server::raft::network::seal;
use ledger_server::raft::types::TypeConfig;
use ledger_server::security::peer::PEER_SECRET_HEADER;
use ledger_server::storage::snapshot_file::SnapshotMeta;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{CommittedLeaderId, LogId, Vote};
use support::Harness;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

/// The term an attacker claims: far above any the cluster reached.
const FORGED_TERM: u64 = 1_000;

fn channel(addr: &str) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .connect_lazy()
}

/// The three Raft RPCs, each sealed as a node would send it, claiming to come from `from` in
/// term [`FORGED_TERM`]: a vote request, a leader's empty append, a snapshot's first chunk.
fn forged(from: u64) -> Vec<(&'static str, RaftRequest)> {
    let vote = Vote::new_committed(FORGED_TERM, from);
    let far = Some(LogId::new(
        CommittedLeaderId::new(FORGED_TERM - 1, from),
        1_000_000,
    ));
    let envelope = |payload: (Vec<u8>, u32)| RaftRequest {
        cluster_name: "ledger".into(),
        from_node_id: from,
        payload: payload.0,
        crc32: payload.1,
        ..Default::default()
    };
    let request_vote = VoteRequest {
        vote: Vote::new(FORGED_TERM, from),
        last_log_id: far,
    };
    let append = AppendEntriesRequest::<TypeConfig> {
        vote,
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    };
    let snapshot = InstallSnapshotRequest::<TypeConfig> {
        vote,
        meta: SnapshotMeta {
            last_log_id: far,
            ..Default::default()
        },
        offset: 0,
        data: vec![0; 16],
        done: false,
    };
    vec![
        ("Vote", envelope(seal(&request_vote).expect("seal"))),
        ("AppendEntries", envelope(seal(&append).expect("seal"))),
        ("InstallSnapshot", envelope(seal(&snapshot).expect("seal"))),
    ]
}

/// Sends one forged RPC, with `secret` in the peer header if given.
async fn send(
    addr: &str,
    rpc: &str,
    envelope: RaftRequest,
    secret: Option<&str>,
) -> Result<(), tonic::Status> {
    let mut request = tonic::Request::new(envelope);
    if let Some(secret) = secret {
        request
            .metadata_mut()
            .insert(PEER_SECRET_HEADER, secret.parse().expect("ascii secret"));
    }
    let mut client = RaftClient::new(channel(addr));
    let result = match rpc {
        "Vote" => client.vote(request).await,
        "AppendEntries" => client.append_entries(request).await,
        _ => client.install_snapshot(request).await,
    };
    result.map(|_| ())
}

/// The value of a metric sample line that starts with `prefix`, on node `id`.
fn metric(h: &Harness, id: u64, prefix: &str) -> Option<f64> {
    let (_, body) = http_get(h.cluster.http_addr(id), "/metrics")?;
    body.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Every node's (term, leader) as it reports them.
async fn terms(h: &Harness) -> Vec<(u64, u64, u64)> {
    let mut out = Vec::new();
    for id in 1..=3 {
        let s = h.status(id).await.expect("status");
        out.push((id, s.current_term, s.leader_id));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_raft_messages_without_credentials_change_nothing() {
    let h = Harness::start(3, &[]);
    let leader = h.leader().await;
    let member = if leader == 1 { 2 } else { 1 };
    let before = terms(&h).await;
    let wrong = "this-is-not-the-cluster-secret-0123456789";

    for target in [leader, member] {
        let client_port = h.cluster.grpc_addr(target).to_string();
        let peer_port = h.cluster.peer_addr(target).to_string();
        for (rpc, envelope) in forged(member) {
            // The client port does not serve Raft at all.
            let status = send(&client_port, rpc, envelope.clone(), None)
                .await
                .expect_err("no Raft on the client port");
            assert_eq!(status.code(), Code::Unimplemented, "{rpc}: {status:?}");
            // The peer port refuses callers without the secret, or with a wrong one.
            for secret in [None, Some(wrong)] {
                let status = send(&peer_port, rpc, envelope.clone(), secret)
                    .await
                    .expect_err("refused without the secret");
                assert_eq!(status.code(), Code::Unauthenticated, "{rpc}: {status:?}");
            }
        }
    }
    // A refused call never reached the Raft core: no term moved, no leader changed. (A vote
    // or append that got through would have raised the receiver's term before it answered.)
    assert_eq!(terms(&h).await, before, "terms and leaders unchanged");
    let refused = metric(
        &h,
        leader,
        "ledger_peer_refusals_total{reason=\"unauthenticated\"}",
    )
    .expect("refusals counted");
    assert!(refused >= 6.0, "{refused}");
    let log = std::fs::read_to_string(h.cluster.node(leader).data_dir.with_extension("log"))
        .expect("node log");
    assert!(log.contains("peer call refused"), "refusals are logged");
    assert!(
        !log.contains(&h.peer_secret()),
        "the secret leaked into the log"
    );

    // A node that is no longer a member is refused, even with the cluster's secret.
    let secret = h.peer_secret();
    let removed = if leader == 3 { member } else { 3 };
    let voters: Vec<u64> = (1..=3).filter(|id| *id != removed).collect();
    h.admin(leader)
        .await
        .change_membership(ChangeMembershipRequest {
            voter_ids: voters.clone(),
            retain: false,
        })
        .await
        .expect("remove a node");
    let before = terms(&h).await;
    let (rpc, envelope) = forged(removed).swap_remove(1);
    let status = send(
        &h.cluster.peer_addr(leader).to_string(),
        rpc,
        envelope,
        Some(&secret),
    )
    .await
    .expect_err("a removed node is refused");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("LEDGER_NOT_A_MEMBER"),
        "{status:?}"
    );
    let after = terms(&h).await;
    assert_eq!(after[leader as usize - 1], before[leader as usize - 1]);
    assert!(
        metric(
            &h,
            leader,
            "ledger_peer_refusals_total{reason=\"not_a_member\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "not-a-member refusals counted"
    );

    // The control: the same append, from a member and with the secret, reaches the Raft core
    // and raises the follower's term to the forged one. So the unchanged terms above are the
    // checks at work, not an attack that could not have worked anyway.
    let follower = voters
        .iter()
        .copied()
        .find(|id| *id != leader)
        .expect("a follower");
    let (rpc, envelope) = forged(leader).swap_remove(1);
    let leader_incarnation = h.status(leader).await.expect("status").incarnation;
    let follower_incarnation = h.status(follower).await.expect("status").incarnation;
    let follower_peer = h.cluster.peer_addr(follower).to_string();
    // The same append from another incarnation of the leader (one that lost its data), or
    // meant for another incarnation of the follower, is refused, and moves no term.
    for (from, to, code, reason) in [
        (
            leader_incarnation ^ 1,
            follower_incarnation,
            Code::PermissionDenied,
            "LEDGER_UNKNOWN_INCARNATION",
        ),
        (
            leader_incarnation,
            follower_incarnation ^ 1,
            Code::FailedPrecondition,
            "LEDGER_WRONG_INCARNATION",
        ),
    ] {
        let envelope = RaftRequest {
            from_incarnation: from,
            to_incarnation: to,
            ..envelope.clone()
        };
        let status = send(&follower_peer, rpc, envelope, Some(&secret))
            .await
            .expect_err("another incarnation is refused");
        assert_eq!(status.code(), code, "{status:?}");
        assert!(status.message().starts_with(reason), "{status:?}");
    }
    assert!(h.status(follower).await.expect("status").current_term < FORGED_TERM);
    let envelope = RaftRequest {
        from_incarnation: leader_incarnation,
        to_incarnation: follower_incarnation,
        ..envelope
    };
    send(&follower_peer, rpc, envelope, Some(&secret))
        .await
        .expect("an authenticated append is handled");
    let term = h.status(follower).await.expect("status").current_term;
    assert!(
        term >= FORGED_TERM,
        "the control append raised the term: {term}"
    );
}

fn server() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ledger-server"))
}

/// Starts a node on `0.0.0.0` (all interfaces) with `extra` arguments; returns the process.
fn exposed_node(dir: &Path, extra: &[&str]) -> std::process::Child {
    Command::new(server())
        .args(["--node-id", "1", "--init"])
        .arg("--data-dir")
        .arg(dir)
        .args(["--grpc-addr", "0.0.0.0:0"])
        .args(["--peer-addr", "127.0.0.1:0"])
        .args(["--http-addr", "127.0.0.1:0"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ledger-server starts")
}

#[test]
fn an_exposed_node_needs_tls_and_tokens_or_an_explicit_insecure() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = exposed_node(&dir.path().join("refused"), &[])
        .wait_with_output()
        .expect("exits");
    assert_eq!(output.status.code(), Some(2), "refused as a usage error");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for flag in [
        "--tls-cert",
        "--tls-key",
        "--tls-ca",
        "--auth-file",
        "--insecure",
    ] {
        assert!(stderr.contains(flag), "{flag} not named in: {stderr}");
    }
    assert!(
        !dir.path().join("refused").join("db").exists(),
        "a refused node opens no storage"
    );

    // With --insecure it starts, and says so in its metrics and its readiness.
    let data = dir.path().join("insecure");
    let mut child = exposed_node(&data, &["--insecure"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let addrs: serde_json::Value = loop {
        if let Ok(bytes) = std::fs::read(data.join("addrs.json")) {
            if let Ok(v) = serde_json::from_slice(&bytes) {
                break v;
            }
        }
        assert!(Instant::now() < deadline, "the insecure node did not start");
        assert!(child.try_wait().expect("poll").is_none(), "it exited");
        std::thread::sleep(Duration::from_millis(50));
    };
    let http: std::net::SocketAddr = addrs["http"]
        .as_str()
        .expect("http address")
        .parse()
        .expect("address");
    let (_, metrics) = http_get(http, "/metrics").expect("metrics");
    assert!(
        metrics.lines().any(|l| l == "ledger_insecure 1"),
        "ledger_insecure is 1"
    );
    let ready = loop {
        let (code, body) = http_get(http, "/health/ready").expect("ready answers");
        if code == 200 || Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let ready: serde_json::Value = serde_json::from_str(&ready).expect("json");
    assert!(
        ready["insecure"]
            .as_str()
            .is_some_and(|s| s.contains("0.0.0.0")),
        "{ready}"
    );
    let _ = child.kill();
    let output = child.wait_with_output().expect("exits");
    let log = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("INSECURE"), "the warning is logged: {log}");

    // --dev never leaves loopback.
    let output = exposed_node(&dir.path().join("dev"), &["--dev", "--insecure"])
        .wait_with_output()
        .expect("exits");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--dev"));
}
