//! Nemeses: faults on a seeded schedule.
//!
//! [`schedule`] turns a nemesis name, a seed and a time limit into a list of [`Step`]s, each a
//! fault held for a while after a quiet period. The schedule is a pure function of its inputs,
//! so the same seed replays the same faults; "the leader" is resolved when a step starts, since
//! which node leads depends on the run. Every start and stop is written to the history.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::cluster::TestCluster;
use crate::net::LinkState;

pub const NEMESES: &[&str] = &[
    "none",
    "kill",
    "pause",
    "partition",
    "slow",
    "membership",
    "clock",
    "crash-majority",
    "power-loss",
    "slow-disk",
    "disk-loss",
    "overlap",
    "client-partition",
    "all",
];

/// Nemeses whose faults go through test-only hooks: the nodes run with `--fault-injection`
/// (and, for `power-loss`, lose what was not fsynced when killed: `--simulate-power-loss`).
pub fn server_flags(nemesis: &str) -> &'static [&'static str] {
    match nemesis {
        "clock" | "slow-disk" | "overlap" => &["--fault-injection"],
        "power-loss" => &["--fault-injection", "--simulate-power-loss"],
        _ => &[],
    }
}

/// Which node a fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Leader,
    /// The n-th node (0-based), whatever its id.
    Node(usize),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL, restarted when the fault stops.
    Kill(Target),
    /// SIGSTOP, SIGCONT when the fault stops.
    Pause(Target),
    /// The leader alone on one side.
    IsolateLeader,
    /// A random split into a majority and a minority, the leader on the named side.
    Halves { leader_in_majority: bool },
    /// Two halves that only a bridge node joins.
    Bridge,
    /// Each node reaches only its ring neighbours (one way around the ring with 3 nodes).
    Ring,
    /// Every link slow and lossy.
    Slow { delay_ms: u64, drop_per_mille: u32 },
    /// A voter removed from the cluster, re-added when the fault stops.
    RemoveVoter(Target),
    /// A voter removed, its data wiped, and brought back empty by the replacement procedure.
    ReplaceWiped(Target),
    /// A node's wall clock shifted (an hour or a day either way, or a jump of 2 s), back when
    /// the fault stops. Needs the nodes started with `--fault-injection`.
    Clock { target: Target, offset_ms: i64 },
    /// SIGKILL a majority of the nodes at once (or all of them), restarted when it stops.
    CrashMajority { all: bool },
    /// [`Fault::CrashMajority`] on nodes that lose every write not yet fsynced when killed,
    /// as in a power failure.
    PowerLoss { all: bool },
    /// Every fsync of a node's log held back (`Admin/InjectSyncDelay`), as a failing disk does.
    SlowDisk { target: Target, delay_ms: u32 },
    /// A node's data directory lost: killed, wiped and restarted empty *as if nothing
    /// happened*. The cluster must refuse it (it is another incarnation of a voter) rather than
    /// lose data; when the fault stops, it is replaced by the documented procedure (removed,
    /// added as a learner, promoted).
    DiskLoss(Target),
    /// The links from the clients to one node (or to all, `target: None`) cut, slowed, or
    /// losing every answer while the requests still arrive.
    ClientLinks {
        target: Option<Target>,
        state: LinkState,
    },
    /// Faults of different nemeses held at the same time (a partition while one node is
    /// paused and another restarts, say), started in order and stopped in reverse.
    Overlap(Vec<Fault>),
}

impl Fault {
    pub fn name(&self) -> &'static str {
        match self {
            Fault::Kill(_) => "kill",
            Fault::Pause(_) => "pause",
            Fault::IsolateLeader | Fault::Halves { .. } | Fault::Bridge | Fault::Ring => {
                "partition"
            }
            Fault::Slow { .. } => "slow",
            Fault::RemoveVoter(_) | Fault::ReplaceWiped(_) => "membership",
            Fault::Clock { .. } => "clock",
            Fault::CrashMajority { .. } => "crash-majority",
            Fault::PowerLoss { .. } => "power-loss",
            Fault::SlowDisk { .. } => "slow-disk",
            Fault::DiskLoss(_) => "disk-loss",
            Fault::Overlap(_) => "overlap",
            Fault::ClientLinks { .. } => "client-partition",
        }
    }
}

