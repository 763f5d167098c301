//! The clients: each sends one transfer at a time to the node it believes leads, follows
//! leader hints, and retries with the same id until it has an answer or its deadline passes,
//! as an application using the ledger must. Every operation and its outcome goes into the
//! history the checkers read.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ledger_core::{Account, Transfer};
use ledger_wire::convert::{account_to_pb, transfer_to_pb};
use ledger_wire::error_details::{self, Applied};
use ledger_wire::proto::ledger as pb;
use ledger_wire::proto::ledger::ledger_client::LedgerClient;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Mutex as AsyncMutex;

use crate::cluster::SimCluster;
use crate::trace::Trace;

/// The ledger every account and transfer is in.
pub const LEDGER: u32 = 1;
/// How long one attempt may take before the client tries again.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1_000);
/// How long a client keeps trying one operation.
const OPERATION_DEADLINE: Duration = Duration::from_secs(8);
/// The pause after a refusal before the next attempt.
const BACKOFF: Duration = Duration::from_millis(50);
/// Result code of a created transfer, and of one that already exists with the same fields.
const CREATED: u32 = 0;
const EXISTS: u32 = ledger_core::TransferResult::Exists as u32;

/// What the client learned of one transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Created (or found to exist with the same fields): it must be in the final state.
    Acknowledged,
    /// Definitely not applied: refused with the result code, or every attempt refused before
    /// it could be proposed. It must not be in the final state.
    Refused(u32),
    /// No attempt was definite: it may or may not be in the final state.
    Unknown,
}

#[derive(Clone, Debug)]
pub struct Op {
    pub client: usize,
    pub transfer: Transfer,
    pub outcome: Outcome,
}

pub type History = Arc<Mutex<Vec<Op>>>;

/// The account ids of a run: 1..=n.
pub fn account_ids(n: u64) -> impl Iterator<Item = u128> {
    1..=u128::from(n)
}

/// Creates the run's accounts, retrying until they exist.
pub async fn create_accounts(cluster: &AsyncMutex<SimCluster>, n: u64) -> Result<(), String> {
    let accounts: Vec<pb::Account> = account_ids(n)
        .map(|id| {
            account_to_pb(&Account {
                id,
                ledger: LEDGER,
                code: 1,
                ..Default::default()
            })
        })
        .collect();
    let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut leader = 1;
    while tokio::time::Instant::now() < give_up {
        let channel = cluster.lock().await.channel(leader);
        if let Some(channel) = channel {
            let request = pb::CreateAccountsRequest {
                accounts: accounts.clone(),
                request_id: "accounts".into(),
            };
            let mut client = LedgerClient::new(channel);
            let call = client.create_accounts(request);
            match tokio::time::timeout(ATTEMPT_TIMEOUT, call).await {
                Ok(Ok(reply)) => {
                    let results = reply.into_inner().results;
                    // Created now (0) or by an earlier attempt (exists).
                    if results
                        .iter()
                        .all(|&r| r == 0 || r == ledger_core::AccountResult::Exists as u32)
                    {
                        return Ok(());
                    }
                    return Err(format!("accounts refused: {results:?}"));
                }
                Ok(Err(status)) => {
                    if let Some(hint) = leader_hint(&status) {
                        leader = hint;
                        continue;
                    }
                }
                Err(_) => {}
            }
        }
        leader = leader % cluster.lock().await.ids().len() as u64 + 1;
        tokio::time::sleep(BACKOFF).await;
    }
    Err("the accounts were not created within 60 s".into())
}

fn leader_hint(status: &tonic::Status) -> Option<u64> {
    let decoded = error_details::decode(status.details());
    decoded
        .leader
        .map(|hint| hint.leader_id)
        .filter(|&id| id != 0)
}

fn applied(status: &tonic::Status) -> Applied {
    let decoded = error_details::decode(status.details());
    match decoded.info {
        Some(info) => Applied::of_reason(&info.reason),
        None => Applied::Unknown,
    }
}

/// One client: transfers until `until`, each to completion.
pub struct Client {
    pub index: usize,
    pub rng: StdRng,
    pub accounts: u64,
    pub resend: f64,
    pub history: History,
    pub trace: Trace,
}

impl Client {
    pub fn new(
        index: usize,
        seed: u64,
        accounts: u64,
        resend: f64,
        history: History,
        trace: Trace,
    ) -> Self {
        Self {
            index,
            rng: StdRng::seed_from_u64(seed),
            accounts,
            resend,
            history,
            trace,
        }
    }

