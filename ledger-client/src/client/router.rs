//! Where a request goes and what happens when it fails: the endpoint list, the cached leader,
//! `NotLeader` hints, and retries with exponential backoff and jitter under a deadline.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLock;
use std::time::Instant;

use rand::Rng;

use super::credentials::AuthChannel;
use super::error::{classify, Error, Failure};
use super::ClientConfig;

/// Which node may answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// Writes and linearizable reads: the leader.
    Leader,
    /// Stale reads: any node; the leader when known, so answers stay fresh in practice.
    Any,
}

struct Node {
    /// `http(s)://host:port`, as configured or as learned from a leader hint.
    uri: String,
    channel: AuthChannel,
}

pub(crate) struct Router {
    nodes: RwLock<Vec<Node>>,
    /// Index of the cached leader plus one; 0 when unknown.
    leader: AtomicUsize,
    /// Round-robin cursor for when the leader is unknown.
    cursor: AtomicUsize,
    config: ClientConfig,
}

/// `host:port` of a URI or address, for comparing configured endpoints with leader hints.
fn authority(uri: &str) -> &str {
    let rest = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    rest.trim_end_matches('/')
}

impl Router {
    pub fn new(config: ClientConfig) -> Result<Self, Error> {
        if config.endpoints.is_empty() {
            return Err(Error::Config("no endpoints".into()));
        }
        let mut nodes = Vec::with_capacity(config.endpoints.len());
        for endpoint in &config.endpoints {
            nodes.push(Self::node(&config, endpoint)?);
        }
        Ok(Router {
            nodes: RwLock::new(nodes),
            leader: AtomicUsize::new(0),
            cursor: AtomicUsize::new(0),
            config,
        })
    }

    fn node(config: &ClientConfig, endpoint: &str) -> Result<Node, Error> {
        let uri = config.credentials.uri(endpoint);
        let channel = config
            .credentials
            .lazy_channel(endpoint, config.connect_timeout)?;
        Ok(Node { uri, channel })
    }

    /// The endpoints known now: the configured ones and any learned from leader hints.
    pub fn endpoints(&self) -> Vec<String> {
        let nodes = self.nodes.read().expect("router lock");
        nodes.iter().map(|n| n.uri.clone()).collect()
    }

    /// The cached leader's endpoint, if any.
    pub fn leader(&self) -> Option<String> {
        let index = self.leader.load(Ordering::Relaxed).checked_sub(1)?;
        let nodes = self.nodes.read().expect("router lock");
        nodes.get(index).map(|n| n.uri.clone())
    }

    fn pick(&self) -> (usize, AuthChannel) {
        let nodes = self.nodes.read().expect("router lock");
        let index = match self.leader.load(Ordering::Relaxed).checked_sub(1) {
            Some(leader) if leader < nodes.len() => leader,
            _ => self.cursor.load(Ordering::Relaxed) % nodes.len(),
        };
        (index, nodes[index].channel.clone())
    }

    /// Forgets `index` as the leader and moves the cursor past it.
    fn move_on(&self, index: usize) {
        let _ = self
            .leader
            .compare_exchange(index + 1, 0, Ordering::Relaxed, Ordering::Relaxed);
        let _ = self.cursor.compare_exchange(
            index,
            index.wrapping_add(1),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Caches the node at `address` as the leader, adding it when it is not configured.
    fn follow_hint(&self, address: &str) -> Result<usize, Error> {
        {
            let nodes = self.nodes.read().expect("router lock");
            if let Some(index) = nodes.iter().position(|n| authority(&n.uri) == address) {
                self.leader.store(index + 1, Ordering::Relaxed);
                return Ok(index);
            }
        }
        let node = Self::node(&self.config, address)?;
        let mut nodes = self.nodes.write().expect("router lock");
        nodes.push(node);
        let index = nodes.len() - 1;
        self.leader.store(index + 1, Ordering::Relaxed);
        Ok(index)
    }

    /// Runs `attempt` against the leader (or any node) until it succeeds, fails in a way
    /// retrying cannot fix, or `deadline` passes.
    pub async fn call<T, F, Fut>(
        &self,
        deadline: Instant,
        target: Target,
        mut attempt: F,
    ) -> Result<T, Error>
    where
        F: FnMut(AuthChannel) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let started = Instant::now();
        let mut attempts = 0u32;
        let mut after_ambiguous = false;
        let mut last_error = String::from("deadline passed before the first attempt");
        let mut backoff = self.config.backoff_min;
        let mut followed_hint = false;
        loop {
            let now = Instant::now();
            let Some(remaining) = deadline
                .checked_duration_since(now)
                .filter(|d| !d.is_zero())
            else {
                let elapsed = started.elapsed();
                return Err(if after_ambiguous {
                    Error::OutcomeUnknown {
                        attempts,
                        elapsed,
                        last_error,
                    }
                } else {
                    Error::Unavailable {
                        attempts,
                        elapsed,
                        last_error,
                    }
                });
            };
            let (index, channel) = self.pick();
            attempts += 1;
            let budget = remaining.min(self.config.attempt_timeout);
            let failure = match tokio::time::timeout(budget, attempt(channel)).await {
                Ok(Ok(value)) => {
                    if target == Target::Leader {
                        self.leader.store(index + 1, Ordering::Relaxed);
                    }
                    return Ok(value);
                }
                Ok(Err(status)) => classify(&status),
                Err(_) => Failure::Ambiguous(format!("no answer within {budget:?}")),
            };
            match failure {
                Failure::Fatal(error) => return Err(error),
                Failure::NotLeader {
                    leader_address: Some(address),
                } => {
                    last_error = format!("not the leader; leader is {address}");
                    let leader = self.follow_hint(&address)?;
                    // Follow a fresh hint at once; a hint pointing back at the same node (or a
                    // second hint in a row) means leadership is moving: pause first.
                    if leader != index && !followed_hint {
                        followed_hint = true;
                        continue;
                    }
                }
                Failure::NotLeader {
                    leader_address: None,
                } => {
                    last_error = "no leader known (election under way)".into();
                    self.move_on(index);
                }
                Failure::Refused(message) => {
                    last_error = message;
                    self.move_on(index);
                }
                Failure::Ambiguous(message) => {
                    after_ambiguous = true;
                    last_error = message;
                    self.move_on(index);
                }
            }
            followed_hint = false;
            let pause = rand::thread_rng().gen_range(backoff / 2..=backoff);
            let remaining = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(pause.min(remaining)).await;
            backoff = (backoff * 2).min(self.config.backoff_max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_strips_scheme_and_slash() {
        assert_eq!(authority("http://127.0.0.1:7000/"), "127.0.0.1:7000");
        assert_eq!(authority("127.0.0.1:7000"), "127.0.0.1:7000");
        assert_eq!(
            authority("https://ledger-0.ledger:7000"),
            "ledger-0.ledger:7000"
        );
    }
}
