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
                // Once an attempt may have been applied, a later refusal says nothing about
                // that attempt: another node may refuse what the first one took (a token not
                // yet rolled out to every node, a version skew). The answer stays "unknown".
                Failure::Fatal(error) if after_ambiguous => {
                    return Err(Error::OutcomeUnknown {
                        attempts,
                        elapsed: started.elapsed(),
                        last_error: format!("a retry was refused ({error}) after an earlier attempt may have been applied ({last_error})"),
                    });
                }
                Failure::Fatal(error) => return Err(error),
                Failure::NotLeader {
                    leader_address: Some(address),
                } => {
                    last_error = format!("not the leader; leader is {address}");
                    let leader = match self.follow_hint(&address) {
                        Ok(leader) => leader,
                        Err(error) if after_ambiguous => {
                            return Err(Error::OutcomeUnknown {
                                attempts,
                                elapsed: started.elapsed(),
                                last_error: format!(
                                    "{last_error}, which cannot be reached: {error}"
                                ),
                            });
                        }
                        Err(error) => return Err(error),
                    };
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
    use std::sync::atomic::AtomicU32;
    use std::time::Duration;

    fn router() -> Router {
        let mut config = ClientConfig::new(vec![
            "http://127.0.0.1:1".to_string(),
            "http://127.0.0.1:2".to_string(),
        ]);
        config.backoff_min = Duration::from_millis(1);
        config.backoff_max = Duration::from_millis(2);
        Router::new(config).expect("router")
    }

    /// Runs a call whose attempts answer `answers` in turn (the last one repeats).
    async fn call(answers: Vec<tonic::Status>) -> Result<(), Error> {
        let router = router();
        let n = AtomicU32::new(0);
        let deadline = Instant::now() + Duration::from_secs(5);
        router
            .call(deadline, Target::Leader, |_channel| {
                let i = n.fetch_add(1, Ordering::Relaxed) as usize;
                let answer = answers[i.min(answers.len() - 1)].clone();
                async move { Err::<(), _>(answer) }
            })
            .await
    }

    #[tokio::test]
    async fn a_refusal_after_an_ambiguous_attempt_is_an_unknown_outcome() {
        // Attempt 1 may have been applied (its answer was lost); the retry reaches a node that
        // refuses the token. "Nothing applied" would be a lie: the first attempt may have.
        for refusal in [
            tonic::Status::unauthenticated("LEDGER_UNAUTHENTICATED: unknown token"),
            tonic::Status::permission_denied("LEDGER_PERMISSION_DENIED: role"),
            tonic::Status::invalid_argument("LEDGER_INVALID_ARGUMENT: version skew"),
            tonic::Status::unimplemented("unknown method"),
        ] {
            let outcome = call(vec![
                tonic::Status::deadline_exceeded("LEDGER_OUTCOME_UNKNOWN: proposed"),
                refusal.clone(),
            ])
            .await;
            match outcome {
                Err(Error::OutcomeUnknown { last_error, .. }) => {
                    assert!(last_error.contains(refusal.message()), "{last_error}")
                }
                other => panic!("{refusal:?} after an ambiguous attempt gave {other:?}"),
            }
        }
        // Without an earlier ambiguous attempt, the same refusal is definite.
        let outcome = call(vec![tonic::Status::unauthenticated("unknown token")]).await;
        assert!(
            matches!(outcome, Err(Error::Unauthenticated(_))),
            "{outcome:?}"
        );
    }

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
