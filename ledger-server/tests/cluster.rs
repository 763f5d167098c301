//! Three real ledger-server processes on loopback: replication, leader hints, crash of the
//! leader under load, and a full restart.

mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ledger_client::proto::ledger as pb;
use support::*;

const CREATED: u32 = 0;
const EXISTS: u32 = 33;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_the_leader_are_readable_on_every_node_and_followers_hint_the_leader() {
    let h = Harness::start(3, &[]);
    let leader = h.leader().await;
    let mut client = h.ledger(leader).await;
    let created = create_accounts(&mut client, vec![account(1, 0), account(2, 0)]).await;
    assert_eq!(created.results, vec![CREATED, CREATED]);
    let written = create_transfers(&mut client, vec![transfer(10, 1, 2, 75)])
        .await
        .expect("write");
    assert_eq!(written.results, vec![CREATED]);

    for id in 1..=3 {
        h.wait_applied(id, written.log_index, Duration::from_secs(10))
            .await;
        let mut c = h.ledger(id).await;
        let read = lookup_transfers(&mut c, &[10], pb::ReadConsistency::Stale).await;
        assert!(read.applied_index >= written.log_index);
        assert_eq!(read.transfers.len(), 1, "node {id} lacks the transfer");
        assert_eq!(u128::from(read.transfers[0].amount.unwrap()), 75);
    }

    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let mut f = h.ledger(follower).await;
    let refused = create_transfers(&mut f, vec![transfer(11, 1, 2, 5)])
        .await
        .expect_err("a follower does not accept writes");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused.message().starts_with("LEDGER_NOT_LEADER"),
        "{}",
        refused.message()
    );
    // The hint is a typed detail of the standard google.rpc.Status, and in its ErrorInfo.
    let details = ledger_client::error_details::decode(refused.details());
    let hint = details.leader.expect("leader hint in details");
    let info = details.info.expect("error info in details");
    assert_eq!(info.reason, "LEDGER_NOT_LEADER");
    assert_eq!(info.metadata["applied"], "no");
    assert_eq!(info.metadata["leader_address"], hint.leader_address);
    assert_eq!(hint.leader_id, leader);
    assert_eq!(hint.leader_address, h.cluster.grpc_addr(leader).to_string());
    // A linearizable read on a follower is refused the same way; a stale one is answered.
    let status = f
        .lookup_accounts(pb::LookupRequest {
            ids: vec![1u128.into()],
            consistency: 0,
        })
        .await
        .expect_err("linearizable read on a follower");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);

    // A request that does not fit the wire format is refused whole, naming the field (a code
    // is 16 bits).
    let mut too_wide = transfer(0, 1, 2, 5);
    too_wide.code = 70_000;
    let bad = create_transfers(&mut client, vec![transfer(12, 1, 2, 5), too_wide])
        .await
        .expect_err("a 17-bit code is invalid");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(
        bad.message().contains("transfers[1].code"),
        "{}",
        bad.message()
    );
    let read = lookup_transfers(&mut client, &[12], pb::ReadConsistency::Linearizable).await;
    assert!(
        read.transfers.is_empty(),
        "nothing of a refused batch is written"
    );

    converged_digest(&h, &[1, 2, 3], Duration::from_secs(10)).await;
    for id in 1..=3 {
        let v = h.verify(id).await;
        assert!(v.ok, "node {id}: {:?}", v.violations);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_mid_stream_loses_no_acknowledged_transfer() {
    let mut h = Harness::start(3, &[]);
    let leader = h.leader().await;
    let mut client = h.ledger(leader).await;
    create_accounts(&mut client, vec![account(1, 0), account(2, 0)]).await;

    // Writers send transfers one by one to whoever they think leads; acknowledged ids are
    // recorded. A transfer whose outcome is unknown is retried with the same id later.
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let endpoints: Vec<String> = (1..=3).map(|id| h.endpoint(id)).collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4u128 {
        let (acked, endpoints, stop) = (acked.clone(), endpoints.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut next = 0u128;
            let mut target = 0usize;
            let mut pending: Option<u128> = None;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let id = pending.unwrap_or_else(|| {
                    next += 1;
                    1_000_000 * (w + 1) + next
                });
                let Ok(mut c) =
                    pb::ledger_client::LedgerClient::connect(endpoints[target].clone()).await
                else {
                    target = (target + 1) % endpoints.len();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                match create_transfers(&mut c, vec![transfer(id, 1, 2, 1)]).await {
                    Ok(r) if r.results == vec![CREATED] || r.results == vec![EXISTS] => {
                        acked.lock().unwrap().insert(id);
                        pending = None;
                    }
                    Ok(r) => panic!("transfer {id} rejected: {:?}", r.results),
                    Err(status) => {
                        // Unknown or refused: keep the id and try it again elsewhere.
                        pending = Some(id);
                        let details = ledger_client::error_details::decode(status.details());
                        if let Some(hint) = details.leader {
                            if let Some(i) = endpoints.iter().position(|e| {
                                e.ends_with(&hint.leader_address) && !hint.leader_address.is_empty()
                            }) {
                                target = i;
                                continue;
                            }
                        }
                        target = (target + 1) % endpoints.len();
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            pending
        }));
    }
    // Let some writes land, then SIGKILL the leader mid-stream.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < 50 {
        assert!(
            std::time::Instant::now() < deadline,
            "writes never got going"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.cluster.kill(leader).expect("kill leader");
    let survivors: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let new_leader = h.leader_among(&survivors, Duration::from_secs(20)).await;
    assert_ne!(new_leader, leader);
    let before = acked.lock().unwrap().len();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < before + 50 {
        assert!(
            std::time::Instant::now() < deadline,
            "writes did not resume after failover"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut unresolved = Vec::new();
    for w in writers {
        if let Some(id) = w.await.expect("writer") {
            unresolved.push(id);
        }
    }
    // Settle the unknown outcomes by resubmitting them: exactly-once makes that safe.
    let mut c = h.ledger(new_leader).await;
    for id in unresolved {
        let r = create_transfers(&mut c, vec![transfer(id, 1, 2, 1)])
            .await
            .expect("resubmit");
        assert!(r.results == vec![CREATED] || r.results == vec![EXISTS]);
        acked.lock().unwrap().insert(id);
    }

    h.cluster.restart(leader).expect("restart the old leader");
    let acked: Vec<u128> = acked.lock().unwrap().iter().copied().collect();
    let digest = converged_digest(&h, &[1, 2, 3], Duration::from_secs(30)).await;
    assert_eq!(digest.len(), 16);
    for id in 1..=3 {
        let mut c = h.ledger(id).await;
        let found = lookup_transfers(&mut c, &acked, pb::ReadConsistency::Stale).await;
        assert_eq!(
            found.transfers.len(),
            acked.len(),
            "node {id} lost acknowledged transfers"
        );
        // Exactly once: the balances equal the number of distinct acknowledged transfers.
        let accounts = lookup_accounts(&mut c, &[1, 2], pb::ReadConsistency::Stale).await;
        assert_eq!(
            u128::from(accounts.accounts[0].debits_posted.unwrap()),
            acked.len() as u128
        );
        assert_eq!(
            u128::from(accounts.accounts[1].credits_posted.unwrap()),
            acked.len() as u128
        );
        let v = h.verify(id).await;
        assert!(v.ok, "node {id}: {:?}", v.violations);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_restart_keeps_state_and_digest() {
    let mut h = Harness::start(3, &[]);
    let leader = h.leader().await;
    let mut client = h.ledger(leader).await;
    create_accounts(&mut client, vec![account(1, 0), account(2, 0)]).await;
    let transfers: Vec<pb::Transfer> = (0..200).map(|i| transfer(100 + i, 1, 2, 3)).collect();
    let written = create_transfers(&mut client, transfers)
        .await
        .expect("write");
    assert!(written.results.iter().all(|r| *r == CREATED));
    let before = converged_digest(&h, &[1, 2, 3], Duration::from_secs(20)).await;

    for id in 1..=3 {
        h.cluster.signal(id, "TERM").expect("stop");
    }
    for id in 1..=3 {
        h.cluster.restart(id).expect("restart");
    }
    h.cluster.wait_ready(READY_TIMEOUT).expect("ready again");
    let leader = h.leader().await;
    let after = converged_digest(&h, &[1, 2, 3], Duration::from_secs(20)).await;
    assert_eq!(before, after, "state changed across a restart");
    let mut client = h.ledger(leader).await;
    let accounts = lookup_accounts(&mut client, &[1, 2], pb::ReadConsistency::Linearizable).await;
    assert_eq!(
        u128::from(accounts.accounts[1].credits_posted.unwrap()),
        600
    );
    // The cluster still takes writes.
    let r = create_transfers(&mut client, vec![transfer(1, 1, 2, 1)])
        .await
        .expect("write after restart");
    assert_eq!(r.results, vec![CREATED]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_single_transfer_writes_share_raft_entries() {
    let h = Harness::start(3, &[]);
    let leader = h.leader().await;
    let mut client = h.ledger(leader).await;
    create_accounts(&mut client, vec![account(1, 0), account(2, 0)]).await;
    let endpoint = h.endpoint(leader);
    let mut writers = Vec::new();
    for w in 0..64u128 {
        let endpoint = endpoint.clone();
        writers.push(tokio::spawn(async move {
            let mut c = pb::ledger_client::LedgerClient::connect(endpoint)
                .await
                .unwrap();
            let mut shared = Vec::new();
            for i in 0..10u128 {
                let r = create_transfers(&mut c, vec![transfer(w * 1_000 + i + 1, 1, 2, 1)])
                    .await
                    .expect("write");
                assert_eq!(r.results, vec![CREATED]);
                shared.push((r.log_index, r.batch_requests));
            }
            shared
        }));
    }
    let mut entries = BTreeSet::new();
    let mut most_shared = 0;
    for w in writers {
        for (index, requests) in w.await.unwrap() {
            entries.insert(index);
            most_shared = most_shared.max(requests);
        }
    }
    // 640 requests; group commit must have put many of them into the same entries.
    assert!(most_shared > 1, "no entry carried more than one request");
    assert!(entries.len() < 640, "every request took its own entry");
    let accounts = lookup_accounts(&mut client, &[2], pb::ReadConsistency::Linearizable).await;
    assert_eq!(
        u128::from(accounts.accounts[0].credits_posted.unwrap()),
        640
    );
}

/// More holds come due at once than one entry expires (`EXPIRIES_PER_ENTRY_MAX`): the first
/// entry after their timeout expires a bounded share, and the leader's expiry pulse carries
/// the rest without any client write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiry_backlog_drains_in_bounded_entries_without_client_writes() {
    let h = Harness::start(3, &[]);
    let leader = h.leader().await;
    let mut client = h.ledger(leader).await;
    let holds = ledger_core::EXPIRIES_PER_ENTRY_MAX as u128 * 3;
    create_accounts(&mut client, vec![account(1, 0), account(2, 0)]).await;
    let pendings: Vec<pb::Transfer> = (0..holds)
        .map(|i| pb::Transfer {
            flags: u32::from(ledger_core::TransferFlags::PENDING.0),
            timeout: 1,
            ..transfer(1_000 + i, 1, 2, 1)
        })
        .collect();
    let r = create_transfers(&mut client, pendings)
        .await
        .expect("holds");
    assert!(r.results.iter().all(|c| *c == 0), "{:?}", &r.results[..3]);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let before = h.status(leader).await.expect("status").last_log_index;
    // One unrelated write: its entry expires the first share.
    create_transfers(&mut client, vec![transfer(10, 1, 2, 1)])
        .await
        .expect("write");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let accounts = lookup_accounts(&mut client, &[1], pb::ReadConsistency::Linearizable).await;
        if u128::from(accounts.accounts[0].debits_pending.expect("pending")) == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the backlog did not drain"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // It took more entries than the one write: the pulse proposed them.
    let after = h.status(leader).await.expect("status").last_log_index;
    assert!(after >= before + 3, "entries {before}..{after}");
    converged_digest(&h, &[1, 2, 3], Duration::from_secs(30)).await;
}

/// One call tells, for each transfer id, whether it was applied, what became of it if it is
/// pending, whether it failed for good (a transient result spends the id), or nothing at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_statuses_tell_applied_pending_failed_and_unknown_ids_in_one_call() {
    let h = Harness::start(1, &[]);
    let mut client = h.ledger(1).await;
    create_accounts(&mut client, vec![account(1, 0), account(2, 0)]).await;
    let hold = pb::Transfer {
        flags: u32::from(ledger_core::TransferFlags::PENDING.0),
        ..transfer(11, 1, 2, 3)
    };
    let r = create_transfers(
        &mut client,
        vec![transfer(10, 1, 2, 1), hold, transfer(12, 1, 99, 1)],
    )
    .await
    .expect("write");
    let not_found = ledger_core::TransferResult::CreditAccountNotFound;
    assert_eq!(r.results, vec![CREATED, CREATED, not_found.code()]);
    let statuses = client
        .get_transfer_statuses(pb::LookupRequest {
            ids: [10u128, 11, 12, 13].iter().map(|id| (*id).into()).collect(),
            consistency: pb::ReadConsistency::Linearizable as i32,
        })
        .await
        .expect("statuses")
        .into_inner()
        .statuses;
    let seen: Vec<(bool, i32, u32, &str)> = statuses
        .iter()
        .map(|s| {
            (
                s.exists,
                s.pending_status,
                s.failed_result,
                s.failed_result_name.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (true, pb::PendingStatus::None as i32, 0, ""),
            (true, pb::PendingStatus::Pending as i32, 0, ""),
            (
                false,
                pb::PendingStatus::None as i32,
                not_found.code(),
                "credit_account_not_found"
            ),
            (false, pb::PendingStatus::None as i32, 0, ""),
        ]
    );
}
