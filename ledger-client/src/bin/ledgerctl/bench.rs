//! `ledgerctl bench`: the transfer workload of `shared/peers`, against a Ledger cluster.
//!
//! N accounts that may not overdraw, each funded with 1,000,000,000 from an unlimited bank
//! account; C closed-loop clients each send a batch of B random transfers (amount 1..=100,
//! distinct debit and credit, ids unique per run), wait for the results, and send the next.
//! After a warm-up, operations that start and finish inside the measured window count; an
//! operation is one transfer, and its latency is that of the batch that carried it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use ledger_client::proto::ledger as pb;
use ledger_client::proto::ledger::ledger_client::LedgerClient;
use ledger_client::AuthChannel;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Balance every bench account starts with, as in the peers' workload.
const INITIAL_BALANCE: u128 = 1_000_000_000;
/// The unlimited account that funds the others.
const BANK_ACCOUNT_ID: u128 = u128::MAX - 1;
pub const WARMUP_MS: u64 = 2_000;
const FLAG_DEBITS_MUST_NOT_EXCEED_CREDITS: u32 = 1 << 1;

pub struct BenchArgs {
    pub endpoints: Vec<String>,
    pub accounts: u64,
    pub clients: u64,
    pub seconds: u64,
    pub batch: u64,
    pub seed: u64,
    /// Create and fund the accounts first (idempotent, but slow at millions of accounts).
    pub setup: bool,
    /// Requests per second in an open loop (`overload.rs`); 0: closed loop.
    pub rate: u64,
    pub json: bool,
}

/// One transfer of the workload: random distinct accounts among `1..=accounts`, amount
/// 1..=100.
pub fn random_transfer(rng: &mut StdRng, id: u128, accounts: u128) -> pb::Transfer {
    let debit = rng.gen_range(1..=accounts);
    let mut credit = rng.gen_range(1..accounts);
    if credit >= debit {
        credit += 1;
    }
    pb::Transfer {
        id: Some(id.into()),
        debit_account_id: Some(debit.into()),
        credit_account_id: Some(credit.into()),
        amount: Some(rng.gen_range(1..=100u128).into()),
        ledger: 1,
        code: 1,
        ..Default::default()
    }
}

/// Finds the leader's endpoint by asking every node.
/// How long to look for a leader: an election after a leader's crash takes one lease plus one
/// election timeout (about 1.2 s), so this outlasts several, as a service calling right after
/// a crash must.
pub const FIND_LEADER_TIMEOUT_MS: u64 = 10_000;
/// The pause between two rounds over the endpoints while no leader answers.
const FIND_LEADER_RETRY_MS: u64 = 100;

