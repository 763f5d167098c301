//! `ledgerctl bench --rate R`: the transfer workload as an open loop, to see load shedding.
//!
//! Requests (batch of B transfers each) are due at R per second whatever the answers, over C
//! connections, so the offered load does not fall when the cluster slows down, unlike the
//! closed loop of `bench.rs`. Each connection behaves like a client that backs off, as
//! `LedgerClient` does: after a `RESOURCE_EXHAUSTED` it sends nothing for a pause (20 ms,
//! doubling to 1 s, reset by a success), and the requests due meanwhile fail at once on the
//! client's side (counted as shed by the client). Reported: offered and accepted rates, the share refused with
//! `RESOURCE_EXHAUSTED` (shed), other errors, and the latency of accepted requests, from the
//! time each request was due to its answer (requests due in the window count, however late
//! they finish). A node
//! that sheds well keeps the accepted latency bounded at 2x and 10x its sustainable load.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use ledger_client::proto::ledger as pb;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::bench::{random_transfer, BenchArgs, WARMUP_MS};

/// How often each generator tops up the requests due by now.
const TICK_MS: u64 = 1;

/// First pause after a refusal, and the longest.
const BACKOFF_MIN_MS: u64 = 20;
const BACKOFF_MAX_MS: u64 = 1_000;

#[derive(Default)]
struct Counts {
    offered: AtomicU64,
    accepted: AtomicU64,
    shed: AtomicU64,
    /// Due while the connection was backing off: failed on the client, never sent.
    shed_by_client: AtomicU64,
    errors: AtomicU64,
    /// Failures other than shedding, by gRPC code.
    error_codes: Mutex<std::collections::BTreeMap<String, u64>>,
}

/// Latency of accepted requests, from when each was due and from when it was sent: on one
/// machine the generator competes with the nodes for the cores, and the difference between the
/// two is time the request spent waiting on the client's side.
struct Latencies {
    from_due: Histogram<u64>,
    from_sent: Histogram<u64>,
}

