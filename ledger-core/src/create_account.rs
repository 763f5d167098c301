//! Where an account is validated and created.

use crate::account::{Account, AccountFlags};
use crate::result::AccountResult;
use crate::state_machine::Engine;
use crate::store::Store;

impl<S: Store> Engine<'_, S> {
    pub(crate) fn create_accounts(&mut self, accounts: &[Account]) -> Vec<AccountResult> {
        self.run_linked(
            accounts,
            |a| a.flags.contains(AccountFlags::LINKED),
            Self::create_account,
        )
    }

    fn create_account(&mut self, a: &Account) -> AccountResult {
        use AccountResult as R;
        if a.timestamp != 0 {
            return R::TimestampMustBeZero;
        }
        if a.flags.has_reserved_bits() {
            return R::ReservedFlag;
        }
        if a.id == 0 {
            return R::IdMustNotBeZero;
        }
        if a.id == u128::MAX {
            return R::IdMustNotBeIntMax;
        }
        if a.flags.contains(
            AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS
                .union(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS),
        ) {
            return R::FlagsAreMutuallyExclusive;
        }
        if a.debits_pending != 0 {
            return R::DebitsPendingMustBeZero;
        }
        if a.debits_posted != 0 {
            return R::DebitsPostedMustBeZero;
        }
        if a.credits_pending != 0 {
            return R::CreditsPendingMustBeZero;
        }
        if a.credits_posted != 0 {
            return R::CreditsPostedMustBeZero;
        }
        if a.ledger == 0 {
            return R::LedgerMustNotBeZero;
        }
        if a.code == 0 {
            return R::CodeMustNotBeZero;
        }
        if let Some(e) = self.account(a.id) {
            // The closed flag changes after creation, and `linked` is about the batch, not the
            // account: neither makes a resubmission different.
            let ignored = AccountFlags::LINKED.union(AccountFlags::CLOSED);
            return if a.flags.difference(ignored) != e.flags.difference(ignored) {
                R::ExistsWithDifferentFlags
            } else if a.user_data_128 != e.user_data_128 {
                R::ExistsWithDifferentUserData128
            } else if a.user_data_64 != e.user_data_64 {
                R::ExistsWithDifferentUserData64
            } else if a.user_data_32 != e.user_data_32 {
                R::ExistsWithDifferentUserData32
            } else if a.ledger != e.ledger {
                R::ExistsWithDifferentLedger
            } else if a.code != e.code {
                R::ExistsWithDifferentCode
            } else {
                R::Exists
            };
        }
        let account = Account {
            timestamp: self.next_timestamp(),
            flags: a.flags.difference(AccountFlags::LINKED),
            ..*a
        };
        self.put_account(&account);
        R::Created
    }
}
