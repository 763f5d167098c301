//! A client request from the network: any bytes, decoded as the message of one of the
//! write RPCs (the first byte picks which) and converted to ledger-core events by the same
//! functions the server uses. Must never panic: bad input is a `FieldError`.
#![no_main]

use ledger_client::convert::{self, decode_all};
use ledger_client::proto::ledger as pb;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 6 {
        0 => {
            if let Ok(r) = pb::CreateAccountsRequest::decode(bytes) {
                let _ = decode_all(&r.accounts, "accounts", convert::account_from_pb);
            }
        }
        1 => {
            if let Ok(r) = pb::CreateTransfersRequest::decode(bytes) {
                if let Ok(transfers) =
                    decode_all(&r.transfers, "transfers", convert::transfer_from_pb)
                {
                    // What decodes must encode back to the same events.
                    let again: Vec<_> = transfers.iter().map(convert::transfer_to_pb).collect();
                    let round = decode_all(&again, "transfers", convert::transfer_from_pb)
                        .expect("an encoded transfer decodes");
                    assert_eq!(round, transfers);
                }
            }
        }
        2 => {
            if let Ok(r) = pb::CreateMarketsRequest::decode(bytes) {
                let _ = decode_all(&r.markets, "markets", convert::new_market_from_pb);
            }
        }
        3 => {
            if let Ok(r) = pb::PlaceBetsRequest::decode(bytes) {
                let _ = decode_all(&r.bets, "bets", convert::new_bet_from_pb);
            }
        }
        4 => {
            if let Ok(r) = pb::SettleMarketsRequest::decode(bytes) {
                let _ = decode_all(&r.settlements, "settlements", convert::settlement_from_pb);
            }
        }
        _ => {
            if let Ok(r) = pb::BetActionsRequest::decode(bytes) {
                let _ = decode_all(&r.actions, "actions", convert::bet_action_from_pb);
            }
        }
    }
});