/// One fault: it starts at `at_ms` after the run began and stops `hold_ms` later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub at_ms: u64,
    pub hold_ms: u64,
    pub fault: Fault,
}

fn target(rng: &mut StdRng, nodes: usize) -> Target {
    if rng.gen_bool(0.5) {
        Target::Leader
    } else {
        Target::Node(rng.gen_range(0..nodes))
    }
}

/// The per-direction delays of the `slow` nemesis a latency profile is built for (the servers'
/// `--latency-profile`): `lan` up to a 100 ms round trip, `regional` up to 300 ms.
pub fn slow_delays_ms(profile: &str) -> Result<(u64, u64), String> {
    match profile {
        "lan" => Ok((5, 50)),
        "regional" => Ok((50, 150)),
        other => Err(format!(
            "unknown latency profile {other:?}; lan or regional"
        )),
    }
}

fn fault_of(kind: &str, rng: &mut StdRng, nodes: usize, slow_ms: (u64, u64)) -> Fault {
    match kind {
        "kill" => Fault::Kill(target(rng, nodes)),
        "pause" => Fault::Pause(target(rng, nodes)),
        "partition" => match rng.gen_range(0..5) {
            0 => Fault::IsolateLeader,
            1 => Fault::Halves {
                leader_in_majority: true,
            },
            2 => Fault::Halves {
                leader_in_majority: false,
            },
            3 => Fault::Bridge,
            _ => Fault::Ring,
        },
        "slow" => Fault::Slow {
            delay_ms: rng.gen_range(slow_ms.0..=slow_ms.1),
            drop_per_mille: rng.gen_range(0..=30),
        },
        "clock" => Fault::Clock {
            target: if rng.gen_bool(0.5) {
                Target::Leader
            } else {
                target(rng, nodes)
            },
            offset_ms: *[
                3_600_000i64,
                -3_600_000,
                86_400_000,
                -86_400_000,
                2_000,
                -2_000,
            ]
            .choose(rng)
            .expect("non-empty"),
        },
        "crash-majority" => Fault::CrashMajority {
            all: rng.gen_bool(0.3),
        },
        "power-loss" => Fault::PowerLoss {
            all: rng.gen_bool(0.5),
        },
        "slow-disk" => Fault::SlowDisk {
            target: target(rng, nodes),
            delay_ms: rng.gen_range(50..=400),
        },
        "disk-loss" => Fault::DiskLoss(target(rng, nodes)),
        "overlap" => overlap(rng, nodes, slow_ms),
        "client-partition" => Fault::ClientLinks {
            target: if rng.gen_bool(0.2) {
                None
            } else {
                Some(target(rng, nodes))
            },
            state: match rng.gen_range(0..20) {
                0..=6 => LinkState::Blocked,
                7..=14 => LinkState::RepliesLost,
                _ => LinkState::Slow {
                    delay_ms: rng.gen_range(slow_ms.0..=slow_ms.1),
                    drop_per_mille: rng.gen_range(0..=30),
                },
            },
        },
        "membership" => {
            if rng.gen_bool(0.5) {
                Fault::RemoveVoter(target(rng, nodes))
            } else {
                Fault::ReplaceWiped(target(rng, nodes))
            }
        }
        _ => unreachable!("nemesis names are checked before scheduling"),
    }
}

