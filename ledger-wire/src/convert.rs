//! Conversions between ledger-core's types and the wire types, in both directions.
//!
//! Decoding from the wire checks what the wire format cannot: ids that must be set, 16-bit
//! fields that arrive in 32-bit slots, enum values this version does not know. A failure names
//! the field (`transfers[3].id`), so the server can answer `INVALID_ARGUMENT` precisely and
//! the CLI can reject a bad input line before sending anything.

use ledger_core::bet::{BetActionKind, BetStatus, MarketStatus};
use ledger_core::{
    Account, AccountFlags, Bet, BetAction, Market, NewBet, NewMarket, PendingStatus, Settlement,
    SettlementFlags, Transfer, TransferFlags,
};

use crate::proto::ledger as pb;
use crate::proto::u128_of;

/// A field that cannot be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

fn error(path: &str, field: &str, reason: impl Into<String>) -> FieldError {
    FieldError {
        field: format!("{path}.{field}"),
        reason: reason.into(),
    }
}

fn u16_field(value: u32, path: &str, field: &str) -> Result<u16, FieldError> {
    u16::try_from(value).map_err(|_| error(path, field, format!("{value} does not fit in 16 bits")))
}

/// The highest of the 16 flag bits: reserved in every event type (checked below), and where
/// the wire's reserved bits 16-31 are folded.
const FOLDED_RESERVED_FLAG: u16 = 1 << 15;
const _: () = assert!(AccountFlags::ALL.0 & FOLDED_RESERVED_FLAG == 0);
const _: () = assert!(TransferFlags::ALL.0 & FOLDED_RESERVED_FLAG == 0);
const _: () = assert!(SettlementFlags::ALL.0 & FOLDED_RESERVED_FLAG == 0);

/// An event's flags. The wire carries them in 32 bits, of which 16-31 are reserved like the
/// unknown ones among 0-15: an event with any of them set is folded to bit 15 (also
/// reserved) and so answered `reserved_flag` by the state machine, as its own result. Its
/// other bits, `linked` above all, keep their meaning, so a linked chain stays the chain the
/// caller sent and the other events of the request, other callers' among them, get theirs.
fn flags_field(value: u32) -> u16 {
    let low = (value & 0xffff) as u16;
    if value > 0xffff {
        low | FOLDED_RESERVED_FLAG
    } else {
        low
    }
}

/// An event's own id. Zero is not refused here: it is the event's problem, not the request's,
/// and the state machine answers it with a result code of its own (`id_must_not_be_zero` and
/// kin), so that the other events of the request, other callers' among them, get theirs.
fn id_field(value: &Option<pb::U128>) -> u128 {
    u128_of(value)
}

fn u128_pb(value: u128) -> Option<pb::U128> {
    Some(value.into())
}

pub fn account_from_pb(a: &pb::Account, path: &str) -> Result<Account, FieldError> {
    Ok(Account {
        id: id_field(&a.id),
        debits_pending: u128_of(&a.debits_pending),
        debits_posted: u128_of(&a.debits_posted),
        credits_pending: u128_of(&a.credits_pending),
        credits_posted: u128_of(&a.credits_posted),
        user_data_128: u128_of(&a.user_data_128),
        user_data_64: a.user_data_64,
        user_data_32: a.user_data_32,
        ledger: a.ledger,
        code: u16_field(a.code, path, "code")?,
        flags: AccountFlags(flags_field(a.flags)),
        timestamp: a.timestamp,
    })
}

pub fn account_to_pb(a: &Account) -> pb::Account {
    pb::Account {
        id: u128_pb(a.id),
        debits_pending: u128_pb(a.debits_pending),
        debits_posted: u128_pb(a.debits_posted),
        credits_pending: u128_pb(a.credits_pending),
        credits_posted: u128_pb(a.credits_posted),
        user_data_128: u128_pb(a.user_data_128),
        user_data_64: a.user_data_64,
        user_data_32: a.user_data_32,
        ledger: a.ledger,
        code: u32::from(a.code),
        flags: u32::from(a.flags.0),
        timestamp: a.timestamp,
    }
}

pub fn transfer_from_pb(t: &pb::Transfer, path: &str) -> Result<Transfer, FieldError> {
    Ok(Transfer {
        id: id_field(&t.id),
        debit_account_id: u128_of(&t.debit_account_id),
        credit_account_id: u128_of(&t.credit_account_id),
        amount: u128_of(&t.amount),
        pending_id: u128_of(&t.pending_id),
        user_data_128: u128_of(&t.user_data_128),
        user_data_64: t.user_data_64,
        user_data_32: t.user_data_32,
        timeout: t.timeout,
        ledger: t.ledger,
        code: u16_field(t.code, path, "code")?,
        flags: TransferFlags(flags_field(t.flags)),
        timestamp: t.timestamp,
    })
}