/// The client endpoint of the leader, confirmed by the leader itself: right after a leader
/// dies, the others still name it until they elect another, so a name alone is not enough.
/// Waits up to [`FIND_LEADER_TIMEOUT_MS`] for one.
pub async fn find_leader(endpoints: &[String]) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_millis(FIND_LEADER_TIMEOUT_MS);
    let mut last = String::from("no endpoint");
    loop {
        for endpoint in endpoints {
            let named = match crate::cluster::status_of(endpoint).await {
                Ok(s) if s.has_leader && !s.leader_address.is_empty() => s.leader_address,
                Ok(_) => {
                    last = format!("{endpoint} knows no leader (election under way)");
                    continue;
                }
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let leader = crate::connect::uri(&named);
            match crate::cluster::status_of(&leader).await {
                Ok(s) if s.state == "Leader" => return Ok(leader),
                Ok(s) => last = format!("{leader}, named by {endpoint}, is {}", s.state),
                Err(e) => last = format!("{leader}, named by {endpoint}, does not answer: {e}"),
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no leader answered within {FIND_LEADER_TIMEOUT_MS} ms among {endpoints:?}: {last}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(FIND_LEADER_RETRY_MS)).await;
    }
}

fn id(v: u128) -> Option<pb::U128> {
    Some(v.into())
}

/// Attempts of one set-up write before the bench gives up, and the wait after each failure.
/// An election under load takes about a second; a set-up of millions of accounts runs for
/// minutes and must outlast one.
const SET_UP_ATTEMPTS: u32 = 30;
const SET_UP_RETRY_MS: u64 = 500;
/// Result codes of `exists` for accounts and for transfers: a set-up write that is retried, or
/// a second set-up, finds its records in place.
const ACCOUNT_EXISTS: u32 = 20;
const TRANSFER_EXISTS: u32 = 33;

/// One write of the set-up. Each is idempotent (fixed ids), so it is sent again after any
/// failure that may be transient, to whichever node leads by then.
enum SetUpWrite {
    Accounts(Vec<pb::Account>),
    Transfers(Vec<pb::Transfer>),
}

/// A failure after which the write may succeed if sent again: no leader, a leader change, a
/// lost connection or an outcome not known in time (the retry then finds the records).
fn transient(status: &tonic::Status) -> bool {
    use tonic::Code;
    status.message().starts_with("LEDGER_NOT_LEADER")
        || matches!(
            status.code(),
            Code::Unavailable
                | Code::DeadlineExceeded
                | Code::Aborted
                | Code::ResourceExhausted
                | Code::Cancelled
                | Code::Unknown
        )
}

async fn write_set_up(
    client: &mut LedgerClient<AuthChannel>,
    endpoints: &[String],
    write: SetUpWrite,
) -> Result<(), String> {
    let mut attempt = 1;
    loop {
        let outcome = match &write {
            SetUpWrite::Accounts(accounts) => client
                .create_accounts(pb::CreateAccountsRequest {
                    accounts: accounts.clone(),
                    request_id: String::new(),
                })
                .await
                .map(|r| (r.into_inner().results, ACCOUNT_EXISTS)),
            SetUpWrite::Transfers(transfers) => client
                .create_transfers(pb::CreateTransfersRequest {
                    transfers: transfers.clone(),
                    request_id: String::new(),
                })
                .await
                .map(|r| (r.into_inner().results, TRANSFER_EXISTS)),
        };
        match outcome {
            Ok((results, exists)) => {
                return match results.iter().find(|r| **r != 0 && **r != exists) {
                    None => Ok(()),
                    Some(code) => Err(format!("set-up write refused with result {code}")),
                };
            }
            Err(status) if attempt < SET_UP_ATTEMPTS && transient(&status) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(SET_UP_RETRY_MS)).await;
                if let Ok(leader) = find_leader(endpoints).await {
                    if let Ok(new_client) = crate::connect::ledger(&leader).await {
                        *client = new_client;
                    }
                }
            }
            Err(status) => {
                return Err(format!(
                    "set-up write failed after {attempt} attempts: {}",
                    status.message()
                ))
            }
        }
    }
}

/// Creates and funds the accounts (idempotent: a second run finds them in place).
async fn set_up(endpoints: &[String], leader: &str, accounts: u64) -> Result<(), String> {
    let mut client = crate::connect::ledger(leader).await?;
    let account = |id: u128, flags: u32| pb::Account {
        id: Some(id.into()),
        ledger: 1,
        code: 1,
        flags,
        ..Default::default()
    };
    let bank = SetUpWrite::Accounts(vec![account(BANK_ACCOUNT_ID, 0)]);
    write_set_up(&mut client, endpoints, bank).await?;
    let ids: Vec<u128> = (1..=u128::from(accounts)).collect();
    for chunk in ids.chunks(ledger_core::EVENTS_PER_BATCH_MAX) {
        let batch = chunk
            .iter()
            .map(|id| account(*id, FLAG_DEBITS_MUST_NOT_EXCEED_CREDITS))
            .collect();
        write_set_up(&mut client, endpoints, SetUpWrite::Accounts(batch)).await?;
        let funding = chunk
            .iter()
            .map(|acct| pb::Transfer {
                // Funding ids live in their own range, below the bank id.
                id: id(u128::MAX - 2 - acct),
                debit_account_id: id(BANK_ACCOUNT_ID),
                credit_account_id: id(*acct),
                amount: id(INITIAL_BALANCE),
                ledger: 1,
                code: 1,
                ..Default::default()
            })
            .collect();
        write_set_up(&mut client, endpoints, SetUpWrite::Transfers(funding)).await?;
    }
    Ok(())
}

