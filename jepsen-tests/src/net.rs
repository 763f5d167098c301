//! The harness's network: one TCP proxy per directed node-to-node link, so that faults can be
//! injected per link without privileges.
//!
//! Node `i` is started with `--route j=<proxy i->j>` for every other node `j`, so every Raft
//! connection `i` opens to `j` goes through the proxy of that directed link. A proxy is:
//! - `Open`: bytes flow both ways;
//! - `Blocked`: a partition. Open connections are cut, and new ones are accepted and then held
//!   silent (nothing forwarded, nothing answered) until the link heals, as a real partition
//!   drops packets rather than refusing connections;
//! - `Slow`: every chunk is delayed, and some connections are dropped mid-stream;
//! - `RepliesLost`: one-way loss. What the caller sends is delivered, what the node answers is
//!   dropped (the connection stays open and silent), so a write can be applied and its answer
//!   lost.
//!
//! The clients reach the nodes through proxies too when the run asks for it (the
//! `client-partition` nemesis): one link per node, from "the clients" to that node's client
//! port, and the nodes advertise the proxy as their address, so that leader hints lead there
//! too. Otherwise clients talk to nodes directly.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What a link does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    Open,
    Blocked,
    Slow { delay_ms: u64, drop_per_mille: u32 },
    RepliesLost,
}

struct Link {
    listen: SocketAddr,
    target: Arc<Mutex<Option<SocketAddr>>>,
    /// The state and a generation that changes with it: connections opened under an older
    /// generation of a blocked or healed link are cut.
    state: watch::Sender<(LinkState, u64)>,
}

/// Every directed link between the nodes, and from the clients to each node.
pub struct Net {
    links: BTreeMap<(u64, u64), Link>,
    clients: BTreeMap<u64, Link>,
}

const CHUNK_BYTES: usize = 64 * 1024;

impl Net {
    /// Binds a proxy for every ordered pair of `nodes` on 127.0.0.1, port chosen by the OS.
    pub async fn new(nodes: &[u64]) -> std::io::Result<Net> {
        let mut links = BTreeMap::new();
        let mut clients = BTreeMap::new();
        for to in nodes {
            for from in nodes {
                if from != to {
                    links.insert((*from, *to), Link::bind().await?);
                }
            }
            clients.insert(*to, Link::bind().await?);
        }
        Ok(Net { links, clients })
    }

    /// The address clients reach node `to` at through its client proxy.
    pub fn client_addr(&self, to: u64) -> Option<SocketAddr> {
        self.clients.get(&to).map(|link| link.listen)
    }

    /// Where node `to` really serves clients (known once it started).
    pub fn set_client_target(&self, to: u64, addr: SocketAddr) {
        if let Some(link) = self.clients.get(&to) {
            *link.target.lock().expect("target lock") = Some(addr);
        }
    }

    /// Sets the link from the clients to node `to`.
    pub fn set_client(&self, to: u64, state: LinkState) {
        if let Some(link) = self.clients.get(&to) {
            link.set(state);
        }
    }

    /// The `--route` arguments node `from` is started with.
    pub fn route_args(&self, from: u64) -> Vec<String> {
        self.links
            .iter()
            .filter(|((f, _), _)| *f == from)
            .flat_map(|((_, to), link)| ["--route".to_string(), format!("{to}={}", link.listen)])
            .collect()
    }

    /// Where node `to` really listens (known once it started).
    pub fn set_target(&self, to: u64, addr: SocketAddr) {
        for ((_, t), link) in &self.links {
            if *t == to {
                *link.target.lock().expect("target lock") = Some(addr);
            }
        }
    }

    pub fn set(&self, from: u64, to: u64, state: LinkState) {
        if let Some(link) = self.links.get(&(from, to)) {
            link.set(state);
        }
    }

    /// Blocks every link between nodes of different groups (both directions).
    pub fn partition(&self, groups: &[Vec<u64>]) {
        let group_of = |n: u64| groups.iter().position(|g| g.contains(&n));
        for (from, to) in self.links.keys().copied().collect::<Vec<_>>() {
            let state = if group_of(from) == group_of(to) {
                LinkState::Open
            } else {
                LinkState::Blocked
            };
            self.set(from, to, state);
        }
    }

    /// Sets every link between nodes.
    pub fn all(&self, state: LinkState) {
        for (from, to) in self.links.keys().copied().collect::<Vec<_>>() {
            self.set(from, to, state);
        }
    }

    /// Opens every link, the clients' included.
    pub fn heal(&self) {
        self.all(LinkState::Open);
        for link in self.clients.values() {
            link.set(LinkState::Open);
        }
    }
}

impl Link {
    /// A proxy on 127.0.0.1, port chosen by the OS, with no target yet.
    async fn bind() -> std::io::Result<Link> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let listen = listener.local_addr()?;
        let target = Arc::new(Mutex::new(None));
        let (state, watcher) = watch::channel((LinkState::Open, 0));
        tokio::spawn(accept(listener, target.clone(), watcher));
        Ok(Link {
            listen,
            target,
            state,
        })
    }

    fn set(&self, state: LinkState) {
        self.state.send_modify(|(s, generation)| {
            if *s != state {
                *s = state;
                *generation += 1;
            }
        });
    }
}

