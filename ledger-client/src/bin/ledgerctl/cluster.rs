//! `ledgerctl cluster ...` and `ledgerctl verify`: membership and health through the admin API.

use ledger_client::proto::admin::admin_client::AdminClient;
use ledger_client::proto::admin::{
    AddLearnerRequest, ChangeMembershipRequest, InitRequest, Member, StatusRequest, StatusResponse,
    VerifyRequest,
};
use serde_json::json;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn admin(endpoint: &str) -> Result<AdminClient<ledger_client::AuthChannel>, String> {
    crate::connect::admin(endpoint).await
}

/// How long one node may take to answer `Status`: a stopped (SIGSTOP) node accepts the
/// connection and never answers, and must not hold up a status of the others.
pub const STATUS_TIMEOUT_MS: u64 = 3_000;

/// `Status` of one node, within [`STATUS_TIMEOUT_MS`].
pub async fn status_of(endpoint: &str) -> Result<StatusResponse, String> {
    let call = async {
        admin(endpoint)
            .await?
            .status(StatusRequest {})
            .await
            .map(|r| r.into_inner())
            .map_err(|s| format!("{endpoint}: {}", s.message()))
    };
    tokio::time::timeout(std::time::Duration::from_millis(STATUS_TIMEOUT_MS), call)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "{endpoint}: no answer within {STATUS_TIMEOUT_MS} ms"
            ))
        })
}

/// The leader's endpoint, as any reachable node knows it.
async fn leader_endpoint(endpoints: &[String]) -> Result<String, String> {
    crate::bench::find_leader(endpoints).await
}

fn status_json(s: &StatusResponse) -> serde_json::Value {
    json!({
        "node_id": s.node_id, "pid": s.pid, "address": s.address, "state": s.state, "term": s.current_term,
        "leader_id": s.has_leader.then_some(s.leader_id), "last_log_index": s.last_log_index,
        "committed_index": s.committed_index, "applied_index": s.applied_index,
        "snapshot_index": s.snapshot_index,
        "purged_index": s.purged_index, "healthy": s.healthy, "unhealthy_reason": s.unhealthy_reason,
        "state_digest": hex(&s.state_digest), "digest_applied_index": s.digest_applied_index,
        "audit_chain": hex(&s.audit_chain), "audit_index": s.audit_index,
    })
}

pub async fn status(endpoints: &[String], json_out: bool) -> Result<(), String> {
    let mut rows = Vec::new();
    for endpoint in endpoints {
        rows.push((endpoint.clone(), status_of(endpoint).await));
    }
    // Members the endpoint list does not name (added later) are asked too.
    let members: Vec<String> = rows
        .iter()
        .filter_map(|(_, s)| s.as_ref().ok()?.membership.clone())
        .flat_map(|m| m.voters.into_iter().chain(m.learners))
        .map(|m| crate::connect::uri(&m.address))
        .collect();
    for endpoint in members {
        let known = rows.iter().any(|(e, s)| {
            crate::connect::uri(e) == endpoint
                || s.as_ref()
                    .is_ok_and(|s| crate::connect::uri(&s.address) == endpoint)
        });
        if !known {
            let status = status_of(&endpoint).await;
            rows.push((endpoint, status));
        }
    }
    let leader_last = rows
        .iter()
        .filter_map(|(_, s)| s.as_ref().ok())
        .find(|s| s.state == "Leader")
        .map(|s| s.last_log_index);
    if json_out {
        let nodes: Vec<_> = rows
            .iter()
            .map(|(e, s)| match s {
                Ok(s) => {
                    let mut v = status_json(s);
                    v["lag"] = json!(leader_last.map(|l| l.saturating_sub(s.applied_index)));
                    v
                }
                Err(e2) => json!({"endpoint": e, "error": e2}),
            })
            .collect();
        println!("{}", json!({ "nodes": nodes }));
    } else {
        println!(
            "{:<5} {:>8} {:<22} {:<10} {:>5} {:>9} {:>9} {:>9} {:>6} {:<8}",
            "node",
            "pid",
            "address",
            "role",
            "term",
            "last_log",
            "committed",
            "applied",
            "lag",
            "healthy"
        );
        for (endpoint, s) in &rows {
            match s {
                Ok(s) => println!(
                    "{:<5} {:>8} {:<22} {:<10} {:>5} {:>9} {:>9} {:>9} {:>6} {:<8}",
                    s.node_id,
                    s.pid,
                    s.address,
                    s.state,
                    s.current_term,
                    s.last_log_index,
                    s.committed_index,
                    s.applied_index,
                    leader_last
                        .map(|l| l.saturating_sub(s.applied_index).to_string())
                        .unwrap_or_else(|| "?".into()),
                    if s.healthy {
                        "yes".to_string()
                    } else {
                        format!("no: {}", s.unhealthy_reason)
                    }
                ),
                Err(e) => println!("{:<5} {:>8} {endpoint:<22} unreachable: {e}", "?", "-"),
            }
        }
    }
    if rows.iter().all(|(_, s)| s.is_err()) {
        return Err("no node answered".into());
    }
    Ok(())
}

