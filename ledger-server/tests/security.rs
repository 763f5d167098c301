//! Security and overload against real processes: a TLS cluster that refuses plaintext clients
//! and certificates from another CA, token roles enforced per method, and limits answered with
//! the right status while nothing is applied.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ledger_client::local_cluster::{LocalCluster, NodeOptions};
use ledger_client::proto::admin::admin_client::AdminClient;
use ledger_client::proto::admin::{BackupRequest, StatusRequest, VerifyRequest};
use ledger_client::proto::ledger as pb;
use ledger_client::proto::ledger::ledger_client::LedgerClient as LedgerGrpc;
use ledger_client::proto::raft::raft_client::RaftClient;
use ledger_client::proto::raft::RaftRequest;
use ledger_client::{AuthChannel, ClientConfig, Credentials, LedgerClient};
use support::{account, transfer, READY_TIMEOUT};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic::Code;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

fn ledgerctl() -> PathBuf {
    let server = PathBuf::from(env!("CARGO_BIN_EXE_ledger-server"));
    server.with_file_name("ledgerctl")
}

/// Runs ledgerctl and returns its stdout; panics with its stderr on failure.
fn ledgerctl_ok(args: &[&str], env: &[(&str, &str)]) -> String {
    let output = Command::new(ledgerctl())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("ledgerctl runs");
    assert!(
        output.status.success(),
        "ledgerctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

fn start(dir: &Path, nodes: u64, options: NodeOptions) -> LocalCluster {
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_ledger-server"));
    let cluster = LocalCluster::start(&binary, dir, nodes, options).expect("cluster starts");
    cluster.wait_ready(READY_TIMEOUT).expect("cluster ready");
    cluster
}

fn pem(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("pem file")
}

/// The TLS arguments of node `id` from a directory made by `ledgerctl certs`.
fn tls_args(certs: &Path, id: u64) -> Vec<String> {
    let file = |name: String| certs.join(name).display().to_string();
    vec![
        "--tls-cert".into(),
        file(format!("node-{id}.pem")),
        "--tls-key".into(),
        file(format!("node-{id}-key.pem")),
        "--tls-ca".into(),
        file("ca.pem".into()),
    ]
}

/// The peer secret `LocalCluster` made for the cluster in `dir`.
fn peer_secret(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(ledger_client::local_cluster::PEER_SECRET_FILE))
        .expect("peer secret")
        .trim()
        .to_string()
}

/// A Raft call that carries `secret` as a node's would.
fn with_secret(envelope: RaftRequest, secret: &str) -> tonic::Request<RaftRequest> {
    let mut request = tonic::Request::new(envelope);
    request.metadata_mut().insert(
        ledger_server::security::peer::PEER_SECRET_HEADER,
        secret.parse().expect("ascii secret"),
    );
    request
}

/// Sends an (empty) `Vote` claiming to come from node `from`, over TLS configured by `tls`, to
/// the peer port at `addr`, with the peer secret; returns the refusal.
async fn refused_vote(addr: &str, tls: ClientTlsConfig, from: u64, secret: &str) -> tonic::Status {
    let channel = Endpoint::from_shared(format!("https://{addr}"))
        .expect("uri")
        .tls_config(tls)
        .expect("tls config")
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(Duration::from_secs(3))
        .connect_lazy();
    RaftClient::new(channel)
        .vote(with_secret(
            RaftRequest {
                cluster_name: "ledger".into(),
                from_node_id: from,
                ..Default::default()
            },
            secret,
        ))
        .await
        .expect_err("refused")
}

async fn ledger(address: &str, credentials: &Credentials) -> LedgerGrpc<AuthChannel> {
    LedgerGrpc::new(
        credentials
            .channel(address, CONNECT_TIMEOUT)
            .await
            .expect("connects"),
    )
}

async fn admin(address: &str, credentials: &Credentials) -> AdminClient<AuthChannel> {
    AdminClient::new(
        credentials
            .channel(address, CONNECT_TIMEOUT)
            .await
            .expect("connects"),
    )
}

fn accounts_request(ids: &[u128]) -> pb::CreateAccountsRequest {
    pb::CreateAccountsRequest {
        accounts: ids.iter().map(|id| account(*id, 0)).collect(),
        request_id: String::new(),
    }
}

fn lookup(ids: &[u128]) -> pb::LookupRequest {
    pb::LookupRequest {
        ids: ids.iter().map(|id| (*id).into()).collect(),
        consistency: pb::ReadConsistency::Linearizable as i32,
    }
}

/// Ids of `ids` that exist, read through a client with full rights.
async fn existing_accounts(client: &mut LedgerGrpc<AuthChannel>, ids: &[u128]) -> usize {
    client
        .lookup_accounts(lookup(ids))
        .await
        .expect("lookup")
        .into_inner()
        .accounts
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_cluster_refuses_plaintext_clients_and_foreign_certificates() {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = dir.path().join("certs");
    let other = dir.path().join("other-ca");
    ledgerctl_ok(
        &["certs", "--out", certs.to_str().unwrap(), "--nodes", "3"],
        &[],
    );
    ledgerctl_ok(
        &["certs", "--out", other.to_str().unwrap(), "--nodes", "1"],
        &[],
    );
    let node_args: BTreeMap<u64, Vec<String>> =
        (1..=3).map(|id| (id, tls_args(&certs, id))).collect();
    let cluster = start(
        &dir.path().join("cluster"),
        3,
        NodeOptions {
            node_args,
            ..NodeOptions::default()
        },
    );
    let endpoints = cluster.endpoints();
    let leader_addr = cluster.grpc_addr(1).to_string();

    // A client trusting the cluster CA writes; the write needs a quorum, so the nodes
    // replicate to each other over mutual TLS.
    let trusted = Credentials::new().with_tls_ca_pem(pem(&certs.join("ca.pem")));
    let client = LedgerClient::with_config(
        ClientConfig::new(endpoints.clone()).with_credentials(trusted.clone()),
    )
    .await
    .expect("client");
    let results = client
        .create_accounts(vec![
            ledger_core::Account {
                id: 1,
                ledger: 1,
                code: 1,
                ..Default::default()
            },
            ledger_core::Account {
                id: 2,
                ledger: 1,
                code: 1,
                ..Default::default()
            },
        ])
        .await
        .expect("TLS client writes");
    assert!(results
        .iter()
        .all(|r| ledger_client::WriteResult::is_success(*r)));

    // A plaintext client gets no answer from the TLS port; nothing it sent is applied.
    let plaintext = Endpoint::from_shared(format!("http://{leader_addr}"))
        .expect("uri")
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(Duration::from_secs(3))
        .connect_lazy();
    let refused = LedgerGrpc::new(plaintext)
        .create_accounts(accounts_request(&[3]))
        .await
        .expect_err("plaintext refused");
    assert_ne!(refused.code(), Code::Ok);

    // A client that trusts another CA does not accept the nodes' certificates.
    let wrong_ca = Credentials::new().with_tls_ca_pem(pem(&other.join("ca.pem")));
    assert!(
        wrong_ca
            .channel(&leader_addr, CONNECT_TIMEOUT)
            .await
            .is_err(),
        "a certificate from another CA must not be trusted"
    );

    // The client port serves no Raft at all...
    let mut on_client_port = RaftClient::new(
        trusted
            .channel(&leader_addr, CONNECT_TIMEOUT)
            .await
            .expect("TLS connects"),
    );
    let status = on_client_port
        .vote(RaftRequest {
            cluster_name: "ledger".into(),
            from_node_id: 2,
            ..Default::default()
        })
        .await
        .expect_err("no Raft on the client port");
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    assert!(status.message().contains("peer port"), "{status:?}");

    // ...and the peer port requires a node certificate in the handshake: a TLS client without
    // one gets no answer from the Raft service.
    let peer_addr = cluster.peer_addr(1).to_string();
    let secret = peer_secret(dir.path().join("cluster").as_path());
    let no_cert =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem(&certs.join("ca.pem"))));
    let status = refused_vote(&peer_addr, no_cert, 2, &secret).await;
    assert!(
        !status.message().contains("LEDGER_INVALID"),
        "the request must not reach the Raft service: {status:?}"
    );

    // ...and a would-be node with a certificate from another CA cannot even connect.
    let foreign = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pem(&certs.join("ca.pem"))))
        .identity(Identity::from_pem(
            pem(&other.join("node-1.pem")),
            pem(&other.join("node-1-key.pem")),
        ));
    // From a member (2), so that the request would get as far as decoding its (empty) payload
    // and answer INVALID_ARGUMENT if the handshake let it through.
    let status = refused_vote(&peer_addr, foreign, 2, &secret).await;
    assert_ne!(status.code(), Code::Ok);
    assert!(
        !status.message().contains("LEDGER_"),
        "the request must not reach the Raft service: {status:?}"
    );

    // A node's own certificate cannot speak for another node.
    let node_one = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pem(&certs.join("ca.pem"))))
        .identity(Identity::from_pem(
            pem(&certs.join("node-1.pem")),
            pem(&certs.join("node-1-key.pem")),
        ));
    let status = refused_vote(&cluster.peer_addr(2).to_string(), node_one, 3, &secret).await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("LEDGER_PEER_MISMATCH"),
        "{status:?}"
    );

    // Nothing the refused callers sent was applied.
    let found = client.lookup_accounts(&[1, 2, 3]).await.expect("lookup");
    assert_eq!(found.len(), 2, "{found:?}");

    // ledgerctl speaks TLS with --tls-ca (through the environment here).
    let out = ledgerctl_ok(
        &["cluster", "status", "--json"],
        &[
            ("LEDGER_ENDPOINTS", &endpoints.join(",")),
            ("LEDGER_TLS_CA", certs.join("ca.pem").to_str().unwrap()),
        ],
    );
    assert!(out.contains("\"Leader\""), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_roles_are_enforced_per_method() {
    let dir = tempfile::tempdir().expect("temp dir");
    let auth = dir.path().join("auth.json");
    let auth_arg = auth.to_str().unwrap();
    let mut tokens = BTreeMap::new();
    for (name, role) in [
        ("dashboard", "read"),
        ("payments", "write"),
        ("ops", "admin"),
    ] {
        let token = ledgerctl_ok(
            &[
                "token",
                "--name",
                name,
                "--role",
                role,
                "--auth-file",
                auth_arg,
            ],
            &[],
        );
        tokens.insert(role, token.trim().to_string());
    }
    let file = std::fs::read_to_string(&auth).expect("auth file");
    for token in tokens.values() {
        assert!(
            !file.contains(token.as_str()),
            "the auth file must not hold tokens"
        );
    }
    let cluster = start(
        &dir.path().join("cluster"),
        1,
        NodeOptions {
            // Plaintext with tokens is allowed only with --dev (tokens in clear on loopback).
            extra_args: vec!["--auth-file".into(), auth_arg.into(), "--dev".into()],
            ..NodeOptions::default()
        },
    );
    let addr = cluster.grpc_addr(1).to_string();
    let with = |role: &str| Credentials::new().with_token(&tokens[role]).expect("token");

    // No token, a wrong token: UNAUTHENTICATED, for reads and writes alike.
    for credentials in [
        Credentials::new(),
        Credentials::new().with_token("ldg_wrong").unwrap(),
    ] {
        let mut client = ledger(&addr, &credentials).await;
        let status = client
            .create_accounts(accounts_request(&[10]))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        let status = client
            .lookup_accounts(lookup(&[10]))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        let status = admin(&addr, &credentials)
            .await
            .status(StatusRequest {})
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }

    // read: lookups and status, not writes or admin.
    let mut reader = ledger(&addr, &with("read")).await;
    assert_eq!(existing_accounts(&mut reader, &[10]).await, 0);
    let status = reader
        .create_accounts(accounts_request(&[10]))
        .await
        .expect_err("read cannot write");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("needs write"), "{status:?}");
    let mut read_admin = admin(&addr, &with("read")).await;
    read_admin
        .status(StatusRequest {})
        .await
        .expect("read sees status");
    let status = read_admin
        .verify(VerifyRequest::default())
        .await
        .expect_err("read cannot verify");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // write: writes, not admin.
    let mut writer = ledger(&addr, &with("write")).await;
    let written = writer
        .create_accounts(accounts_request(&[11]))
        .await
        .expect("write can write")
        .into_inner();
    assert_eq!(written.results, vec![0]);
    let status = match admin(&addr, &with("write"))
        .await
        .backup(BackupRequest {})
        .await
    {
        Ok(_) => panic!("write must not take backups"),
        Err(status) => status,
    };
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // admin: everything.
    admin(&addr, &with("admin"))
        .await
        .verify(VerifyRequest::default())
        .await
        .expect("admin verifies");

    // The refused write of account 10 left nothing; the allowed one is there.
    assert_eq!(existing_accounts(&mut reader, &[10, 11]).await, 1);

    // ledgerctl sends LEDGER_TOKEN.
    ledgerctl_ok(
        &[
            "account", "create", "--id", "12", "--ledger", "1", "--code", "1",
        ],
        &[
            ("LEDGER_ENDPOINTS", &format!("http://{addr}")),
            ("LEDGER_TOKEN", &tokens["write"]),
        ],
    );
    assert_eq!(existing_accounts(&mut reader, &[12]).await, 1);

    // Refusals are logged with the token's name, never with a secret.
    let log =
        std::fs::read_to_string(cluster.node(1).data_dir.with_extension("log")).expect("node log");
    assert!(log.contains("call refused"), "refusals are logged");
    assert!(log.contains("dashboard"), "the refused token is named");
    for token in tokens.values() {
        assert!(!log.contains(token.as_str()), "a token leaked into the log");
    }
    assert!(
        !log.contains("ldg_wrong"),
        "a wrong token leaked into the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_answered_at_once_and_nothing_is_applied() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = start(
        &dir.path().join("cluster"),
        1,
        NodeOptions {
            extra_args: vec!["--max-requests-in-flight".into(), "4".into()],
            ..NodeOptions::default()
        },
    );
    let addr = cluster.grpc_addr(1).to_string();
    let plain = Credentials::new();
    let mut client = ledger(&addr, &plain).await;
    let written = client
        .create_accounts(accounts_request(&[1, 2]))
        .await
        .expect("accounts")
        .into_inner();
    assert_eq!(written.results, vec![0, 0]);

    // A message over the size limit: RESOURCE_EXHAUSTED with the limit; nothing applied.
    let mut oversized = pb::CreateTransfersRequest {
        transfers: vec![transfer(100, 1, 2, 1)],
        request_id: "x".repeat(17 << 20),
    };
    let status = client
        .create_transfers(oversized.clone())
        .await
        .expect_err("oversized");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("the limit is"), "{status:?}");
    oversized.request_id.clear();

    // More events than a batch may hold, more ids than a query may ask: INVALID_ARGUMENT.
    let too_many = ledger_core::EVENTS_PER_BATCH_MAX + 1;
    let status = client
        .create_transfers(pb::CreateTransfersRequest {
            transfers: (0..too_many as u128)
                .map(|i| transfer(1_000 + i, 1, 2, 1))
                .collect(),
            request_id: String::new(),
        })
        .await
        .expect_err("too many events");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("8189"), "{status:?}");
    let ids: Vec<u128> = (0..too_many as u128).collect();
    let status = client
        .lookup_accounts(lookup(&ids))
        .await
        .expect_err("too many ids");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("8189"), "{status:?}");

    // Far more concurrent calls than the node admits: the excess is refused at once with
    // RESOURCE_EXHAUSTED naming the limit, and exactly the accepted transfers are applied.
    let mut clients = Vec::new();
    for _ in 0..64 {
        clients.push(ledger(&addr, &plain).await);
    }
    let mut calls = Vec::new();
    for (i, mut client) in (0..64u128).zip(clients) {
        calls.push(tokio::spawn(async move {
            client
                .create_transfers(pb::CreateTransfersRequest {
                    transfers: (0..200u128)
                        .map(|j| transfer(10_000 + i * 1_000 + j, 1, 2, 1))
                        .collect(),
                    request_id: String::new(),
                })
                .await
        }));
    }
    let (mut accepted, mut shed) = (0u128, 0u32);
    for call in calls {
        match call.await.expect("task") {
            Ok(response) => {
                let response = response.into_inner();
                assert!(response.results.iter().all(|c| *c == 0), "{response:?}");
                accepted += response.results.len() as u128;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(
                    status.message().contains("limit of 4 requests"),
                    "{status:?}"
                );
                shed += 1;
            }
        }
    }
    assert!(
        shed > 0,
        "64 concurrent calls against a limit of 4 must shed some"
    );
    assert!(accepted > 0, "calls within the limit are served");
    let balances = client
        .lookup_accounts(lookup(&[2]))
        .await
        .expect("lookup")
        .into_inner();
    let credited: u128 = balances.accounts[0]
        .credits_posted
        .map(u128::from)
        .unwrap_or(0);
    assert_eq!(
        credited, accepted,
        "exactly the accepted transfers are applied"
    );

    // The node still serves once the burst is over.
    client
        .create_transfers(oversized)
        .await
        .expect("served after the burst");
}

