//! [`LedgerClient`]: the async client services use to talk to a Ledger cluster.
//!
//! - **Leader routing.** The client connects to a list of endpoints, caches the leader, follows
//!   `NotLeader` hints (adding nodes it was not configured with) and moves on when a node is down
//!   (`router.rs`).
//! - **Safe retries.** Every write carries the caller's event ids, so resubmitting after an
//!   ambiguous failure (a timeout, a reset connection, a leader that crashed) cannot apply
//!   anything twice. Retries back off exponentially with jitter until the call's deadline. A
//!   retry that finds its events already applied gets `exists`, which counts as success
//!   ([`WriteResult::is_success`]); the client never turns it into `created`, because it cannot
//!   tell its own earlier attempt from an earlier call with the same id. When the deadline passes and an attempt may have been applied, the error is
//!   [`Error::OutcomeUnknown`], distinct from a definite failure ([`Error::Unavailable`]).
//! - **Automatic batching.** Concurrent calls from many tasks are coalesced into one request of
//!   at most [`ledger_core::EVENTS_PER_BATCH_MAX`] events (`batcher.rs`).
//! - **Typed results.** One ledger-core result code per event ([`TransferResult`], ...), in
//!   event order. Business rejections are results, not errors.
//! - **Reads** are linearizable by default; [`LedgerClient::stale`] makes them explicitly stale.
//!
//! ```
//! use ledger_client::LedgerClient;
//! use ledger_core::{Account, AccountFlags, Transfer, TransferResult};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let node = ledger_client::local_cluster::ExampleCluster::start()?;
//! # let endpoints = node.endpoints();
//! // endpoints: ["http://127.0.0.1:7000", ...]
//! let client = LedgerClient::connect(endpoints).await?;
//! let player = Account {
//!     id: 1,
//!     ledger: 1,
//!     code: 1,
//!     flags: AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
//!     ..Account::default()
//! };
//! let bank = Account { id: 2, ledger: 1, code: 1, ..Account::default() };
//! client.create_accounts(vec![player, bank]).await?;
//!
//! let deposit = Transfer {
//!     id: 1001,
//!     debit_account_id: 2,
//!     credit_account_id: 1,
//!     amount: 500,
//!     ledger: 1,
//!     code: 1,
//!     ..Transfer::default()
//! };
//! assert_eq!(client.create_transfer(deposit).await?, TransferResult::Created);
//! // Submitting the same id again is harmless: it is reported, not applied twice.
//! assert_eq!(client.create_transfer(deposit).await?, TransferResult::Exists);
//!
//! // A business rejection is a result code, not an error.
//! let overdraft = Transfer { id: 1002, debit_account_id: 1, credit_account_id: 2, amount: 501, ..deposit };
//! assert_eq!(client.create_transfer(overdraft).await?, TransferResult::ExceedsCredits);
//!
//! let accounts = client.lookup_accounts(&[1]).await?;
//! assert_eq!(accounts[0].credits_posted, 500);
//! # Ok(()) }
//! ```

mod batcher;
mod credentials;
mod error;
mod router;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger_core::query::AccountBalance;
use ledger_core::{
    Account, AccountFilter, AccountFlags, AccountResult, Balances, Bet, BetAction, BetActionResult,
    BetResult, Market, MarketResult, NewBet, NewMarket, PendingStatus, Settlement,
    SettlementResult, Transfer, TransferFlags, TransferResult, EVENTS_PER_BATCH_MAX,
};

pub use batcher::BatchStats;
use batcher::{Batcher, BatcherOptions, SendFuture, MESSAGE_BYTES_MAX};
pub use credentials::{token_sha256, AuthChannel, Credentials, TokenInterceptor};
pub use error::Error;
use router::{Router, Target};

use crate::convert;
use crate::proto::ledger as pb;
use crate::proto::ledger::ledger_client::LedgerClient as Grpc;

