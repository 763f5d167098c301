//! `ledgerctl account|transfer|history|market|bet`: the data commands, through [`LedgerClient`].
//!
//! Every command prints a human table, or one JSON document with `--json` (128-bit numbers as
//! decimal strings, so that JSON tools keep every digit). A write whose events are not all
//! `created` (or `exists`, which makes re-running a command harmless) exits non-zero.

use std::io::BufRead;
use std::path::Path;

use ledger_client::{Error, LedgerClient, WriteResult};
use ledger_core::query::AccountBalance;
use ledger_core::{
    Account, AccountFilter, AccountFlags, Bet, BetAction, BetActionKind, Market, MarketStatus,
    NewBet, NewMarket, Settlement, SettlementFlags, Transfer, TransferFlags, ODDS_SCALE,
};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_json::{json, Value};

pub struct Out {
    pub json: bool,
}

fn text(e: Error) -> String {
    e.to_string()
}

const ACCOUNT_FLAGS: &[(&str, AccountFlags)] = &[
    ("linked", AccountFlags::LINKED),
    (
        "debits_must_not_exceed_credits",
        AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
    ),
    (
        "credits_must_not_exceed_debits",
        AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS,
    ),
    ("history", AccountFlags::HISTORY),
    ("closed", AccountFlags::CLOSED),
];

const TRANSFER_FLAGS: &[(&str, TransferFlags)] = &[
    ("linked", TransferFlags::LINKED),
    ("pending", TransferFlags::PENDING),
    (
        "post_pending_transfer",
        TransferFlags::POST_PENDING_TRANSFER,
    ),
    (
        "void_pending_transfer",
        TransferFlags::VOID_PENDING_TRANSFER,
    ),
    ("balancing_debit", TransferFlags::BALANCING_DEBIT),
    ("balancing_credit", TransferFlags::BALANCING_CREDIT),
    ("closing_debit", TransferFlags::CLOSING_DEBIT),
    ("closing_credit", TransferFlags::CLOSING_CREDIT),
];

/// Parses `name,name,...` (or a number) into flag bits.
fn parse_flags(input: &str, table: &[(&str, u16)]) -> Result<u16, String> {
    let mut bits = 0u16;
    for name in input.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if let Ok(n) = name.parse::<u16>() {
            bits |= n;
            continue;
        }
        let Some((_, bit)) = table.iter().find(|(known, _)| *known == name) else {
            let known: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "unknown flag {name:?}; known: {}",
                known.join(", ")
            ));
        };
        bits |= bit;
    }
    Ok(bits)
}

pub fn account_flags(input: &str) -> Result<AccountFlags, String> {
    let table: Vec<(&str, u16)> = ACCOUNT_FLAGS.iter().map(|(n, f)| (*n, f.0)).collect();
    parse_flags(input, &table).map(AccountFlags)
}

pub fn transfer_flags(input: &str) -> Result<TransferFlags, String> {
    let table: Vec<(&str, u16)> = TRANSFER_FLAGS.iter().map(|(n, f)| (*n, f.0)).collect();
    parse_flags(input, &table).map(TransferFlags)
}