pub fn transfer_to_pb(t: &Transfer) -> pb::Transfer {
    pb::Transfer {
        id: u128_pb(t.id),
        debit_account_id: u128_pb(t.debit_account_id),
        credit_account_id: u128_pb(t.credit_account_id),
        amount: u128_pb(t.amount),
        pending_id: u128_pb(t.pending_id),
        user_data_128: u128_pb(t.user_data_128),
        user_data_64: t.user_data_64,
        user_data_32: t.user_data_32,
        timeout: t.timeout,
        ledger: t.ledger,
        code: u32::from(t.code),
        flags: u32::from(t.flags.0),
        timestamp: t.timestamp,
    }
}

pub fn new_market_from_pb(m: &pb::NewMarket, _path: &str) -> Result<NewMarket, FieldError> {
    Ok(NewMarket {
        id: id_field(&m.id),
        house_account_id: u128_of(&m.house_account_id),
        liability_limit: u128_of(&m.liability_limit),
        user_data_128: u128_of(&m.user_data_128),
    })
}

pub fn new_market_to_pb(m: &NewMarket) -> pb::NewMarket {
    pb::NewMarket {
        id: u128_pb(m.id),
        house_account_id: u128_pb(m.house_account_id),
        liability_limit: u128_pb(m.liability_limit),
        user_data_128: u128_pb(m.user_data_128),
    }
}

pub fn market_to_pb(m: &Market) -> pb::Market {
    pb::Market {
        id: u128_pb(m.id),
        house_account_id: u128_pb(m.house_account_id),
        ledger: m.ledger,
        liability_limit: u128_pb(m.liability_limit),
        user_data_128: u128_pb(m.user_data_128),
        status: match m.status {
            MarketStatus::Open => pb::MarketStatus::Open,
            MarketStatus::Settled => pb::MarketStatus::Settled,
        } as i32,
        settlement_id: u128_pb(m.settlement_id),
        timestamp: m.timestamp,
    }
}

pub fn market_from_pb(m: &pb::Market) -> Result<Market, FieldError> {
    Ok(Market {
        id: u128_of(&m.id),
        house_account_id: u128_of(&m.house_account_id),
        ledger: m.ledger,
        liability_limit: u128_of(&m.liability_limit),
        user_data_128: u128_of(&m.user_data_128),
        status: match pb::MarketStatus::try_from(m.status) {
            Ok(pb::MarketStatus::Open) => MarketStatus::Open,
            Ok(pb::MarketStatus::Settled) => MarketStatus::Settled,
            _ => {
                return Err(error(
                    "market",
                    "status",
                    format!("unknown value {}", m.status),
                ))
            }
        },
        settlement_id: u128_of(&m.settlement_id),
        timestamp: m.timestamp,
    })
}

pub fn new_bet_from_pb(b: &pb::NewBet, path: &str) -> Result<NewBet, FieldError> {
    Ok(NewBet {
        id: id_field(&b.id),
        player_account_id: u128_of(&b.player_account_id),
        market_id: u128_of(&b.market_id),
        selection_id: b.selection_id,
        stake: u128_of(&b.stake),
        odds: b.odds,
        code: u16_field(b.code, path, "code")?,
        user_data_128: u128_of(&b.user_data_128),
    })
}

pub fn new_bet_to_pb(b: &NewBet) -> pb::NewBet {
    pb::NewBet {
        id: u128_pb(b.id),
        player_account_id: u128_pb(b.player_account_id),
        market_id: u128_pb(b.market_id),
        selection_id: b.selection_id,
        stake: u128_pb(b.stake),
        odds: b.odds,
        code: u32::from(b.code),
        user_data_128: u128_pb(b.user_data_128),
    }
}

fn bet_status_to_pb(status: BetStatus) -> pb::BetStatus {
    match status {
        BetStatus::Open => pb::BetStatus::Open,
        BetStatus::Won => pb::BetStatus::Won,
        BetStatus::Lost => pb::BetStatus::Lost,
        BetStatus::Void => pb::BetStatus::Void,
        BetStatus::CashedOut => pb::BetStatus::CashedOut,
    }
}

pub fn bet_to_pb(b: &Bet) -> pb::Bet {
    pb::Bet {
        id: u128_pb(b.id),
        player_account_id: u128_pb(b.player_account_id),
        house_account_id: u128_pb(b.house_account_id),
        market_id: u128_pb(b.market_id),
        selection_id: b.selection_id,
        stake: u128_pb(b.stake),
        odds: b.odds,
        potential_payout: u128_pb(b.potential_payout),
        ledger: b.ledger,
        code: u32::from(b.code),
        user_data_128: u128_pb(b.user_data_128),
        status: bet_status_to_pb(b.status) as i32,
        settlement_id: u128_pb(b.settlement_id),
        cash_out_amount: u128_pb(b.cash_out_amount),
        timestamp: b.timestamp,
        settled_timestamp: b.settled_timestamp,
    }
}

