//! Automatic batching: concurrent calls of one kind are coalesced into one request.
//!
//! Each kind of write has a queue and a sender task. The task holds at most `max_in_flight`
//! requests on the wire; while they are out, new calls wait in the queue, and when a slot frees
//! the task takes every queued call that fits in one request (`max_events` events). Under light
//! load a call goes out at once, alone; under heavy load calls share requests, so throughput
//! grows without any caller waiting for a timer. This is the client half of the server's group
//! commit.
//!
//! A call whose events end in an open linked chain (last event with the `linked` flag) is put
//! last in its request, so its chain cannot run on into another caller's events: it gets
//! `linked_event_chain_open`, exactly as if it had been sent alone.
//!
//! A request of several calls that the server refuses as a whole (`INVALID_ARGUMENT`: nothing
//! of it was applied) is sent again one call at a time, so that one caller's bad event fails
//! that caller alone and the others get their own results.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::credentials::AuthChannel;
use rand::Rng;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::error::Error;
use super::router::{Router, Target};
use crate::proto::ledger as pb;
use crate::proto::ledger::ledger_client::LedgerClient as Grpc;

/// Largest gRPC message the client accepts (a full page of transfers is about 1.5 MB).
pub(crate) const MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

pub(crate) type SendFuture =
    Pin<Box<dyn Future<Output = Result<tonic::Response<pb::WriteResponse>, tonic::Status>> + Send>>;

/// Sends one request of a kind: the events and a request id (for tracing only).
pub(crate) type SendFn<P> = fn(Grpc<AuthChannel>, Vec<P>, String) -> SendFuture;

/// What a call gets back: its own slice of the result codes.
#[derive(Debug)]
pub(crate) struct Written {
    pub codes: Vec<u32>,
}

/// Counters of what the batchers did, for tests and metrics.
#[derive(Debug, Default)]
pub struct BatchStats {
    /// Calls made by the application.
    pub calls: AtomicU64,
    /// Requests sent (each retried request counts once).
    pub requests: AtomicU64,
    /// Events sent.
    pub events: AtomicU64,
}

struct Job<P> {
    events: Vec<P>,
    open_chain: bool,
    deadline: Instant,
    reply: oneshot::Sender<Result<Written, Error>>,
}

pub(crate) struct Batcher<P> {
    queue: mpsc::UnboundedSender<Job<P>>,
    max_events: usize,
    stats: Arc<BatchStats>,
}

pub(crate) struct BatcherOptions {
    pub max_events: usize,
    pub max_in_flight: usize,
    /// False: every call is sent alone.
    pub coalesce: bool,
}

impl<P: Clone + Send + Sync + 'static> Batcher<P> {
    pub fn new(
        router: Arc<Router>,
        send: SendFn<P>,
        options: BatcherOptions,
        stats: Arc<BatchStats>,
    ) -> Self {
        let (queue, jobs) = mpsc::unbounded_channel();
        let max_events = options.max_events;
        tokio::spawn(run(router, send, options, stats.clone(), jobs));
        Batcher {
            queue,
            max_events,
            stats,
        }
    }

    /// Sends `events` (coalesced with other calls when they are queued together) and waits for
    /// their result codes.
    pub async fn submit(
        &self,
        events: Vec<P>,
        open_chain: bool,
        deadline: Instant,
    ) -> Result<Written, Error> {
        if events.len() > self.max_events {
            return Err(Error::InvalidArgument(format!(
                "{} events in one call; the limit is {}",
                events.len(),
                self.max_events
            )));
        }
        if events.is_empty() {
            return Ok(Written { codes: Vec::new() });
        }
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        let job = Job {
            events,
            open_chain,
            deadline,
            reply,
        };
        self.queue
            .send(job)
            .map_err(|_| Error::Config("the client's batcher has stopped".into()))?;
        answer
            .await
            .map_err(|_| Error::Config("the client's batcher dropped a call".into()))?
    }
}

async fn run<P: Clone + Send + Sync + 'static>(
    router: Arc<Router>,
    send: SendFn<P>,
    options: BatcherOptions,
    stats: Arc<BatchStats>,
    mut jobs: mpsc::UnboundedReceiver<Job<P>>,
) {
    let slots = Arc::new(Semaphore::new(options.max_in_flight.max(1)));
    let mut carried: Option<Job<P>> = None;
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let first = match carried.take() {
            Some(job) => job,
            None => match jobs.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        let mut batch = vec![first];
        let mut size = batch[0].events.len();
        while options.coalesce && !batch.last().is_some_and(|job| job.open_chain) {
            match jobs.try_recv() {
                Ok(job) if size + job.events.len() <= options.max_events => {
                    size += job.events.len();
                    batch.push(job);
                }
                Ok(job) => {
                    carried = Some(job);
                    break;
                }
                Err(_) => break,
            }
        }
        // A call whose deadline passed while it was queued was never sent: say so, definitely.
        let now = Instant::now();
        let (expired, batch): (Vec<_>, Vec<_>) =
            batch.into_iter().partition(|job| job.deadline <= now);
        for job in expired {
            let _ = job.reply.send(Err(Error::Unavailable {
                attempts: 0,
                elapsed: Duration::ZERO,
                last_error: "deadline passed while queued in the client".into(),
            }));
        }
        if batch.is_empty() {
            continue;
        }
        stats.requests.fetch_add(1, Ordering::Relaxed);
        stats.events.fetch_add(size as u64, Ordering::Relaxed);
        let router = router.clone();
        tokio::spawn(async move {
            send_batch(&router, send, batch).await;
            drop(slot);
        });
    }
}