pub async fn members(endpoints: &[String], json_out: bool) -> Result<(), String> {
    let leader = leader_endpoint(endpoints).await?;
    let s = status_of(&leader).await?;
    let m = s.membership.unwrap_or_default();
    if json_out {
        let list = |v: &[ledger_client::proto::admin::Member]| -> Vec<serde_json::Value> {
            v.iter()
                .map(|m| {
                    json!({
                        "node_id": m.node_id,
                        "address": m.address,
                        "peer_address": m.peer_address,
                        "incarnation": format!("{:016x}", m.incarnation),
                    })
                })
                .collect()
        };
        println!(
            "{}",
            json!({"voters": list(&m.voters), "learners": list(&m.learners), "leader_id": s.leader_id})
        );
    } else {
        for (role, list) in [("voter", &m.voters), ("learner", &m.learners)] {
            for member in list {
                let leader = if member.node_id == s.leader_id {
                    " (leader)"
                } else {
                    ""
                };
                println!(
                    "{:<5} {:<8} {}{leader}",
                    member.node_id, role, member.address
                );
            }
        }
    }
    Ok(())
}

/// Parses `ID=CLIENT_HOST:PORT,PEER_HOST:PORT`.
pub fn parse_member(s: &str) -> Result<Member, String> {
    let usage = || format!("member '{s}' is not ID=CLIENT_HOST:PORT,PEER_HOST:PORT");
    let (id, addrs) = s.split_once('=').ok_or_else(usage)?;
    let (address, peer_address) = addrs.split_once(',').ok_or_else(usage)?;
    let node_id: u64 = id.parse().map_err(|_| usage())?;
    if node_id == 0 || !address.contains(':') || !peer_address.contains(':') {
        return Err(usage());
    }
    Ok(Member {
        node_id,
        address: address.to_string(),
        peer_address: peer_address.to_string(),
        incarnation: 0,
    })
}

/// Bootstraps a new cluster on the first endpoint.
pub async fn init(endpoints: &[String], members: &[String], json_out: bool) -> Result<(), String> {
    let members = members
        .iter()
        .map(|m| parse_member(m))
        .collect::<Result<Vec<_>, _>>()?;
    let endpoint = endpoints.first().ok_or("--endpoints is empty")?;
    admin(endpoint)
        .await?
        .init(InitRequest {
            members: members.clone(),
        })
        .await
        .map_err(|s| format!("{endpoint}: {}", s.message()))?;
    let ids: Vec<u64> = members.iter().map(|m| m.node_id).collect();
    if json_out {
        println!("{}", json!({"initialized": endpoint, "voters": ids}));
    } else {
        println!("cluster initialized on {endpoint} with voters {ids:?}");
    }
    Ok(())
}

pub async fn add_learner(
    endpoints: &[String],
    node_id: u64,
    address: String,
    peer_address: String,
    json_out: bool,
) -> Result<(), String> {
    let leader = leader_endpoint(endpoints).await?;
    let r = admin(&leader)
        .await?
        .add_learner(AddLearnerRequest {
            node_id,
            address,
            blocking: true,
            peer_address,
        })
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    if json_out {
        println!("{}", json!({"log_index": r.log_index}));
    } else {
        println!(
            "node {node_id} added as a learner and caught up (log index {})",
            r.log_index
        );
    }
    Ok(())
}

