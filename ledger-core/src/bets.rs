//! Where markets are created, bets placed, voided and cashed out, and markets settled and
//! resettled. Every movement of money is a transfer applied by `create_transfer.rs`; this file
//! decides which transfers, under which derived ids, and keeps bet status and the house's
//! liability per selection.

use crate::account::AccountFlags;
use crate::bet::{
    bet_transfer_id, Bet, BetAction, BetActionKind, BetStatus, BetTransferKind, Market,
    MarketStatus, NewBet, NewMarket, Settlement, SettlementFlags, ODDS_SCALE,
};
use crate::command::SELECTIONS_PER_SETTLEMENT_MAX;
use crate::result::{BetActionResult, BetResult, MarketResult, SettlementResult, TransferResult};
use crate::state_machine::{Engine, EventId, EventResult};
use crate::store::{Key, ObjectKind, Store, Value};
use crate::transfer::{Transfer, TransferFlags};

/// Why a transfer caused by a bet failed, in terms every bet operation reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MoneyFailure {
    TransferIdConflict,
    Overflow,
    ExceedsCredits,
    ExceedsDebits,
    AccountClosed,
}

fn money_failure(code: TransferResult) -> MoneyFailure {
    use TransferResult as T;
    match code {
        T::ExceedsCredits => MoneyFailure::ExceedsCredits,
        T::ExceedsDebits => MoneyFailure::ExceedsDebits,
        T::OverflowsDebitsPending
        | T::OverflowsCreditsPending
        | T::OverflowsDebitsPosted
        | T::OverflowsCreditsPosted
        | T::OverflowsDebits
        | T::OverflowsCredits => MoneyFailure::Overflow,
        T::DebitAccountAlreadyClosed | T::CreditAccountAlreadyClosed => MoneyFailure::AccountClosed,
        // Any other code means the derived id is taken by another transfer, or the
        // transfer's record is not what this bet left there: refuse rather than touch it.
        _ => MoneyFailure::TransferIdConflict,
    }
}

