//! The client API: where a request is decoded and checked, then handed to the group
//! committer (writes) or answered from a consistent view of the state (reads).

use std::sync::Arc;
use std::time::Duration;

use ledger_core::{
    query, AccountFilter, Command, CommandResults, Store, EVENTS_PER_BATCH_MAX, QUERY_RESULTS_MAX,
};
use ledger_wire::convert::{self, decode_all, FieldError};
use ledger_wire::proto::ledger as pb;
use ledger_wire::proto::ledger::ledger_server::Ledger;
use ledger_wire::proto::u128_of;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::config::{READ_TIMEOUT_MS, WRITE_TIMEOUT_MS};
use crate::error::NodeError;
use crate::grpc::status::to_status;
use crate::node::Node;
use crate::storage::engine::{self, Incomplete};

pub struct LedgerService {
    node: Arc<Node>,
}

/// Longest request id kept (longer ones are cut).
const REQUEST_ID_CHARS_MAX: usize = 64;

impl LedgerService {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }

    /// Proposes one client write and answers its result codes. `request_id` is the client's
    /// (kept across its retries) or a new one; it names the request in the logs from here to
    /// the entry's apply on every node.
    async fn write(
        &self,
        command: Command,
        request_id: String,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let request_id = if request_id.is_empty() {
            format!("{:016x}", self.node.env.random_u64())
        } else {
            request_id.chars().take(REQUEST_ID_CHARS_MAX).collect()
        };
        let span = tracing::info_span!(
            "write",
            request_id = %request_id,
            operation = command.operation(),
            events = command.len()
        );
        self.write_in_span(command, request_id)
            .instrument(span)
            .await
    }

    async fn write_in_span(
        &self,
        command: Command,
        request_id: String,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        if command.is_empty() {
            return Err(to_status(NodeError::invalid(
                "events",
                "the batch is empty",
            )));
        }
        if command.len() > EVENTS_PER_BATCH_MAX {
            return Err(to_status(NodeError::invalid(
                "events",
                format!(
                    "{} events exceed the limit of {EVENTS_PER_BATCH_MAX}",
                    command.len()
                ),
            )));
        }
        self.node.check_writable().map_err(to_status)?;
        let committed = self
            .node
            .committer
            .submit(command, request_id, Duration::from_millis(WRITE_TIMEOUT_MS))
            .await
            .map_err(|e| {
                tracing::debug!(error = %e, "write not committed");
                to_status(e)
            })?;
        tracing::debug!(log_index = committed.log_index, "write committed");
        let results = match committed.results {
            CommandResults::CreateAccounts(r) => r.iter().map(|c| c.code()).collect(),
            CommandResults::CreateTransfers(r) => r.iter().map(|c| c.code()).collect(),
            CommandResults::CreateMarkets(r) => r.iter().map(|c| c.code()).collect(),
            CommandResults::PlaceBets(r) => r.iter().map(|c| c.code()).collect(),
            CommandResults::SettleMarkets(r) => r.iter().map(|c| c.code()).collect(),
            CommandResults::BetActions(r) => r.iter().map(|c| c.code()).collect(),
            CommandResults::Rejected(reason) => {
                return Err(to_status(NodeError::invalid(
                    "events",
                    format!("{reason:?}"),
                )))
            }
        };
        Ok(Response::new(pb::WriteResponse {
            results,
            log_index: committed.log_index,
            batch_requests: committed.batch_requests as u32,
        }))
    }

    /// Runs `query` on a consistent view of the state, after confirming leadership for a
    /// linearizable read. Returns the answer and the applied index it reflects.
    async fn read<T: Send + 'static>(
        &self,
        consistency: i32,
        query: impl FnOnce(&dyn Store) -> T + Send + 'static,
    ) -> Result<(T, u64), Status> {
        let consistency = pb::ReadConsistency::try_from(consistency).map_err(|_| {
            to_status(NodeError::invalid(
                "consistency",
                format!("unknown value {consistency}"),
            ))
        })?;
        if let Some(problem) = self.node.health.problem() {
            return Err(to_status(NodeError::Unhealthy(problem)));
        }
        #[cfg(feature = "negative-control")]
        let consistency = if crate::negative_control::stale_reads() {
            pb::ReadConsistency::Stale
        } else {
            consistency
        };
        if consistency == pb::ReadConsistency::Linearizable {
            let confirmed = tokio::time::timeout(
                Duration::from_millis(READ_TIMEOUT_MS),
                self.node.raft.ensure_linearizable(),
            )
            .await
            .map_err(|_| {
                to_status(NodeError::Unavailable(format!(
                    "leadership not confirmed within {READ_TIMEOUT_MS} ms"
                )))
            })?;
            confirmed.map_err(|e| to_status(NodeError::from_read(e)))?;
        }
        let engine = self.node.engine.clone();
        crate::blocking::spawn(move || {
            engine::query(engine.as_ref(), Incomplete::Refuse, |point| {
                (query(point.store), point.applied_index)
            })
        })
        .await
        .map_err(|e| to_status(NodeError::Internal(e.to_string())))?
        .map_err(|e| {
            if let NodeError::Unhealthy(reason) = &e {
                self.node.health.mark_unhealthy(reason.clone());
            }
            to_status(e)
        })
    }
}