/// Sends one coalesced request and hands each call its slice of the results. A request of
/// several calls refused as malformed is split: each call is sent again alone.
async fn send_batch<P: Clone + Send + Sync + 'static>(
    router: &Router,
    send: SendFn<P>,
    batch: Vec<Job<P>>,
) {
    match send_once(router, send, &batch).await {
        Ok(codes) => {
            let mut codes = codes.into_iter();
            for job in batch {
                let mine = codes.by_ref().take(job.events.len()).collect();
                let _ = job.reply.send(Ok(Written { codes: mine }));
            }
        }
        // The router returns `InvalidArgument` only when no attempt may have been applied
        // (after an ambiguous one it is `OutcomeUnknown`): sending each call alone is safe.
        Err(Error::InvalidArgument(_)) if batch.len() > 1 => {
            for job in batch {
                let alone = std::slice::from_ref(&job);
                let answer = send_once(router, send, alone).await;
                let _ = job.reply.send(answer.map(|codes| Written { codes }));
            }
        }
        Err(error) => {
            for job in batch {
                let _ = job.reply.send(Err(error.clone()));
            }
        }
    }
}

/// Sends the events of `batch` as one request, retried until the earliest deadline among its
/// calls (so that every call is answered by its own deadline); returns every event's code.
async fn send_once<P: Clone + Send + Sync + 'static>(
    router: &Router,
    send: SendFn<P>,
    batch: &[Job<P>],
) -> Result<Vec<u32>, Error> {
    let deadline = batch
        .iter()
        .map(|job| job.deadline)
        .min()
        .expect("batch is not empty");
    let events: Vec<P> = batch
        .iter()
        .flat_map(|job| job.events.iter().cloned())
        .collect();
    let request_id = format!("{:016x}", rand::thread_rng().gen::<u64>());
    let answer = router
        .call(deadline, Target::Leader, |channel| {
            let grpc = Grpc::new(channel)
                .max_decoding_message_size(MESSAGE_BYTES_MAX)
                .max_encoding_message_size(MESSAGE_BYTES_MAX);
            send(grpc, events.clone(), request_id.clone())
        })
        .await;
    answer.and_then(|response| {
        let response = response.into_inner();
        if response.results.len() == events.len() {
            Ok(response.results)
        } else {
            Err(Error::Protocol(format!(
                "{} results for {} events",
                response.results.len(),
                events.len()
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ClientConfig;

    /// A server that refuses a whole request holding an event 0, and answers every other event
    /// with its own value as its code.
    fn fake_send(_grpc: Grpc<AuthChannel>, events: Vec<u32>, _id: String) -> SendFuture {
        Box::pin(async move {
            if events.contains(&0) {
                return Err(tonic::Status::invalid_argument(
                    "LEDGER_INVALID_ARGUMENT: events[1].id: must not be 0",
                ));
            }
            Ok(tonic::Response::new(pb::WriteResponse {
                results: events,
                ..Default::default()
            }))
        })
    }

    fn job(events: Vec<u32>) -> (Job<u32>, oneshot::Receiver<Result<Written, Error>>) {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            events,
            open_chain: false,
            deadline: Instant::now() + Duration::from_secs(5),
            reply,
        };
        (job, answer)
    }

    #[tokio::test]
    async fn one_callers_bad_event_fails_that_caller_alone() {
        let router =
            Router::new(ClientConfig::new(vec!["http://127.0.0.1:1".to_string()])).expect("router");
        let (a, a_answer) = job(vec![7, 8]);
        let (bad, bad_answer) = job(vec![0]);
        let (c, c_answer) = job(vec![9]);
        send_batch(&router, fake_send, vec![a, bad, c]).await;
        let codes =
            |answer: Result<Result<Written, Error>, _>| answer.expect("answered").map(|w| w.codes);
        assert_eq!(codes(a_answer.await), Ok(vec![7, 8]));
        assert!(matches!(
            codes(bad_answer.await),
            Err(Error::InvalidArgument(_))
        ));
        assert_eq!(codes(c_answer.await), Ok(vec![9]));
    }
}