impl<S: Store> Engine<'_, S> {
    /// Applies a transfer caused by a bet; `Err` leaves the caller to roll back.
    fn bet_transfer(&mut self, transfer: Transfer) -> Result<(), MoneyFailure> {
        self.in_bet_operation = true;
        let result = self.create_transfer(&transfer);
        self.in_bet_operation = false;
        match result {
            TransferResult::Created => Ok(()),
            code => Err(money_failure(code)),
        }
    }

    /// Moves `amount` from `from` to `to` as a posted transfer caused by `bet`.
    fn bet_payment(
        &mut self,
        bet: &Bet,
        kind: BetTransferKind,
        scope: u128,
        from: u128,
        to: u128,
        amount: u128,
    ) -> Result<(), MoneyFailure> {
        if amount == 0 {
            return Ok(());
        }
        self.bet_transfer(Transfer {
            id: bet_transfer_id(bet.id, kind, scope),
            debit_account_id: from,
            credit_account_id: to,
            amount,
            user_data_128: bet.id,
            ledger: bet.ledger,
            code: bet.code,
            ..Transfer::default()
        })
    }

    /// Posts (all of) or voids the stake held when the bet was placed.
    fn resolve_hold(&mut self, bet: &Bet, post: bool) -> Result<(), MoneyFailure> {
        let (kind, flag) = if post {
            (
                BetTransferKind::PostHold,
                TransferFlags::POST_PENDING_TRANSFER,
            )
        } else {
            (
                BetTransferKind::VoidHold,
                TransferFlags::VOID_PENDING_TRANSFER,
            )
        };
        self.bet_transfer(Transfer {
            id: bet_transfer_id(bet.id, kind, 0),
            pending_id: bet_transfer_id(bet.id, BetTransferKind::Hold, 0),
            user_data_128: bet.id,
            flags: flag,
            ..Transfer::default()
        })
    }

    /// Removes an open bet's exposure from its selection's liability.
    fn release_liability(&mut self, bet: &Bet) {
        let exposure = bet.potential_payout - bet.stake;
        let current = self.liability(bet.market_id, bet.selection_id);
        assert!(
            current >= exposure,
            "liability below an open bet's exposure"
        );
        self.put_liability(bet.market_id, bet.selection_id, current - exposure);
    }

    pub(crate) fn create_market(&mut self, m: &NewMarket) -> MarketResult {
        use MarketResult as R;
        if m.id == 0 {
            return R::IdMustNotBeZero;
        }
        if m.id == u128::MAX {
            return R::IdMustNotBeIntMax;
        }
        if m.house_account_id == 0 {
            return R::HouseAccountIdMustNotBeZero;
        }
        if m.house_account_id == u128::MAX {
            return R::HouseAccountIdMustNotBeIntMax;
        }
        if m.liability_limit == 0 {
            return R::LiabilityLimitMustNotBeZero;
        }
        if let Some(e) = self.market(m.id) {
            return if m.house_account_id != e.house_account_id {
                R::ExistsWithDifferentHouseAccountId
            } else if m.liability_limit != e.liability_limit {
                R::ExistsWithDifferentLiabilityLimit
            } else if m.user_data_128 != e.user_data_128 {
                R::ExistsWithDifferentUserData128
            } else {
                R::Exists
            };
        }
        if self.failed(ObjectKind::Market, m.id) {
            return R::IdAlreadyFailed;
        }
        let Some(house) = self.account(m.house_account_id) else {
            return R::HouseAccountNotFound;
        };
        if house.flags.contains(AccountFlags::CLOSED) {
            return R::HouseAccountAlreadyClosed;
        }
        let market = Market {
            id: m.id,
            house_account_id: m.house_account_id,
            ledger: house.ledger,
            liability_limit: m.liability_limit,
            user_data_128: m.user_data_128,
            status: MarketStatus::Open,
            settlement_id: 0,
            timestamp: self.next_timestamp(),
        };
        self.put(Key::Market(m.id), Value::Market(market));
        R::Created
    }

    pub(crate) fn place_bet(&mut self, b: &NewBet) -> BetResult {
        use BetResult as R;
        if b.id == 0 {
            return R::IdMustNotBeZero;
        }
        if b.id == u128::MAX {
            return R::IdMustNotBeIntMax;
        }
        if b.player_account_id == 0 {
            return R::PlayerAccountIdMustNotBeZero;
        }
        if b.player_account_id == u128::MAX {
            return R::PlayerAccountIdMustNotBeIntMax;
        }
        if b.market_id == 0 {
            return R::MarketIdMustNotBeZero;
        }
        if b.market_id == u128::MAX {
            return R::MarketIdMustNotBeIntMax;
        }
        if b.stake == 0 {
            return R::StakeMustNotBeZero;
        }
        if b.odds <= ODDS_SCALE {
            return R::OddsMustExceedOne;
        }
        if b.code == 0 {
            return R::CodeMustNotBeZero;
        }
        if let Some(e) = self.bet(b.id) {
            return if b.player_account_id != e.player_account_id {
                R::ExistsWithDifferentPlayerAccountId
            } else if b.market_id != e.market_id {
                R::ExistsWithDifferentMarketId
            } else if b.selection_id != e.selection_id {
                R::ExistsWithDifferentSelectionId
            } else if b.stake != e.stake {
                R::ExistsWithDifferentStake
            } else if b.odds != e.odds {
                R::ExistsWithDifferentOdds
            } else if b.code != e.code {
                R::ExistsWithDifferentCode
            } else if b.user_data_128 != e.user_data_128 {
                R::ExistsWithDifferentUserData128
            } else {
                R::Exists
            };
        }
        if self.failed(ObjectKind::Bet, b.id) {
            return R::IdAlreadyFailed;
        }
        let Some(market) = self.market(b.market_id) else {
            return R::MarketNotFound;
        };
        if market.status != MarketStatus::Open {
            return R::MarketNotOpen;
        }
        let Some(player) = self.account(b.player_account_id) else {
            return R::PlayerAccountNotFound;
        };
        if player.id == market.house_account_id {
            return R::PlayerAccountIsHouseAccount;
        }
        if player.ledger != market.ledger {
            return R::AccountsMustHaveTheSameLedger;
        }
        if player.flags.contains(AccountFlags::CLOSED) {
            return R::PlayerAccountAlreadyClosed;
        }
        let house = self
            .account(market.house_account_id)
            .expect("market house account");
        if house.flags.contains(AccountFlags::CLOSED) {
            return R::HouseAccountAlreadyClosed;
        }
        let Some(potential_payout) = b
            .stake
            .checked_mul(u128::from(b.odds))
            .map(|x| x / u128::from(ODDS_SCALE))
        else {
            return R::OverflowsPayout;
        };
        // Odds above 1.0 make the payout at least the stake; rounding can only make it equal.
        let exposure = potential_payout - b.stake;
        let Some(liability) = self
            .liability(b.market_id, b.selection_id)
            .checked_add(exposure)
        else {
            return R::OverflowsLiability;
        };
        if liability > market.liability_limit {
            return R::ExceedsLiabilityLimit;
        }
        let timestamp = self.next_timestamp();
        let bet = Bet {
            id: b.id,
            player_account_id: b.player_account_id,
            house_account_id: market.house_account_id,
            market_id: b.market_id,
            selection_id: b.selection_id,
            stake: b.stake,
            odds: b.odds,
            potential_payout,
            ledger: market.ledger,
            code: b.code,
            user_data_128: b.user_data_128,
            status: BetStatus::Open,
            settlement_id: 0,
            cash_out_amount: 0,
            timestamp,
            settled_timestamp: 0,
        };
        let hold = Transfer {
            id: bet_transfer_id(b.id, BetTransferKind::Hold, 0),
            debit_account_id: bet.player_account_id,
            credit_account_id: bet.house_account_id,
            amount: bet.stake,
            user_data_128: bet.id,
            ledger: bet.ledger,
            code: bet.code,
            flags: TransferFlags::PENDING,
            ..Transfer::default()
        };
        if let Err(failure) = self.bet_transfer(hold) {
            return match failure {
                MoneyFailure::TransferIdConflict => R::TransferIdConflict,
                MoneyFailure::Overflow => R::OverflowsBalance,
                MoneyFailure::ExceedsCredits => R::ExceedsCredits,
                MoneyFailure::ExceedsDebits => R::ExceedsDebits,
                MoneyFailure::AccountClosed => R::PlayerAccountAlreadyClosed,
            };
        }
        self.put_liability(b.market_id, b.selection_id, liability);
        self.put(Key::Bet(b.id), Value::Bet(bet));
        self.put(
            Key::MarketBet {
                market_id: b.market_id,
                timestamp,
            },
            Value::MarketBet(b.id),
        );
        R::Created
    }

    pub(crate) fn bet_action(&mut self, a: &BetAction) -> BetActionResult {
        use BetActionResult as R;
        if a.bet_id == 0 {
            return R::BetIdMustNotBeZero;
        }
        match a.kind {
            BetActionKind::Void if a.amount != 0 => return R::AmountMustBeZero,
            BetActionKind::CashOut if a.amount == 0 => return R::AmountMustNotBeZero,
            _ => {}
        }
        let Some(mut bet) = self.bet(a.bet_id) else {
            return R::BetNotFound;
        };
        let done_already = match a.kind {
            BetActionKind::Void => bet.status == BetStatus::Void && bet.settlement_id == 0,
            BetActionKind::CashOut => {
                bet.status == BetStatus::CashedOut && bet.cash_out_amount == a.amount
            }
        };
        if done_already {
            return R::Exists;
        }
        if bet.status != BetStatus::Open {
            return R::BetNotOpen;
        }
        let moved = match a.kind {
            BetActionKind::Void => self.resolve_hold(&bet, false),
            BetActionKind::CashOut => self.resolve_hold(&bet, true).and_then(|()| {
                self.bet_payment(
                    &bet,
                    BetTransferKind::CashOut,
                    0,
                    bet.house_account_id,
                    bet.player_account_id,
                    a.amount,
                )
            }),
        };
        if let Err(failure) = moved {
            return match failure {
                MoneyFailure::TransferIdConflict => R::TransferIdConflict,
                MoneyFailure::AccountClosed => R::AccountAlreadyClosed,
                MoneyFailure::Overflow => R::OverflowsBalance,
                MoneyFailure::ExceedsCredits => R::ExceedsCredits,
                MoneyFailure::ExceedsDebits => R::ExceedsDebits,
            };
        }
        self.release_liability(&bet);
        bet.status = match a.kind {
            BetActionKind::Void => BetStatus::Void,
            BetActionKind::CashOut => BetStatus::CashedOut,
        };
        bet.cash_out_amount = a.amount;
        bet.settled_timestamp = self.next_timestamp();
        self.put(Key::Bet(bet.id), Value::Bet(bet));
        R::Applied
    }

    pub(crate) fn settle(&mut self, s: &Settlement) -> SettlementResult {
        use SettlementResult as R;
        if s.timestamp != 0 {
            return R::TimestampMustBeZero;
        }
        if s.flags.has_reserved_bits() {
            return R::ReservedFlag;
        }
        if s.id == 0 {
            return R::IdMustNotBeZero;
        }
        if s.id == u128::MAX {
            return R::IdMustNotBeIntMax;
        }
        if s.market_id == 0 {
            return R::MarketIdMustNotBeZero;
        }
        if s.market_id == u128::MAX {
            return R::MarketIdMustNotBeIntMax;
        }
        let named = s.winning_selection_ids.len() + s.void_selection_ids.len();
        if named > SELECTIONS_PER_SETTLEMENT_MAX {
            return R::TooManySelections;
        }
        let mut all: Vec<u64> = s
            .winning_selection_ids
            .iter()
            .chain(&s.void_selection_ids)
            .copied()
            .collect();
        all.sort_unstable();
        all.dedup();
        if all.len() != named {
            return R::SelectionIdsMustBeUnique;
        }
        if let Some(e) = self.settlement(s.id) {
            return if s.market_id != e.market_id {
                R::ExistsWithDifferentMarketId
            } else if !s.same_result(&e) {
                R::ExistsWithDifferentResult
            } else {
                R::Exists
            };
        }
        if self.failed(ObjectKind::Settlement, s.id) {
            return R::IdAlreadyFailed;
        }
        let Some(mut market) = self.market(s.market_id) else {
            return R::MarketNotFound;
        };
        let resettle = s.flags.contains(SettlementFlags::RESETTLE);
        if !resettle && market.status == MarketStatus::Settled {
            return R::MarketAlreadySettled;
        }
        if resettle && market.status != MarketStatus::Settled {
            return R::MarketNotSettled;
        }
        let timestamp = self.next_timestamp();
        let previous = market.settlement_id;
        for bet_id in self.market_bet_ids(s.market_id) {
            let mut bet = self.bet(bet_id).expect("indexed bet exists");
            let decided = if resettle {
                bet.settlement_id == previous
            } else {
                bet.status == BetStatus::Open
            };
            if !decided {
                continue;
            }
            let outcome = s.outcome(bet.selection_id);
            let moved = if resettle {
                self.compensate(&bet, outcome, s.id)
            } else {
                self.settle_bet(&bet, outcome)
            };
            if let Err(failure) = moved {
                return match failure {
                    MoneyFailure::TransferIdConflict => R::TransferIdConflict,
                    MoneyFailure::AccountClosed => R::AccountAlreadyClosed,
                    MoneyFailure::Overflow => R::OverflowsBalance,
                    MoneyFailure::ExceedsCredits => R::ExceedsCredits,
                    MoneyFailure::ExceedsDebits => R::ExceedsDebits,
                };
            }
            bet.status = outcome;
            bet.settlement_id = s.id;
            bet.settled_timestamp = timestamp;
            self.put(Key::Bet(bet.id), Value::Bet(bet));
        }
        market.status = MarketStatus::Settled;
        market.settlement_id = s.id;
        self.put(Key::Market(market.id), Value::Market(market));
        let settlement = Settlement {
            timestamp,
            ..s.clone()
        };
        self.put(Key::Settlement(s.id), Value::Settlement(settlement));
        R::Created
    }

    /// Settles one open bet: post or void the hold, and pay a winner.
    fn settle_bet(&mut self, bet: &Bet, outcome: BetStatus) -> Result<(), MoneyFailure> {
        self.release_liability(bet);
        match outcome {
            BetStatus::Won => {
                self.resolve_hold(bet, true)?;
                self.bet_payment(
                    bet,
                    BetTransferKind::Payout,
                    0,
                    bet.house_account_id,
                    bet.player_account_id,
                    bet.potential_payout,
                )
            }
            BetStatus::Lost => self.resolve_hold(bet, true),
            BetStatus::Void => self.resolve_hold(bet, false),
            BetStatus::Open | BetStatus::CashedOut => unreachable!("settlement outcome"),
        }
    }

    /// Corrects a settled bet to a new outcome with one compensating transfer: the difference
    /// between what the player nets under the new outcome and under the old one.
    fn compensate(
        &mut self,
        bet: &Bet,
        outcome: BetStatus,
        settlement_id: u128,
    ) -> Result<(), MoneyFailure> {
        let difference = bet.net_to_player(outcome) - bet.net_to_player(bet.status);
        let (from, to) = if difference > 0 {
            (bet.house_account_id, bet.player_account_id)
        } else {
            (bet.player_account_id, bet.house_account_id)
        };
        self.bet_payment(
            bet,
            BetTransferKind::Compensation,
            settlement_id,
            from,
            to,
            difference.unsigned_abs(),
        )
    }

    fn market_bet_ids(&self, market_id: u128) -> Vec<u128> {
        let start = Key::MarketBet {
            market_id,
            timestamp: 0,
        };
        let end = Key::MarketBet {
            market_id,
            timestamp: u64::MAX,
        };
        self.scan(&start, &end, false, usize::MAX)
            .into_iter()
            .map(|(_, value)| match value {
                Value::MarketBet(id) => id,
                other => panic!("market bet index holds {other:?}"),
            })
            .collect()
    }
}