/// How the client connects, retries and batches. [`ClientConfig::new`] gives the defaults.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// gRPC endpoints of the cluster's nodes (`http://host:port`; `host:port` is accepted).
    pub endpoints: Vec<String>,
    /// How long a call may take, retries included, unless the handle says otherwise
    /// ([`LedgerClient::with_deadline`]).
    pub deadline: Duration,
    /// How long one attempt may wait for its answer. Longer than the server's own write
    /// timeout (5 s), so that the server's verdict arrives before the client gives up.
    pub attempt_timeout: Duration,
    pub connect_timeout: Duration,
    /// First pause between retries; doubled after each failure up to `backoff_max`, with
    /// jitter (a random pause between half and all of it).
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Largest coalesced request, in events.
    pub batch_events_max: usize,
    /// Requests of one kind on the wire at once; calls queue (and coalesce) behind them.
    pub requests_in_flight: usize,
    /// False: every call is sent as its own request.
    pub coalesce: bool,
    /// TLS and token ([`Credentials::from_env`] by default in `ledgerctl`; none here).
    pub credentials: Credentials,
}

impl ClientConfig {
    pub fn new<I, S>(endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ClientConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            deadline: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(6),
            connect_timeout: Duration::from_secs(1),
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(1_000),
            batch_events_max: EVENTS_PER_BATCH_MAX,
            requests_in_flight: 8,
            coalesce: true,
            credentials: Credentials::default(),
        }
    }

    /// Connects with these credentials (TLS, token).
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = credentials;
        self
    }
}

/// A write result code: the one meaning success, and `exists`.
pub trait WriteResult: Copy + PartialEq + std::fmt::Debug + Send + 'static {
    const SUCCESS: Self;
    const EXISTS: Self;
    fn from_code(code: u32) -> Option<Self>;

    /// True when the event is in place: applied now (`created`, `applied`), or already by an
    /// earlier attempt or call with the same id and fields (`exists`). After a retry this is
    /// the test of success.
    fn is_success(self) -> bool {
        self == Self::SUCCESS || self == Self::EXISTS
    }
}

macro_rules! write_result {
    ($($name:ident: $success:ident),* $(,)?) => {$(
        impl WriteResult for $name {
            const SUCCESS: Self = $name::$success;
            const EXISTS: Self = $name::Exists;
            fn from_code(code: u32) -> Option<Self> {
                $name::from_code(code)
            }
        }
    )*};
}

write_result!(
    AccountResult: Created,
    TransferResult: Created,
    MarketResult: Created,
    BetResult: Created,
    SettlementResult: Created,
    BetActionResult: Applied,
);

/// Reads the codes of one call, as the server gave them.
fn typed<R: WriteResult>(codes: Vec<u32>) -> Result<Vec<R>, Error> {
    codes
        .into_iter()
        .map(|code| {
            R::from_code(code).ok_or_else(|| Error::Protocol(format!("unknown result code {code}")))
        })
        .collect()
}

struct Inner {
    router: Arc<Router>,
    accounts: Batcher<pb::Account>,
    transfers: Batcher<pb::Transfer>,
    markets: Batcher<pb::NewMarket>,
    bets: Batcher<pb::NewBet>,
    settlements: Batcher<pb::Settlement>,
    actions: Batcher<pb::BetAction>,
    stats: Arc<BatchStats>,
}

/// A handle on a Ledger cluster. Cheap to clone; clones share connections and batching.
#[derive(Clone)]
pub struct LedgerClient {
    inner: Arc<Inner>,
    deadline: Duration,
    consistency: pb::ReadConsistency,
}

impl std::fmt::Debug for LedgerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerClient")
            .field("endpoints", &self.inner.router.endpoints())
            .field("deadline", &self.deadline)
            .field("consistency", &self.consistency)
            .finish()
    }
}

fn send_accounts(
    mut grpc: Grpc<AuthChannel>,
    accounts: Vec<pb::Account>,
    id: String,
) -> SendFuture {
    Box::pin(async move {
        grpc.create_accounts(pb::CreateAccountsRequest {
            accounts,
            request_id: id,
        })
        .await
    })
}

