//! `bets`: every bet's status follows its market's settlement, a market has one settlement in
//! force, and a player's money follows the player's bets.
//!
//! Property (DESIGN.md "Bet"; docs/data-model.md section 6; `ledger-core/src/bet.rs`
//! `Settlement::outcome` and `Bet::net_to_player`). In every node's `FinalRead`:
//! - a bet of a settled market has the status its selection implies under the settlement in
//!   force (void selection -> `void`, winning selection -> `won`, otherwise `lost`) and that
//!   settlement's id, unless a bet action decided it first (`cashed_out`, or `void` with
//!   settlement id 0); a bet of an open market is `open`, or was voided / cashed out by an action;
//! - a market is listed once, a settled market's settlement in force was submitted by a client
//!   for that market with the same winners and voids, and every acknowledged `Settle` has its
//!   market settled under that very settlement;
//! - every acknowledged `PlaceBet` is present, and every bet present was submitted with the same
//!   player, market, selection and stake, and has `potential_payout = floor(stake * odds / 10000)`;
//! - money, for each player account that no transfer of the history touches (only bets and its
//!   initial funding): net = initial net + sum of `potential_payout - stake` over its won bets -
//!   sum of stakes over its lost bets + sum of `cashed_out - stake` over its cashed-out bets
//!   (the amount the house paid, read from the cash-out transfer; void and open bets: 0), and
//!   `debits_pending` = initial + the stakes of its open bets (the hold is a pending transfer);
//! - bet actions: a cash-out answered `applied` left its bet `cashed_out` for exactly its
//!   amount, a void answered `applied` left its bet `void` by no settlement, and no bet has two
//!   actions answered `applied` (an action is idempotent per bet: a repeat answers `exists`).
//!
//! In the history: no market has more than one acknowledged settlement id. `Op::Settle` carries
//! no resettle flag, so the workload never resettles, and a second settlement of a settled
//! market must fail (`market_already_settled`).
//!
//! `info` operations: the final reads say which unknown bets and settlements were applied; a
//! bet or settlement with no `ok` attempt may be present or absent, and a present one is checked
//! like any other. Only acknowledged ones must be present.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::views::{self, BetWrite, FinalRead, SettleWrite};
use super::{Anomalies, Checker, Verdict};
use crate::history::{BetState, History, MarketState, Op};

/// Decimal odds are fixed point in 1/10000ths (`ledger_core::bet::ODDS_SCALE`).
const ODDS_SCALE: u128 = 10_000;

pub struct Bets;

impl Checker for Bets {
    fn name(&self) -> &'static str {
        "bets"
    }

    fn check(&self, history: &History) -> Verdict {
        let mut anomalies = Anomalies::default();
        if !views::has_bets(history) {
            return anomalies.verdict(json!({
                "checked": false,
                "reason": "no bets in the history: nothing to check",
            }));
        }
        let bets = views::bets(history);
        let settles = views::settles(history);
        check_one_settlement_per_market(&settles, &mut anomalies);

        // Players whose money moves only by bets: no transfer of the history touches them.
        let transfer_accounts: BTreeSet<u128> = history
            .events
            .iter()
            .filter_map(|e| match e.op {
                Op::Transfer { from, to, .. } => Some([from, to]),
                _ => None,
            })
            .flatten()
            .collect();
        let actions = applied_actions(history);
        for (bet, applied) in &actions {
            if applied.len() > 1 {
                anomalies.push(format!(
                    "bet {bet}: {} actions answered applied ({applied:?}): acted on more than once",
                    applied.len()
                ));
            }
        }
        let finals = views::final_reads(history);
        let mut figures = Figures::default();
        for read in &finals {
            let node = Node {
                read,
                history,
                bets: &bets,
                settles: &settles,
                transfer_accounts: &transfer_accounts,
                actions: &actions,
            };
            node.check(&mut figures, &mut anomalies);
        }
        if finals.is_empty() {
            anomalies.push("no final read: bets and markets cannot be checked".to_string());
        }
        anomalies.verdict(json!({
            "checked": true,
            "bets_acknowledged": bets.values().filter(|b| b.attempts.acknowledged()).count(),
            "settlements_acknowledged": settles.values().filter(|s| s.attempts.acknowledged()).count(),
            "final_reads": finals.len(),
            "bets_checked": figures.bets,
            "settled_markets_checked": figures.settled_markets,
            "player_balances_checked": figures.players_checked,
            "players_with_cashed_out_bets": figures.players_cashed_out,
            "bet_actions_applied": actions.values().map(Vec::len).sum::<usize>(),
            "players_skipped_touched_by_transfers": figures.players_with_transfers,
        }))
    }
}