/// The names of the flags set in `bits`, in table order.
fn names_of(bits: u16, table: &[(&'static str, u16)]) -> Vec<&'static str> {
    table
        .iter()
        .filter(|(_, bit)| bits & bit != 0)
        .map(|(n, _)| *n)
        .collect()
}

/// Flag names for a table column: comma-separated, or `-` for none.
fn column(names: &[&str]) -> String {
    if names.is_empty() {
        "-".into()
    } else {
        names.join(",")
    }
}

fn account_flag_names(flags: AccountFlags) -> Vec<&'static str> {
    let table: Vec<(&'static str, u16)> = ACCOUNT_FLAGS.iter().map(|(n, f)| (*n, f.0)).collect();
    names_of(flags.0, &table)
}

fn transfer_flag_names(flags: TransferFlags) -> Vec<&'static str> {
    let table: Vec<(&'static str, u16)> = TRANSFER_FLAGS.iter().map(|(n, f)| (*n, f.0)).collect();
    names_of(flags.0, &table)
}

/// Decimal odds (`2.5`) in 1/10000ths (`25000`).
pub fn parse_odds(input: &str) -> Result<u64, String> {
    let (whole, fraction) = input.split_once('.').unwrap_or((input, ""));
    if fraction.len() > 4 || !fraction.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("odds {input:?}: at most 4 decimals"));
    }
    let whole: u64 = whole
        .parse()
        .map_err(|_| format!("odds {input:?}: not a decimal number"))?;
    let fraction: u64 = format!("{fraction:0<4}").parse().unwrap_or(0);
    whole
        .checked_mul(ODDS_SCALE)
        .and_then(|w| w.checked_add(fraction))
        .ok_or_else(|| format!("odds {input:?}: too large"))
}

fn odds_text(odds: u64) -> String {
    format!("{}.{:04}", odds / ODDS_SCALE, odds % ODDS_SCALE)
}

// ---- JSON views ---------------------------------------------------------------------------

pub fn account_json(a: &Account) -> Value {
    json!({
        "id": a.id.to_string(), "ledger": a.ledger, "code": a.code,
        "flags": account_flag_names(a.flags),
        "debits_pending": a.debits_pending.to_string(), "debits_posted": a.debits_posted.to_string(),
        "credits_pending": a.credits_pending.to_string(), "credits_posted": a.credits_posted.to_string(),
        "user_data_128": a.user_data_128.to_string(), "user_data_64": a.user_data_64,
        "user_data_32": a.user_data_32, "timestamp": a.timestamp,
    })
}

pub fn transfer_json(t: &Transfer) -> Value {
    json!({
        "id": t.id.to_string(), "debit_account_id": t.debit_account_id.to_string(),
        "credit_account_id": t.credit_account_id.to_string(), "amount": t.amount.to_string(),
        "pending_id": t.pending_id.to_string(), "ledger": t.ledger, "code": t.code,
        "flags": transfer_flag_names(t.flags), "timeout": t.timeout,
        "user_data_128": t.user_data_128.to_string(), "user_data_64": t.user_data_64,
        "user_data_32": t.user_data_32, "timestamp": t.timestamp,
    })
}

fn market_json(m: &Market) -> Value {
    json!({
        "id": m.id.to_string(), "house_account_id": m.house_account_id.to_string(),
        "ledger": m.ledger, "liability_limit": m.liability_limit.to_string(),
        "status": match m.status { MarketStatus::Open => "open", MarketStatus::Settled => "settled" },
        "settlement_id": m.settlement_id.to_string(), "timestamp": m.timestamp,
    })
}

fn bet_json(b: &Bet) -> Value {
    json!({
        "id": b.id.to_string(), "player_account_id": b.player_account_id.to_string(),
        "house_account_id": b.house_account_id.to_string(), "market_id": b.market_id.to_string(),
        "selection_id": b.selection_id, "stake": b.stake.to_string(), "odds": odds_text(b.odds),
        "potential_payout": b.potential_payout.to_string(), "status": format!("{:?}", b.status).to_lowercase(),
        "settlement_id": b.settlement_id.to_string(), "cash_out_amount": b.cash_out_amount.to_string(),
        "timestamp": b.timestamp, "settled_timestamp": b.settled_timestamp,
    })
}

// ---- results ------------------------------------------------------------------------------

/// The error of a command that has printed its outcome already (`--json` results with
/// `"ok": false`): `main` exits non-zero without saying it again on stderr.
pub const REPORTED: &str = "";

/// Prints one result per event and fails unless every one is a success or `exists`. Each
/// result is said once: successes on stdout, failures in the error (stderr); with `--json`,
/// all of them in the document on stdout.
fn report<R: WriteResult + std::fmt::Display>(
    out: &Out,
    what: &str,
    ids: &[u128],
    results: &[R],
) -> Result<(), String> {
    let failed: Vec<String> = ids
        .iter()
        .zip(results)
        .filter(|(_, r)| **r != R::SUCCESS && **r != R::EXISTS)
        .map(|(id, r)| format!("{what} {id}: {r}"))
        .collect();
    if out.json {
        let rows: Vec<Value> = ids
            .iter()
            .zip(results)
            .map(|(id, r)| json!({"id": id.to_string(), "result": r.to_string()}))
            .collect();
        println!("{}", json!({ "results": rows, "ok": failed.is_empty() }));
        return if failed.is_empty() {
            Ok(())
        } else {
            Err(REPORTED.into())
        };
    }
    for (id, r) in ids.iter().zip(results) {
        if *r == R::SUCCESS || *r == R::EXISTS {
            println!("{what} {id}: {r}");
        }
    }
    match failed.len() {
        0 => Ok(()),
        1 => Err(failed[0].clone()),
        n => Err(format!(
            "{n} of {} {what}s failed: {}",
            ids.len(),
            failed.join("; ")
        )),
    }
}

// ---- accounts -----------------------------------------------------------------------------

pub async fn account_create(
    client: &LedgerClient,
    out: &Out,
    account: Account,
) -> Result<(), String> {
    let results = client.create_accounts(vec![account]).await.map_err(text)?;
    report(out, "account", &[account.id], &results)
}

fn print_accounts(out: &Out, accounts: &[Account]) {
    if out.json {
        let rows: Vec<Value> = accounts.iter().map(account_json).collect();
        println!("{}", json!({ "accounts": rows }));
        return;
    }
    if accounts.is_empty() {
        return;
    }
    println!(
        "{:<20} {:>6} {:>5} {:>16} {:>16} {:>16} {:>16}  flags",
        "id",
        "ledger",
        "code",
        "debits_pending",
        "debits_posted",
        "credits_pending",
        "credits_posted"
    );
    for a in accounts {
        println!(
            "{:<20} {:>6} {:>5} {:>16} {:>16} {:>16} {:>16}  {}",
            a.id,
            a.ledger,
            a.code,
            a.debits_pending,
            a.debits_posted,
            a.credits_pending,
            a.credits_posted,
            column(&account_flag_names(a.flags))
        );
    }
}

pub async fn account_get(client: &LedgerClient, out: &Out, ids: &[u128]) -> Result<(), String> {
    let accounts = client.lookup_accounts(ids).await.map_err(text)?;
    print_accounts(out, &accounts);
    missing("account", ids, accounts.iter().map(|a| a.id))
}

pub async fn account_list(
    client: &LedgerClient,
    out: &Out,
    after: u128,
    limit: u32,
) -> Result<(), String> {
    let accounts = client.list_accounts(after, limit).await.map_err(text)?;
    print_accounts(out, &accounts);
    if accounts.is_empty() && !out.json {
        println!("no accounts after id {after}");
    }
    Ok(())
}

/// Fails naming the ids that were looked up and not found.
fn missing(what: &str, ids: &[u128], found: impl Iterator<Item = u128>) -> Result<(), String> {
    let found: std::collections::HashSet<u128> = found.collect();
    let missing: Vec<String> = ids
        .iter()
        .filter(|id| !found.contains(id))
        .map(u128::to_string)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("no {what} {}", missing.join(", ")))
    }
}

