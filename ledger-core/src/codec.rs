//! Byte encodings of keys and values: what RocksDB stores and what the digest hashes.
//!
//! Keys are big-endian so that byte order equals [`Key`] order (range scans by account and
//! time work on the raw bytes; audit records by log index). Values are fixed-width
//! little-endian fields with a leading format version byte, so a future layout can be told
//! apart (the meta record is at version 2 since its audit chain head became 32 bytes). The
//! table is not part of the key bytes: each table is its own column family.

use crate::account::{Account, AccountFlags, Balances};
use crate::bet::{Bet, BetStatus, Market, MarketStatus, Settlement, SettlementFlags};
use crate::store::{AccountEntry, AuditRecord, EntryKind, Key, Meta, ObjectKind, Table, Value};
use crate::transfer::{PendingStatus, Transfer, TransferFlags};

/// Version byte at the start of every encoded value (except the meta record's).
const VALUE_FORMAT_VERSION: u8 = 1;
/// Version byte of the meta record: 2 since the audit chain head is 32 bytes of SHA-256
/// (version 1 held a 16-byte xxh3 chain, whose links cannot be carried over).
const META_FORMAT_VERSION: u8 = 2;

/// Returns the version byte that starts the values of `table`.
const fn format_version(table: Table) -> u8 {
    match table {
        Table::Meta => META_FORMAT_VERSION,
        _ => VALUE_FORMAT_VERSION,
    }
}

/// A stored key or value could not be decoded: the bytes are damaged or not ours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    pub table: Table,
    pub reason: &'static str,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot decode {} record: {}",
            self.table.name(),
            self.reason
        )
    }
}

impl std::error::Error for DecodeError {}

/// Appends the key's bytes (without its table) to `out`.
pub fn encode_key(key: &Key, out: &mut Vec<u8>) {
    match *key {
        Key::Account(id)
        | Key::Transfer(id)
        | Key::Pending(id)
        | Key::Market(id)
        | Key::Bet(id)
        | Key::Settlement(id) => out.extend_from_slice(&id.to_be_bytes()),
        Key::Expiry {
            expires_at,
            transfer_id,
        } => {
            out.extend_from_slice(&expires_at.to_be_bytes());
            out.extend_from_slice(&transfer_id.to_be_bytes());
        }
        Key::Failure { kind, id } => {
            out.push(kind as u8);
            out.extend_from_slice(&id.to_be_bytes());
        }
        Key::AccountEntry {
            account_id,
            timestamp,
        } => {
            out.extend_from_slice(&account_id.to_be_bytes());
            out.extend_from_slice(&timestamp.to_be_bytes());
        }
        Key::MarketBet {
            market_id,
            timestamp,
        } => {
            out.extend_from_slice(&market_id.to_be_bytes());
            out.extend_from_slice(&timestamp.to_be_bytes());
        }
        Key::Liability {
            market_id,
            selection_id,
        } => {
            out.extend_from_slice(&market_id.to_be_bytes());
            out.extend_from_slice(&selection_id.to_be_bytes());
        }
        Key::Meta => out.push(0),
        Key::Audit(log_index) => out.extend_from_slice(&log_index.to_be_bytes()),
    }
}

/// Returns the key's bytes (without its table).
pub fn key_bytes(key: &Key) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    encode_key(key, &mut out);
    out
}

