//! Group commit: concurrent client requests on the leader become one Raft entry.
//!
//! Requests queue in a bounded channel. A single task takes everything queued (up to
//! [`GROUP_COMMIT_EVENTS_MAX`] events) as soon as an in-flight slot is free, proposes it as one
//! entry, and hands each request its own results when the entry is applied. There is no
//! waiting window: while earlier entries are being replicated, new requests pile up and leave
//! together, so batching grows with load and costs nothing at low load. A full queue is
//! answered at once with `RESOURCE_EXHAUSTED` (load shedding) instead of growing latency.

use std::sync::Arc;
use std::time::Duration;

use ledger_core::{Command, CommandResults, EVENTS_PER_BATCH_MAX};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::clock::Clock;
use crate::error::NodeError;
use crate::metrics::GroupCommitCounters;
use crate::raft::types::{LedgerRequest, Raft};

/// Most events gathered into one coalesced entry (a request that starts an entry is never
/// split, so an entry holds at most about twice this). Kept to one full client batch: openraft
/// 0.9 gives each AppendEntries the heartbeat interval to complete, and entries of 4 full
/// batches (about 3 MB) missed it on a loaded 2-core machine, which starved the heartbeats
/// that share the peer connection and caused elections.
pub const GROUP_COMMIT_EVENTS_MAX: usize = EVENTS_PER_BATCH_MAX;
/// Most requests waiting to be proposed; beyond it new requests are shed.
pub const PROPOSALS_QUEUED_MAX: usize = 8192;
/// Most entries proposed and not yet applied at once (pipelining depth).
pub const PROPOSALS_IN_FLIGHT_MAX: usize = 8;

const _: () = assert!(GROUP_COMMIT_EVENTS_MAX >= EVENTS_PER_BATCH_MAX);

/// The outcome of one committed request.
#[derive(Clone, Debug)]
pub struct Committed {
    pub results: CommandResults,
    pub log_index: u64,
    /// How many client requests shared the entry.
    pub batch_requests: usize,
}

struct Proposal {
    command: Command,
    request_id: String,
    reply: oneshot::Sender<Result<Committed, NodeError>>,
}

#[derive(Clone)]
pub struct GroupCommitter {
    tx: mpsc::Sender<Proposal>,
    pub stats: GroupCommitCounters,
}

impl GroupCommitter {
    /// Starts the committer task for `raft`, stamping entries with `clock`'s cluster time,
    /// counting into `stats`.
    pub fn start(raft: Raft, clock: Arc<Clock>, stats: GroupCommitCounters) -> Self {
        let (tx, rx) = mpsc::channel(PROPOSALS_QUEUED_MAX);
        tokio::spawn(run(raft, clock, rx, stats.clone()));
        Self { tx, stats }
    }

    /// Proposes `command` and waits until it is applied or `timeout` passes.
    pub async fn submit(
        &self,
        command: Command,
        request_id: String,
        timeout: Duration,
    ) -> Result<Committed, NodeError> {
        let (reply, rx) = oneshot::channel();
        let proposal = Proposal {
            command,
            request_id,
            reply,
        };
        if let Err(e) = self.tx.try_send(proposal) {
            return Err(match e {
                mpsc::error::TrySendError::Full(_) => {
                    self.stats.shed.inc();
                    NodeError::ResourceExhausted(format!(
                        "leader queue full ({PROPOSALS_QUEUED_MAX} requests); retry with backoff"
                    ))
                }
                mpsc::error::TrySendError::Closed(_) => {
                    NodeError::Unavailable("node is shutting down".into())
                }
            });
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(NodeError::OutcomeUnknown(
                "node stopped while committing".into(),
            )),
            Err(_) => Err(NodeError::OutcomeUnknown(format!(
                "not committed within {} ms",
                timeout.as_millis()
            ))),
        }
    }
}