// ---- transfers ----------------------------------------------------------------------------

/// A 128-bit number in JSON, as a number or a decimal string.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Big(u128);

impl<'de> Deserialize<'de> for Big {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BigVisitor;
        impl Visitor<'_> for BigVisitor {
            type Value = Big;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a non-negative integer or a decimal string")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Big, E> {
                Ok(Big(u128::from(v)))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<Big, E> {
                Ok(Big(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Big, E> {
                u128::try_from(v)
                    .map(Big)
                    .map_err(|_| E::custom(format!("{v} is negative")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Big, E> {
                v.parse()
                    .map(Big)
                    .map_err(|_| E::custom(format!("{v:?} is not a 128-bit unsigned integer")))
            }
        }
        deserializer.deserialize_any(BigVisitor)
    }
}

/// One line of a transfers file: the fields of a transfer, flags by name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferLine {
    id: Big,
    #[serde(default)]
    debit_account_id: Big,
    #[serde(default)]
    credit_account_id: Big,
    #[serde(default)]
    amount: Big,
    #[serde(default)]
    pending_id: Big,
    #[serde(default)]
    user_data_128: Big,
    #[serde(default)]
    user_data_64: u64,
    #[serde(default)]
    user_data_32: u32,
    #[serde(default)]
    timeout: u32,
    #[serde(default)]
    ledger: u32,
    #[serde(default)]
    code: u16,
    /// `["linked", "pending"]` or `"linked,pending"`.
    #[serde(default)]
    flags: FlagList,
}

#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum FlagList {
    #[default]
    None,
    Text(String),
    List(Vec<String>),
}

impl FlagList {
    fn joined(&self) -> String {
        match self {
            FlagList::None => String::new(),
            FlagList::Text(t) => t.clone(),
            FlagList::List(l) => l.join(","),
        }
    }
}

/// Reads a JSON-lines file of transfers (blank lines and `#` comments skipped).
pub fn read_transfers(path: &Path) -> Result<Vec<Transfer>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut transfers = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("{}:{}", path.display(), n + 1);
        let t: TransferLine = serde_json::from_str(line).map_err(|e| format!("{}: {e}", at()))?;
        transfers.push(Transfer {
            id: t.id.0,
            debit_account_id: t.debit_account_id.0,
            credit_account_id: t.credit_account_id.0,
            amount: t.amount.0,
            pending_id: t.pending_id.0,
            user_data_128: t.user_data_128.0,
            user_data_64: t.user_data_64,
            user_data_32: t.user_data_32,
            timeout: t.timeout,
            ledger: t.ledger,
            code: t.code,
            flags: transfer_flags(&t.flags.joined()).map_err(|e| format!("{}: {e}", at()))?,
            timestamp: 0,
        });
    }
    if transfers.is_empty() {
        return Err(format!("{}: no transfers", path.display()));
    }
    Ok(transfers)
}