/// Two or three faults of different kinds at once: at most one of the network (`partition`
/// or `slow`), and the process, clock and disk faults on distinct nodes, so that each one is
/// undone as it was done (a kill is not hidden by a pause of the same node, say).
fn overlap(rng: &mut StdRng, nodes: usize, slow_ms: (u64, u64)) -> Fault {
    let mut kinds = vec!["pause", "kill", "clock", "slow-disk"];
    kinds.shuffle(rng);
    let per_node = rng.gen_range(1..=2).min(nodes - 1);
    let mut faults = Vec::new();
    if per_node < 2 || rng.gen_bool(0.7) {
        let network = if rng.gen_bool(0.75) {
            "partition"
        } else {
            "slow"
        };
        faults.push(fault_of(network, rng, nodes, slow_ms));
    }
    let mut victims: Vec<usize> = (0..nodes).collect();
    victims.shuffle(rng);
    for (kind, victim) in kinds.into_iter().zip(victims).take(per_node) {
        faults.push(match fault_of(kind, rng, nodes, slow_ms) {
            Fault::Kill(_) => Fault::Kill(Target::Node(victim)),
            Fault::Pause(_) => Fault::Pause(Target::Node(victim)),
            Fault::Clock { offset_ms, .. } => Fault::Clock {
                target: Target::Node(victim),
                offset_ms,
            },
            Fault::SlowDisk { delay_ms, .. } => Fault::SlowDisk {
                target: Target::Node(victim),
                delay_ms,
            },
            other => other,
        });
    }
    Fault::Overlap(faults)
}

/// The faults of a run. `none` schedules nothing.
pub fn schedule(
    nemesis: &str,
    seed: u64,
    time_limit: Duration,
    nodes: usize,
    slow_ms: (u64, u64),
) -> Result<Vec<Step>, String> {
    if !NEMESES.contains(&nemesis) {
        return Err(format!(
            "unknown nemesis {nemesis:?}; one of {}",
            NEMESES.join(", ")
        ));
    }
    let mut rng = StdRng::seed_from_u64(seed ^ 0x006e_656d_6573_6973);
    let limit_ms = time_limit.as_millis() as u64;
    let mut steps = Vec::new();
    if nemesis == "none" {
        return Ok(steps);
    }
    let mut at = rng.gen_range(1_000..3_000);
    loop {
        let kind = if nemesis == "all" {
            *["kill", "pause", "partition", "slow", "membership"]
                .choose(&mut rng)
                .expect("non-empty")
        } else {
            nemesis
        };
        let fault = fault_of(kind, &mut rng, nodes, slow_ms);
        let hold = rng.gen_range(2_000..6_000);
        if at + hold > limit_ms {
            break;
        }
        steps.push(Step {
            at_ms: at,
            hold_ms: hold,
            fault,
        });
        at += hold + rng.gen_range(2_000..4_000);
    }
    Ok(steps)
}

/// What a started fault needs to be undone.
pub struct Active {
    pub fault: Fault,
    pub detail: String,
    nodes: Vec<u64>,
    /// The started parts of an [`Fault::Overlap`], in the order they started.
    parts: Vec<Active>,
}

async fn resolve(cluster: &TestCluster, target: Target) -> Result<u64, String> {
    match target {
        Target::Leader => cluster
            .await_leader(Duration::from_secs(5))
            .await
            .ok_or_else(|| "no leader to target".to_string()),
        Target::Node(n) => Ok(cluster.ids[n % cluster.ids.len()]),
    }
}