/// The bet actions answered `applied`, per bet: (kind, amount) of each.
fn applied_actions(history: &History) -> BTreeMap<u128, Vec<(String, u128)>> {
    let mut applied: BTreeMap<u128, Vec<(String, u128)>> = BTreeMap::new();
    for e in &history.events {
        if let Op::BetAction {
            bet,
            kind,
            amount,
            result: Some(result),
            ..
        } = &e.op
        {
            if result == "applied" {
                applied
                    .entry(*bet)
                    .or_default()
                    .push((kind.clone(), *amount));
            }
        }
    }
    applied
}

/// Counts over all final reads.
#[derive(Debug, Default)]
struct Figures {
    bets: usize,
    settled_markets: usize,
    players_checked: usize,
    players_cashed_out: usize,
    players_with_transfers: usize,
}

fn check_one_settlement_per_market(
    settles: &BTreeMap<u128, SettleWrite>,
    anomalies: &mut Anomalies,
) {
    let mut by_market: BTreeMap<u128, Vec<u128>> = BTreeMap::new();
    for (id, s) in settles {
        if s.attempts.acknowledged() {
            by_market.entry(s.market).or_default().push(*id);
        }
    }
    for (market, ids) in by_market {
        if ids.len() > 1 {
            anomalies.push(format!(
                "market {market}: {} settlements acknowledged (ids {ids:?}), expected at most one in force",
                ids.len()
            ));
        }
    }
}

/// The status a bet on `selection` gets under a settlement (`Settlement::outcome`).
fn outcome(market: &MarketState, selection: u64) -> &'static str {
    if market.voids.contains(&selection) {
        "void"
    } else if market.winners.contains(&selection) {
        "won"
    } else {
        "lost"
    }
}

fn same_selections(a: &[u64], b: &[u64]) -> bool {
    a.iter().collect::<BTreeSet<_>>() == b.iter().collect::<BTreeSet<_>>()
}

/// One node's final read, with what the checks of it need.
struct Node<'a> {
    read: &'a FinalRead<'a>,
    history: &'a History,
    bets: &'a BTreeMap<u128, BetWrite>,
    settles: &'a BTreeMap<u128, SettleWrite>,
    transfer_accounts: &'a BTreeSet<u128>,
    actions: &'a BTreeMap<u128, Vec<(String, u128)>>,
}

