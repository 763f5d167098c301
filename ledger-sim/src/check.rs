//! The checks at the end of a run, once the network is healed and every node runs again:
//!
//! - **liveness**: a new transfer is acknowledged;
//! - **convergence**: every node applied the same index and holds the same state digest;
//! - **invariants**: on every node, debits equal credits, every balance is the fold of its
//!   transfers, the running digest is right (`ledger_core::check_invariants`);
//! - **no lost writes**: every acknowledged transfer is in the state, as it was sent;
//! - **no phantom writes**: every transfer in the state was sent by a client, and none that
//!   was refused for sure.

use std::collections::BTreeMap;

use ledger_core::{check_invariants, Table, Transfer, Value};
use ledger_server::node::Node;
use ledger_server::storage::engine::Incomplete;

use crate::workload::{Op, Outcome};

/// What one node holds at the end.
#[derive(Clone, Debug)]
pub struct NodeState {
    pub id: u64,
    pub applied_index: u64,
    pub digest: u128,
    pub transfers: BTreeMap<u128, Transfer>,
    pub violations: Vec<String>,
}

/// Reads node `id`'s whole state through its storage engine and checks its invariants.
pub fn read_state(id: u64, node: &Node) -> NodeState {
    let mut state = NodeState {
        id,
        applied_index: 0,
        digest: 0,
        transfers: BTreeMap::new(),
        violations: Vec::new(),
    };
    let read = node.engine.read(Incomplete::Refuse, &mut |point| {
        state.applied_index = point.applied_index;
        point.store.for_each(Table::Transfers, &mut |_, value| {
            if let Value::Transfer(t) = value {
                state.transfers.insert(t.id, *t);
            }
        });
        match check_invariants(point.store) {
            Ok(report) => state.digest = report.digest,
            Err(violations) => state.violations.extend(violations),
        }
    });
    if let Err(e) = read {
        state.violations.push(format!("state unreadable: {e}"));
    }
    state
}

/// Every anomaly in the final states and the history (empty: the run is valid).
pub fn check(states: &[NodeState], history: &[Op], probe: Option<&Transfer>) -> Vec<String> {
    let mut anomalies = Vec::new();
    for state in states {
        for v in &state.violations {
            anomalies.push(format!("invariants: node {}: {v}", state.id));
        }
    }
    let Some(first) = states.first() else {
        anomalies.push("convergence: no node to read".into());
        return anomalies;
    };
    for state in &states[1..] {
        if (state.applied_index, state.digest) != (first.applied_index, first.digest) {
            anomalies.push(format!(
                "convergence: node {} applied {} with digest {:032x}, node {} applied {} with \
                 digest {:032x}",
                first.id,
                first.applied_index,
                first.digest,
                state.id,
                state.applied_index,
                state.digest
            ));
        }
    }
    let mut sent: BTreeMap<u128, (Transfer, bool, bool)> = BTreeMap::new();
    for op in history {
        let entry = sent
            .entry(op.transfer.id)
            .or_insert((op.transfer, false, false));
        match op.outcome {
            Outcome::Acknowledged => entry.1 = true,
            Outcome::Refused(_) => entry.2 = true,
            Outcome::Unknown => {}
        }
    }
    for state in states {
        for (id, (transfer, acknowledged, refused)) in &sent {
            match state.transfers.get(id) {
                None if *acknowledged => anomalies.push(format!(
                    "lost write: node {} lacks acknowledged transfer {id:#x}",
                    state.id
                )),
                Some(_) if *refused && !*acknowledged => anomalies.push(format!(
                    "phantom write: node {} holds transfer {id:#x}, which was refused",
                    state.id
                )),
                Some(found)
                    if (
                        found.debit_account_id,
                        found.credit_account_id,
                        found.amount,
                    ) != (
                        transfer.debit_account_id,
                        transfer.credit_account_id,
                        transfer.amount,
                    ) =>
                {
                    anomalies.push(format!(
                        "altered write: node {} holds transfer {id:#x} as {found:?}, sent as \
                         {transfer:?}",
                        state.id
                    ))
                }
                _ => {}
            }
        }
        for id in state.transfers.keys() {
            if !sent.contains_key(id) && probe.map(|p| p.id) != Some(*id) {
                anomalies.push(format!(
                    "phantom write: node {} holds transfer {id:#x}, which no client sent",
                    state.id
                ));
            }
        }
    }
    anomalies
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer(id: u128, amount: u128) -> Transfer {
        Transfer {
            id,
            debit_account_id: 1,
            credit_account_id: 2,
            amount,
            ledger: 1,
            code: 1,
            ..Default::default()
        }
    }

    fn state(id: u64, transfers: &[Transfer]) -> NodeState {
        NodeState {
            id,
            applied_index: 10,
            digest: 7,
            transfers: transfers.iter().map(|t| (t.id, *t)).collect(),
            violations: Vec::new(),
        }
    }

    fn op(t: Transfer, outcome: Outcome) -> Op {
        Op {
            client: 0,
            transfer: t,
            outcome,
        }
    }

    #[test]
    fn the_checks_catch_each_anomaly_they_look_for() {
        let (a, b, c) = (transfer(1, 5), transfer(2, 6), transfer(3, 7));
        let history = vec![
            op(a, Outcome::Acknowledged),
            op(b, Outcome::Refused(u32::MAX)),
            op(c, Outcome::Unknown),
        ];
        // Valid: a held, b absent, c either way.
        assert_eq!(
            check(&[state(1, &[a, c]), state(2, &[a, c])], &history, None),
            Vec::<String>::new()
        );
        let anomalies = |states: &[NodeState]| check(states, &history, None).join("\n");
        assert!(anomalies(&[state(1, &[c])]).contains("lost write"));
        assert!(anomalies(&[state(1, &[a, b])]).contains("phantom write"));
        assert!(anomalies(&[state(1, &[a, transfer(9, 1)])]).contains("no client sent"));
        assert!(anomalies(&[state(1, &[transfer(1, 6)])]).contains("altered write"));
        let mut behind = state(2, &[a]);
        behind.applied_index = 9;
        assert!(anomalies(&[state(1, &[a]), behind]).contains("convergence"));
        let mut broken = state(1, &[a]);
        broken
            .violations
            .push("ledger 1: debits 5 != credits 4".into());
        assert!(anomalies(&[broken]).contains("invariants"));
    }
}
