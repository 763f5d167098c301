//! `ledgerctl local failover`: SIGKILL the leader of a local cluster and time how long until a
//! write succeeds again, over several trials (the killed node is restarted between trials).

use std::path::Path;
use std::time::{Duration, Instant};

use ledger_client::local_cluster::LocalCluster;
use ledger_client::proto::admin::StatusRequest;
use ledger_client::proto::ledger as pb;

/// Give up on one trial after this long without a successful write.
const FAILOVER_TRIAL_TIMEOUT_MS: u64 = 30_000;
const PROBE_ACCOUNT_A: u128 = u128::MAX - 100;
const PROBE_ACCOUNT_B: u128 = u128::MAX - 101;

async fn try_write(endpoints: &[String], id: u128) -> bool {
    let transfer = pb::Transfer {
        id: Some(id.into()),
        debit_account_id: Some(PROBE_ACCOUNT_A.into()),
        credit_account_id: Some(PROBE_ACCOUNT_B.into()),
        amount: Some(1u128.into()),
        ledger: 1,
        code: 1,
        ..Default::default()
    };
    for endpoint in endpoints {
        let Ok(mut client) = crate::connect::ledger(endpoint).await else {
            continue;
        };
        let request = pb::CreateTransfersRequest {
            transfers: vec![transfer],
            request_id: String::new(),
        };
        if let Ok(r) = client.create_transfers(request).await {
            // created or exists: the write is durable on a quorum.
            if matches!(r.into_inner().results.as_slice(), [0] | [33]) {
                return true;
            }
        }
    }
    false
}

/// The leader once every node agrees on it and it says so itself (a restarted node, or a
/// leader just deposed, may hold a stale view).
async fn leading_node(cluster: &LocalCluster) -> Result<u64, String> {
    let deadline = Instant::now() + Duration::from_millis(FAILOVER_TRIAL_TIMEOUT_MS);
    let mut agreed_before = None;
    loop {
        let mut views = Vec::new();
        for node in &cluster.nodes {
            let Some(addrs) = node.addrs else { continue };
            let view = match crate::connect::admin(&addrs.grpc.to_string()).await {
                Ok(mut admin) => admin.status(StatusRequest {}).await.ok().map(|s| {
                    let s = s.into_inner();
                    (
                        s.has_leader.then_some(s.leader_id),
                        s.state == "Leader",
                        node.id,
                    )
                }),
                Err(_) => None,
            };
            views.push(view);
        }
        let leader = views
            .iter()
            .flatten()
            .find(|(_, leads, _)| *leads)
            .map(|v| v.2);
        let agreed = leader.filter(|l| {
            views
                .iter()
                .all(|v| matches!(v, Some((Some(x), _, _)) if x == l))
        });
        // The same leader in two polls 200 ms apart.
        if let Some(leader) = agreed.filter(|_| agreed == agreed_before) {
            return Ok(leader);
        }
        agreed_before = agreed;
        if Instant::now() > deadline {
            return Err("the nodes do not agree on a leader".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn run(dir: &Path, trials: u32, json_out: bool) -> Result<(), String> {
    let mut cluster = LocalCluster::load(dir).map_err(|e| e.to_string())?;
    let endpoints = cluster.endpoints();
    let account = |id: u128| pb::Account {
        id: Some(id.into()),
        ledger: 1,
        code: 1,
        ..Default::default()
    };
    let leader = crate::bench::find_leader(&endpoints).await?;
    let mut client = crate::connect::ledger(&leader).await?;
    client
        .create_accounts(pb::CreateAccountsRequest {
            accounts: vec![account(PROBE_ACCOUNT_A), account(PROBE_ACCOUNT_B)],
            request_id: String::new(),
        })
        .await
        .map_err(|s| s.message().to_string())?;
    let mut samples = Vec::new();
    let mut next_id = u128::from(std::process::id()) << 64;
    for _ in 0..trials {
        let node = leading_node(&cluster).await?;
        let killed = Instant::now();
        cluster.kill(node).map_err(|e| e.to_string())?;
        loop {
            next_id += 1;
            if try_write(&endpoints, next_id).await {
                break;
            }
            if killed.elapsed() > Duration::from_millis(FAILOVER_TRIAL_TIMEOUT_MS) {
                return Err("no write succeeded within 30 s of killing the leader".into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        samples.push(killed.elapsed().as_secs_f64() * 1000.0);
        cluster.restart(node).map_err(|e| e.to_string())?;
        // Let the restarted node catch up before the next trial.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    cluster.detach();
    samples.sort_by(|a, b| a.total_cmp(b));
    let median = samples[samples.len() / 2];
    if json_out {
        println!(
            "{}",
            serde_json::json!({"trials": samples.len(), "median_ms": median, "samples_ms": samples})
        );
    } else {
        println!(
            "failover over {} trials: median {median:.0} ms, min {:.0} ms, max {:.0} ms",
            samples.len(),
            samples[0],
            samples[samples.len() - 1]
        );
    }
    Ok(())
}