/// Replaces member `node_id`, whose data was lost (it runs again, empty, on its old
/// addresses): removes it from the membership, adds it again as a learner, which records its
/// new incarnation, waits until it caught up, and makes it a voter again if it was one.
pub async fn replace(endpoints: &[String], node_id: u64, json_out: bool) -> Result<(), String> {
    let leader = leader_endpoint(endpoints).await?;
    let s = status_of(&leader).await?;
    let m = s.membership.unwrap_or_default();
    let was_voter = m.voters.iter().any(|v| v.node_id == node_id);
    let member = m
        .voters
        .iter()
        .chain(m.learners.iter())
        .find(|v| v.node_id == node_id)
        .cloned()
        .ok_or_else(|| format!("node {node_id} is not a member; add it with add-learner"))?;
    let voters: Vec<u64> = m
        .voters
        .iter()
        .map(|v| v.node_id)
        .filter(|id| *id != node_id)
        .collect();
    if voters.is_empty() {
        return Err(format!(
            "node {node_id} is the only voter: restore a backup instead (docs/operations.md)"
        ));
    }
    let mut client = admin(&leader).await?;
    client
        .change_membership(ChangeMembershipRequest {
            voter_ids: voters.clone(),
            retain: false,
        })
        .await
        .map_err(|s| format!("removing node {node_id}: {}", s.message()))?;
    eprintln!("node {node_id} removed; adding it again as a learner");
    let added = client
        .add_learner(AddLearnerRequest {
            node_id,
            address: member.address.clone(),
            blocking: true,
            peer_address: member.peer_address.clone(),
        })
        .await
        .map_err(|s| format!("adding node {node_id} again: {}", s.message()))?
        .into_inner();
    let mut log_index = added.log_index;
    if was_voter {
        let mut all = voters;
        all.push(node_id);
        log_index = client
            .change_membership(ChangeMembershipRequest {
                voter_ids: all,
                retain: false,
            })
            .await
            .map_err(|s| format!("promoting node {node_id}: {}", s.message()))?
            .into_inner()
            .log_index;
    }
    if json_out {
        println!(
            "{}",
            json!({"replaced": node_id, "voter": was_voter, "log_index": log_index})
        );
    } else {
        let role = if was_voter { "a voter" } else { "a learner" };
        println!("node {node_id} replaced: caught up and {role} again (log index {log_index})");
    }
    Ok(())
}

/// Sets the voters to the current ones plus `add`, minus `remove`.
pub async fn change_voters(
    endpoints: &[String],
    add: Option<u64>,
    remove: Option<u64>,
    json_out: bool,
) -> Result<(), String> {
    let leader = leader_endpoint(endpoints).await?;
    let s = status_of(&leader).await?;
    let mut voters: Vec<u64> = s
        .membership
        .unwrap_or_default()
        .voters
        .iter()
        .map(|m| m.node_id)
        .collect();
    if let Some(id) = add {
        if !voters.contains(&id) {
            voters.push(id);
        }
    }
    if let Some(id) = remove {
        voters.retain(|v| *v != id);
    }
    let r = admin(&leader)
        .await?
        .change_membership(ChangeMembershipRequest {
            voter_ids: voters.clone(),
            retain: false,
        })
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    if json_out {
        println!("{}", json!({"voters": voters, "log_index": r.log_index}));
    } else {
        println!("voters are now {voters:?} (log index {})", r.log_index);
    }
    Ok(())
}

/// An audit head recorded earlier: `INDEX:HEX` (from `cluster status` or `verify`).
pub fn parse_anchor(s: &str) -> Result<(u64, Vec<u8>), String> {
    let (index, head) = s
        .split_once(':')
        .ok_or_else(|| format!("anchor '{s}' is not INDEX:HEAD"))?;
    let index: u64 = index
        .parse()
        .map_err(|_| format!("anchor index '{index}' is not a number"))?;
    if head.len() != 64 || !head.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("anchor head '{head}' is not 64 hex digits"));
    }
    let bytes = (0..32)
        .map(|i| u8::from_str_radix(&head[2 * i..2 * i + 2], 16).expect("hex digits"))
        .collect();
    Ok((index, bytes))
}

