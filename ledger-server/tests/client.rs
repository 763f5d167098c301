//! `ledger_client::LedgerClient` against real processes: leader routing past dead and
//! follower endpoints, exactly-once through a leader crash, coalescing of concurrent calls (and
//! the linked-chain boundary), and the three ways a call can end without success.

mod support;

use std::time::Duration;

use ledger_client::{ClientConfig, Error, LedgerClient, WriteResult};
use ledger_core::{Account, AccountFlags, AccountResult, Transfer, TransferFlags, TransferResult};
use support::Harness;

const BANK: u128 = 1;
const PLAYER: u128 = 2;

fn account(id: u128, flags: AccountFlags) -> Account {
    Account {
        id,
        ledger: 1,
        code: 1,
        flags,
        ..Account::default()
    }
}

fn transfer(id: u128, debit: u128, credit: u128, amount: u128) -> Transfer {
    Transfer {
        id,
        debit_account_id: debit,
        credit_account_id: credit,
        amount,
        ledger: 1,
        code: 1,
        ..Transfer::default()
    }
}

async fn client_of(
    endpoints: Vec<String>,
    configure: impl FnOnce(&mut ClientConfig),
) -> LedgerClient {
    let mut config = ClientConfig::new(endpoints);
    configure(&mut config);
    LedgerClient::with_config(config).await.expect("client")
}

