//! Result codes: one per event, stable numbers, ordered by precedence.
//!
//! A business rejection is data, not an error: every event of a batch gets exactly one code.
//! Codes are numbered in the order the checks run, so when an event is wrong in several ways
//! the lowest applicable number is the one reported. Numbers never change once published; new
//! codes are appended.
//!
//! A *transient* code depends on state that may change later (an account that does not exist
//! yet, a balance that is too low now). Because a retry must never flip an outcome, an id that
//! failed with a transient code is remembered and any later event with that id gets
//! `id_already_failed` (TigerBeetle's rule).

use serde::{Deserialize, Serialize};

macro_rules! result_codes {
    (
        $(#[$meta:meta])*
        $name:ident {
            $( $variant:ident = $num:literal => $text:literal $(, $transient:ident)? ; )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[repr(u32)]
        pub enum $name {
            $( $variant = $num, )*
        }

        impl $name {
            /// Every code, in precedence order.
            pub const ALL: &'static [$name] = &[ $( $name::$variant, )* ];

            /// Returns the stable number of the code.
            pub const fn code(self) -> u32 {
                self as u32
            }

            /// Returns the code with this stable number, if any.
            pub fn from_code(code: u32) -> Option<Self> {
                match code {
                    $( $num => Some($name::$variant), )*
                    _ => None,
                }
            }

            /// Returns the stable snake_case name of the code.
            pub const fn name(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )*
                }
            }

            /// Returns true when the failure depends on state that may change, so the id is
            /// remembered as failed.
            pub const fn transient(self) -> bool {
                match self {
                    $( $name::$variant => result_codes!(@transient $($transient)?), )*
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
    (@transient transient) => { true };
    (@transient) => { false };
}

result_codes! {
    /// The outcome of creating one account.
    AccountResult {
        Created = 0 => "created";
        LinkedEventFailed = 1 => "linked_event_failed";
        LinkedEventChainOpen = 2 => "linked_event_chain_open";
        TimestampMustBeZero = 3 => "timestamp_must_be_zero";
        ReservedFlag = 4 => "reserved_flag";
        IdMustNotBeZero = 5 => "id_must_not_be_zero";
        IdMustNotBeIntMax = 6 => "id_must_not_be_int_max";
        FlagsAreMutuallyExclusive = 7 => "flags_are_mutually_exclusive";
        DebitsPendingMustBeZero = 8 => "debits_pending_must_be_zero";
        DebitsPostedMustBeZero = 9 => "debits_posted_must_be_zero";
        CreditsPendingMustBeZero = 10 => "credits_pending_must_be_zero";
        CreditsPostedMustBeZero = 11 => "credits_posted_must_be_zero";
        LedgerMustNotBeZero = 12 => "ledger_must_not_be_zero";
        CodeMustNotBeZero = 13 => "code_must_not_be_zero";
        ExistsWithDifferentFlags = 14 => "exists_with_different_flags";
        ExistsWithDifferentUserData128 = 15 => "exists_with_different_user_data_128";
        ExistsWithDifferentUserData64 = 16 => "exists_with_different_user_data_64";
        ExistsWithDifferentUserData32 = 17 => "exists_with_different_user_data_32";
        ExistsWithDifferentLedger = 18 => "exists_with_different_ledger";
        ExistsWithDifferentCode = 19 => "exists_with_different_code";
        Exists = 20 => "exists";
    }
}

result_codes! {
    /// The outcome of creating one transfer (including post, void and balancing transfers).
    TransferResult {
        Created = 0 => "created";
        LinkedEventFailed = 1 => "linked_event_failed";
        LinkedEventChainOpen = 2 => "linked_event_chain_open";
        TimestampMustBeZero = 3 => "timestamp_must_be_zero";
        ReservedFlag = 4 => "reserved_flag";
        IdMustNotBeZero = 5 => "id_must_not_be_zero";
        IdMustNotBeIntMax = 6 => "id_must_not_be_int_max";
        FlagsAreMutuallyExclusive = 7 => "flags_are_mutually_exclusive";
        DebitAccountIdMustNotBeZero = 8 => "debit_account_id_must_not_be_zero";
        DebitAccountIdMustNotBeIntMax = 9 => "debit_account_id_must_not_be_int_max";
        CreditAccountIdMustNotBeZero = 10 => "credit_account_id_must_not_be_zero";
        CreditAccountIdMustNotBeIntMax = 11 => "credit_account_id_must_not_be_int_max";
        AccountsMustBeDifferent = 12 => "accounts_must_be_different";
        PendingIdMustBeZero = 13 => "pending_id_must_be_zero";
        PendingIdMustNotBeZero = 14 => "pending_id_must_not_be_zero";
        PendingIdMustNotBeIntMax = 15 => "pending_id_must_not_be_int_max";
        PendingIdMustBeDifferent = 16 => "pending_id_must_be_different";
        TimeoutReservedForPendingTransfer = 17 => "timeout_reserved_for_pending_transfer";
        ClosingTransferMustBePending = 18 => "closing_transfer_must_be_pending";
        AmountMustNotBeZero = 19 => "amount_must_not_be_zero";
        LedgerMustNotBeZero = 20 => "ledger_must_not_be_zero";
        CodeMustNotBeZero = 21 => "code_must_not_be_zero";
        ExistsWithDifferentFlags = 22 => "exists_with_different_flags";
        ExistsWithDifferentPendingId = 23 => "exists_with_different_pending_id";
        ExistsWithDifferentTimeout = 24 => "exists_with_different_timeout";
        ExistsWithDifferentDebitAccountId = 25 => "exists_with_different_debit_account_id";
        ExistsWithDifferentCreditAccountId = 26 => "exists_with_different_credit_account_id";
        ExistsWithDifferentAmount = 27 => "exists_with_different_amount";
        ExistsWithDifferentUserData128 = 28 => "exists_with_different_user_data_128";
        ExistsWithDifferentUserData64 = 29 => "exists_with_different_user_data_64";
        ExistsWithDifferentUserData32 = 30 => "exists_with_different_user_data_32";
        ExistsWithDifferentLedger = 31 => "exists_with_different_ledger";
        ExistsWithDifferentCode = 32 => "exists_with_different_code";
        Exists = 33 => "exists";
        IdAlreadyFailed = 34 => "id_already_failed";
        PendingTransferNotFound = 35 => "pending_transfer_not_found", transient;
        PendingTransferNotPending = 36 => "pending_transfer_not_pending";
        PendingTransferOwnedByBet = 37 => "pending_transfer_owned_by_bet";
        PendingTransferHasDifferentDebitAccountId = 38 => "pending_transfer_has_different_debit_account_id";
        PendingTransferHasDifferentCreditAccountId = 39 => "pending_transfer_has_different_credit_account_id";
        PendingTransferHasDifferentLedger = 40 => "pending_transfer_has_different_ledger";
        PendingTransferHasDifferentCode = 41 => "pending_transfer_has_different_code";
        ExceedsPendingTransferAmount = 42 => "exceeds_pending_transfer_amount";
        PendingTransferHasDifferentAmount = 43 => "pending_transfer_has_different_amount";
        PendingTransferAlreadyPosted = 44 => "pending_transfer_already_posted";
        PendingTransferAlreadyVoided = 45 => "pending_transfer_already_voided";
        PendingTransferExpired = 46 => "pending_transfer_expired";
        DebitAccountNotFound = 47 => "debit_account_not_found", transient;
        CreditAccountNotFound = 48 => "credit_account_not_found", transient;
        AccountsMustHaveTheSameLedger = 49 => "accounts_must_have_the_same_ledger";
        TransferMustHaveTheSameLedgerAsAccounts = 50 => "transfer_must_have_the_same_ledger_as_accounts";
        DebitAccountAlreadyClosed = 51 => "debit_account_already_closed", transient;
        CreditAccountAlreadyClosed = 52 => "credit_account_already_closed", transient;
        OverflowsDebitsPending = 53 => "overflows_debits_pending", transient;
        OverflowsCreditsPending = 54 => "overflows_credits_pending", transient;
        OverflowsDebitsPosted = 55 => "overflows_debits_posted", transient;
        OverflowsCreditsPosted = 56 => "overflows_credits_posted", transient;
        OverflowsDebits = 57 => "overflows_debits", transient;
        OverflowsCredits = 58 => "overflows_credits", transient;
        OverflowsTimeout = 59 => "overflows_timeout";
        ExceedsCredits = 60 => "exceeds_credits", transient;
        ExceedsDebits = 61 => "exceeds_debits", transient;
    }
}

result_codes! {
    /// The outcome of creating one market.
    MarketResult {
        Created = 0 => "created";
        IdMustNotBeZero = 1 => "id_must_not_be_zero";
        IdMustNotBeIntMax = 2 => "id_must_not_be_int_max";
        HouseAccountIdMustNotBeZero = 3 => "house_account_id_must_not_be_zero";
        HouseAccountIdMustNotBeIntMax = 4 => "house_account_id_must_not_be_int_max";
        LiabilityLimitMustNotBeZero = 5 => "liability_limit_must_not_be_zero";
        ExistsWithDifferentHouseAccountId = 6 => "exists_with_different_house_account_id";
        ExistsWithDifferentLiabilityLimit = 7 => "exists_with_different_liability_limit";
        ExistsWithDifferentUserData128 = 8 => "exists_with_different_user_data_128";
        Exists = 9 => "exists";
        IdAlreadyFailed = 10 => "id_already_failed";
        HouseAccountNotFound = 11 => "house_account_not_found", transient;
        HouseAccountAlreadyClosed = 12 => "house_account_already_closed", transient;
    }
}

result_codes! {
    /// The outcome of placing one bet.
    BetResult {
        Created = 0 => "created";
        IdMustNotBeZero = 1 => "id_must_not_be_zero";
        IdMustNotBeIntMax = 2 => "id_must_not_be_int_max";
        PlayerAccountIdMustNotBeZero = 3 => "player_account_id_must_not_be_zero";
        PlayerAccountIdMustNotBeIntMax = 4 => "player_account_id_must_not_be_int_max";
        MarketIdMustNotBeZero = 5 => "market_id_must_not_be_zero";
        MarketIdMustNotBeIntMax = 6 => "market_id_must_not_be_int_max";
        StakeMustNotBeZero = 7 => "stake_must_not_be_zero";
        OddsMustExceedOne = 8 => "odds_must_exceed_one";
        CodeMustNotBeZero = 9 => "code_must_not_be_zero";
        ExistsWithDifferentPlayerAccountId = 10 => "exists_with_different_player_account_id";
        ExistsWithDifferentMarketId = 11 => "exists_with_different_market_id";
        ExistsWithDifferentSelectionId = 12 => "exists_with_different_selection_id";
        ExistsWithDifferentStake = 13 => "exists_with_different_stake";
        ExistsWithDifferentOdds = 14 => "exists_with_different_odds";
        ExistsWithDifferentCode = 15 => "exists_with_different_code";
        ExistsWithDifferentUserData128 = 16 => "exists_with_different_user_data_128";
        Exists = 17 => "exists";
        IdAlreadyFailed = 18 => "id_already_failed";
        MarketNotFound = 19 => "market_not_found", transient;
        MarketNotOpen = 20 => "market_not_open";
        PlayerAccountNotFound = 21 => "player_account_not_found", transient;
        PlayerAccountIsHouseAccount = 22 => "player_account_is_house_account";
        AccountsMustHaveTheSameLedger = 23 => "accounts_must_have_the_same_ledger";
        PlayerAccountAlreadyClosed = 24 => "player_account_already_closed", transient;
        HouseAccountAlreadyClosed = 25 => "house_account_already_closed", transient;
        OverflowsPayout = 26 => "overflows_payout";
        OverflowsLiability = 27 => "overflows_liability", transient;
        ExceedsLiabilityLimit = 28 => "exceeds_liability_limit", transient;
        TransferIdConflict = 29 => "transfer_id_conflict";
        OverflowsBalance = 30 => "overflows_balance", transient;
        ExceedsCredits = 31 => "exceeds_credits", transient;
        ExceedsDebits = 32 => "exceeds_debits", transient;
    }
}

result_codes! {
    /// The outcome of voiding or cashing out one bet.
    BetActionResult {
        Applied = 0 => "applied";
        BetIdMustNotBeZero = 1 => "bet_id_must_not_be_zero";
        AmountMustBeZero = 2 => "amount_must_be_zero";
        AmountMustNotBeZero = 3 => "amount_must_not_be_zero";
        BetNotFound = 4 => "bet_not_found";
        Exists = 5 => "exists";
        BetNotOpen = 6 => "bet_not_open";
        TransferIdConflict = 7 => "transfer_id_conflict";
        AccountAlreadyClosed = 8 => "account_already_closed", transient;
        OverflowsBalance = 9 => "overflows_balance";
        ExceedsCredits = 10 => "exceeds_credits";
        ExceedsDebits = 11 => "exceeds_debits";
    }
}

result_codes! {
    /// The outcome of settling or resettling one market.
    SettlementResult {
        Created = 0 => "created";
        TimestampMustBeZero = 1 => "timestamp_must_be_zero";
        ReservedFlag = 2 => "reserved_flag";
        IdMustNotBeZero = 3 => "id_must_not_be_zero";
        IdMustNotBeIntMax = 4 => "id_must_not_be_int_max";
        MarketIdMustNotBeZero = 5 => "market_id_must_not_be_zero";
        MarketIdMustNotBeIntMax = 6 => "market_id_must_not_be_int_max";
        TooManySelections = 7 => "too_many_selections";
        SelectionIdsMustBeUnique = 8 => "selection_ids_must_be_unique";
        ExistsWithDifferentMarketId = 9 => "exists_with_different_market_id";
        ExistsWithDifferentResult = 10 => "exists_with_different_result";
        Exists = 11 => "exists";
        IdAlreadyFailed = 12 => "id_already_failed";
        MarketNotFound = 13 => "market_not_found", transient;
        MarketAlreadySettled = 14 => "market_already_settled";
        MarketNotSettled = 15 => "market_not_settled", transient;
        TransferIdConflict = 16 => "transfer_id_conflict";
        AccountAlreadyClosed = 17 => "account_already_closed", transient;
        OverflowsBalance = 18 => "overflows_balance", transient;
        ExceedsCredits = 19 => "exceeds_credits", transient;
        ExceedsDebits = 20 => "exceeds_debits", transient;
    }
}