/// Decodes a key of `table` from its bytes.
pub fn decode_key(table: Table, bytes: &[u8]) -> Result<Key, DecodeError> {
    let mut r = Reader::new(table, bytes);
    let key = match table {
        Table::Accounts => Key::Account(r.u128_be()?),
        Table::Transfers => Key::Transfer(r.u128_be()?),
        Table::Pending => Key::Pending(r.u128_be()?),
        Table::Markets => Key::Market(r.u128_be()?),
        Table::Bets => Key::Bet(r.u128_be()?),
        Table::Settlements => Key::Settlement(r.u128_be()?),
        Table::Expiries => Key::Expiry {
            expires_at: r.u64_be()?,
            transfer_id: r.u128_be()?,
        },
        Table::Failures => Key::Failure {
            kind: match r.u8()? {
                1 => ObjectKind::Transfer,
                2 => ObjectKind::Market,
                3 => ObjectKind::Bet,
                4 => ObjectKind::Settlement,
                _ => return Err(r.error("unknown object kind")),
            },
            id: r.u128_be()?,
        },
        Table::AccountEntries => Key::AccountEntry {
            account_id: r.u128_be()?,
            timestamp: r.u64_be()?,
        },
        Table::MarketBets => Key::MarketBet {
            market_id: r.u128_be()?,
            timestamp: r.u64_be()?,
        },
        Table::Liabilities => Key::Liability {
            market_id: r.u128_be()?,
            selection_id: r.u64_be()?,
        },
        Table::Meta => {
            // One key, one encoding: any other byte is not the meta key (found by fuzzing).
            if r.u8()? != 0 {
                return Err(r.error("not the meta key"));
            }
            Key::Meta
        }
        Table::Audit => Key::Audit(r.u64_be()?),
    };
    r.finish()?;
    Ok(key)
}

/// Appends the value's bytes to `out`.
pub fn encode_value(value: &Value, out: &mut Vec<u8>) {
    out.push(format_version(value.table()));
    match value {
        Value::Account(a) => {
            put_u128(out, a.id);
            put_u128(out, a.debits_pending);
            put_u128(out, a.debits_posted);
            put_u128(out, a.credits_pending);
            put_u128(out, a.credits_posted);
            put_u128(out, a.user_data_128);
            put_u64(out, a.user_data_64);
            put_u32(out, a.user_data_32);
            put_u32(out, a.ledger);
            put_u16(out, a.code);
            put_u16(out, a.flags.0);
            put_u64(out, a.timestamp);
        }
        Value::Transfer(t) => {
            put_u128(out, t.id);
            put_u128(out, t.debit_account_id);
            put_u128(out, t.credit_account_id);
            put_u128(out, t.amount);
            put_u128(out, t.pending_id);
            put_u128(out, t.user_data_128);
            put_u64(out, t.user_data_64);
            put_u32(out, t.user_data_32);
            put_u32(out, t.timeout);
            put_u32(out, t.ledger);
            put_u16(out, t.code);
            put_u16(out, t.flags.0);
            put_u64(out, t.timestamp);
        }
        Value::Pending(status) => out.push(status.as_u8()),
        Value::Expiry => {}
        Value::Failure(code) => put_u32(out, *code),
        Value::AccountEntry(e) => {
            put_u128(out, e.transfer_id);
            out.push(e.kind as u8);
            match e.balances {
                None => out.push(0),
                Some(b) => {
                    out.push(1);
                    put_balances(out, &b);
                }
            }
        }
        Value::Market(m) => {
            put_u128(out, m.id);
            put_u128(out, m.house_account_id);
            put_u32(out, m.ledger);
            put_u128(out, m.liability_limit);
            put_u128(out, m.user_data_128);
            out.push(match m.status {
                MarketStatus::Open => 1,
                MarketStatus::Settled => 2,
            });
            put_u128(out, m.settlement_id);
            put_u64(out, m.timestamp);
        }
        Value::Bet(b) => {
            put_u128(out, b.id);
            put_u128(out, b.player_account_id);
            put_u128(out, b.house_account_id);
            put_u128(out, b.market_id);
            put_u64(out, b.selection_id);
            put_u128(out, b.stake);
            put_u64(out, b.odds);
            put_u128(out, b.potential_payout);
            put_u32(out, b.ledger);
            put_u16(out, b.code);
            put_u128(out, b.user_data_128);
            out.push(b.status.as_u8());
            put_u128(out, b.settlement_id);
            put_u128(out, b.cash_out_amount);
            put_u64(out, b.timestamp);
            put_u64(out, b.settled_timestamp);
        }
        Value::MarketBet(bet_id) => put_u128(out, *bet_id),
        Value::Liability(amount) => put_u128(out, *amount),
        Value::Settlement(s) => {
            put_u128(out, s.id);
            put_u128(out, s.market_id);
            put_u16(out, s.flags.0);
            put_u64(out, s.timestamp);
            put_u32(out, s.winning_selection_ids.len() as u32);
            for id in &s.winning_selection_ids {
                put_u64(out, *id);
            }
            put_u32(out, s.void_selection_ids.len() as u32);
            for id in &s.void_selection_ids {
                put_u64(out, *id);
            }
        }
        Value::Meta(m) => {
            put_u64(out, m.last_timestamp);
            put_u64(out, m.last_log_index);
            put_u128(out, m.digest);
            out.extend_from_slice(&m.chain);
        }
        Value::Audit(a) => {
            out.extend_from_slice(&a.link);
            out.extend_from_slice(&a.entry_hash);
            put_u128(out, a.digest);
            put_u64(out, a.timestamp);
        }
    }
}

