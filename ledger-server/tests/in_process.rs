//! The in-process client path (`grpc/in_process.rs`): a call made without a transport goes
//! through the client port's own stack (authentication, limits, metrics, error details, the
//! handlers), and so is refused or answered exactly as over gRPC.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use ledger_server::config::{Args, NodeConfig, CLIENT_MESSAGE_BYTES_MAX};
use ledger_server::env::SystemEnv;
use ledger_server::grpc::in_process::InProcessChannel;
use ledger_server::security::auth::{
    token_sha256, AuthFile, AuthPolicy, Authenticator, Role, TokenEntry,
};
use ledger_server::startup;
use ledger_wire::proto::admin::admin_client::AdminClient;
use ledger_wire::proto::admin::{StatusRequest, VerifyRequest};
use ledger_wire::proto::ledger as pb;
use ledger_wire::proto::ledger::ledger_client::LedgerClient;
use tonic::Code;

fn u(v: u128) -> Option<pb::U128> {
    Some(pb::U128 {
        hi: (v >> 64) as u64,
        lo: v as u64,
    })
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value = format!("Bearer {token}").parse().expect("header value");
    request.metadata_mut().insert("authorization", value);
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_in_process_takes_the_client_ports_path_from_decoded_request_to_reply() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().display().to_string();
    let args = Args::try_parse_from([
        "ledger-server",
        "--dev",
        "--data-dir",
        &data,
        "--grpc-addr",
        "127.0.0.1:0",
        "--peer-addr",
        "127.0.0.1:0",
        "--http-addr",
        "127.0.0.1:0",
    ])
    .expect("arguments");
    let config = NodeConfig::from_args(&args).expect("configuration");
    let listeners = startup::bind(&config).await.expect("bind");
    let running = startup::start(config, listeners).await.expect("start");

    let tokens = Authenticator::from_file(AuthFile {
        tokens: vec![
            TokenEntry {
                name: "app".into(),
                role: Role::Write,
                sha256: token_sha256("w-secret"),
                expires_unix: None,
            },
            TokenEntry {
                name: "ops".into(),
                role: Role::Admin,
                sha256: token_sha256("a-secret"),
                expires_unix: None,
            },
        ],
    })
    .expect("tokens");
    let auth = AuthPolicy {
        tokens: Some(Arc::new(tokens)),
        env: Arc::new(SystemEnv),
    };
    let channel = InProcessChannel::new(&running.node, CLIENT_MESSAGE_BYTES_MAX, auth);
    let mut admin = AdminClient::new(channel.clone());
    let mut ledger = LedgerClient::new(channel);

    // The node elects itself; Status answers through the same gate (admin token).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = admin
            .status(with_token(StatusRequest {}, "a-secret"))
            .await
            .expect("status")
            .into_inner();
        if status.state == "Leader" {
            break;
        }
        assert!(Instant::now() < deadline, "no leader: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let accounts = pb::CreateAccountsRequest {
        accounts: [1u128, 2]
            .map(|id| pb::Account {
                id: u(id),
                ledger: 1,
                code: 1,
                ..Default::default()
            })
            .to_vec(),
        request_id: String::new(),
    };
    // Refused by the client port's authentication, as over the network.
    let refused = ledger
        .create_accounts(accounts.clone())
        .await
        .expect_err("no token");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let refused = admin
        .verify(with_token(VerifyRequest::default(), "w-secret"))
        .await
        .expect_err("role too low");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    let created = ledger
        .create_accounts(with_token(accounts, "w-secret"))
        .await
        .expect("create accounts")
        .into_inner();
    assert_eq!(created.results, vec![0, 0]);
    let transfer = pb::CreateTransfersRequest {
        transfers: vec![pb::Transfer {
            id: u(10),
            debit_account_id: u(1),
            credit_account_id: u(2),
            amount: u(7),
            ledger: 1,
            code: 1,
            ..Default::default()
        }],
        request_id: String::new(),
    };
    let written = ledger
        .create_transfers(with_token(transfer.clone(), "w-secret"))
        .await
        .expect("transfer")
        .into_inner();
    assert_eq!(written.results, vec![0]);
    // Bad input gets the handlers' own answers: a result code for a transfer without an id,
    // a field error for an unknown consistency, never a panic.
    let mut bad = transfer;
    bad.transfers[0].id = None;
    let refused = ledger
        .create_transfers(with_token(bad, "w-secret"))
        .await
        .expect("answered")
        .into_inner();
    assert_ne!(refused.results, vec![0], "{refused:?}");
    let invalid = ledger
        .lookup_accounts(with_token(
            pb::LookupRequest {
                ids: vec![u(1).unwrap()],
                consistency: 99,
            },
            "w-secret",
        ))
        .await
        .expect_err("unknown consistency");
    assert_eq!(invalid.code(), Code::InvalidArgument, "{invalid:?}");
    assert!(invalid.message().contains("consistency"), "{invalid:?}");

    let read = ledger
        .lookup_accounts(with_token(
            pb::LookupRequest {
                ids: vec![u(1).unwrap(), u(2).unwrap()],
                consistency: pb::ReadConsistency::Linearizable as i32,
            },
            "w-secret",
        ))
        .await
        .expect("lookup")
        .into_inner();
    let credits: Vec<u128> = read
        .accounts
        .iter()
        .map(|a| {
            a.credits_posted
                .map_or(0, |v| (u128::from(v.hi) << 64) | u128::from(v.lo))
        })
        .collect();
    assert_eq!(credits, vec![0, 7]);
    let verified = admin
        .verify(with_token(VerifyRequest::default(), "a-secret"))
        .await
        .expect("verify")
        .into_inner();
    assert!(verified.ok, "{:?}", verified.violations);
    assert_eq!((verified.accounts, verified.transfers), (2, 1));
    running.shutdown().await;
}