fn groups_text(groups: &[Vec<u64>]) -> String {
    groups
        .iter()
        .map(|g| format!("{g:?}"))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Starts a fault. `rng` picks among equivalent choices (which half, which bridge). The parts
/// of an overlap that cannot start (no leader to target, say) are noted and left out.
pub async fn start(
    cluster: &TestCluster,
    fault: &Fault,
    rng: &mut StdRng,
) -> Result<Active, String> {
    let Fault::Overlap(faults) = fault else {
        return start_one(cluster, fault, rng).await;
    };
    let mut parts = Vec::new();
    let mut details = Vec::new();
    for part in faults {
        match start_one(cluster, part, rng).await {
            Ok(active) => {
                details.push(format!("{}: {}", part.name(), active.detail));
                parts.push(active);
            }
            Err(e) => details.push(format!("{} not started: {e}", part.name())),
        }
    }
    if parts.is_empty() {
        return Err(details.join("; "));
    }
    Ok(Active {
        fault: fault.clone(),
        detail: details.join(" + "),
        nodes: vec![],
        parts,
    })
}

async fn start_one(
    cluster: &TestCluster,
    fault: &Fault,
    rng: &mut StdRng,
) -> Result<Active, String> {
    let ids = cluster.ids.clone();
    let (detail, nodes) = match fault {
        Fault::Kill(t) => {
            let id = resolve(cluster, *t).await?;
            cluster.kill(id).await?;
            (format!("SIGKILL node {id}"), vec![id])
        }
        Fault::Pause(t) => {
            let id = resolve(cluster, *t).await?;
            cluster.signal(id, "STOP").await?;
            (format!("SIGSTOP node {id}"), vec![id])
        }
        Fault::IsolateLeader => {
            let leader = resolve(cluster, Target::Leader).await?;
            let rest: Vec<u64> = ids.iter().copied().filter(|i| *i != leader).collect();
            let groups = vec![vec![leader], rest];
            cluster.net.partition(&groups);
            (groups_text(&groups), vec![])
        }
        Fault::Halves { leader_in_majority } => {
            let leader = resolve(cluster, Target::Leader).await?;
            let mut others: Vec<u64> = ids.iter().copied().filter(|i| *i != leader).collect();
            others.shuffle(rng);
            let majority_size = ids.len() / 2 + 1;
            let (mut majority, mut minority) = if *leader_in_majority {
                let mut m = vec![leader];
                m.extend(others.iter().take(majority_size - 1));
                let rest = others[majority_size - 1..].to_vec();
                (m, rest)
            } else {
                let mut m = vec![leader];
                m.extend(others.iter().take(ids.len() - majority_size - 1));
                let rest = others[ids.len() - majority_size - 1..].to_vec();
                (rest, m)
            };
            majority.sort_unstable();
            minority.sort_unstable();
            let groups = vec![majority, minority];
            cluster.net.partition(&groups);
            (groups_text(&groups), vec![])
        }
        Fault::Bridge => {
            let mut shuffled = ids.clone();
            shuffled.shuffle(rng);
            let bridge = shuffled[0];
            let half = (ids.len() - 1) / 2;
            let left: Vec<u64> = shuffled[1..=half].to_vec();
            let right: Vec<u64> = shuffled[half + 1..].to_vec();
            cluster.net.heal();
            for a in &left {
                for b in &right {
                    cluster.net.set(*a, *b, LinkState::Blocked);
                    cluster.net.set(*b, *a, LinkState::Blocked);
                }
            }
            (format!("{left:?} <-> {bridge} <-> {right:?}"), vec![])
        }
        Fault::Ring => {
            let mut ring = ids.clone();
            ring.shuffle(rng);
            let n = ring.len();
            cluster.net.heal();
            if n <= 3 {
                // Everyone neighbours everyone: cut one direction around the ring instead.
                for i in 0..n {
                    cluster
                        .net
                        .set(ring[i], ring[(i + 1) % n], LinkState::Blocked);
                }
            } else {
                for i in 0..n {
                    for j in 0..n {
                        let distance = (i + n - j) % n;
                        if i != j && distance != 1 && distance != n - 1 {
                            cluster.net.set(ring[i], ring[j], LinkState::Blocked);
                        }
                    }
                }
            }
            (format!("ring {ring:?}"), vec![])
        }
        Fault::Slow {
            delay_ms,
            drop_per_mille,
        } => {
            cluster.net.all(LinkState::Slow {
                delay_ms: *delay_ms,
                drop_per_mille: *drop_per_mille,
            });
            (
                format!("every link +{delay_ms} ms, {drop_per_mille}/1000 dropped"),
                vec![],
            )
        }
        Fault::Clock { target, offset_ms } => {
            let id = resolve(cluster, *target).await?;
            cluster.set_clock(id, *offset_ms).await?;
            (format!("node {id} clock {offset_ms:+} ms"), vec![id])
        }
        Fault::CrashMajority { all } | Fault::PowerLoss { all } => {
            let mut victims = ids.clone();
            victims.shuffle(rng);
            if !*all {
                victims.truncate(ids.len() / 2 + 1);
            }
            victims.sort_unstable();
            for id in &victims {
                cluster.kill(*id).await?;
            }
            (format!("SIGKILL nodes {victims:?} at once"), victims)
        }
        Fault::SlowDisk { target, delay_ms } => {
            let id = resolve(cluster, *target).await?;
            cluster.set_sync_delay(id, *delay_ms).await?;
            (format!("node {id} fsyncs +{delay_ms} ms"), vec![id])
        }
        Fault::DiskLoss(t) => {
            let id = resolve(cluster, *t).await?;
            cluster.wipe_and_restart(id).await?;
            (
                format!("node {id} wiped and restarted empty, not replaced"),
                vec![id],
            )
        }
        Fault::ClientLinks { target, state } => {
            let victims = match target {
                Some(t) => vec![resolve(cluster, *t).await?],
                None => ids.clone(),
            };
            for id in &victims {
                cluster.net.set_client(*id, *state);
            }
            let what = match state {
                LinkState::Blocked => "cut".to_string(),
                LinkState::RepliesLost => "answers lost".to_string(),
                LinkState::Slow {
                    delay_ms,
                    drop_per_mille,
                } => format!("+{delay_ms} ms, {drop_per_mille}/1000 dropped"),
                LinkState::Open => "open".to_string(),
            };
            (format!("clients to nodes {victims:?}: {what}"), victims)
        }
        Fault::Overlap(_) => return Err("an overlap within an overlap".into()),
        Fault::RemoveVoter(t) | Fault::ReplaceWiped(t) => {
            let id = resolve(cluster, *t).await?;
            let voters = cluster.voters().await?;
            let remaining: Vec<u64> = voters.iter().copied().filter(|v| *v != id).collect();
            if remaining.len() < 2 || !voters.contains(&id) {
                (format!("skipped: node {id} cannot be removed now"), vec![])
            } else {
                cluster.set_voters(remaining).await?;
                if matches!(fault, Fault::ReplaceWiped(_)) {
                    cluster.wipe_and_restart(id).await?;
                    (
                        format!("node {id} removed, wiped, restarted empty"),
                        vec![id],
                    )
                } else {
                    (format!("node {id} removed"), vec![id])
                }
            }
        }
    };
    Ok(Active {
        fault: fault.clone(),
        detail,
        nodes,
        parts: vec![],
    })
}

/// Undoes a fault (the parts of an overlap in reverse order, each tried even if one fails).
pub async fn stop(cluster: &TestCluster, active: &Active) -> Result<(), String> {
    if !matches!(active.fault, Fault::Overlap(_)) {
        return stop_one(cluster, active).await;
    }
    let mut errors = Vec::new();
    for part in active.parts.iter().rev() {
        if let Err(e) = stop_one(cluster, part).await {
            errors.push(format!("{}: {e}", part.fault.name()));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

async fn stop_one(cluster: &TestCluster, active: &Active) -> Result<(), String> {
    match &active.fault {
        Fault::Kill(_) => {
            for id in &active.nodes {
                cluster.restart(*id).await?;
            }
        }
        Fault::Pause(_) => {
            for id in &active.nodes {
                cluster.signal(*id, "CONT").await?;
            }
        }
        Fault::IsolateLeader
        | Fault::Halves { .. }
        | Fault::Bridge
        | Fault::Ring
        | Fault::Slow { .. } => cluster.net.heal(),
        Fault::RemoveVoter(_) | Fault::ReplaceWiped(_) => {
            for id in &active.nodes {
                cluster.add_voter(*id).await?;
            }
        }
        Fault::Clock { .. } => {
            for id in &active.nodes {
                cluster.set_clock(*id, 0).await?;
            }
        }
        Fault::CrashMajority { .. } | Fault::PowerLoss { .. } => {
            for id in &active.nodes {
                cluster.restart(*id).await?;
            }
        }
        Fault::SlowDisk { .. } => {
            for id in &active.nodes {
                cluster.set_sync_delay(*id, 0).await?;
            }
        }
        Fault::DiskLoss(_) => {
            for id in &active.nodes {
                cluster.replace(*id).await?;
            }
        }
        Fault::ClientLinks { .. } => {
            for id in &active.nodes {
                cluster.net.set_client(*id, LinkState::Open);
            }
        }
        Fault::Overlap(_) => return Err("an overlap within an overlap".into()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAN: (u64, u64) = (5, 50);

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_another_seed_another() {
        let limit = Duration::from_secs(120);
        let a = schedule("all", 7, limit, 3, LAN).unwrap();
        assert_eq!(a, schedule("all", 7, limit, 3, LAN).unwrap());
        assert_ne!(a, schedule("all", 8, limit, 3, LAN).unwrap());
        assert!(a.len() >= 8, "{a:?}");
        for pair in a.windows(2) {
            assert!(
                pair[0].at_ms + pair[0].hold_ms < pair[1].at_ms,
                "faults overlap"
            );
        }
        assert!(a.iter().all(|s| s.at_ms + s.hold_ms <= 120_000));
        let kinds: std::collections::BTreeSet<&str> = a.iter().map(|s| s.fault.name()).collect();
        assert!(kinds.len() >= 3, "all mixes kinds: {kinds:?}");
    }

    #[test]
    fn an_overlap_holds_two_or_three_faults_of_different_kinds_on_distinct_nodes() {
        let mut kinds_seen = std::collections::BTreeSet::new();
        for seed in 0..50 {
            for step in schedule("overlap", seed, Duration::from_secs(60), 3, LAN).unwrap() {
                let Fault::Overlap(parts) = &step.fault else {
                    panic!("{step:?}");
                };
                assert!((2..=3).contains(&parts.len()), "{parts:?}");
                let names: std::collections::BTreeSet<&str> =
                    parts.iter().map(Fault::name).collect();
                assert_eq!(names.len(), parts.len(), "kinds repeat: {parts:?}");
                let network = parts
                    .iter()
                    .filter(|p| matches!(p.name(), "partition" | "slow"))
                    .count();
                assert!(network <= 1, "{parts:?}");
                let nodes: Vec<Target> = parts
                    .iter()
                    .filter_map(|p| match p {
                        Fault::Kill(t) | Fault::Pause(t) => Some(*t),
                        Fault::Clock { target, .. } | Fault::SlowDisk { target, .. } => {
                            Some(*target)
                        }
                        _ => None,
                    })
                    .collect();
                assert!(
                    nodes.iter().all(|t| matches!(t, Target::Node(_))),
                    "{parts:?}"
                );
                let distinct: std::collections::BTreeSet<String> =
                    nodes.iter().map(|t| format!("{t:?}")).collect();
                assert_eq!(distinct.len(), nodes.len(), "a node hit twice: {parts:?}");
                kinds_seen.extend(names);
            }
        }
        assert_eq!(
            kinds_seen.into_iter().collect::<Vec<_>>(),
            ["clock", "kill", "partition", "pause", "slow", "slow-disk"],
        );
    }

    #[test]
    fn each_nemesis_schedules_only_its_faults_and_none_schedules_nothing() {
        let limit = Duration::from_secs(30);
        assert!(schedule("none", 1, limit, 3, LAN).unwrap().is_empty());
        for &name in NEMESES.iter().filter(|n| !matches!(**n, "none" | "all")) {
            let steps = schedule(name, 1, limit, 3, LAN).unwrap();
            assert!(!steps.is_empty(), "{name}");
            assert!(
                steps.iter().all(|s| s.fault.name() == name),
                "{name}: {steps:?}"
            );
        }
        assert!(schedule("chaos", 1, limit, 3, LAN).is_err());
    }
}