pub async fn run(args: BenchArgs) -> Result<(), String> {
    if args.accounts < 2 || args.clients == 0 || args.batch == 0 || args.seconds == 0 {
        return Err(
            "--accounts must be at least 2; --clients, --batch and --seconds at least 1".into(),
        );
    }
    if args.batch as usize > ledger_core::EVENTS_PER_BATCH_MAX {
        return Err(format!(
            "--batch may not exceed {}",
            ledger_core::EVENTS_PER_BATCH_MAX
        ));
    }
    let leader = find_leader(&args.endpoints).await?;
    if args.setup {
        set_up(&args.endpoints, &leader, args.accounts).await?;
    }
    if args.rate > 0 {
        return crate::overload::run(&args, args.rate, &leader).await;
    }

    let run_tag = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let start = Instant::now();
    let window_start = start + Duration::from_millis(WARMUP_MS);
    let window_end = window_start + Duration::from_secs(args.seconds);
    let histogram = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
    ));
    let ops = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();
    let reconnects = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for client_index in 0..args.clients {
        let mut client = crate::connect::ledger(&leader).await?;
        let (histogram, ops, errors) = (histogram.clone(), ops.clone(), errors.clone());
        let (first_error, reconnects) = (first_error.clone(), reconnects.clone());
        let endpoints = args.endpoints.clone();
        let (accounts, batch, seed) = (u128::from(args.accounts), args.batch, args.seed);
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed + client_index);
            let mut sequence = 0u64;
            let mut local =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
            loop {
                let began = Instant::now();
                if began >= window_end {
                    break;
                }
                let transfers: Vec<pb::Transfer> = (0..batch)
                    .map(|_| {
                        sequence += 1;
                        let id = (u128::from(run_tag) << 64)
                            | (u128::from(client_index) << 40)
                            | u128::from(sequence);
                        random_transfer(&mut rng, id, accounts)
                    })
                    .collect();
                let result = client
                    .create_transfers(pb::CreateTransfersRequest {
                        transfers,
                        request_id: String::new(),
                    })
                    .await;
                let finished = Instant::now();
                match result {
                    Ok(_) => {
                        if began >= window_start && finished <= window_end {
                            let micros = (finished - began).as_micros().max(1) as u64;
                            let _ = local.record_n(micros, batch);
                            ops.fetch_add(batch, Ordering::Relaxed);
                        }
                    }
                    Err(status) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error
                            .lock()
                            .expect("error lock")
                            .get_or_insert_with(|| {
                                format!("{:?}: {}", status.code(), status.message())
                            });
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        // The leader changed: follow it, as `LedgerClient` does.
                        if status.message().starts_with("LEDGER_NOT_LEADER") {
                            if let Ok(leader) = find_leader(&endpoints).await {
                                if let Ok(new_client) = crate::connect::ledger(&leader).await {
                                    client = new_client;
                                    reconnects.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                }
            }
            histogram
                .lock()
                .expect("histogram lock")
                .add(&local)
                .expect("same bounds");
        }));
    }
    let progress = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(WARMUP_MS / 1000 + args.seconds)
    };
    progress
        .set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} s {msg}").expect("template"));
    let reporter = {
        let (ops, done, progress) = (ops.clone(), done.clone(), progress.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                progress.inc(1);
                progress.set_message(format!("{} transfers", ops.load(Ordering::Relaxed)));
            }
        })
    };
    for task in tasks {
        task.await.map_err(|e| e.to_string())?;
    }
    done.store(true, Ordering::Relaxed);
    let _ = reporter.await;
    progress.finish_and_clear();

    let histogram = histogram.lock().expect("histogram lock");
    let ops = ops.load(Ordering::Relaxed);
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    let line = serde_json::json!({
        "system": "ledger",
        "clients": args.clients,
        "batch": args.batch,
        "ops": ops,
        "ops_per_s": ((ops as f64 / args.seconds as f64) * 10.0).round() / 10.0,
        "p50_ms": ms(0.50),
        "p99_ms": ms(0.99),
        "p999_ms": ms(0.999),
        "errors": errors.load(Ordering::Relaxed),
        "first_error": first_error.lock().expect("error lock").clone(),
        "leader_reconnects": reconnects.load(Ordering::Relaxed),
        "seconds": args.seconds,
        "accounts": args.accounts,
    });
    if args.json {
        println!("{line}");
    } else {
        println!(
            "{ops} transfers in {} s: {:.0} transfers/s; latency of a batch of {}: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms; {} errors",
            args.seconds,
            ops as f64 / args.seconds as f64,
            args.batch,
            ms(0.50),
            ms(0.99),
            ms(0.999),
            errors.load(Ordering::Relaxed)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::{Code, Status};

    #[test]
    fn set_up_retries_only_what_a_resend_can_fix() {
        let not_leader = Status::failed_precondition("LEDGER_NOT_LEADER: not the leader");
        for status in [
            not_leader,
            Status::unavailable("connection refused"),
            Status::deadline_exceeded("LEDGER_OUTCOME_UNKNOWN: not committed within 5000 ms"),
            Status::resource_exhausted("LEDGER_RESOURCE_EXHAUSTED: shedding load"),
        ] {
            assert!(transient(&status), "{status:?}");
        }
        for status in [
            Status::invalid_argument("LEDGER_INVALID: batch too large"),
            Status::unauthenticated("LEDGER_UNAUTHENTICATED"),
            Status::permission_denied("LEDGER_FORBIDDEN"),
            Status::new(Code::FailedPrecondition, "LEDGER_NOT_INITIALIZED"),
        ] {
            assert!(!transient(&status), "{status:?}");
        }
    }
}