pub async fn transfer_create(
    client: &LedgerClient,
    out: &Out,
    transfers: Vec<Transfer>,
) -> Result<(), String> {
    let ids: Vec<u128> = transfers.iter().map(|t| t.id).collect();
    let mut results = Vec::with_capacity(transfers.len());
    for chunk in transfers.chunks(ledger_core::EVENTS_PER_BATCH_MAX) {
        if chunk
            .last()
            .is_some_and(|t| t.flags.contains(TransferFlags::LINKED))
            && chunk.len() < transfers.len()
        {
            return Err("a linked chain crosses a batch boundary; split the file".into());
        }
        results.extend(
            client
                .create_transfers(chunk.to_vec())
                .await
                .map_err(text)?,
        );
    }
    report(out, "transfer", &ids, &results)
}

fn print_transfers(out: &Out, transfers: &[Transfer]) {
    if out.json {
        let rows: Vec<Value> = transfers.iter().map(transfer_json).collect();
        println!("{}", json!({ "transfers": rows }));
        return;
    }
    if transfers.is_empty() {
        return;
    }
    println!(
        "{:<20} {:<20} {:<20} {:>14} {:<20} {:>6} {:>5} {:>20}  flags",
        "id", "debit", "credit", "amount", "pending_id", "ledger", "code", "timestamp"
    );
    for t in transfers {
        println!(
            "{:<20} {:<20} {:<20} {:>14} {:<20} {:>6} {:>5} {:>20}  {}",
            t.id,
            t.debit_account_id,
            t.credit_account_id,
            t.amount,
            t.pending_id,
            t.ledger,
            t.code,
            t.timestamp,
            column(&transfer_flag_names(t.flags))
        );
    }
}

pub async fn transfer_get(client: &LedgerClient, out: &Out, ids: &[u128]) -> Result<(), String> {
    let transfers = client.lookup_transfers(ids).await.map_err(text)?;
    print_transfers(out, &transfers);
    missing("transfer", ids, transfers.iter().map(|t| t.id))
}

pub async fn pending_status(client: &LedgerClient, out: &Out, id: u128) -> Result<(), String> {
    let status = client.get_pending_status(id).await.map_err(text)?;
    let name = status
        .map(|s| format!("{s:?}").to_lowercase())
        .unwrap_or_else(|| "none".into());
    if out.json {
        println!("{}", json!({"id": id.to_string(), "status": name}));
    } else {
        println!("pending transfer {id}: {name}");
    }
    if status.is_none() {
        return Err(format!("no pending transfer {id}"));
    }
    Ok(())
}