impl Node<'_> {
    fn check(&self, figures: &mut Figures, anomalies: &mut Anomalies) {
        let markets = self.check_markets(figures, anomalies);
        let present: BTreeSet<u128> = self.read.bets.iter().map(|b| b.id).collect();
        for (id, w) in self.bets {
            if w.attempts.acknowledged() && !present.contains(id) {
                anomalies.push(format!(
                    "{}: bet {id} acknowledged (ok at event {}) but absent",
                    self.what(),
                    w.attempts.ok_events[0]
                ));
            }
        }
        for bet in self.read.bets {
            figures.bets += 1;
            self.check_bet(bet, &markets, anomalies);
        }
        self.check_actions(anomalies);
        self.check_players(figures, anomalies);
    }

    fn what(&self) -> String {
        format!("node {} (event {})", self.read.node, self.read.event)
    }

    /// Checks the markets; returns them by id (the first listing of each).
    fn check_markets<'m>(
        &'m self,
        figures: &mut Figures,
        anomalies: &mut Anomalies,
    ) -> BTreeMap<u128, &'m MarketState> {
        let what = self.what();
        let mut markets: BTreeMap<u128, &MarketState> = BTreeMap::new();
        for market in self.read.markets {
            if let Some(first) = markets.get(&market.id) {
                anomalies.push(format!(
                    "{what}: market {} listed more than once (settlements {} and {}): more than one settlement in force",
                    market.id, first.settlement_id, market.settlement_id
                ));
                continue;
            }
            markets.insert(market.id, market);
            match market.status.as_str() {
                "open" => {}
                "settled" => {
                    figures.settled_markets += 1;
                    self.check_settlement_in_force(market, anomalies);
                }
                other => anomalies.push(format!(
                    "{what}: market {} has unknown status {other:?}",
                    market.id
                )),
            }
        }
        for (id, s) in self.settles {
            if !s.attempts.acknowledged() {
                continue;
            }
            match markets.get(&s.market) {
                Some(m) if m.status == "settled" && m.settlement_id == *id => {}
                Some(m) => anomalies.push(format!(
                    "{what}: settlement {id} acknowledged (ok at event {}) but market {} is {} with settlement {} in force",
                    s.attempts.ok_events[0], s.market, m.status, m.settlement_id
                )),
                None => anomalies.push(format!(
                    "{what}: settlement {id} acknowledged (ok at event {}) but market {} is absent",
                    s.attempts.ok_events[0], s.market
                )),
            }
        }
        markets
    }

    fn check_settlement_in_force(&self, market: &MarketState, anomalies: &mut Anomalies) {
        let what = self.what();
        let Some(s) = self.settles.get(&market.settlement_id) else {
            anomalies.push(format!(
                "{what}: market {} is settled by settlement {}, which no client submitted",
                market.id, market.settlement_id
            ));
            return;
        };
        if s.market != market.id {
            anomalies.push(format!(
                "{what}: market {} is settled by settlement {}, which was submitted for market {}",
                market.id, market.settlement_id, s.market
            ));
        } else if !same_selections(&s.winners, &market.winners)
            || !same_selections(&s.voids, &market.voids)
        {
            anomalies.push(format!(
                "{what}: market {} settlement {} in force has winners {:?} voids {:?}, submitted winners {:?} voids {:?}",
                market.id, market.settlement_id, market.winners, market.voids, s.winners, s.voids
            ));
        }
    }

    fn check_bet(
        &self,
        bet: &BetState,
        markets: &BTreeMap<u128, &MarketState>,
        anomalies: &mut Anomalies,
    ) {
        let what = self.what();
        match self.bets.get(&bet.id) {
            None => anomalies.push(format!(
                "{what}: bet {} was never submitted by a client",
                bet.id
            )),
            Some(w) => {
                if (w.player, w.market, w.selection, w.stake)
                    != (bet.player, bet.market, bet.selection, bet.stake)
                {
                    anomalies.push(format!(
                        "{what}: bet {} is (player {}, market {}, selection {}, stake {}), submitted (player {}, market {}, selection {}, stake {})",
                        bet.id, bet.player, bet.market, bet.selection, bet.stake,
                        w.player, w.market, w.selection, w.stake
                    ));
                }
                if let Some(payout) = w.stake.checked_mul(u128::from(w.odds)) {
                    let payout = payout / ODDS_SCALE;
                    if bet.potential_payout != payout {
                        anomalies.push(format!(
                            "{what}: bet {} potential_payout {}, expected floor({} * {} / {ODDS_SCALE}) = {payout}",
                            bet.id, bet.potential_payout, w.stake, w.odds
                        ));
                    }
                }
            }
        }
        if !["open", "won", "lost", "void", "cashed_out"].contains(&bet.status.as_str()) {
            anomalies.push(format!(
                "{what}: bet {} has unknown status {:?}",
                bet.id, bet.status
            ));
            return;
        }
        // Decided by a bet action before any settlement: not the settlement's business.
        let by_action =
            bet.status == "cashed_out" || (bet.status == "void" && bet.settlement_id == 0);
        let Some(market) = markets.get(&bet.market) else {
            if !self.read.markets.is_empty() && !by_action {
                anomalies.push(format!(
                    "{what}: bet {} ({}) is on market {}, which is absent",
                    bet.id, bet.status, bet.market
                ));
            }
            return;
        };
        if by_action {
            return;
        }
        if market.status == "settled" {
            let expected = outcome(market, bet.selection);
            if bet.status != expected || bet.settlement_id != market.settlement_id {
                anomalies.push(format!(
                    "{what}: bet {} on market {} selection {} is {} under settlement {}, expected {expected} under settlement {} (winners {:?}, voids {:?})",
                    bet.id, bet.market, bet.selection, bet.status, bet.settlement_id,
                    market.settlement_id, market.winners, market.voids
                ));
            }
        } else if bet.status != "open" || bet.settlement_id != 0 {
            anomalies.push(format!(
                "{what}: bet {} is {} under settlement {} but market {} is {}",
                bet.id, bet.status, bet.settlement_id, bet.market, market.status
            ));
        }
    }

    fn check_actions(&self, anomalies: &mut Anomalies) {
        for (id, applied) in self.actions {
            let Some((kind, amount)) = applied.first() else {
                continue;
            };
            let bet = self.read.bets.iter().find(|b| b.id == *id);
            let as_applied = match (kind.as_str(), bet) {
                ("cash_out", Some(b)) => b.status == "cashed_out" && b.cashed_out == *amount,
                ("void", Some(b)) => b.status == "void" && b.settlement_id == 0,
                _ => false,
            };
            if !as_applied {
                anomalies.push(format!(
                    "{}: bet {id}: {kind} of {amount} answered applied, the bet is {}",
                    self.what(),
                    bet.map(|b| format!("{} (cashed out for {})", b.status, b.cashed_out))
                        .unwrap_or_else(|| "absent".into())
                ));
            }
        }
    }

    fn check_players(&self, figures: &mut Figures, anomalies: &mut Anomalies) {
        let mut by_player: BTreeMap<u128, Vec<&BetState>> = BTreeMap::new();
        for bet in self.read.bets {
            by_player.entry(bet.player).or_default().push(bet);
        }
        for (player, bets) in by_player {
            if self.transfer_accounts.contains(&player) {
                figures.players_with_transfers += 1;
                continue;
            }
            if bets.iter().any(|b| b.status == "cashed_out") {
                figures.players_cashed_out += 1;
            }
            let (Some(initial), Some(found)) = (
                self.history.setup.initial.get(&player),
                self.read.balances.get(&player),
            ) else {
                continue;
            };
            figures.players_checked += 1;
            let mut change = 0i128;
            let mut held = 0u128;
            for bet in &bets {
                let stake = bet.stake as i128;
                match bet.status.as_str() {
                    "won" => change += bet.potential_payout as i128 - stake,
                    "lost" => change -= stake,
                    "cashed_out" => change += bet.cashed_out as i128 - stake,
                    "open" => held += bet.stake,
                    _ => {}
                }
            }
            let expected = initial.net() + change;
            if found.net() != expected {
                anomalies.push(format!(
                    "{}: player {player} net {}, expected {expected} = initial {} + {change} from {} bet(s) (won: payout - stake, lost: -stake, cashed out: amount - stake)",
                    self.what(),
                    found.net(),
                    initial.net(),
                    bets.len()
                ));
            }
            let expected_held = initial.debits_pending + held;
            if found.debits_pending != expected_held {
                anomalies.push(format!(
                    "{}: player {player} debits_pending {}, expected {expected_held} = initial {} + stakes of open bets {held}",
                    self.what(),
                    found.debits_pending,
                    initial.debits_pending
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{balance, place_bet_op, settle_op, HistoryBuilder};
    use super::*;
    use crate::history::Balance;

    const HOUSE: u128 = 9;

    fn bet(
        id: u128,
        player: u128,
        market: u128,
        selection: u64,
        stake: u128,
        odds: u64,
    ) -> BetState {
        BetState {
            id,
            player,
            market,
            selection,
            stake,
            potential_payout: stake * u128::from(odds) / ODDS_SCALE,
            status: "open".into(),
            settlement_id: 0,
            cashed_out: 0,
        }
    }

    fn decided(mut b: BetState, status: &str, settlement_id: u128) -> BetState {
        b.status = status.into();
        b.settlement_id = settlement_id;
        b
    }

    fn market(id: u128, settlement_id: u128, winners: &[u64], voids: &[u64]) -> MarketState {
        MarketState {
            id,
            status: if settlement_id == 0 {
                "open"
            } else {
                "settled"
            }
            .into(),
            settlement_id,
            winners: winners.to_vec(),
            voids: voids.to_vec(),
        }
    }

    fn final_read(
        node: u64,
        balances: &[(u128, Balance)],
        bets: Vec<BetState>,
        markets: Vec<MarketState>,
    ) -> Op {
        Op::FinalRead {
            node,
            applied_index: 100,
            digest: "d".into(),
            balances: balances.iter().copied().collect(),
            transfers: Vec::new(),
            bets,
            markets,
            stored: Vec::new(),
            pending: Vec::new(),
            closed: Vec::new(),
        }
    }

    fn with_pending(net: i128, debits_pending: u128, credits_pending: u128) -> Balance {
        Balance {
            debits_pending,
            credits_pending,
            ..balance(net)
        }
    }

    /// Players 1 and 2 bet on market 7 (settled by settlement 70: selection 1 wins, 3 is void)
    /// and player 1 on market 8 (still open).
    fn betting() -> (HistoryBuilder, Vec<BetState>) {
        let mut h = HistoryBuilder::new(&[(1, 1000), (2, 1000), (HOUSE, 10_000)]);
        let placed = [
            bet(50, 1, 7, 1, 100, 25_000),
            bet(51, 2, 7, 2, 100, 20_000),
            bet(52, 2, 7, 3, 40, 30_000),
            bet(53, 1, 8, 1, 30, 20_000),
        ];
        for b in &placed {
            let odds = (b.potential_payout * ODDS_SCALE / b.stake) as u64;
            h.invoke_op(
                1,
                place_bet_op(b.id, b.player, b.market, b.selection, b.stake, odds),
            );
            h.ok(1, "created");
        }
        h.invoke_op(2, settle_op(70, 7, &[1], &[3]));
        h.info(2);
        h.invoke_op(2, settle_op(70, 7, &[1], &[3]));
        h.ok(2, "exists");
        let final_bets = vec![
            decided(placed[0].clone(), "won", 70),
            decided(placed[1].clone(), "lost", 70),
            decided(placed[2].clone(), "void", 70),
            placed[3].clone(),
        ];
        (h, final_bets)
    }

    /// Balances after `betting`: player 1 won 250 - 100 and holds 30, player 2 lost 100.
    fn settled_balances() -> Vec<(u128, Balance)> {
        vec![
            (1, with_pending(1150, 30, 0)),
            (2, balance(900)),
            (HOUSE, with_pending(10_000 - 150 + 100, 0, 30)),
        ]
    }

    fn markets() -> Vec<MarketState> {
        vec![market(7, 70, &[1], &[3]), market(8, 0, &[], &[])]
    }

    #[test]
    fn a_settlement_followed_by_every_bet_and_balance_is_accepted() {
        let (mut h, bets) = betting();
        for node in 1..=3 {
            h.harness_ok(final_read(
                node,
                &settled_balances(),
                bets.clone(),
                markets(),
            ));
        }
        let verdict = Bets.check(&h.build());
        assert!(verdict.valid, "{verdict:?}");
        assert_eq!(verdict.stats["bets_checked"], 12);
        assert_eq!(verdict.stats["player_balances_checked"], 6);
    }

    #[test]
    fn a_history_without_bets_has_nothing_to_check() {
        let mut h = HistoryBuilder::new(&[(1, 10)]);
        h.final_reads(&[(1, 10)], &[]);
        let verdict = Bets.check(&h.build());
        assert!(verdict.valid);
        assert_eq!(verdict.stats["checked"], false);
    }

    #[test]
    fn a_winner_marked_lost_is_flagged() {
        let (mut h, mut bets) = betting();
        bets[0] = decided(bets[0].clone(), "lost", 70);
        let mut balances = settled_balances();
        balances[0].1 = with_pending(900, 30, 0);
        h.harness_ok(final_read(1, &balances, bets, markets()));
        let verdict = Bets.check(&h.build());
        assert!(!verdict.valid);
        assert_eq!(
            verdict.anomalies,
            ["node 1 (event 12): bet 50 on market 7 selection 1 is lost under settlement 70, expected won under settlement 70 (winners [1], voids [3])"]
        );
    }

    #[test]
    fn a_double_settled_market_is_flagged() {
        let (mut h, bets) = betting();
        h.invoke_op(3, settle_op(71, 7, &[2], &[]));
        h.ok(3, "created");
        let mut twice = markets();
        twice.push(market(7, 71, &[2], &[]));
        h.harness_ok(final_read(1, &settled_balances(), bets, twice));
        let verdict = Bets.check(&h.build());
        assert_eq!(
            verdict.anomalies,
            [
                "market 7: 2 settlements acknowledged (ids [70, 71]), expected at most one in force",
                "node 1 (event 14): market 7 listed more than once (settlements 70 and 71): more than one settlement in force",
                "node 1 (event 14): settlement 71 acknowledged (ok at event 13) but market 7 is settled with settlement 70 in force",
            ]
        );
    }

    #[test]
    fn a_bet_decided_by_another_settlement_than_its_markets_is_flagged() {
        let (mut h, mut bets) = betting();
        bets[1].settlement_id = 69;
        h.harness_ok(final_read(1, &settled_balances(), bets, markets()));
        let verdict = Bets.check(&h.build());
        assert_eq!(verdict.stats["anomalies"], 1, "{verdict:?}");
        assert!(verdict.anomalies[0].contains("bet 51 on market 7 selection 2 is lost under settlement 69, expected lost under settlement 70"));
    }

    #[test]
    fn a_lost_stake_left_with_the_player_is_flagged() {
        let (mut h, bets) = betting();
        let mut balances = settled_balances();
        balances[1].1 = balance(1000);
        balances[2].1 = with_pending(9850, 0, 30);
        h.harness_ok(final_read(1, &balances, bets, markets()));
        let verdict = Bets.check(&h.build());
        assert_eq!(
            verdict.anomalies,
            ["node 1 (event 12): player 2 net 1000, expected 900 = initial 1000 + -100 from 2 bet(s) (won: payout - stake, lost: -stake, cashed out: amount - stake)"]
        );
    }

    #[test]
    fn an_acknowledged_settlement_whose_market_is_open_and_a_missing_bet_are_flagged() {
        let (mut h, bets) = betting();
        let open: Vec<BetState> = bets
            .iter()
            .take(3)
            .map(|b| decided(b.clone(), "open", 0))
            .collect();
        let balances = [
            (1, balance(1000)),
            (2, with_pending(1000, 140, 0)),
            (HOUSE, with_pending(10_000, 0, 240)),
        ];
        h.harness_ok(final_read(1, &balances, open, vec![market(7, 0, &[], &[])]));
        let verdict = Bets.check(&h.build());
        assert_eq!(
            verdict.anomalies,
            [
                "node 1 (event 12): settlement 70 acknowledged (ok at event 11) but market 7 is open with settlement 0 in force",
                "node 1 (event 12): bet 53 acknowledged (ok at event 7) but absent",
                "node 1 (event 12): player 1 debits_pending 0, expected 100 = initial 0 + stakes of open bets 100",
            ]
        );
    }

    #[test]
    fn a_wrong_potential_payout_is_flagged() {
        let (mut h, mut bets) = betting();
        bets[3].potential_payout = 61;
        h.harness_ok(final_read(1, &settled_balances(), bets, markets()));
        let verdict = Bets.check(&h.build());
        assert_eq!(
            verdict.anomalies,
            ["node 1 (event 12): bet 53 potential_payout 61, expected floor(30 * 20000 / 10000) = 60"]
        );
    }

    fn cash_out_op(bet: u128, amount: u128) -> Op {
        Op::BetAction {
            bet,
            kind: "cash_out".into(),
            amount,
            attempt: 0,
            result: None,
        }
    }

    /// `betting`, then bet 53 (player 1, stake 30, market 8 open) cashed out for 45: player 1
    /// nets 1150 - 30 + 45 and holds nothing, the house pays 45 and holds nothing.
    fn cashed_out() -> (HistoryBuilder, Vec<BetState>, Vec<(u128, Balance)>) {
        let (mut h, mut bets) = betting();
        h.invoke_op(3, cash_out_op(53, 45));
        h.info(3);
        h.invoke_op(3, cash_out_op(53, 45));
        h.ok(3, "applied");
        bets[3].status = "cashed_out".into();
        bets[3].cashed_out = 45;
        let balances = vec![
            (1, balance(1165)),
            (2, balance(900)),
            (HOUSE, balance(10_000 - 150 + 100 + 30 - 45)),
        ];
        (h, bets, balances)
    }

    #[test]
    fn a_cashed_out_bet_counts_its_amount_in_the_players_money() {
        let (mut h, bets, balances) = cashed_out();
        h.harness_ok(final_read(1, &balances, bets, markets()));
        let verdict = Bets.check(&h.build());
        assert!(verdict.valid, "{verdict:?}");
        assert_eq!(verdict.stats["player_balances_checked"], 2);
        assert_eq!(verdict.stats["players_with_cashed_out_bets"], 1);
        assert_eq!(verdict.stats["bet_actions_applied"], 1);
    }

    #[test]
    fn a_cash_out_paid_twice_or_left_undone_is_flagged() {
        // Paid twice: the player got 45 more than the bets say.
        let (mut h, bets, mut balances) = cashed_out();
        balances[0].1 = balance(1165 + 45);
        h.harness_ok(final_read(1, &balances, bets, markets()));
        let verdict = Bets.check(&h.build());
        assert!(
            verdict.anomalies[0].contains("player 1 net 1210, expected 1165"),
            "{verdict:?}"
        );

        // Answered applied, yet the bet is still open at the end.
        let (mut h, _, _) = cashed_out();
        let (_, open_bets) = betting();
        h.harness_ok(final_read(1, &settled_balances(), open_bets, markets()));
        let verdict = Bets.check(&h.build());
        assert_eq!(
            verdict.anomalies,
            ["node 1 (event 16): bet 53: cash_out of 45 answered applied, the bet is open (cashed out for 0)"]
        );

        // Applied twice, for different amounts.
        let (mut h, bets, balances) = cashed_out();
        h.invoke_op(4, cash_out_op(53, 20));
        h.ok(4, "applied");
        h.harness_ok(final_read(1, &balances, bets, markets()));
        let verdict = Bets.check(&h.build());
        assert!(
            verdict.anomalies[0].starts_with("bet 53: 2 actions answered applied"),
            "{verdict:?}"
        );
    }
}
