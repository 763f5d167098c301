//! The generated gRPC types and services, shared by the client and the server.

#![allow(clippy::all, missing_docs)]

pub mod ledger {
    tonic::include_proto!("ledger.v1");
}

pub mod admin {
    tonic::include_proto!("ledger.admin");
}

pub mod raft {
    tonic::include_proto!("ledger.raft");
}

use ledger::U128;

impl From<u128> for U128 {
    fn from(value: u128) -> Self {
        U128 {
            lo: value as u64,
            hi: (value >> 64) as u64,
        }
    }
}

impl From<U128> for u128 {
    fn from(value: U128) -> Self {
        (u128::from(value.hi) << 64) | u128::from(value.lo)
    }
}

/// Returns the u128 in an optional field; an absent field is 0.
pub fn u128_of(value: &Option<U128>) -> u128 {
    value.map(u128::from).unwrap_or(0)
}