pub fn bet_from_pb(b: &pb::Bet) -> Result<Bet, FieldError> {
    let status = match pb::BetStatus::try_from(b.status) {
        Ok(pb::BetStatus::Open) => BetStatus::Open,
        Ok(pb::BetStatus::Won) => BetStatus::Won,
        Ok(pb::BetStatus::Lost) => BetStatus::Lost,
        Ok(pb::BetStatus::Void) => BetStatus::Void,
        Ok(pb::BetStatus::CashedOut) => BetStatus::CashedOut,
        _ => {
            return Err(error(
                "bet",
                "status",
                format!("unknown value {}", b.status),
            ))
        }
    };
    Ok(Bet {
        id: u128_of(&b.id),
        player_account_id: u128_of(&b.player_account_id),
        house_account_id: u128_of(&b.house_account_id),
        market_id: u128_of(&b.market_id),
        selection_id: b.selection_id,
        stake: u128_of(&b.stake),
        odds: b.odds,
        potential_payout: u128_of(&b.potential_payout),
        ledger: b.ledger,
        code: u16_field(b.code, "bet", "code")?,
        user_data_128: u128_of(&b.user_data_128),
        status,
        settlement_id: u128_of(&b.settlement_id),
        cash_out_amount: u128_of(&b.cash_out_amount),
        timestamp: b.timestamp,
        settled_timestamp: b.settled_timestamp,
    })
}

pub fn settlement_from_pb(s: &pb::Settlement, _path: &str) -> Result<Settlement, FieldError> {
    Ok(Settlement {
        id: id_field(&s.id),
        market_id: u128_of(&s.market_id),
        winning_selection_ids: s.winning_selection_ids.clone(),
        void_selection_ids: s.void_selection_ids.clone(),
        flags: SettlementFlags(flags_field(s.flags)),
        timestamp: s.timestamp,
    })
}

pub fn settlement_to_pb(s: &Settlement) -> pb::Settlement {
    pb::Settlement {
        id: u128_pb(s.id),
        market_id: u128_pb(s.market_id),
        winning_selection_ids: s.winning_selection_ids.clone(),
        void_selection_ids: s.void_selection_ids.clone(),
        flags: u32::from(s.flags.0),
        timestamp: s.timestamp,
    }
}

pub fn bet_action_from_pb(a: &pb::BetAction, path: &str) -> Result<BetAction, FieldError> {
    let kind = match pb::BetActionKind::try_from(a.kind) {
        Ok(pb::BetActionKind::Void) => BetActionKind::Void,
        Ok(pb::BetActionKind::CashOut) => BetActionKind::CashOut,
        _ => {
            return Err(error(
                path,
                "kind",
                format!("unknown or unset value {}", a.kind),
            ))
        }
    };
    Ok(BetAction {
        bet_id: id_field(&a.bet_id),
        kind,
        amount: u128_of(&a.amount),
    })
}

pub fn bet_action_to_pb(a: &BetAction) -> pb::BetAction {
    pb::BetAction {
        bet_id: u128_pb(a.bet_id),
        kind: match a.kind {
            BetActionKind::Void => pb::BetActionKind::Void,
            BetActionKind::CashOut => pb::BetActionKind::CashOut,
        } as i32,
        amount: u128_pb(a.amount),
    }
}

pub fn pending_status_to_pb(status: Option<PendingStatus>) -> pb::PendingStatus {
    match status {
        None => pb::PendingStatus::None,
        Some(PendingStatus::Pending) => pb::PendingStatus::Pending,
        Some(PendingStatus::Posted) => pb::PendingStatus::Posted,
        Some(PendingStatus::Voided) => pb::PendingStatus::Voided,
        Some(PendingStatus::Expired) => pb::PendingStatus::Expired,
    }
}

/// Decodes every event of a batch, naming the first bad field as `name[index].field`.
pub fn decode_all<P, T>(
    items: &[P],
    name: &str,
    decode: impl Fn(&P, &str) -> Result<T, FieldError>,
) -> Result<Vec<T>, FieldError> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| decode(item, &format!("{name}[{i}]")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beyond_16_bits_are_the_events_own_reserved_flag_and_keep_its_chain() {
        let wire = pb::Transfer {
            flags: (1 << 20) | u32::from(TransferFlags::LINKED.0),
            code: 1,
            ..Default::default()
        };
        let transfer = transfer_from_pb(&wire, "transfers[0]").expect("decodes");
        assert!(
            transfer.flags.contains(TransferFlags::LINKED),
            "still linked"
        );
        assert!(
            !TransferFlags::ALL.contains(transfer.flags),
            "a reserved flag is set, which the state machine answers `reserved_flag`"
        );
        let account = account_from_pb(
            &pb::Account {
                flags: 1 << 16,
                ..Default::default()
            },
            "accounts[0]",
        )
        .expect("decodes");
        assert!(!AccountFlags::ALL.contains(account.flags));
        // Within 16 bits, nothing changes.
        let plain = pb::Transfer {
            flags: u32::from(TransferFlags::PENDING.0),
            ..Default::default()
        };
        assert_eq!(
            transfer_from_pb(&plain, "t").expect("decodes").flags,
            TransferFlags::PENDING
        );
    }
}