/// Returns the value's bytes.
pub fn value_bytes(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(192);
    encode_value(value, &mut out);
    out
}

/// Decodes a value of `table` from its bytes.
pub fn decode_value(table: Table, bytes: &[u8]) -> Result<Value, DecodeError> {
    let mut r = Reader::new(table, bytes);
    match r.u8()? {
        version if version == format_version(table) => {}
        1 if table == Table::Meta => {
            return Err(r.error("meta record of an older release (16-byte audit chain)"));
        }
        _ => return Err(r.error("unknown value format version")),
    }
    let value = match table {
        Table::Accounts => Value::Account(Account {
            id: r.u128()?,
            debits_pending: r.u128()?,
            debits_posted: r.u128()?,
            credits_pending: r.u128()?,
            credits_posted: r.u128()?,
            user_data_128: r.u128()?,
            user_data_64: r.u64()?,
            user_data_32: r.u32()?,
            ledger: r.u32()?,
            code: r.u16()?,
            flags: AccountFlags(r.u16()?),
            timestamp: r.u64()?,
        }),
        Table::Transfers => Value::Transfer(Transfer {
            id: r.u128()?,
            debit_account_id: r.u128()?,
            credit_account_id: r.u128()?,
            amount: r.u128()?,
            pending_id: r.u128()?,
            user_data_128: r.u128()?,
            user_data_64: r.u64()?,
            user_data_32: r.u32()?,
            timeout: r.u32()?,
            ledger: r.u32()?,
            code: r.u16()?,
            flags: TransferFlags(r.u16()?),
            timestamp: r.u64()?,
        }),
        Table::Pending => Value::Pending(match r.u8()? {
            1 => PendingStatus::Pending,
            2 => PendingStatus::Posted,
            3 => PendingStatus::Voided,
            4 => PendingStatus::Expired,
            _ => return Err(r.error("unknown pending status")),
        }),
        Table::Expiries => Value::Expiry,
        Table::Failures => Value::Failure(r.u32()?),
        Table::AccountEntries => {
            let transfer_id = r.u128()?;
            let kind = match r.u8()? {
                1 => EntryKind::Transfer,
                2 => EntryKind::Expiry,
                _ => return Err(r.error("unknown entry kind")),
            };
            let balances = match r.u8()? {
                0 => None,
                1 => Some(Balances {
                    debits_pending: r.u128()?,
                    debits_posted: r.u128()?,
                    credits_pending: r.u128()?,
                    credits_posted: r.u128()?,
                }),
                _ => return Err(r.error("bad balances marker")),
            };
            Value::AccountEntry(AccountEntry {
                transfer_id,
                kind,
                balances,
            })
        }
        Table::Markets => Value::Market(Market {
            id: r.u128()?,
            house_account_id: r.u128()?,
            ledger: r.u32()?,
            liability_limit: r.u128()?,
            user_data_128: r.u128()?,
            status: match r.u8()? {
                1 => MarketStatus::Open,
                2 => MarketStatus::Settled,
                _ => return Err(r.error("unknown market status")),
            },
            settlement_id: r.u128()?,
            timestamp: r.u64()?,
        }),
        Table::Bets => Value::Bet(Bet {
            id: r.u128()?,
            player_account_id: r.u128()?,
            house_account_id: r.u128()?,
            market_id: r.u128()?,
            selection_id: r.u64()?,
            stake: r.u128()?,
            odds: r.u64()?,
            potential_payout: r.u128()?,
            ledger: r.u32()?,
            code: r.u16()?,
            user_data_128: r.u128()?,
            status: match r.u8()? {
                1 => BetStatus::Open,
                2 => BetStatus::Won,
                3 => BetStatus::Lost,
                4 => BetStatus::Void,
                5 => BetStatus::CashedOut,
                _ => return Err(r.error("unknown bet status")),
            },
            settlement_id: r.u128()?,
            cash_out_amount: r.u128()?,
            timestamp: r.u64()?,
            settled_timestamp: r.u64()?,
        }),
        Table::MarketBets => Value::MarketBet(r.u128()?),
        Table::Liabilities => Value::Liability(r.u128()?),
        Table::Settlements => {
            let id = r.u128()?;
            let market_id = r.u128()?;
            let flags = SettlementFlags(r.u16()?);
            let timestamp = r.u64()?;
            let winning_selection_ids = r.u64_list()?;
            let void_selection_ids = r.u64_list()?;
            Value::Settlement(Settlement {
                id,
                market_id,
                winning_selection_ids,
                void_selection_ids,
                flags,
                timestamp,
            })
        }
        Table::Meta => Value::Meta(Meta {
            last_timestamp: r.u64()?,
            last_log_index: r.u64()?,
            digest: r.u128()?,
            chain: r.take()?,
        }),
        Table::Audit => Value::Audit(AuditRecord {
            link: r.take()?,
            entry_hash: r.take()?,
            digest: r.u128()?,
            timestamp: r.u64()?,
        }),
    };
    r.finish()?;
    Ok(value)
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_u128(out: &mut Vec<u8>, v: u128) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_balances(out: &mut Vec<u8>, b: &Balances) {
    put_u128(out, b.debits_pending);
    put_u128(out, b.debits_posted);
    put_u128(out, b.credits_pending);
    put_u128(out, b.credits_posted);
}

struct Reader<'a> {
    table: Table,
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(table: Table, bytes: &'a [u8]) -> Self {
        Self { table, bytes }
    }

    fn error(&self, reason: &'static str) -> DecodeError {
        DecodeError {
            table: self.table,
            reason,
        }
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        if self.bytes.len() < N {
            return Err(self.error("truncated"));
        }
        let (head, tail) = self.bytes.split_at(N);
        self.bytes = tail;
        let mut array = [0u8; N];
        array.copy_from_slice(head);
        Ok(array)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take()?))
    }
    fn u128(&mut self) -> Result<u128, DecodeError> {
        Ok(u128::from_le_bytes(self.take()?))
    }
    fn u64_be(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.take()?))
    }
    fn u128_be(&mut self) -> Result<u128, DecodeError> {
        Ok(u128::from_be_bytes(self.take()?))
    }

    fn u64_list(&mut self) -> Result<Vec<u64>, DecodeError> {
        let len = self.u32()? as usize;
        if len > self.bytes.len() / 8 {
            return Err(self.error("list longer than the record"));
        }
        (0..len).map(|_| self.u64()).collect()
    }

    fn finish(&self) -> Result<(), DecodeError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(self.error("trailing bytes"))
        }
    }
}