pub async fn history(
    client: &LedgerClient,
    out: &Out,
    filter: AccountFilter,
    balances: bool,
) -> Result<(), String> {
    let id = filter.account_id;
    // An empty answer means "no such account", "no history kept" or "nothing matched": say
    // which.
    let account = client
        .lookup_accounts(&[id])
        .await
        .map_err(text)?
        .into_iter()
        .next()
        .ok_or_else(|| format!("no account {id}"))?;
    if !balances {
        let transfers = client.get_account_transfers(&filter).await.map_err(text)?;
        print_transfers(out, &transfers);
        if transfers.is_empty() && !out.json {
            println!("account {id}: no transfers match");
        }
        return Ok(());
    }
    if !account.flags.contains(AccountFlags::HISTORY) {
        return Err(format!(
            "account {id} keeps no balance history: only accounts created with \
             --flags history do (its transfers: `ledgerctl history {id}`)"
        ));
    }
    let rows: Vec<AccountBalance> = client.get_account_balances(&filter).await.map_err(text)?;
    if out.json {
        let rows: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "timestamp": r.timestamp, "transfer_id": r.transfer_id.to_string(),
                    "debits_pending": r.balances.debits_pending.to_string(),
                    "debits_posted": r.balances.debits_posted.to_string(),
                    "credits_pending": r.balances.credits_pending.to_string(),
                    "credits_posted": r.balances.credits_posted.to_string(),
                })
            })
            .collect();
        println!("{}", json!({ "balances": rows }));
    } else if rows.is_empty() {
        println!("account {id}: no transfers match");
    } else {
        println!(
            "{:>20} {:<20} {:>16} {:>16} {:>16} {:>16}",
            "timestamp",
            "transfer",
            "debits_pending",
            "debits_posted",
            "credits_pending",
            "credits_posted"
        );
        for r in &rows {
            println!(
                "{:>20} {:<20} {:>16} {:>16} {:>16} {:>16}",
                r.timestamp,
                r.transfer_id,
                r.balances.debits_pending,
                r.balances.debits_posted,
                r.balances.credits_pending,
                r.balances.credits_posted
            );
        }
    }
    Ok(())
}

// ---- markets and bets ---------------------------------------------------------------------

pub async fn market_create(
    client: &LedgerClient,
    out: &Out,
    market: NewMarket,
) -> Result<(), String> {
    let results = client.create_markets(vec![market]).await.map_err(text)?;
    report(out, "market", &[market.id], &results)
}

pub async fn market_get(client: &LedgerClient, out: &Out, ids: &[u128]) -> Result<(), String> {
    let markets = client.lookup_markets(ids).await.map_err(text)?;
    if out.json {
        let rows: Vec<Value> = markets.iter().map(market_json).collect();
        println!("{}", json!({ "markets": rows }));
    } else if !markets.is_empty() {
        println!(
            "{:<20} {:<20} {:>6} {:>16} {:<8} {:<20}",
            "id", "house", "ledger", "liability_limit", "status", "settlement"
        );
        for m in &markets {
            println!(
                "{:<20} {:<20} {:>6} {:>16} {:<8} {:<20}",
                m.id,
                m.house_account_id,
                m.ledger,
                m.liability_limit,
                market_json(m)["status"].as_str().unwrap_or("?"),
                m.settlement_id
            );
        }
    }
    missing("market", ids, markets.iter().map(|m| m.id))
}

pub async fn settle(
    client: &LedgerClient,
    out: &Out,
    settlement: Settlement,
) -> Result<(), String> {
    let id = settlement.id;
    let results = client
        .settle_markets(vec![settlement])
        .await
        .map_err(text)?;
    report(out, "settlement", &[id], &results)
}

pub fn settlement(
    id: u128,
    market: u128,
    winners: &[u64],
    voids: &[u64],
    resettle: bool,
    void_market: bool,
) -> Settlement {
    let mut flags = 0;
    if resettle {
        flags |= SettlementFlags::RESETTLE.0;
    }
    if void_market {
        flags |= SettlementFlags::VOID_MARKET.0;
    }
    Settlement {
        id,
        market_id: market,
        winning_selection_ids: winners.to_vec(),
        void_selection_ids: voids.to_vec(),
        flags: SettlementFlags(flags),
        timestamp: 0,
    }
}

pub async fn bet_place(client: &LedgerClient, out: &Out, bet: NewBet) -> Result<(), String> {
    let results = client.place_bets(vec![bet]).await.map_err(text)?;
    report(out, "bet", &[bet.id], &results)
}

