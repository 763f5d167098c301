//! The HTTP endpoints: liveness, readiness and Prometheus metrics.
//!
//! `/health/live` answers 200 while the process runs. `/health/ready` answers 200 only when a
//! leader is known, this node is healthy, a leader (if this node is one) has heard from a
//! quorum within twice the longest election timeout (`Node::leader_without_quorum`), and its applied index is
//! within [`READY_LAG_ENTRIES_MAX`] of its last log index; otherwise 503 with the reason.
//! Both answer JSON, and suit Kubernetes liveness and readiness probes. A node cut off from the majority is not ready:
//! as a follower it soon stands for election and knows no leader; as a leader it stops hearing
//! from a quorum.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::metrics::RaftReading;
use crate::node::Node;

/// Most entries a node may be behind the commit index and still call itself ready.
pub const READY_LAG_ENTRIES_MAX: u64 = 1_000;

pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(node)
}

async fn live() -> Response {
    Json(json!({"status": "live"})).into_response()
}

async fn ready(State(node): State<Arc<Node>>) -> Response {
    let metrics = node.raft.metrics().borrow().clone();
    let applied = metrics.last_applied.map(|l| l.index).unwrap_or(0);
    let last_log = metrics.last_log_index.unwrap_or(0);
    let reason = if let Some(problem) = node.health.problem() {
        Some(problem)
    } else if metrics.current_leader.is_none() {
        Some("no known leader".to_string())
    } else if let Some(isolated) = node.leader_without_quorum(&metrics) {
        Some(isolated)
    } else if last_log.saturating_sub(applied) > READY_LAG_ENTRIES_MAX {
        Some(format!(
            "applied index {applied} is behind log index {last_log}"
        ))
    } else {
        None
    };
    let mut body = json!({
        "status": if reason.is_none() { "ready" } else { "not_ready" },
        "reason": reason,
        "node_id": node.config.node_id,
        "leader": metrics.current_leader,
        "applied": applied,
        "last_log": last_log,
    });
    // An insecure node may be ready, but says what it is to whoever checks.
    if let Some(why) = &node.config.insecure {
        body["insecure"] = json!(why);
    }
    let code = if reason.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn metrics(State(node): State<Arc<Node>>) -> Response {
    let m = node.raft.metrics().borrow().clone();
    let index = |l: Option<openraft::LogId<u64>>| l.map(|l| l.index).unwrap_or(0);
    let last_log_index = m.last_log_index.unwrap_or(0);
    let lags: Vec<(u64, u64)> = m
        .replication
        .as_ref()
        .map(|r| {
            r.iter()
                .filter(|(id, _)| **id != node.config.node_id)
                .map(|(id, matched)| (*id, last_log_index.saturating_sub(index(*matched))))
                .collect()
        })
        .unwrap_or_default();
    let engine = node.engine.clone();
    let applied_index = index(m.last_applied);
    let reading = RaftReading {
        term: m.current_term,
        leader_id: m.current_leader,
        // A leader cut off from its quorum is not counted as one (it serves nothing).
        is_leader: m.current_leader == Some(node.config.node_id)
            && node.leader_without_quorum(&m).is_none(),
        last_log_index,
        committed_index: 0,
        applied_index,
        snapshot_index: index(m.snapshot),
        purged_index: index(m.purged),
    };
    let metrics = node.metrics.clone();
    let text = crate::blocking::spawn(move || {
        let committed = engine
            .saved_committed_index()
            .unwrap_or(0)
            .max(applied_index);
        metrics.render(
            RaftReading {
                committed_index: committed,
                ..reading
            },
            &lags,
            &engine.storage_bytes(),
        )
    })
    .await
    .unwrap_or_default();
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