fn send_transfers(
    mut grpc: Grpc<AuthChannel>,
    transfers: Vec<pb::Transfer>,
    id: String,
) -> SendFuture {
    Box::pin(async move {
        grpc.create_transfers(pb::CreateTransfersRequest {
            transfers,
            request_id: id,
        })
        .await
    })
}

fn send_markets(
    mut grpc: Grpc<AuthChannel>,
    markets: Vec<pb::NewMarket>,
    id: String,
) -> SendFuture {
    Box::pin(async move {
        grpc.create_markets(pb::CreateMarketsRequest {
            markets,
            request_id: id,
        })
        .await
    })
}

fn send_bets(mut grpc: Grpc<AuthChannel>, bets: Vec<pb::NewBet>, id: String) -> SendFuture {
    Box::pin(async move {
        grpc.place_bets(pb::PlaceBetsRequest {
            bets,
            request_id: id,
        })
        .await
    })
}

fn send_settlements(
    mut grpc: Grpc<AuthChannel>,
    settlements: Vec<pb::Settlement>,
    id: String,
) -> SendFuture {
    Box::pin(async move {
        grpc.settle_markets(pb::SettleMarketsRequest {
            settlements,
            request_id: id,
        })
        .await
    })
}

fn send_actions(
    mut grpc: Grpc<AuthChannel>,
    actions: Vec<pb::BetAction>,
    id: String,
) -> SendFuture {
    Box::pin(async move {
        grpc.bet_actions(pb::BetActionsRequest {
            actions,
            request_id: id,
        })
        .await
    })
}

fn grpc(channel: AuthChannel) -> Grpc<AuthChannel> {
    Grpc::new(channel)
        .max_decoding_message_size(MESSAGE_BYTES_MAX)
        .max_encoding_message_size(MESSAGE_BYTES_MAX)
}

fn ids_pb(ids: &[u128]) -> Vec<pb::U128> {
    ids.iter().map(|id| pb::U128::from(*id)).collect()
}

fn decoded<T>(result: Result<T, convert::FieldError>) -> Result<T, Error> {
    result.map_err(|e| Error::Protocol(format!("undecodable answer: {e}")))
}

impl LedgerClient {
    /// Connects with the default configuration. Connections are made lazily: this succeeds
    /// even when no node is up yet, and calls retry until their deadline.
    pub async fn connect<I, S>(endpoints: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::with_config(ClientConfig::new(endpoints)).await
    }

    pub async fn with_config(config: ClientConfig) -> Result<Self, Error> {
        let deadline = config.deadline;
        let options = || BatcherOptions {
            max_events: config.batch_events_max.clamp(1, EVENTS_PER_BATCH_MAX),
            max_in_flight: config.requests_in_flight,
            coalesce: config.coalesce,
        };
        let router = Arc::new(Router::new(config.clone())?);
        let stats = Arc::new(BatchStats::default());
        let inner = Inner {
            accounts: Batcher::new(router.clone(), send_accounts, options(), stats.clone()),
            transfers: Batcher::new(router.clone(), send_transfers, options(), stats.clone()),
            markets: Batcher::new(router.clone(), send_markets, options(), stats.clone()),
            bets: Batcher::new(router.clone(), send_bets, options(), stats.clone()),
            settlements: Batcher::new(router.clone(), send_settlements, options(), stats.clone()),
            actions: Batcher::new(router.clone(), send_actions, options(), stats.clone()),
            router,
            stats,
        };
        Ok(LedgerClient {
            inner: Arc::new(inner),
            deadline,
            consistency: pb::ReadConsistency::Linearizable,
        })
    }

