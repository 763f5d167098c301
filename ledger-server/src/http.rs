//! The HTTP endpoints: liveness, readiness and Prometheus metrics.
//!
//! `/health/live` answers 200 while the process runs. `/health/ready` answers 200 only when a
//! leader is known, this node is healthy, and its applied index is within
//! [`READY_LAG_ENTRIES_MAX`] of its last log index; otherwise 503 with the reason.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

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
    } else if last_log.saturating_sub(applied) > READY_LAG_ENTRIES_MAX {
        Some(format!(
            "applied index {applied} is behind log index {last_log}"
        ))
    } else {
        None
    };
    let body = json!({
        "status": if reason.is_none() { "ready" } else { "not_ready" },
        "reason": reason,
        "node_id": node.config.node_id,
        "leader": metrics.current_leader,
        "applied": applied,
        "last_log": last_log,
    });
    let code = if reason.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn metrics(State(node): State<Arc<Node>>) -> Response {
    let m = node.raft.metrics().borrow().clone();
    let stats = &node.committer.stats;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    let index = |l: Option<openraft::LogId<u64>>| l.map(|l| l.index).unwrap_or(0);
    let text = format!(
        "# TYPE ledger_raft_term gauge\nledger_raft_term {}\n\
         # TYPE ledger_raft_is_leader gauge\nledger_raft_is_leader {}\n\
         # TYPE ledger_raft_last_log_index gauge\nledger_raft_last_log_index {}\n\
         # TYPE ledger_raft_applied_index gauge\nledger_raft_applied_index {}\n\
         # TYPE ledger_group_commit_entries_total counter\nledger_group_commit_entries_total {}\n\
         # TYPE ledger_group_commit_requests_total counter\nledger_group_commit_requests_total {}\n\
         # TYPE ledger_requests_shed_total counter\nledger_requests_shed_total {}\n",
        m.current_term,
        u8::from(m.current_leader == Some(node.config.node_id)),
        m.last_log_index.unwrap_or(0),
        index(m.last_applied),
        load(&stats.entries),
        load(&stats.requests),
        load(&stats.shed),
    );
    ([("content-type", "text/plain; version=0.0.4")], text).into_response()
}