/// Implements [`EventResult`] for a result enum whose success codes are `$ok`.
macro_rules! event_result {
    ($result:ident, transient: $transient:expr, ok: $($ok:ident)|+) => {
        impl EventResult for $result {
            fn succeeded(self) -> bool {
                matches!(self, $($result::$ok)|+)
            }
            fn code(self) -> u32 {
                $result::code(self)
            }
            fn is_transient(self) -> bool {
                $transient(self)
            }
        }
    };
}

event_result!(MarketResult, transient: MarketResult::transient, ok: Created | Exists);
event_result!(BetResult, transient: BetResult::transient, ok: Created | Exists);
event_result!(SettlementResult, transient: SettlementResult::transient, ok: Created | Exists);
// Bet actions are idempotent per bet, not per id: no failure is remembered.
event_result!(BetActionResult, transient: |_| false, ok: Applied | Exists);

impl EventId for NewMarket {
    fn event_id(&self) -> Option<(ObjectKind, u128)> {
        Some((ObjectKind::Market, self.id))
    }
}

impl EventId for NewBet {
    fn event_id(&self) -> Option<(ObjectKind, u128)> {
        Some((ObjectKind::Bet, self.id))
    }
}

impl EventId for Settlement {
    fn event_id(&self) -> Option<(ObjectKind, u128)> {
        Some((ObjectKind::Settlement, self.id))
    }
}

impl EventId for BetAction {
    fn event_id(&self) -> Option<(ObjectKind, u128)> {
        None
    }
}