    /// A handle whose calls (retries included) end within `deadline`.
    ///
    /// When the deadline passes, the error says whether the write may have been applied:
    ///
    /// ```
    /// use std::time::Duration;
    /// use ledger_client::{Error, LedgerClient};
    /// use ledger_core::Transfer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Nothing listens on port 1: every attempt is refused before anything is sent.
    /// let client = LedgerClient::connect(["http://127.0.0.1:1"]).await?;
    /// let hurried = client.with_deadline(Duration::from_millis(300));
    /// let transfer = Transfer { id: 7, debit_account_id: 1, credit_account_id: 2, amount: 5,
    ///                           ledger: 1, code: 1, ..Transfer::default() };
    /// match hurried.create_transfer(transfer).await {
    ///     // Definitely not applied: safe to report the transfer as failed.
    ///     Err(Error::Unavailable { attempts, .. }) => assert!(attempts >= 1),
    ///     // May have been applied: keep the id and retry later; `exists` means it was.
    ///     Err(Error::OutcomeUnknown { .. }) => unreachable!("nothing was sent"),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn with_deadline(&self, deadline: Duration) -> Self {
        LedgerClient {
            deadline,
            ..self.clone()
        }
    }

    /// A handle whose reads are stale: answered by a node from its own state without
    /// confirming it is still the leader, so they may miss the latest writes. Faster, and
    /// available without a quorum.
    pub fn stale(&self) -> Self {
        LedgerClient {
            consistency: pb::ReadConsistency::Stale,
            ..self.clone()
        }
    }

    /// The endpoints known now (configured and learned) and the cached leader.
    pub fn endpoints(&self) -> (Vec<String>, Option<String>) {
        (self.inner.router.endpoints(), self.inner.router.leader())
    }

    /// What the batchers did so far: calls, requests sent, events sent.
    pub fn batch_stats(&self) -> &BatchStats {
        &self.inner.stats
    }

    fn call_deadline(&self) -> Instant {
        Instant::now() + self.deadline
    }

    fn read_target(&self) -> Target {
        match self.consistency {
            pb::ReadConsistency::Linearizable => Target::Leader,
            pb::ReadConsistency::Stale => Target::Any,
        }
    }

    // ---- writes -------------------------------------------------------------------------

    /// Creates accounts; one [`AccountResult`] per account, in order.
    pub async fn create_accounts(
        &self,
        accounts: Vec<Account>,
    ) -> Result<Vec<AccountResult>, Error> {
        let open_chain = accounts
            .last()
            .is_some_and(|a| a.flags.contains(AccountFlags::LINKED));
        let events = accounts.iter().map(convert::account_to_pb).collect();
        let written = self
            .inner
            .accounts
            .submit(events, open_chain, self.call_deadline())
            .await?;
        typed(written.codes)
    }

    /// Creates transfers (plain, pending, post, void, balancing, closing, linked chains); one
    /// [`TransferResult`] per transfer, in order.
    pub async fn create_transfers(
        &self,
        transfers: Vec<Transfer>,
    ) -> Result<Vec<TransferResult>, Error> {
        let open_chain = transfers
            .last()
            .is_some_and(|t| t.flags.contains(TransferFlags::LINKED));
        let events = transfers.iter().map(convert::transfer_to_pb).collect();
        let written = self
            .inner
            .transfers
            .submit(events, open_chain, self.call_deadline())
            .await?;
        typed(written.codes)
    }

    /// Creates one transfer. Concurrent calls are coalesced into shared requests.
    pub async fn create_transfer(&self, transfer: Transfer) -> Result<TransferResult, Error> {
        let mut results = self.create_transfers(vec![transfer]).await?;
        results
            .pop()
            .ok_or_else(|| Error::Protocol("no result for one transfer".into()))
    }

    pub async fn create_markets(
        &self,
        markets: Vec<NewMarket>,
    ) -> Result<Vec<MarketResult>, Error> {
        let events = markets.iter().map(convert::new_market_to_pb).collect();
        let written = self
            .inner
            .markets
            .submit(events, false, self.call_deadline())
            .await?;
        typed(written.codes)
    }

    /// Places bets: each holds its stake from the player and reserves the potential payout
    /// against the market's liability limit.
    pub async fn place_bets(&self, bets: Vec<NewBet>) -> Result<Vec<BetResult>, Error> {
        let events = bets.iter().map(convert::new_bet_to_pb).collect();
        let written = self
            .inner
            .bets
            .submit(events, false, self.call_deadline())
            .await?;
        typed(written.codes)
    }

    /// Settles (or resettles, or voids) whole markets.
    pub async fn settle_markets(
        &self,
        settlements: Vec<Settlement>,
    ) -> Result<Vec<SettlementResult>, Error> {
        let events = settlements.iter().map(convert::settlement_to_pb).collect();
        let written = self
            .inner
            .settlements
            .submit(events, false, self.call_deadline())
            .await?;
        typed(written.codes)
    }

    /// Voids or cashes out single bets.
    pub async fn bet_actions(
        &self,
        actions: Vec<BetAction>,
    ) -> Result<Vec<BetActionResult>, Error> {
        let events = actions.iter().map(convert::bet_action_to_pb).collect();
        let written = self
            .inner
            .actions
            .submit(events, false, self.call_deadline())
            .await?;
        typed(written.codes)
    }

    // ---- reads --------------------------------------------------------------------------

    async fn read<T, F, Fut>(&self, attempt: F) -> Result<T, Error>
    where
        F: FnMut(Grpc<AuthChannel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut attempt = attempt;
        let response = self
            .inner
            .router
            .call(self.call_deadline(), self.read_target(), |channel| {
                attempt(grpc(channel))
            })
            .await?;
        Ok(response.into_inner())
    }

    fn lookup_request(&self, ids: &[u128]) -> pb::LookupRequest {
        pb::LookupRequest {
            ids: ids_pb(ids),
            consistency: self.consistency as i32,
        }
    }

    /// The accounts with these ids that exist, in the order asked.
    pub async fn lookup_accounts(&self, ids: &[u128]) -> Result<Vec<Account>, Error> {
        let request = self.lookup_request(ids);
        let response = self
            .read(|mut g| {
                let request = request.clone();
                async move { g.lookup_accounts(request).await }
            })
            .await?;
        decoded(convert::decode_all(
            &response.accounts,
            "accounts",
            convert::account_from_pb,
        ))
    }

    /// Accounts in id order after `after_id` (0: from the first), at most `limit` (0: the
    /// maximum page, [`ledger_core::QUERY_RESULTS_MAX`]).
    pub async fn list_accounts(&self, after_id: u128, limit: u32) -> Result<Vec<Account>, Error> {
        let request = pb::ListAccountsRequest {
            after_id: Some(after_id.into()),
            limit,
            consistency: self.consistency as i32,
        };
        let response = self
            .read(|mut g| async move { g.list_accounts(request).await })
            .await?;
        decoded(convert::decode_all(
            &response.accounts,
            "accounts",
            convert::account_from_pb,
        ))
    }

    pub async fn lookup_transfers(&self, ids: &[u128]) -> Result<Vec<Transfer>, Error> {
        let request = self.lookup_request(ids);
        let response = self
            .read(|mut g| {
                let request = request.clone();
                async move { g.lookup_transfers(request).await }
            })
            .await?;
        decoded(convert::decode_all(
            &response.transfers,
            "transfers",
            convert::transfer_from_pb,
        ))
    }

    pub async fn lookup_markets(&self, ids: &[u128]) -> Result<Vec<Market>, Error> {
        let request = self.lookup_request(ids);
        let response = self
            .read(|mut g| {
                let request = request.clone();
                async move { g.lookup_markets(request).await }
            })
            .await?;
        decoded(
            response
                .markets
                .iter()
                .map(convert::market_from_pb)
                .collect(),
        )
    }

    pub async fn lookup_bets(&self, ids: &[u128]) -> Result<Vec<Bet>, Error> {
        let request = self.lookup_request(ids);
        let response = self
            .read(|mut g| {
                let request = request.clone();
                async move { g.lookup_bets(request).await }
            })
            .await?;
        decoded(response.bets.iter().map(convert::bet_from_pb).collect())
    }

    pub async fn lookup_settlements(&self, ids: &[u128]) -> Result<Vec<Settlement>, Error> {
        let request = self.lookup_request(ids);
        let response = self
            .read(|mut g| {
                let request = request.clone();
                async move { g.lookup_settlements(request).await }
            })
            .await?;
        decoded(convert::decode_all(
            &response.settlements,
            "settlements",
            convert::settlement_from_pb,
        ))
    }

    fn filter_pb(&self, filter: &AccountFilter) -> pb::AccountFilter {
        pb::AccountFilter {
            account_id: Some(filter.account_id.into()),
            timestamp_min: filter.timestamp_min,
            timestamp_max: filter.timestamp_max,
            code: u32::from(filter.code),
            limit: filter.limit,
            reverse: filter.reverse,
            debits: filter.debits,
            credits: filter.credits,
            consistency: self.consistency as i32,
        }
    }

    /// The transfers of an account, oldest first (or newest first with `reverse`).
    pub async fn get_account_transfers(
        &self,
        filter: &AccountFilter,
    ) -> Result<Vec<Transfer>, Error> {
        let request = self.filter_pb(filter);
        let response = self
            .read(|mut g| async move { g.get_account_transfers(request).await })
            .await?;
        decoded(convert::decode_all(
            &response.transfers,
            "transfers",
            convert::transfer_from_pb,
        ))
    }

    /// The balances of an account (created with the `history` flag) after each of its
    /// transfers.
    pub async fn get_account_balances(
        &self,
        filter: &AccountFilter,
    ) -> Result<Vec<AccountBalance>, Error> {
        let request = self.filter_pb(filter);
        let response = self
            .read(|mut g| async move { g.get_account_balances(request).await })
            .await?;
        Ok(response
            .balances
            .iter()
            .map(|b| AccountBalance {
                timestamp: b.timestamp,
                transfer_id: crate::proto::u128_of(&b.transfer_id),
                balances: Balances {
                    debits_pending: crate::proto::u128_of(&b.debits_pending),
                    debits_posted: crate::proto::u128_of(&b.debits_posted),
                    credits_pending: crate::proto::u128_of(&b.credits_pending),
                    credits_posted: crate::proto::u128_of(&b.credits_posted),
                },
            })
            .collect())
    }

    /// The bets of a market placed after `timestamp_after`, oldest first, at most `limit`
    /// (0: the maximum).
    pub async fn get_market_bets(
        &self,
        market_id: u128,
        timestamp_after: u64,
        limit: u32,
    ) -> Result<Vec<Bet>, Error> {
        let request = pb::MarketBetsRequest {
            market_id: Some(market_id.into()),
            timestamp_after,
            limit,
            consistency: self.consistency as i32,
        };
        let response = self
            .read(|mut g| async move { g.get_market_bets(request).await })
            .await?;
        decoded(response.bets.iter().map(convert::bet_from_pb).collect())
    }

    /// Where a pending transfer stands; `None` when no pending transfer has this id.
    pub async fn get_pending_status(&self, id: u128) -> Result<Option<PendingStatus>, Error> {
        let request = pb::PendingStatusRequest {
            id: Some(id.into()),
            consistency: self.consistency as i32,
        };
        let response = self
            .read(|mut g| async move { g.get_pending_status(request).await })
            .await?;
        match pb::PendingStatus::try_from(response.status) {
            Ok(pb::PendingStatus::None) => Ok(None),
            Ok(pb::PendingStatus::Pending) => Ok(Some(PendingStatus::Pending)),
            Ok(pb::PendingStatus::Posted) => Ok(Some(PendingStatus::Posted)),
            Ok(pb::PendingStatus::Voided) => Ok(Some(PendingStatus::Voided)),
            Ok(pb::PendingStatus::Expired) => Ok(Some(PendingStatus::Expired)),
            Err(_) => Err(Error::Protocol(format!(
                "unknown pending status {}",
                response.status
            ))),
        }
    }
}