async fn open_accounts(client: &LedgerClient) {
    let results = client
        .create_accounts(vec![
            account(BANK, AccountFlags::default()),
            account(PLAYER, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
        ])
        .await
        .expect("accounts");
    assert_eq!(results, vec![AccountResult::Created; 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_the_leader_past_dead_and_follower_endpoints() {
    let h = Harness::start(3, &[]);
    let leader = h.leader().await;
    // A dead endpoint first, then the followers, then the leader: the client must get there.
    let mut endpoints = vec!["http://127.0.0.1:1".to_string()];
    let ids: Vec<u64> = h.cluster.nodes.iter().map(|n| n.id).collect();
    endpoints.extend(
        ids.iter()
            .filter(|id| **id != leader)
            .map(|id| h.endpoint(*id)),
    );
    endpoints.push(h.endpoint(leader));
    let client = client_of(endpoints, |_| {}).await;
    open_accounts(&client).await;
    assert_eq!(client.endpoints().1, Some(h.endpoint(leader)));

    // Only a follower configured: the NotLeader hint leads to the leader.
    let follower = *ids.iter().find(|id| **id != leader).unwrap();
    let client = client_of(vec![h.endpoint(follower)], |_| {}).await;
    let result = client.create_transfer(transfer(10, BANK, PLAYER, 7)).await;
    assert_eq!(result, Ok(TransferResult::Created));
    assert_eq!(client.endpoints().1, Some(h.endpoint(leader)));
    // A repeat of a finished call is not a retry: `exists` is reported as such.
    let again = client.create_transfer(transfer(10, BANK, PLAYER, 7)).await;
    assert_eq!(again, Ok(TransferResult::Exists));
    let accounts = client.lookup_accounts(&[PLAYER]).await.unwrap();
    assert_eq!(accounts[0].credits_posted, 7);
    let stale = client.stale().lookup_accounts(&[PLAYER]).await.unwrap();
    assert_eq!(stale[0].id, PLAYER);
    let listed = client.list_accounts(0, 0).await.unwrap();
    assert_eq!(
        listed.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![BANK, PLAYER]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_crash_mid_stream_loses_nothing_and_applies_nothing_twice() {
    let mut h = Harness::start(3, &[]);
    let endpoints = h.cluster.endpoints();
    let client = client_of(endpoints, |_| {}).await;
    open_accounts(&client).await;

    const WRITERS: u128 = 8;
    const PER_WRITER: u128 = 60;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for i in 0..PER_WRITER {
                let id = 1_000 + w * PER_WRITER + i;
                outcomes.push((
                    id,
                    client.create_transfer(transfer(id, BANK, PLAYER, 1)).await,
                ));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            outcomes
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let leader = h.leader().await;
    h.cluster.kill(leader).expect("kill leader");
    tokio::time::sleep(Duration::from_millis(500)).await;
    h.cluster.restart(leader).expect("restart");

    let mut created = 0u128;
    for task in tasks {
        for (id, outcome) in task.await.unwrap() {
            // The deadline (30 s) covers a failover: every call must end in success, `created`
            // or, when a retry found its earlier attempt applied, `exists`.
            assert!(
                matches!(outcome, Ok(r) if r.is_success()),
                "transfer {id}: {outcome:?}"
            );
            created += 1;
        }
    }
    assert_eq!(created, WRITERS * PER_WRITER);
    let player = client.lookup_accounts(&[PLAYER]).await.unwrap()[0];
    assert_eq!(
        player.credits_posted, created,
        "each acknowledged transfer applied exactly once"
    );
    let ids: Vec<u128> = (1_000..1_000 + WRITERS * PER_WRITER).collect();
    assert_eq!(
        client.lookup_transfers(&ids).await.unwrap().len(),
        ids.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_share_requests_but_never_a_linked_chain() {
    let h = Harness::start(1, &[]);
    let endpoints = h.cluster.endpoints();
    let client = client_of(endpoints.clone(), |c| c.requests_in_flight = 1).await;
    open_accounts(&client).await;
    let before = client
        .batch_stats()
        .requests
        .load(std::sync::atomic::Ordering::Relaxed);

    let calls: Vec<_> = (0..200u128)
        .map(|i| client.create_transfer(transfer(100 + i, BANK, PLAYER, 1)))
        .collect();
    let results = futures::future::join_all(calls).await;
    assert!(results.iter().all(|r| *r == Ok(TransferResult::Created)));
    let stats = client.batch_stats();
    let requests = stats.requests.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert!(
        requests <= 4,
        "200 concurrent calls took {requests} requests"
    );

    // The same calls without coalescing take one request each.
    let single = client_of(endpoints, |c| c.coalesce = false).await;
    let calls: Vec<_> = (0..50u128)
        .map(|i| single.create_transfer(transfer(1_000 + i, BANK, PLAYER, 1)))
        .collect();
    futures::future::join_all(calls).await;
    assert_eq!(
        single
            .batch_stats()
            .requests
            .load(std::sync::atomic::Ordering::Relaxed),
        50
    );

    // A call ending in an open chain is last in its request: its chain cannot swallow the next
    // caller's transfer (which would then succeed or fail with it).
    let open = Transfer {
        flags: TransferFlags::LINKED,
        ..transfer(5_000, BANK, PLAYER, 1)
    };
    let (a, b, c) = tokio::join!(
        client.create_transfer(transfer(5_001, BANK, PLAYER, 1)),
        client.create_transfer(open),
        client.create_transfer(transfer(5_002, BANK, PLAYER, 1)),
    );
    assert_eq!(a, Ok(TransferResult::Created));
    assert_eq!(b, Ok(TransferResult::LinkedEventChainOpen));
    assert_eq!(c, Ok(TransferResult::Created));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_quorum_a_write_ends_outcome_unknown_and_a_later_retry_settles_it() {
    let mut h = Harness::start(3, &[]);
    let client = client_of(h.cluster.endpoints(), |_| {}).await;
    open_accounts(&client).await;
    let leader = h.leader().await;
    let followers: Vec<u64> = h
        .cluster
        .nodes
        .iter()
        .map(|n| n.id)
        .filter(|id| *id != leader)
        .collect();
    for f in &followers {
        h.cluster.signal(*f, "STOP").unwrap();
    }
    let hurried = client.with_deadline(Duration::from_secs(3));
    let outcome = hurried.create_transfer(transfer(77, BANK, PLAYER, 5)).await;
    assert!(
        matches!(outcome, Err(Error::OutcomeUnknown { .. })),
        "{outcome:?}"
    );
    // On the leader, a stale read needs no quorum; a linearizable one cannot be served. (The
    // client above moved on from the leader after its ambiguous attempt: ask it directly.)
    let on_leader = client_of(vec![h.endpoint(leader)], |c| {
        c.deadline = Duration::from_secs(3)
    })
    .await;
    let stale = on_leader.stale().lookup_accounts(&[PLAYER]).await;
    assert!(stale.is_ok(), "{stale:?}");
    let linearizable = on_leader.lookup_accounts(&[PLAYER]).await;
    assert!(linearizable.is_err(), "{linearizable:?}");

    for f in &followers {
        h.cluster.signal(*f, "CONT").unwrap();
    }
    // The same id again: applied once, whether the first attempt got through or not.
    let retried = client.create_transfer(transfer(77, BANK, PLAYER, 5)).await;
    assert!(
        matches!(
            retried,
            Ok(TransferResult::Created | TransferResult::Exists)
        ),
        "{retried:?}"
    );
    let player = client.lookup_accounts(&[PLAYER]).await.unwrap()[0];
    assert_eq!(player.credits_posted, 5);
}

#[tokio::test]
async fn nothing_reachable_is_a_definite_failure_and_bad_input_is_refused_locally() {
    let mut config = ClientConfig::new(["http://127.0.0.1:1"]);
    config.deadline = Duration::from_millis(400);
    let client = LedgerClient::with_config(config).await.unwrap();
    let outcome = client.create_transfer(transfer(1, BANK, PLAYER, 1)).await;
    assert!(
        matches!(outcome, Err(Error::Unavailable { .. })),
        "{outcome:?}"
    );

    let too_many = vec![transfer(1, BANK, PLAYER, 1); ledger_core::EVENTS_PER_BATCH_MAX + 1];
    let outcome = client.create_transfers(too_many).await;
    assert!(
        matches!(outcome, Err(Error::InvalidArgument(_))),
        "{outcome:?}"
    );
    assert!(matches!(
        LedgerClient::connect(Vec::<String>::new()).await,
        Err(Error::Config(_))
    ));
}

/// Writes an auth file holding one write token per name given.
fn auth_file(path: &std::path::Path, tokens: &[(&str, &str)]) {
    let entries: Vec<serde_json::Value> = tokens
        .iter()
        .map(|(name, token)| {
            serde_json::json!({
                "name": name, "role": "write",
                "sha256": ledger_client::client::token_sha256(token)
            })
        })
        .collect();
    std::fs::write(path, serde_json::json!({ "tokens": entries }).to_string()).expect("auth file");
}

/// The node that reports itself leader, asked with `credentials`.
async fn leader_with(h: &Harness, credentials: &ledger_client::Credentials) -> u64 {
    use ledger_client::proto::admin::{admin_client::AdminClient, StatusRequest};
    let deadline = std::time::Instant::now() + support::READY_TIMEOUT;
    loop {
        for node in &h.cluster.nodes {
            let Ok(channel) = credentials
                .channel(&h.endpoint(node.id), Duration::from_secs(1))
                .await
            else {
                continue;
            };
            let status = tokio::time::timeout(
                Duration::from_secs(2),
                AdminClient::new(channel).status(StatusRequest {}),
            )
            .await;
            if let Ok(Ok(s)) = status {
                let s = s.into_inner();
                if s.state == "Leader" && s.leader_id == node.id {
                    return node.id;
                }
            }
        }
        assert!(std::time::Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_refused_after_an_ambiguous_attempt_is_an_unknown_outcome() {
    // A token rollout under way: the token is in every node's auth file but one.
    const TOKEN: &str = "ldg_rolled_out_to_two_nodes_of_three";
    const OTHER: &str = "ldg_on_every_node";
    let files = tempfile::tempdir().expect("temp dir");
    let path = |id: u64| files.path().join(format!("auth-{id}.json"));
    for id in 1..=3 {
        auth_file(&path(id), &[("service", TOKEN), ("ops", OTHER)]);
    }
    let binary = std::path::PathBuf::from(env!("CARGO_BIN_EXE_ledger-server"));
    let dir = tempfile::tempdir().expect("temp dir");
    let options = ledger_client::local_cluster::NodeOptions {
        node_args: (1..=3)
            .map(|id| {
                (
                    id,
                    vec!["--auth-file".into(), path(id).display().to_string()],
                )
            })
            .collect(),
        ..Default::default()
    };
    let cluster =
        ledger_client::local_cluster::LocalCluster::start(&binary, dir.path(), 3, options)
            .expect("cluster");
    cluster.wait_ready(support::READY_TIMEOUT).expect("ready");
    let h = Harness { cluster, dir };
    let everywhere = ledger_client::Credentials::new()
        .with_token(OTHER)
        .expect("token");
    let admin_view = client_of(h.cluster.endpoints(), |c| {
        c.credentials = everywhere.clone();
    })
    .await;
    open_accounts(&admin_view).await;
    // Node B does not know the service's token yet (it restarts with the older file).
    let leader = leader_with(&h, &everywhere).await;
    let b = (1..=3).find(|id| *id != leader).expect("a follower");
    auth_file(&path(b), &[("ops", OTHER)]);
    let mut h = h;
    h.cluster.kill(b).expect("stop B");
    h.cluster.restart(b).expect("restart B");
    h.cluster.wait_ready(support::READY_TIMEOUT).expect("ready");
    assert_eq!(
        leader_with(&h, &everywhere).await,
        leader,
        "the leader stayed"
    );

    let service = client_of(vec![h.endpoint(leader), h.endpoint(b)], |c| {
        c.credentials = ledger_client::Credentials::new()
            .with_token(TOKEN)
            .expect("token");
        c.attempt_timeout = Duration::from_millis(300);
        c.deadline = Duration::from_secs(3);
    })
    .await;
    // The service's connection to the leader is open and its token works there.
    service
        .lookup_accounts(&[BANK])
        .await
        .expect("the leader knows the token");
    // The leader stalls with the transfer in its socket: the first attempt gets no answer (it
    // may or may not be applied once the leader runs again); the retry reaches B, which
    // refuses the token.
    h.cluster
        .signal(leader, "STOP")
        .expect("SIGSTOP the leader");
    let outcome = service.create_transfer(transfer(77, BANK, PLAYER, 5)).await;
    h.cluster
        .signal(leader, "CONT")
        .expect("SIGCONT the leader");
    match &outcome {
        Err(Error::OutcomeUnknown { last_error, .. }) => {
            assert!(last_error.contains("UNAUTHENTICATED"), "{last_error}")
        }
        other => panic!("a refusal after an unanswered attempt must be unknown: {other:?}"),
    }
    // The application learns the outcome the documented way: the same id again, where the
    // token is known. It is applied exactly once, whatever the first attempt did.
    let resolved = client_of(h.cluster.endpoints(), |c| {
        c.credentials = everywhere.clone()
    })
    .await
    .create_transfer(transfer(77, BANK, PLAYER, 5))
    .await
    .expect("resolved");
    assert!(
        matches!(resolved, TransferResult::Created | TransferResult::Exists),
        "{resolved:?}"
    );
    let found = admin_view.lookup_transfers(&[77]).await.expect("lookup");
    assert_eq!(found.len(), 1, "the transfer exists");
    let player = admin_view.lookup_accounts(&[PLAYER]).await.expect("lookup")[0];
    assert_eq!(player.credits_posted, 5, "applied once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_with_id_zero_gets_its_own_result_and_the_others_theirs() {
    let h = Harness::start(1, &[]);
    let client = client_of(h.cluster.endpoints(), |_| {}).await;
    open_accounts(&client).await;
    // One request, as a service in another language would send it: the bad event gets
    // `id_must_not_be_zero`, the good one is created.
    let mut grpc = h.ledger(1).await;
    let written = grpc
        .create_transfers(ledger_client::proto::ledger::CreateTransfersRequest {
            transfers: vec![
                support::transfer(80, BANK, PLAYER, 3),
                support::transfer(0, BANK, PLAYER, 3),
            ],
            request_id: String::new(),
        })
        .await
        .expect("a request with one bad event is answered per event")
        .into_inner();
    assert_eq!(
        written.results,
        vec![
            TransferResult::Created as u32,
            TransferResult::IdMustNotBeZero as u32
        ]
    );
    // Flags beyond 16 bits are the event's reserved flags: `reserved_flag` for it, and its
    // `linked` bit still ties it to the next event, which fails with it.
    let linked = u32::from(ledger_core::TransferFlags::LINKED.0);
    let written = grpc
        .create_transfers(ledger_client::proto::ledger::CreateTransfersRequest {
            transfers: vec![
                support::transfer(81, BANK, PLAYER, 3),
                ledger_client::proto::ledger::Transfer {
                    flags: (1 << 16) | linked,
                    ..support::transfer(82, BANK, PLAYER, 3)
                },
                support::transfer(83, BANK, PLAYER, 3),
            ],
            request_id: String::new(),
        })
        .await
        .expect("a request with flags beyond 16 bits is answered per event")
        .into_inner();
    assert_eq!(
        written.results,
        vec![
            TransferResult::Created as u32,
            TransferResult::ReservedFlag as u32,
            TransferResult::LinkedEventFailed as u32
        ]
    );
    // Concurrent callers of one client, coalesced or not: each gets its own result.
    let calls = (0..16u128).map(|i| {
        let client = client.clone();
        let id = if i == 5 { 0 } else { 100 + i };
        async move {
            (
                id,
                client.create_transfer(transfer(id, BANK, PLAYER, 1)).await,
            )
        }
    });
    for (id, outcome) in futures::future::join_all(calls).await {
        let expected = if id == 0 {
            TransferResult::IdMustNotBeZero
        } else {
            TransferResult::Created
        };
        assert_eq!(outcome, Ok(expected), "transfer {id}");
    }
    let player = client.lookup_accounts(&[PLAYER]).await.expect("lookup")[0];
    assert_eq!(player.credits_posted, 3 + 3 + 15);
}
