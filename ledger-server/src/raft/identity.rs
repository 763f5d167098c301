//! Node identity: which copy of a node's data the cluster counts on.
//!
//! Raft's safety rests on each voter remembering what it acknowledged: its vote and its log.
//! A voter that lost its disk and starts empty has forgotten both. Were it heard as the member
//! it was, it would grant its vote to any candidate (an empty log is behind every other), and a
//! lagging candidate could win with it and truncate acknowledged entries. So each node's
//! database carries an **incarnation**: a random number drawn when the database is created
//! (`LogStore::incarnation`), kept across restarts, new after a lost disk or a restore.
//!
//! - The membership records each member's incarnation (`LedgerNode::incarnation`), read from
//!   the node itself over its peer port (`Identify`) when the cluster is initialized
//!   ([`gather`]) or the node is added as a learner (`grpc/admin_service.rs`).
//! - Every Raft call carries the sender's incarnation and the one the sender's membership
//!   records for the receiver; the receiver checks both ([`check_incarnations`]). A node whose
//!   incarnation is not the one its peers know refuses their calls, so it neither votes nor
//!   takes entries, and counts toward no quorum; its peers refuse its calls too.
//! - Such a node stays out until an operator replaces it: remove it from the membership, add
//!   it again as a learner (which records its new incarnation), promote it
//!   (docs/operations.md, "Replacing a node that lost its data"; `ledgerctl cluster replace`).
//! - Initializing refuses when any member already belongs to an initialized cluster, so a
//!   first node that lost its disk cannot found a second cluster over the first.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::raft::network::NetworkFactory;
use crate::raft::types::{LedgerNode, TypeConfig};

/// How long each `Identify` call may take.
pub const IDENTIFY_TIMEOUT_MS: u64 = 2_000;
/// How often `--init` asks again for members that did not answer.
const GATHER_RETRY_MS: u64 = 500;

/// Why a Raft call was refused for its incarnations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IncarnationRefusal {
    /// The call is meant for another incarnation of this node: this node's data is not the
    /// data its peers count on.
    #[error(
        "this node is incarnation {own:016x}, and the sender's membership records it as \
         {expected:016x}: its data was lost or replaced, so it takes no part until an operator \
         replaces it (docs/operations.md, \"Replacing a node that lost its data\")"
    )]
    NotMe { own: u64, expected: u64 },
    /// The sender is a member, but not the incarnation this node's membership records.
    #[error(
        "the sender is incarnation {presented:016x}, and this node's membership records \
         {recorded:016x}: the sender lost its data and must be replaced"
    )]
    UnknownSender { presented: u64, recorded: u64 },
}

impl IncarnationRefusal {
    /// The label of the refusal in `ledger_peer_refusals_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            IncarnationRefusal::NotMe { .. } => "wrong_incarnation",
            IncarnationRefusal::UnknownSender { .. } => "unknown_incarnation",
        }
    }
}

/// Checks a Raft call's incarnations: `own` is this node's (0: not checked, in tests of the
/// network layer), `sender` the one this node's membership records for the sender (`None`: no
/// record, as on a node not yet added; 0: not checked), `from` and `to` the call's.
pub fn check_incarnations(
    own: u64,
    sender: Option<u64>,
    from: u64,
    to: u64,
) -> Result<(), IncarnationRefusal> {
    if own != 0 && to != own {
        return Err(IncarnationRefusal::NotMe { own, expected: to });
    }
    match sender {
        Some(recorded) if recorded != 0 && recorded != from => {
            Err(IncarnationRefusal::UnknownSender {
                presented: from,
                recorded,
            })
        }
        _ => Ok(()),
    }
}

/// Why a cluster cannot be initialized with the given members.
#[derive(Debug, thiserror::Error)]
pub enum GatherError {
    /// A member did not answer (yet).
    #[error("{0}")]
    Unreachable(String),
    /// A member already belongs to an initialized cluster.
    #[error(
        "node {0} already belongs to an initialized cluster: not initializing another one over \
         it. If this node lost its data, it must be replaced, not initialized \
         (docs/operations.md, \"Replacing a node that lost its data\")"
    )]
    AlreadyInitialized(u64),
}

/// Reads the incarnation of each member from the member itself (this node's own is
/// `own_incarnation`), and returns the membership to initialize with. `members` maps each id to
/// its client and peer address.
pub async fn gather(
    network: &NetworkFactory<TypeConfig>,
    own_id: u64,
    own_incarnation: u64,
    members: &BTreeMap<u64, (String, String)>,
) -> Result<BTreeMap<u64, LedgerNode>, GatherError> {
    let timeout = Duration::from_millis(IDENTIFY_TIMEOUT_MS);
    let mut nodes = BTreeMap::new();
    for (id, (addr, peer_addr)) in members {
        let incarnation = if *id == own_id {
            own_incarnation
        } else {
            let reply = network
                .identify(*id, peer_addr, timeout)
                .await
                .map_err(GatherError::Unreachable)?;
            if reply.initialized {
                return Err(GatherError::AlreadyInitialized(*id));
            }
            reply.incarnation
        };
        nodes.insert(*id, LedgerNode::new(addr, peer_addr, incarnation));
    }
    Ok(nodes)
}

/// [`gather`], asked again until every member answers; a member that belongs to an
/// initialized cluster ends it. Logs the members still awaited every few seconds.
pub async fn gather_patiently(
    network: &NetworkFactory<TypeConfig>,
    own_id: u64,
    own_incarnation: u64,
    members: &BTreeMap<u64, (String, String)>,
) -> Result<BTreeMap<u64, LedgerNode>, GatherError> {
    let mut last_log = Instant::now();
    loop {
        match gather(network, own_id, own_incarnation, members).await {
            Err(GatherError::Unreachable(why)) => {
                if last_log.elapsed() > Duration::from_secs(5) {
                    tracing::info!(%why, "waiting for every member to answer before initializing");
                    last_log = Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(GATHER_RETRY_MS)).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_for_another_incarnation_is_refused() {
        assert_eq!(
            check_incarnations(7, None, 1, 8),
            Err(IncarnationRefusal::NotMe {
                own: 7,
                expected: 8
            })
        );
        // A call that names no incarnation (an older build, a forgery) is not for this node.
        assert!(check_incarnations(7, Some(5), 5, 0).is_err());
        assert_eq!(check_incarnations(7, Some(5), 5, 7), Ok(()));
    }

    #[test]
    fn a_member_of_another_incarnation_is_not_heard() {
        assert_eq!(
            check_incarnations(7, Some(5), 6, 7),
            Err(IncarnationRefusal::UnknownSender {
                presented: 6,
                recorded: 5
            })
        );
        // A node not yet in a membership hears whoever adds it.
        assert_eq!(check_incarnations(7, None, 6, 7), Ok(()));
    }

    #[test]
    fn nothing_is_checked_where_nothing_is_recorded() {
        assert_eq!(check_incarnations(0, Some(0), 3, 0), Ok(()));
    }
}