/// Checks on every node the invariants and the audit chain (recomputed from its audit table),
/// that the nodes' chains agree at a common index, and, with an anchor, that the chain still
/// passes through a head recorded earlier.
pub async fn verify(
    endpoints: &[String],
    anchor: Option<(u64, Vec<u8>)>,
    json_out: bool,
) -> Result<(), String> {
    // A node that cannot be reached is named with the reason, and the others are checked all
    // the same: an operator verifying during an incident needs the live nodes' answer.
    let mut unreachable: Vec<(String, String)> = Vec::new();
    let mut live = Vec::new();
    for endpoint in endpoints {
        match status_of(endpoint).await {
            Ok(s) => live.push((endpoint.clone(), s.applied_index)),
            Err(reason) => unreachable.push((endpoint.clone(), reason)),
        }
    }
    // The nodes may be at different applied indexes: compare them at the lowest.
    let common = live.iter().map(|(_, applied)| *applied).min().unwrap_or(0);
    let mut reports = Vec::new();
    for (endpoint, _) in &live {
        let call = async {
            let mut admin = admin(endpoint).await?;
            let r = admin
                .verify(VerifyRequest { at_index: common })
                .await
                .map_err(|s| s.message().to_string())?
                .into_inner();
            let anchored = match &anchor {
                Some((index, _)) => Some(
                    admin
                        .verify(VerifyRequest { at_index: *index })
                        .await
                        .map_err(|s| s.message().to_string())?
                        .into_inner(),
                ),
                None => None,
            };
            Ok::<_, String>((r, anchored))
        };
        match call.await {
            Ok((r, anchored)) => reports.push((endpoint.clone(), r, anchored)),
            Err(reason) => unreachable.push((endpoint.clone(), format!("{endpoint}: {reason}"))),
        }
    }
    if reports.is_empty() {
        let reasons: Vec<String> = unreachable.into_iter().map(|(_, r)| r).collect();
        return Err(format!("no node could be verified: {}", reasons.join("; ")));
    }
    let mut problems: Vec<String> = unreachable
        .iter()
        .map(|(_, reason)| format!("not checked: {reason}"))
        .collect();
    let mut notes: Vec<String> = Vec::new();
    for (endpoint, r, anchored) in &reports {
        for v in &r.violations {
            problems.push(format!("{endpoint}: {v}"));
        }
        if let (Some((index, head)), Some(a)) = (&anchor, anchored) {
            if a.applied_index < *index {
                notes.push(format!(
                    "{endpoint}: has not applied the anchor's index {index} yet (at {}); not checked",
                    a.applied_index
                ));
            } else if a.link_index != *index || &a.link != head {
                problems.push(format!(
                    "{endpoint}: the audit chain does not pass through the anchor at index {index} (found {} at index {})",
                    hex(&a.link),
                    a.link_index
                ));
            }
        }
    }
    for pair in reports.windows(2) {
        let ((ea, a, _), (eb, b, _)) = (&pair[0], &pair[1]);
        if a.applied_index == b.applied_index && a.state_digest != b.state_digest {
            problems.push(format!(
                "{ea} and {eb} differ at applied index {}",
                a.applied_index
            ));
        }
        if a.link_index != b.link_index || a.link != b.link {
            problems.push(format!(
                "{ea} and {eb} have different audit chains at index {common}: {} at {} and {} at {}",
                hex(&a.link),
                a.link_index,
                hex(&b.link),
                b.link_index
            ));
        }
    }
    let reports: Vec<_> = reports.into_iter().map(|(e, r, _)| (e, r)).collect();
    if json_out {
        let nodes: Vec<_> = reports
            .iter()
            .map(|(e, r)| json!({"endpoint": e, "ok": r.ok, "applied_index": r.applied_index, "state_digest": hex(&r.state_digest), "accounts": r.accounts, "transfers": r.transfers, "bets": r.bets, "audit_entries": r.audit_entries, "audit_head": hex(&r.audit_head), "compared_at": r.link_index, "link": hex(&r.link)}))
            .collect();
        println!(
            "{}",
            json!({"ok": problems.is_empty(), "nodes": nodes, "problems": problems, "notes": notes,
                "unreachable": unreachable.iter().map(|(e, reason)| json!({"endpoint": e, "reason": reason})).collect::<Vec<_>>()})
        );
    } else {
        for (e, r) in &reports {
            println!(
                "{e}: applied {} digest {} accounts {} transfers {} bets {}; audit chain of {} entries, head {}; {}",
                r.applied_index,
                hex(&r.state_digest),
                r.accounts,
                r.transfers,
                r.bets,
                r.audit_entries,
                hex(&r.audit_head),
                if r.ok { "ok" } else { "VIOLATIONS" }
            );
        }
        for note in &notes {
            println!("note: {note}");
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}