fn invalid(e: FieldError) -> Status {
    to_status(NodeError::InvalidArgument {
        field: e.field,
        reason: e.reason,
    })
}

fn lookup_ids(ids: &[pb::U128]) -> Result<Vec<u128>, Status> {
    if ids.len() > QUERY_RESULTS_MAX {
        return Err(to_status(NodeError::invalid(
            "ids",
            format!("{} ids exceed the limit of {QUERY_RESULTS_MAX}", ids.len()),
        )));
    }
    Ok(ids.iter().map(|id| u128::from(*id)).collect())
}

fn filter_from_pb(f: &pb::AccountFilter) -> Result<AccountFilter, Status> {
    let account_id = u128_of(&f.account_id);
    if account_id == 0 {
        return Err(to_status(NodeError::invalid(
            "account_id",
            "must be set and not 0",
        )));
    }
    let code = u16::try_from(f.code)
        .map_err(|_| to_status(NodeError::invalid("code", "does not fit in 16 bits")))?;
    Ok(AccountFilter {
        account_id,
        timestamp_min: f.timestamp_min,
        timestamp_max: f.timestamp_max,
        code,
        limit: f.limit,
        reverse: f.reverse,
        debits: f.debits,
        credits: f.credits,
    })
}

#[tonic::async_trait]
impl Ledger for LedgerService {
    async fn create_accounts(
        &self,
        request: Request<pb::CreateAccountsRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let r = request.into_inner();
        let events =
            decode_all(&r.accounts, "accounts", convert::account_from_pb).map_err(invalid)?;
        self.write(Command::CreateAccounts(events), r.request_id)
            .await
    }

    async fn create_transfers(
        &self,
        request: Request<pb::CreateTransfersRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let r = request.into_inner();
        let events =
            decode_all(&r.transfers, "transfers", convert::transfer_from_pb).map_err(invalid)?;
        self.write(Command::CreateTransfers(events), r.request_id)
            .await
    }

    async fn create_markets(
        &self,
        request: Request<pb::CreateMarketsRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let r = request.into_inner();
        let events =
            decode_all(&r.markets, "markets", convert::new_market_from_pb).map_err(invalid)?;
        self.write(Command::CreateMarkets(events), r.request_id)
            .await
    }

    async fn place_bets(
        &self,
        request: Request<pb::PlaceBetsRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let r = request.into_inner();
        let events = decode_all(&r.bets, "bets", convert::new_bet_from_pb).map_err(invalid)?;
        self.write(Command::PlaceBets(events), r.request_id).await
    }

    async fn settle_markets(
        &self,
        request: Request<pb::SettleMarketsRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let r = request.into_inner();
        let events = decode_all(&r.settlements, "settlements", convert::settlement_from_pb)
            .map_err(invalid)?;
        self.write(Command::SettleMarkets(events), r.request_id)
            .await
    }

    async fn bet_actions(
        &self,
        request: Request<pb::BetActionsRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let r = request.into_inner();
        let events =
            decode_all(&r.actions, "actions", convert::bet_action_from_pb).map_err(invalid)?;
        self.write(Command::BetActions(events), r.request_id).await
    }

    async fn lookup_accounts(
        &self,
        request: Request<pb::LookupRequest>,
    ) -> Result<Response<pb::AccountsResponse>, Status> {
        let r = request.into_inner();
        let ids = lookup_ids(&r.ids)?;
        let (accounts, applied_index) = self
            .read(r.consistency, move |v| query::lookup_accounts(v, &ids))
            .await?;
        Ok(Response::new(pb::AccountsResponse {
            accounts: accounts.iter().map(convert::account_to_pb).collect(),
            applied_index,
        }))
    }

    async fn list_accounts(
        &self,
        request: Request<pb::ListAccountsRequest>,
    ) -> Result<Response<pb::AccountsResponse>, Status> {
        let r = request.into_inner();
        let after_id = u128_of(&r.after_id);
        let (accounts, applied_index) = self
            .read(r.consistency, move |v| {
                query::list_accounts(v, after_id, r.limit)
            })
            .await?;
        Ok(Response::new(pb::AccountsResponse {
            accounts: accounts.iter().map(convert::account_to_pb).collect(),
            applied_index,
        }))
    }

    async fn lookup_transfers(
        &self,
        request: Request<pb::LookupRequest>,
    ) -> Result<Response<pb::TransfersResponse>, Status> {
        let r = request.into_inner();
        let ids = lookup_ids(&r.ids)?;
        let (transfers, applied_index) = self
            .read(r.consistency, move |v| query::lookup_transfers(v, &ids))
            .await?;
        Ok(Response::new(pb::TransfersResponse {
            transfers: transfers.iter().map(convert::transfer_to_pb).collect(),
            applied_index,
        }))
    }

