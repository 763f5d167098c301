//! Raft: the entry format (`types.rs`), the durable log (`log_store.rs`), the state machine
//! adapter (`state_machine.rs`) and the network to the other nodes (`network.rs`).

pub mod log_store;
pub mod network;
pub mod state_machine;
pub mod types;