/// Runs ledgerctl; returns (success, stdout, stderr).
fn ledgerctl_run(args: &[&str], endpoints: &str) -> (bool, String, String) {
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

async fn transfers(client: &LedgerClient, ids: std::ops::Range<u128>) {
    let batch: Vec<ledger_core::Transfer> = ids
        .map(|id| ledger_core::Transfer {
            id,
            debit_account_id: 1,
            credit_account_id: 2,
            amount: 1,
            ledger: 1,
            code: 1,
            ..Default::default()
        })
        .collect();
    for r in client.create_transfers(batch).await.expect("transfers") {
        assert!(ledger_client::WriteResult::is_success(r), "{r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_chain_is_verified_anchored_and_a_tampered_node_is_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cluster = start(&dir.path().join("cluster"), 3, NodeOptions::default());
    let endpoints = cluster.endpoints().join(",");
    let client = LedgerClient::with_config(ClientConfig::new(cluster.endpoints()))
        .await
        .expect("client");
    let accounts: Vec<ledger_core::Account> = [1, 2]
        .map(|id| ledger_core::Account {
            id,
            ledger: 1,
            code: 1,
            ..Default::default()
        })
        .into();
    client.create_accounts(accounts).await.expect("accounts");
    for chunk in 0..5u128 {
        transfers(&client, 100 + chunk * 10..110 + chunk * 10).await;
    }

    // Every node's chain recomputes, and the nodes agree at a common index.
    wait_applied_equal(&endpoints);
    let (ok, out, err) = ledgerctl_run(&["verify", "--json"], &endpoints);
    assert!(ok, "{out}{err}");
    let verify: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    for node in verify["nodes"].as_array().expect("nodes") {
        assert!(node["audit_entries"].as_u64().unwrap_or(0) >= 6, "{node}");
        assert_eq!(node["link"], verify["nodes"][0]["link"], "{verify}");
    }

    // An auditor records the head; later the chain must still pass through it.
    let (ok, out, err) = ledgerctl_run(&["cluster", "status", "--json"], &endpoints);
    assert!(ok, "{err}");
    let status: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    let node = &status["nodes"][0];
    let anchor = format!(
        "{}:{}",
        node["audit_index"],
        node["audit_chain"].as_str().expect("head")
    );
    transfers(&client, 1_000..1_020).await;
    let (ok, out, err) = ledgerctl_run(&["verify", "--anchor", &anchor], &endpoints);
    assert!(ok, "the recorded head is on the chain: {out}{err}");
    let last = with_last_digit_changed(&anchor);
    let (ok, _, err) = ledgerctl_run(&["verify", "--anchor", &last], &endpoints);
    assert!(!ok, "a head that was never on the chain must fail");
    assert!(err.contains("anchor"), "{err}");

    // Alter one audit record on node 3's disk while it is down: verify names the node.
    cluster.kill(3).expect("kill node 3");
    {
        let db = ledger_server::raft::log_store::open_db(cluster.node(3).data_dir.join("db"), 8)
            .expect("open node 3's database");
        let audit = db.cf_handle("audit").expect("audit column family");
        let (key, value) = db
            .iterator_cf(&audit, rocksdb::IteratorMode::Start)
            .next()
            .expect("an audit record")
            .expect("readable");
        let mut value = value.to_vec();
        // version byte, link, entry hash, then the state digest: change the digest.
        value[1 + 32 + 32] ^= 0x01;
        db.put_cf(&audit, key, value).expect("tamper");
        db.flush_wal(true).expect("sync");
    }
    cluster.restart(3).expect("restart node 3");
    cluster.wait_ready(READY_TIMEOUT).expect("ready again");
    let (ok, out, err) = ledgerctl_run(&["verify"], &endpoints);
    assert!(!ok, "a tampered audit record must fail verify: {out}");
    let tampered = format!("http://{}", cluster.grpc_addr(3));
    assert!(
        err.contains(&format!("{tampered}: audit chain")),
        "the tampered node is named: {err}"
    );
    for id in [1, 2] {
        let honest = format!("http://{}: audit chain", cluster.grpc_addr(id));
        assert!(!err.contains(&honest), "node {id} is intact: {err}");
    }
}

/// Waits until every node has applied the same index.
fn wait_applied_equal(endpoints: &str) {
    let deadline = std::time::Instant::now() + READY_TIMEOUT;
    loop {
        let (ok, out, _) = ledgerctl_run(&["cluster", "status", "--json"], endpoints);
        if ok {
            let status: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
            let applied: Vec<u64> = status["nodes"]
                .as_array()
                .expect("nodes")
                .iter()
                .filter_map(|n| n["applied_index"].as_u64())
                .collect();
            if applied.len() == 3 && applied.iter().all(|a| *a == applied[0]) {
                return;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nodes never caught up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The same anchor with its last hex digit changed.
fn with_last_digit_changed(anchor: &str) -> String {
    let mut s = anchor.to_string();
    let last = s.pop().expect("non-empty");
    s.push(if last == '0' { '1' } else { '0' });
    s
}

/// Calls `path` with an empty message and the given bearer token (if any), whatever the
/// method's request type: a refusal happens before the message is decoded.
async fn call_empty(
    addr: &str,
    path: &'static str,
    token: Option<&str>,
) -> Result<(), tonic::Status> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("connects");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let mut request = tonic::Request::new(());
    if let Some(token) = token {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header"),
        );
    }
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    grpc.unary(
        request,
        tonic::codegen::http::uri::PathAndQuery::from_static(path),
        codec,
    )
    .await
    .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_refuses_callers_below_its_role_and_applies_nothing() {
    use ledger_server::security::auth::{Caller, Role, METHODS};

    let dir = tempfile::tempdir().expect("temp dir");
    let auth = dir.path().join("auth.json");
    let mut tokens = BTreeMap::new();
    for role in ["read", "write", "admin"] {
        let token = ledgerctl_ok(
            &[
                "token",
                "--name",
                role,
                "--role",
                role,
                "--auth-file",
                auth.to_str().unwrap(),
                "--valid-days",
                "1",
            ],
            &[],
        );
        tokens.insert(role, token.trim().to_string());
    }
    // An admin token that expired: the file entry a rotation left behind.
    let expired = "ldg_expired_admin_token";
    let mut file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&auth).expect("auth file")).expect("json");
    file["tokens"]
        .as_array_mut()
        .expect("tokens")
        .push(serde_json::json!({
            "name": "old-admin", "role": "admin",
            "sha256": ledger_client::client::token_sha256(expired), "expires_unix": 1
        }));
    std::fs::write(&auth, file.to_string()).expect("write auth file");

    let cluster = start(
        &dir.path().join("cluster"),
        1,
        NodeOptions {
            extra_args: vec!["--auth-file".into(), auth.to_str().unwrap().into()],
            ..NodeOptions::default()
        },
    );
    let addr = cluster.grpc_addr(1).to_string();
    let admin_credentials = Credentials::new()
        .with_token(&tokens["admin"])
        .expect("token");
    let applied = |status: ledger_client::proto::admin::StatusResponse| status.applied_index;
    let before = applied(
        admin(&addr, &admin_credentials)
            .await
            .status(StatusRequest {})
            .await
            .expect("status")
            .into_inner(),
    );

    // First every refusal: no token, an unknown or expired one, a role below the method's.
    let mut allowed = Vec::new();
    let mut checked = 0;
    for (prefix, service, method, caller) in METHODS {
        let path: &'static str = Box::leak(format!("{prefix}{method}").into_boxed_str());
        let Caller::Client(needed) = caller else {
            // Raft's RPCs are not served on the client port at all.
            let status = call_empty(&addr, path, Some(&tokens["admin"]))
                .await
                .expect_err("no Raft on the client port");
            assert_eq!(status.code(), Code::Unimplemented, "{service}.{method}");
            continue;
        };
        for (who, token) in [
            ("no token", None),
            ("an unknown token", Some("ldg_unknown")),
            ("an expired token", Some(expired)),
        ] {
            let status = call_empty(&addr, path, token).await.expect_err("refused");
            assert_eq!(
                status.code(),
                Code::Unauthenticated,
                "{service}.{method} with {who}: {status:?}"
            );
        }
        for (role, granted) in [
            ("read", Role::Read),
            ("write", Role::Write),
            ("admin", Role::Admin),
        ] {
            if granted < *needed {
                let status = call_empty(&addr, path, Some(&tokens[role]))
                    .await
                    .expect_err("role too low");
                assert_eq!(
                    status.code(),
                    Code::PermissionDenied,
                    "{service}.{method} with a {role} token: {status:?}"
                );
            } else {
                allowed.push((*service, *method, path, role));
            }
        }
        checked += 1;
    }
    assert!(
        checked >= 20,
        "every client and admin method was called: {checked}"
    );
    // Nothing a refused caller sent was applied: the applied index is where it was.
    let after = applied(
        admin(&addr, &admin_credentials)
            .await
            .status(StatusRequest {})
            .await
            .expect("status")
            .into_inner(),
    );
    // Then the roles that suffice: past the role check the empty request may be invalid, but
    // never unauthenticated or denied.
    for (service, method, path, role) in allowed {
        if let Err(status) = call_empty(&addr, path, Some(&tokens[role])).await {
            assert!(
                !matches!(
                    status.code(),
                    Code::Unauthenticated | Code::PermissionDenied
                ),
                "{service}.{method} refused a {role} token: {status:?}"
            );
        }
    }
    assert_eq!(after, before, "nothing was applied");
}

/// A message whose field 1 is a number: not a `CreateTransfersRequest`, whose field 1 is a
/// list of transfers.
#[derive(Clone, PartialEq, prost::Message)]
struct NotARequest {
    #[prost(uint64, tag = "1")]
    number: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_request_is_invalid_argument_not_internal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = start(dir.path(), 1, NodeOptions::default());
    let channel = Endpoint::from_shared(format!("http://{}", cluster.grpc_addr(1)))
        .expect("uri")
        .connect()
        .await
        .expect("connects");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let status = grpc
        .unary(
            tonic::Request::new(NotARequest { number: 7 }),
            tonic::codegen::http::uri::PathAndQuery::from_static(
                "/ledger.v1.Ledger/CreateTransfers",
            ),
            tonic_prost::ProstCodec::<NotARequest, ()>::default(),
        )
        .await
        .expect_err("malformed");
    // INTERNAL would tell a client that follows the status table "maybe applied, retry".
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().starts_with("LEDGER_INVALID_ARGUMENT"),
        "{status:?}"
    );
}