    async fn get_transfer_statuses(
        &self,
        request: Request<pb::LookupRequest>,
    ) -> Result<Response<pb::TransferStatusesResponse>, Status> {
        let r = request.into_inner();
        let ids = lookup_ids(&r.ids)?;
        let (statuses, applied_index) = self
            .read(r.consistency, move |v| query::transfer_statuses(v, &ids))
            .await?;
        Ok(Response::new(pb::TransferStatusesResponse {
            statuses: statuses
                .iter()
                .map(|s| pb::TransferStatus {
                    id: Some(s.id.into()),
                    exists: s.exists,
                    pending_status: convert::pending_status_to_pb(s.pending) as i32,
                    failed_result: s.failed.map(|f| f.code()).unwrap_or(0),
                    failed_result_name: s.failed.map(|f| f.name().to_string()).unwrap_or_default(),
                })
                .collect(),
            applied_index,
        }))
    }

    async fn lookup_markets(
        &self,
        request: Request<pb::LookupRequest>,
    ) -> Result<Response<pb::MarketsResponse>, Status> {
        let r = request.into_inner();
        let ids = lookup_ids(&r.ids)?;
        let (markets, applied_index) = self
            .read(r.consistency, move |v| query::lookup_markets(v, &ids))
            .await?;
        Ok(Response::new(pb::MarketsResponse {
            markets: markets.iter().map(convert::market_to_pb).collect(),
            applied_index,
        }))
    }

    async fn lookup_bets(
        &self,
        request: Request<pb::LookupRequest>,
    ) -> Result<Response<pb::BetsResponse>, Status> {
        let r = request.into_inner();
        let ids = lookup_ids(&r.ids)?;
        let (bets, applied_index) = self
            .read(r.consistency, move |v| query::lookup_bets(v, &ids))
            .await?;
        Ok(Response::new(pb::BetsResponse {
            bets: bets.iter().map(convert::bet_to_pb).collect(),
            applied_index,
        }))
    }

    async fn lookup_settlements(
        &self,
        request: Request<pb::LookupRequest>,
    ) -> Result<Response<pb::SettlementsResponse>, Status> {
        let r = request.into_inner();
        let ids = lookup_ids(&r.ids)?;
        let (settlements, applied_index) = self
            .read(r.consistency, move |v| query::lookup_settlements(v, &ids))
            .await?;
        Ok(Response::new(pb::SettlementsResponse {
            settlements: settlements.iter().map(convert::settlement_to_pb).collect(),
            applied_index,
        }))
    }

    async fn get_account_transfers(
        &self,
        request: Request<pb::AccountFilter>,
    ) -> Result<Response<pb::TransfersResponse>, Status> {
        let r = request.into_inner();
        let filter = filter_from_pb(&r)?;
        let (transfers, applied_index) = self
            .read(r.consistency, move |v| {
                query::get_account_transfers(v, &filter)
            })
            .await?;
        Ok(Response::new(pb::TransfersResponse {
            transfers: transfers.iter().map(convert::transfer_to_pb).collect(),
            applied_index,
        }))
    }

    async fn get_account_balances(
        &self,
        request: Request<pb::AccountFilter>,
    ) -> Result<Response<pb::BalancesResponse>, Status> {
        let r = request.into_inner();
        let filter = filter_from_pb(&r)?;
        let (rows, applied_index) = self
            .read(r.consistency, move |v| {
                query::get_account_balances(v, &filter)
            })
            .await?;
        Ok(Response::new(pb::BalancesResponse {
            balances: rows
                .iter()
                .map(|row| pb::AccountBalance {
                    timestamp: row.timestamp,
                    transfer_id: Some(row.transfer_id.into()),
                    debits_pending: Some(row.balances.debits_pending.into()),
                    debits_posted: Some(row.balances.debits_posted.into()),
                    credits_pending: Some(row.balances.credits_pending.into()),
                    credits_posted: Some(row.balances.credits_posted.into()),
                })
                .collect(),
            applied_index,
        }))
    }

    async fn get_market_bets(
        &self,
        request: Request<pb::MarketBetsRequest>,
    ) -> Result<Response<pb::BetsResponse>, Status> {
        let r = request.into_inner();
        let market_id = u128_of(&r.market_id);
        if market_id == 0 {
            return Err(to_status(NodeError::invalid(
                "market_id",
                "must be set and not 0",
            )));
        }
        let (after, limit) = (r.timestamp_after, r.limit);
        let (bets, applied_index) = self
            .read(r.consistency, move |v| {
                query::get_market_bets(v, market_id, after, limit)
            })
            .await?;
        Ok(Response::new(pb::BetsResponse {
            bets: bets.iter().map(convert::bet_to_pb).collect(),
            applied_index,
        }))
    }

    async fn get_pending_status(
        &self,
        request: Request<pb::PendingStatusRequest>,
    ) -> Result<Response<pb::PendingStatusResponse>, Status> {
        let r = request.into_inner();
        let id = u128_of(&r.id);
        if id == 0 {
            return Err(to_status(NodeError::invalid("id", "must be set and not 0")));
        }
        let (status, applied_index) = self
            .read(r.consistency, move |v| query::pending_status(v, id))
            .await?;
        Ok(Response::new(pb::PendingStatusResponse {
            status: convert::pending_status_to_pb(status) as i32,
            applied_index,
        }))
    }
}