pub async fn run(args: &BenchArgs, rate: u64, leader: &str) -> Result<(), String> {
    let run_tag = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let start = Instant::now();
    let window_start = start + Duration::from_millis(WARMUP_MS);
    let window_end = window_start + Duration::from_secs(args.seconds);
    let new_histogram =
        || Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds");
    let histogram = Arc::new(Mutex::new(Latencies {
        from_due: new_histogram(),
        from_sent: new_histogram(),
    }));
    let counts = Arc::new(Counts::default());
    let per_generator = rate as f64 / args.clients as f64;
    let mut generators = Vec::new();
    for generator in 0..args.clients {
        let client = crate::connect::ledger(leader).await?;
        let (histogram, counts) = (histogram.clone(), counts.clone());
        let (accounts, batch, seed) = (u128::from(args.accounts), args.batch, args.seed);
        generators.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed + generator);
            let mut sent = 0u64;
            let mut sequence = 0u64;
            let mut in_flight = Vec::new();
            // Milliseconds since `start` until which this connection sends nothing, and the
            // current pause; both set by the answers.
            let backoff = Arc::new((AtomicU64::new(0), AtomicU64::new(BACKOFF_MIN_MS)));
            loop {
                let now = Instant::now();
                if now >= window_end {
                    break;
                }
                let due = ((now - start).as_secs_f64() * per_generator) as u64;
                while sent < due {
                    // When this request was due: latency counts from then, so a generator that
                    // falls behind shows up as latency instead of hiding it.
                    let scheduled = start + Duration::from_secs_f64(sent as f64 / per_generator);
                    sent += 1;
                    let since_start = now.duration_since(start).as_millis() as u64;
                    if since_start < backoff.0.load(Ordering::Relaxed) {
                        if scheduled >= window_start && scheduled < window_end {
                            counts.offered.fetch_add(1, Ordering::Relaxed);
                            counts.shed_by_client.fetch_add(1, Ordering::Relaxed);
                        }
                        continue;
                    }
                    let transfers: Vec<pb::Transfer> = (0..batch)
                        .map(|_| {
                            sequence += 1;
                            let id = (u128::from(run_tag) << 64)
                                | (u128::from(generator) << 40)
                                | u128::from(sequence);
                            random_transfer(&mut rng, id, accounts)
                        })
                        .collect();
                    let mut client = client.clone();
                    let (histogram, counts) = (histogram.clone(), counts.clone());
                    let backoff = backoff.clone();
                    in_flight.push(tokio::spawn(async move {
                        let sent_at = Instant::now();
                        let result = client
                            .create_transfers(pb::CreateTransfersRequest {
                                transfers,
                                request_id: String::new(),
                            })
                            .await;
                        let finished = Instant::now();
                        match &result {
                            Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                                let pause = backoff.1.load(Ordering::Relaxed);
                                let until =
                                    finished.duration_since(start).as_millis() as u64 + pause;
                                backoff.0.fetch_max(until, Ordering::Relaxed);
                                backoff
                                    .1
                                    .store((pause * 2).min(BACKOFF_MAX_MS), Ordering::Relaxed);
                            }
                            Ok(_) => backoff.1.store(BACKOFF_MIN_MS, Ordering::Relaxed),
                            Err(_) => {}
                        }
                        // Counted by when it was due, however late it finished: the slow tail
                        // of an overload is what this measures.
                        if scheduled < window_start || scheduled >= window_end {
                            return;
                        }
                        counts.offered.fetch_add(1, Ordering::Relaxed);
                        match result {
                            Ok(_) => {
                                counts.accepted.fetch_add(1, Ordering::Relaxed);
                                let micros =
                                    |from: Instant| (finished - from).as_micros().max(1) as u64;
                                let mut latencies = histogram.lock().expect("histogram lock");
                                let _ = latencies.from_due.record(micros(scheduled));
                                let _ = latencies.from_sent.record(micros(sent_at));
                            }
                            Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                                counts.shed.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(s) => {
                                counts.errors.fetch_add(1, Ordering::Relaxed);
                                *counts
                                    .error_codes
                                    .lock()
                                    .expect("codes lock")
                                    .entry(format!("{:?}", s.code()))
                                    .or_default() += 1;
                            }
                        }
                    }));
                }
                in_flight.retain(|t| !t.is_finished());
                tokio::time::sleep(Duration::from_millis(TICK_MS)).await;
            }
            for task in in_flight {
                let _ = task.await;
            }
        }));
    }
    for generator in generators {
        generator.await.map_err(|e| e.to_string())?;
    }
    let histogram = histogram.lock().expect("histogram lock");
    let seconds = args.seconds as f64;
    let offered = counts.offered.load(Ordering::Relaxed);
    let accepted = counts.accepted.load(Ordering::Relaxed);
    let shed = counts.shed.load(Ordering::Relaxed);
    let shed_by_client = counts.shed_by_client.load(Ordering::Relaxed);
    let errors = counts.errors.load(Ordering::Relaxed);
    let ms = |q: f64| histogram.from_due.value_at_quantile(q) as f64 / 1000.0;
    let sent_ms = |q: f64| histogram.from_sent.value_at_quantile(q) as f64 / 1000.0;
    let round = |v: f64| (v * 10.0).round() / 10.0;
    let line = serde_json::json!({
        "system": "ledger",
        "mode": "open-loop",
        "target_requests_per_s": rate,
        "offered_requests_per_s": round(offered as f64 / seconds),
        "accepted_requests_per_s": round(accepted as f64 / seconds),
        "accepted_transfers_per_s": round((accepted * args.batch) as f64 / seconds),
        "shed_fraction": if offered == 0 { 0.0 } else { ((shed + shed_by_client) as f64 / offered as f64 * 1e4).round() / 1e4 },
        "shed_by_server": shed,
        "shed_by_client": shed_by_client,
        "errors": errors,
        "error_codes": counts.error_codes.lock().expect("codes lock").clone(),
        "p50_ms": ms(0.50),
        "p99_ms": ms(0.99),
        "p999_ms": ms(0.999),
        "p50_from_sent_ms": sent_ms(0.50),
        "p99_from_sent_ms": sent_ms(0.99),
        "p999_from_sent_ms": sent_ms(0.999),
        "connections": args.clients,
        "batch": args.batch,
        "seconds": args.seconds,
    });
    if args.json {
        println!("{line}");
    } else {
        println!(
            "offered {:.0} req/s (target {rate}), accepted {:.0} req/s, shed {:.1}%, {errors} errors; accepted latency from due p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms; from sent p99 {:.2} ms",
            offered as f64 / seconds,
            accepted as f64 / seconds,
            if offered == 0 { 0.0 } else { (shed + shed_by_client) as f64 * 100.0 / offered as f64 },
            ms(0.50),
            ms(0.99),
            ms(0.999),
            sent_ms(0.99),
        );
    }
    Ok(())
}