async fn accept(
    listener: TcpListener,
    target: Arc<Mutex<Option<SocketAddr>>>,
    state: watch::Receiver<(LinkState, u64)>,
) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            continue;
        };
        let _ = inbound.set_nodelay(true);
        let target = *target.lock().expect("target lock");
        tokio::spawn(serve(inbound, target, state.clone()));
    }
}

/// One proxied connection: forwards until either side closes or the link changes under it.
async fn serve(
    inbound: TcpStream,
    target: Option<SocketAddr>,
    mut state: watch::Receiver<(LinkState, u64)>,
) {
    let (link, generation) = *state.borrow_and_update();
    if link == LinkState::Blocked {
        // Hold the connection silent until the link changes, then cut it.
        let _ = state.changed().await;
        return;
    }
    let Some(target) = target else {
        return;
    };
    let Ok(outbound) = TcpStream::connect(target).await else {
        return;
    };
    let _ = outbound.set_nodelay(true);
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    let forward = pump(in_read, out_write, state.clone(), generation, false);
    let backward = pump(out_read, in_write, state.clone(), generation, true);
    // Either direction ending (closed, dropped, or the link changed) cuts the whole
    // connection: both halves are dropped here.
    tokio::select! {
        _ = forward => {}
        _ = backward => {}
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut state: watch::Receiver<(LinkState, u64)>,
    generation: u64,
    answers: bool,
) {
    let mut buffer = vec![0u8; CHUNK_BYTES];
    loop {
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            _ = state.changed() => {
                if state.borrow().1 != generation {
                    return;
                }
                continue;
            }
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let (link, current) = *state.borrow();
        if current != generation {
            return;
        }
        if let LinkState::Slow {
            delay_ms,
            drop_per_mille,
        } = link
        {
            if rand::thread_rng().gen_range(0..1000) < drop_per_mille {
                return;
            }
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        }
        if answers && link == LinkState::RepliesLost {
            continue;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        counting_echo_server(Arc::default()).await
    }

    /// An echo server that counts the bytes it received.
    async fn counting_echo_server(received: Arc<std::sync::atomic::AtomicUsize>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let received = received.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                received.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
                                if s.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    fn proxy_of(net: &Net, from: u64, to: u64) -> SocketAddr {
        net.links[&(from, to)].listen
    }

    async fn round_trip(addr: SocketAddr) -> Option<Vec<u8>> {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(b"ping").await.ok()?;
        let mut buf = [0u8; 4];
        match tokio::time::timeout(Duration::from_millis(300), s.read_exact(&mut buf)).await {
            Ok(Ok(_)) => Some(buf.to_vec()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn a_blocked_link_goes_silent_and_heals_one_direction_at_a_time() {
        let net = Net::new(&[1, 2]).await.unwrap();
        let echo = echo_server().await;
        net.set_target(2, echo);
        net.set_target(1, echo);
        assert_eq!(
            round_trip(proxy_of(&net, 1, 2)).await.as_deref(),
            Some(&b"ping"[..])
        );

        net.partition(&[vec![1], vec![2]]);
        assert_eq!(round_trip(proxy_of(&net, 1, 2)).await, None);
        assert_eq!(round_trip(proxy_of(&net, 2, 1)).await, None);

        net.heal();
        net.set(2, 1, LinkState::Blocked);
        assert_eq!(
            round_trip(proxy_of(&net, 1, 2)).await.as_deref(),
            Some(&b"ping"[..])
        );
        assert_eq!(round_trip(proxy_of(&net, 2, 1)).await, None);
        assert_eq!(
            net.route_args(1),
            vec!["--route".to_string(), format!("2={}", proxy_of(&net, 1, 2))]
        );
    }

    #[tokio::test]
    async fn client_links_lose_answers_one_way_and_are_apart_from_node_links() {
        let net = Net::new(&[1, 2]).await.unwrap();
        let received = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        net.set_client_target(1, counting_echo_server(received.clone()).await);
        let client = net.client_addr(1).unwrap();
        assert_eq!(round_trip(client).await.as_deref(), Some(&b"ping"[..]));

        // A partition between the nodes leaves the clients' links alone.
        net.partition(&[vec![1], vec![2]]);
        assert_eq!(round_trip(client).await.as_deref(), Some(&b"ping"[..]));

        // Answers lost: the request arrives, nothing comes back.
        net.set_client(1, LinkState::RepliesLost);
        let before = received.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(round_trip(client).await, None);
        assert_eq!(
            received.load(std::sync::atomic::Ordering::SeqCst),
            before + 4,
            "the request was delivered"
        );

        // Cut: nothing arrives.
        net.set_client(1, LinkState::Blocked);
        assert_eq!(round_trip(client).await, None);
        assert_eq!(
            received.load(std::sync::atomic::Ordering::SeqCst),
            before + 4
        );

        net.heal();
        assert_eq!(round_trip(client).await.as_deref(), Some(&b"ping"[..]));
    }

    #[tokio::test]
    async fn blocking_cuts_connections_already_open() {
        let net = Net::new(&[1, 2]).await.unwrap();
        net.set_target(2, echo_server().await);
        let mut s = TcpStream::connect(proxy_of(&net, 1, 2)).await.unwrap();
        s.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        net.set(1, 2, LinkState::Blocked);
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut rest)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "connection not cut: {read:?}"
        );
    }
}