    pub async fn run(mut self, cluster: Arc<AsyncMutex<SimCluster>>, until: tokio::time::Instant) {
        let nodes = cluster.lock().await.ids().len() as u64;
        let mut leader = self.rng.gen_range(1..=nodes);
        let mut seq: u128 = 0;
        while tokio::time::Instant::now() < until {
            seq += 1;
            let debit = self.rng.gen_range(1..=self.accounts);
            let mut credit = self.rng.gen_range(1..self.accounts.max(2));
            if credit >= debit {
                credit += 1;
            }
            let transfer = Transfer {
                id: ((self.index as u128 + 1) << 64) | seq,
                debit_account_id: u128::from(debit),
                credit_account_id: u128::from(credit),
                amount: self.rng.gen_range(1..=1_000),
                ledger: LEDGER,
                code: 1,
                ..Default::default()
            };
            let outcome = self
                .submit_within(&cluster, &mut leader, nodes, &transfer, OPERATION_DEADLINE)
                .await;
            self.trace.event(format!(
                "client {} transfer {:#x} {} -> {} amount {}: {outcome:?}",
                self.index, transfer.id, debit, credit, transfer.amount
            ));
            self.history
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Op {
                    client: self.index,
                    transfer,
                    outcome,
                });
            if outcome == Outcome::Acknowledged && self.rng.gen_bool(self.resend) {
                // The application sends it again: it must exist already, and stay applied once.
                let again = self
                    .submit_within(&cluster, &mut leader, nodes, &transfer, OPERATION_DEADLINE)
                    .await;
                self.trace.event(format!(
                    "client {} resent {:#x}: {again:?}",
                    self.index, transfer.id
                ));
                self.history
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Op {
                        client: self.index,
                        transfer,
                        outcome: again,
                    });
            }
            let pause = self.rng.gen_range(0..20);
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }

    /// Sends `transfer` to any node until an attempt is definite or `deadline` passes.
    pub async fn submit_until(
        &mut self,
        cluster: &AsyncMutex<SimCluster>,
        transfer: &Transfer,
        deadline: Duration,
    ) -> Outcome {
        let nodes = cluster.lock().await.ids().len() as u64;
        let mut leader = self.rng.gen_range(1..=nodes);
        self.submit_within(cluster, &mut leader, nodes, transfer, deadline)
            .await
    }

    /// Sends `transfer`, to `leader` first, until an attempt is definite or `deadline` passes.
    async fn submit_within(
        &mut self,
        cluster: &AsyncMutex<SimCluster>,
        leader: &mut u64,
        nodes: u64,
        transfer: &Transfer,
        deadline: Duration,
    ) -> Outcome {
        let give_up = tokio::time::Instant::now() + deadline;
        let mut ambiguous = false;
        while tokio::time::Instant::now() < give_up {
            let channel = cluster.lock().await.channel(*leader);
            let Some(channel) = channel else {
                // Not running: nothing was sent.
                *leader = self.rng.gen_range(1..=nodes);
                tokio::time::sleep(BACKOFF).await;
                continue;
            };
            let request = pb::CreateTransfersRequest {
                transfers: vec![transfer_to_pb(transfer)],
                request_id: format!("{:x}", transfer.id),
            };
            let mut client = LedgerClient::new(channel);
            let call = client.create_transfers(request);
            match tokio::time::timeout(ATTEMPT_TIMEOUT, call).await {
                Ok(Ok(reply)) => {
                    let results = reply.into_inner().results;
                    // A result code is definite even after ambiguous attempts: the retry carries
                    // the same fields, so it is `exists` if an earlier attempt applied.
                    return match results.first() {
                        Some(&CREATED) | Some(&EXISTS) => Outcome::Acknowledged,
                        Some(&code) => Outcome::Refused(code),
                        None => Outcome::Unknown,
                    };
                }
                Ok(Err(status)) => {
                    if applied(&status) == Applied::Unknown {
                        ambiguous = true;
                    }
                    match leader_hint(&status) {
                        Some(hint) if hint != *leader => *leader = hint,
                        _ => {
                            *leader = self.rng.gen_range(1..=nodes);
                            tokio::time::sleep(BACKOFF).await;
                        }
                    }
                }
                Err(_) => {
                    // No answer in time: it may have been proposed.
                    ambiguous = true;
                    *leader = self.rng.gen_range(1..=nodes);
                }
            }
        }
        if ambiguous {
            Outcome::Unknown
        } else {
            Outcome::Refused(u32::MAX)
        }
    }
}