async fn run(
    raft: Raft,
    clock: Arc<Clock>,
    mut rx: mpsc::Receiver<Proposal>,
    stats: GroupCommitCounters,
) {
    let slots = Arc::new(Semaphore::new(PROPOSALS_IN_FLIGHT_MAX));
    loop {
        // Wait for a free slot first: while we wait, requests accumulate into a bigger entry.
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut events = first.command.len();
        let mut batch = vec![first];
        while events < GROUP_COMMIT_EVENTS_MAX {
            match rx.try_recv() {
                Ok(p) => {
                    events += p.command.len();
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        stats.entries.inc();
        stats.requests.inc_by(batch.len() as u64);
        stats.batch_requests.observe(batch.len() as f64);
        let (raft, clock) = (raft.clone(), clock.clone());
        tokio::spawn(async move {
            propose(&raft, &clock, batch).await;
            drop(permit);
        });
    }
}

async fn propose(raft: &Raft, clock: &Clock, batch: Vec<Proposal>) {
    let mut commands = Vec::with_capacity(batch.len());
    let mut request_ids = Vec::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    for p in batch {
        commands.push(p.command);
        request_ids.push(p.request_id);
        replies.push(p.reply);
    }
    let count = replies.len();
    // Cluster time, bounded by a quorum of clocks; refused (nothing proposed) without one.
    let (timestamp, term) = {
        let metrics = raft.metrics().borrow().clone();
        let voters: Vec<u64> = metrics.membership_config.membership().voter_ids().collect();
        (clock.cluster_time(metrics.id, voters), metrics.current_term)
    };
    let timestamp = match timestamp {
        Ok(timestamp) => timestamp,
        Err(unsynchronized) => {
            tracing::warn!(error = %unsynchronized, "not proposing: clocks disagree");
            let error = NodeError::Unavailable(unsynchronized.to_string());
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
            return;
        }
    };
    tracing::debug!(?request_ids, "proposing one entry");
    let request = LedgerRequest {
        timestamp,
        commands,
        request_ids,
    };
    #[cfg(feature = "negative-control")]
    let replies = match early_ack(&request, replies) {
        Some(unanswered) => unanswered,
        None => {
            let _ = raft.client_write(request).await;
            return;
        }
    };
    // Bounded twice. openraft 0.9 keeps a proposal's responder by log index and answers it
    // only when that index is applied here or truncated. A leader cut off with proposals in
    // flight, which then catches up by installing a snapshot, does neither, and the proposal
    // would hold its slot for good: once all slots were held, a node that led again took no
    // write at all (found by the harness: `partition`, seed 1, every write refused after
    // healing; `tests/faults.rs`, the cut-off leader). So a proposal is given up, its outcome
    // unknown, as soon as the term it was proposed in ends (the entry may still be committed
    // by a later leader, or be dropped) and at the latest after the write deadline. The
    // callers' own deadline is no longer than that one, so they have been told already.
    let written = tokio::select! {
        biased;
        written = raft.client_write(request) => Some(written),
        () = tokio::time::sleep(Duration::from_millis(crate::config::WRITE_TIMEOUT_MS)) => None,
        () = term_ended(raft.metrics(), term) => None,
    };
    let Some(written) = written else {
        let error = NodeError::OutcomeUnknown(format!(
            "not committed in term {term} within {} ms",
            crate::config::WRITE_TIMEOUT_MS
        ));
        for reply in replies {
            let _ = reply.send(Err(error.clone()));
        }
        return;
    };
    match written {
        Ok(response) => {
            let log_index = response.log_id.index;
            let results = response.data.results;
            assert_eq!(results.len(), count, "one result per coalesced command");
            for (reply, results) in replies.into_iter().zip(results) {
                let _ = reply.send(Ok(Committed {
                    results,
                    log_index,
                    batch_requests: count,
                }));
            }
        }
        Err(e) => {
            let error = NodeError::from_write(e);
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

/// Returns once the node's term is past `term` (never, when the node stops reporting).
async fn term_ended(
    mut metrics: tokio::sync::watch::Receiver<
        openraft::RaftMetrics<u64, crate::raft::types::LedgerNode>,
    >,
    term: u64,
) {
    loop {
        if metrics.borrow_and_update().current_term > term {
            return;
        }
        if metrics.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Negative control `--unsafe-early-ack` (`negative_control.rs`): an entry of transfers only is
/// answered `created` before it is proposed (`None`: answered, propose it without waiting for
/// anyone). Any other entry's replies are handed back, to be answered as usual.
#[cfg(feature = "negative-control")]
fn early_ack(
    request: &LedgerRequest,
    replies: Vec<oneshot::Sender<Result<Committed, NodeError>>>,
) -> Option<Vec<oneshot::Sender<Result<Committed, NodeError>>>> {
    let transfers_only = request
        .commands
        .iter()
        .all(|c| matches!(c, Command::CreateTransfers(_)));
    if !crate::negative_control::early_ack() || !transfers_only {
        return Some(replies);
    }
    let count = replies.len();
    for (reply, command) in replies.into_iter().zip(&request.commands) {
        let created = vec![ledger_core::TransferResult::Created; command.len()];
        let _ = reply.send(Ok(Committed {
            results: CommandResults::CreateTransfers(created),
            log_index: 0,
            batch_requests: count,
        }));
    }
    None
}