fn print_bets(out: &Out, bets: &[Bet]) {
    if out.json {
        let rows: Vec<Value> = bets.iter().map(bet_json).collect();
        println!("{}", json!({ "bets": rows }));
        return;
    }
    if bets.is_empty() {
        return;
    }
    println!(
        "{:<20} {:<20} {:<20} {:>9} {:>12} {:>9} {:>14} {:<10}",
        "id", "player", "market", "selection", "stake", "odds", "payout", "status"
    );
    for b in bets {
        println!(
            "{:<20} {:<20} {:<20} {:>9} {:>12} {:>9} {:>14} {:<10}",
            b.id,
            b.player_account_id,
            b.market_id,
            b.selection_id,
            b.stake,
            odds_text(b.odds),
            b.potential_payout,
            format!("{:?}", b.status).to_lowercase()
        );
    }
}

pub async fn bet_get(client: &LedgerClient, out: &Out, ids: &[u128]) -> Result<(), String> {
    let bets = client.lookup_bets(ids).await.map_err(text)?;
    print_bets(out, &bets);
    missing("bet", ids, bets.iter().map(|b| b.id))
}

pub async fn market_bets(
    client: &LedgerClient,
    out: &Out,
    market: u128,
    limit: u32,
) -> Result<(), String> {
    let bets = client
        .get_market_bets(market, 0, limit)
        .await
        .map_err(text)?;
    if bets.is_empty() {
        let markets = client.lookup_markets(&[market]).await.map_err(text)?;
        if markets.is_empty() {
            return Err(format!("no market {market}"));
        }
    }
    print_bets(out, &bets);
    if bets.is_empty() && !out.json {
        println!("market {market}: no bets");
    }
    Ok(())
}

pub async fn bet_action(
    client: &LedgerClient,
    out: &Out,
    bet_id: u128,
    kind: BetActionKind,
    amount: u128,
) -> Result<(), String> {
    let action = BetAction {
        bet_id,
        kind,
        amount,
    };
    let results = client.bet_actions(vec![action]).await.map_err(text)?;
    report(out, "bet", &[bet_id], &results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odds_parse_to_ten_thousandths() {
        assert_eq!(parse_odds("2.5"), Ok(25_000));
        assert_eq!(parse_odds("1.0001"), Ok(10_001));
        assert_eq!(parse_odds("3"), Ok(30_000));
        assert!(parse_odds("2.55555").is_err());
        assert!(parse_odds("x").is_err());
        assert!(parse_odds("-1").is_err());
        assert_eq!(odds_text(25_000), "2.5000");
    }

    #[test]
    fn flags_parse_by_name_and_number_and_reject_unknown() {
        assert_eq!(
            transfer_flags("linked,pending"),
            Ok(TransferFlags(
                TransferFlags::LINKED.0 | TransferFlags::PENDING.0
            ))
        );
        assert_eq!(account_flags("history"), Ok(AccountFlags::HISTORY));
        assert_eq!(account_flags("2"), Ok(AccountFlags(2)));
        assert_eq!(account_flags(""), Ok(AccountFlags(0)));
        assert!(transfer_flags("pendng").unwrap_err().contains("known"));
    }

    #[test]
    fn transfer_lines_accept_big_numbers_as_strings_and_reject_unknown_fields() {
        let dir = std::env::temp_dir().join(format!("ledgerctl-lines-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.jsonl");
        std::fs::write(
            &path,
            "# a chain\n{\"id\": \"340282366920938463463374607431768211454\", \"debit_account_id\": 1, \"credit_account_id\": 2, \"amount\": 5, \"ledger\": 1, \"code\": 1, \"flags\": [\"linked\"]}\n\n{\"id\": 2, \"debit_account_id\": 1, \"credit_account_id\": 2, \"amount\": 5, \"ledger\": 1, \"code\": 1, \"flags\": \"pending\", \"timeout\": 30}\n",
        )
        .unwrap();
        let transfers = read_transfers(&path).unwrap();
        assert_eq!(transfers.len(), 2);
        assert_eq!(transfers[0].id, u128::MAX - 1);
        assert_eq!(transfers[0].flags, TransferFlags::LINKED);
        assert_eq!(transfers[1].flags, TransferFlags::PENDING);
        assert_eq!(transfers[1].timeout, 30);
        std::fs::write(&path, "{\"id\": 1, \"amout\": 5}\n").unwrap();
        assert!(read_transfers(&path).unwrap_err().contains("t.jsonl:1"));
        std::fs::write(&path, "{\"id\": -1}\n").unwrap();
        assert!(read_transfers(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
