//! `ledgerctl`: the operator and developer CLI of Ledger.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ledger_client::local_cluster::{LocalCluster, NodeOptions};
use ledger_client::LedgerClient;
use ledger_core::{
    Account, AccountFilter, BetActionKind, NewBet, NewMarket, Transfer, TransferFlags,
};

mod backup;
mod bench;
mod cluster;
mod connect;
mod credentials;
mod failover;
mod ledger;
mod overload;

/// How long `local up` waits for every node to be ready.
const LOCAL_UP_READY_TIMEOUT_MS: u64 = 30_000;

#[derive(Parser)]
#[command(
    name = "ledgerctl",
    version,
    about = "Operate and use a Ledger cluster"
)]
struct Cli {
    /// gRPC endpoints of the cluster's nodes, comma-separated.
    #[arg(
        long,
        env = "LEDGER_ENDPOINTS",
        default_value = "http://127.0.0.1:7000",
        global = true
    )]
    endpoints: String,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    json: bool,
    /// The cluster CA certificate (PEM): connect over TLS and trust the nodes it signed.
    #[arg(long, env = "LEDGER_TLS_CA", global = true)]
    tls_ca: Option<PathBuf>,
    /// Token sent with every call. Prefer the environment variable: a command line is
    /// visible to other users of the machine.
    #[arg(long, env = "LEDGER_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// How long one call may take, retries included (`500ms`, `3s`, `1m`; default 30s). A
    /// write whose deadline passes after it may have been sent ends "outcome unknown".
    #[arg(long, env = "LEDGER_TIMEOUT", global = true, value_parser = parse_duration)]
    timeout: Option<std::time::Duration>,
    /// How long to wait for a connection to a node (default 2s).
    #[arg(long, env = "LEDGER_CONNECT_TIMEOUT", global = true, value_parser = parse_duration)]
    connect_timeout: Option<std::time::Duration>,
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Load test: transfers between random accounts from C concurrent connections for S
    /// seconds; reports transfers/s and latency percentiles (docs/benchmarks.md).
    Bench {
        /// How many accounts the transfers pick from (created and funded first).
        #[arg(long, default_value_t = 10_000)]
        accounts: u64,
        /// Concurrent connections, each sending one request at a time.
        #[arg(long, default_value_t = 16)]
        clients: u64,
        /// Length of the measured window.
        #[arg(long, default_value_t = 15)]
        seconds: u64,
        /// Transfers per request.
        #[arg(long, default_value_t = 1)]
        batch: u64,
        /// Seed of the random account pairs and amounts (the same seed sends the same
        /// transfers).
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// The accounts exist from an earlier run with the same --accounts: skip creating and
        /// funding them.
        #[arg(long)]
        no_setup: bool,
        /// Open loop: send this many requests per second over --clients connections,
        /// whatever the answers, and report shedding (0: closed loop).
        #[arg(long, default_value_t = 0)]
        rate: u64,
    },
    /// Cluster membership and status.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommands,
    },
    /// Check the ledger invariants and the audit chain on every node, and that replicas agree.
    Verify {
        /// INDEX:HEAD, an audit head recorded earlier (`cluster status`): the chain must still
        /// pass through it.
        #[arg(long)]
        anchor: Option<String>,
    },
    /// Take a consistent online backup of the leader's state into FILE.
    Backup {
        /// The backup file to write (never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// Create, read and list accounts.
    Account {
        #[command(subcommand)]
        command: AccountCommands,
    },
    /// Create transfers (plain, pending, post, void, linked batches from a file) and read them.
    Transfer {
        #[command(subcommand)]
        command: TransferCommands,
    },
    /// The transfers of an account (or its balance after each, with --balances).
    History(HistoryArgs),
    /// Create, read and settle markets.
    Market {
        #[command(subcommand)]
        command: MarketCommands,
    },
    /// Place, read, void and cash out bets.
    Bet {
        #[command(subcommand)]
        command: BetCommands,
    },
    /// Make a development CA and node certificates in DIR (docs/security.md).
    Certs {
        /// Folder for ca.pem, ca-key.pem and node-N.pem / node-N-key.pem.
        #[arg(long)]
        out: PathBuf,
        /// How many node certificates (node-1 ... node-N).
        #[arg(long, default_value_t = 3)]
        nodes: u64,
        /// More names (DNS or IP) the node certificates are valid for, besides localhost and
        /// 127.0.0.1.
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
    /// Write a random peer secret to FILE (mode 0600), for --peer-secret-file on every node
    /// of a cluster that runs without TLS (docs/security.md).
    PeerSecret {
        /// Where to write it; an existing file is never overwritten.
        #[arg(long)]
        out: PathBuf,
    },
    /// Make an access token with a role, add it to the server's auth file, print it once.
    Token {
        /// A name for the token's holder, shown in the auth file and the server's logs.
        #[arg(long)]
        name: String,
        /// read, write or admin.
        #[arg(long)]
        role: String,
        /// The server's auth file (created if missing).
        #[arg(long)]
        auth_file: PathBuf,
        /// The token expires after this many days (default: never). Nodes refuse an expired
        /// token with UNAUTHENTICATED.
        #[arg(long)]
        valid_days: Option<u64>,
    },
    /// A local cluster of ledger-server processes for development.
    Local {
        #[command(subcommand)]
        command: LocalCommands,
    },
    /// Print a shell completion script: `ledgerctl completions bash > /etc/bash_completion.d/ledgerctl`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum ClusterCommands {
    /// Every node: id, address, role, term, last log, applied, lag, health.
    Status,
    /// Voters and learners.
    Members,
    /// Bootstrap a new cluster once, on the one node named by --endpoints, with these voters
    /// (every node started without --init); refused by a node that is initialized already.
    Init {
        /// A voter: ID=CLIENT_HOST:PORT,PEER_HOST:PORT (its client and peer ports). Repeat
        /// for each.
        #[arg(long = "member", required = true)]
        members: Vec<String>,
    },
    /// Add a node (started empty, without --init) as a learner and wait until it caught up.
    AddLearner {
        /// The new node's id (its --node-id).
        #[arg(long)]
        node_id: u64,
        /// HOST:PORT of its client port (--advertise-addr).
        #[arg(long)]
        address: String,
        /// HOST:PORT of its peer port (--advertise-peer-addr).
        #[arg(long)]
        peer_address: String,
    },
    /// Make a learner a voter.
    Promote {
        /// The learner's node id.
        #[arg(long)]
        node_id: u64,
    },
    /// Remove a node from the voters (do this before wiping its data).
    Remove {
        /// The member's node id.
        #[arg(long)]
        node_id: u64,
    },
    /// Replace a member whose data was lost, now running again empty on its old addresses:
    /// remove it, add it as a learner (recording its new incarnation), wait until it caught
    /// up, and make it a voter again if it was one.
    Replace {
        /// The member's node id.
        #[arg(long)]
        node_id: u64,
    },
}

#[derive(Subcommand)]
enum AccountCommands {
    /// Create one account.
    Create {
        /// The account's id: unique, not 0 and not 2^128-1 (the idempotency key).
        #[arg(long)]
        id: u128,
        /// The ledger (currency or asset) it belongs to; transfers stay within one ledger.
        #[arg(long)]
        ledger: u32,
        /// The application's account type, 1 or more.
        #[arg(long)]
        code: u16,
        /// Comma-separated: linked, debits_must_not_exceed_credits,
        /// credits_must_not_exceed_debits, history, closed.
        #[arg(long, default_value = "")]
        flags: String,
        /// Application data, stored as given (for example a player id).
        #[arg(long, default_value_t = 0)]
        user_data_128: u128,
        /// Application data, stored as given.
        #[arg(long, default_value_t = 0)]
        user_data_64: u64,
        /// Application data, stored as given.
        #[arg(long, default_value_t = 0)]
        user_data_32: u32,
    },
    /// Look accounts up by id.
    Get {
        /// One or more account ids.
        #[arg(required = true)]
        ids: Vec<u128>,
    },
    /// Accounts in id order, a page at a time.
    List {
        /// Start after this id.
        #[arg(long, default_value_t = 0)]
        after: u128,
        /// At most this many accounts.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

#[derive(Subcommand)]
enum TransferCommands {
    /// Create one transfer from flags, or every transfer of a JSON-lines file (--file) in one
    /// batch, so linked chains apply atomically.
    Create {
        /// JSON lines, one transfer per line: {"id": 1, "debit_account_id": 2, ...,
        /// "flags": ["linked"]}; 128-bit numbers may be strings.
        #[arg(long, conflicts_with_all = ["id", "debit", "credit"])]
        file: Option<PathBuf>,
        /// The transfer's id: unique, not 0 (the idempotency key: the same id again is
        /// `exists`, never a second transfer).
        #[arg(long, required_unless_present = "file")]
        id: Option<u128>,
        /// The account debited.
        #[arg(long, required_unless_present = "file")]
        debit: Option<u128>,
        /// The account credited.
        #[arg(long, required_unless_present = "file")]
        credit: Option<u128>,
        /// A whole number of the ledger's smallest unit (for example cents).
        #[arg(long, required_unless_present = "file", allow_hyphen_values = true,
              value_parser = parse_amount)]
        amount: Option<u128>,
        /// The ledger of both accounts.
        #[arg(long, default_value_t = 1)]
        ledger: u32,
        /// The application's transfer type, 1 or more.
        #[arg(long, default_value_t = 1)]
        code: u16,
        /// Reserve the amount; post or void it later. With --expires-after, it expires.
        #[arg(long)]
        pending: bool,
        /// Seconds until a pending transfer expires (0: never): its `timeout` field.
        #[arg(id = "expires_after", long = "expires-after", default_value_t = 0)]
        timeout: u32,
        /// More flags by name: linked, balancing_debit, balancing_credit, closing_debit,
        /// closing_credit.
        #[arg(long, default_value = "")]
        flags: String,
        /// Application data, stored as given (for example an order id).
        #[arg(long, default_value_t = 0)]
        user_data_128: u128,
    },
    /// Post a pending transfer (all of it, or --amount).
    Post {
        /// The posting transfer's own id (its idempotency key).
        #[arg(long)]
        id: u128,
        /// The pending transfer to post.
        #[arg(long)]
        pending_id: u128,
        /// Post only this much of the pending amount; the rest goes back (default: all).
        #[arg(long, allow_hyphen_values = true, value_parser = parse_amount)]
        amount: Option<u128>,
    },
    /// Void a pending transfer.
    Void {
        /// The voiding transfer's own id (its idempotency key).
        #[arg(long)]
        id: u128,
        /// The pending transfer to void.
        #[arg(long)]
        pending_id: u128,
    },
    /// Look transfers up by id.
    Get {
        /// One or more transfer ids.
        #[arg(required = true)]
        ids: Vec<u128>,
    },
    /// Where a pending transfer stands: pending, posted, voided or expired.
    Pending {
        /// The pending transfer's id.
        id: u128,
    },
}

#[derive(Args)]
struct HistoryArgs {
    /// The account's id.
    account: u128,
    /// Newest first.
    #[arg(long)]
    reverse: bool,
    /// Only transfers debiting the account.
    #[arg(long)]
    debits: bool,
    /// Only transfers crediting the account.
    #[arg(long)]
    credits: bool,
    /// Only transfers with this code.
    #[arg(long, default_value_t = 0)]
    code: u16,
    /// Only from this cluster timestamp (ns since the epoch), inclusive.
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// Only up to this cluster timestamp (ns since the epoch), inclusive (0: no bound).
    #[arg(long, default_value_t = 0)]
    to: u64,
    /// At most this many rows.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// The account's balances after each transfer (the account needs the history flag).
    #[arg(long)]
    balances: bool,
}

#[derive(Subcommand)]
enum MarketCommands {
    /// Create a market whose bets the house account backs, up to a liability limit.
    Create {
        /// The market's id (its idempotency key).
        #[arg(long)]
        id: u128,
        /// The house account that backs its bets and pays the winners.
        #[arg(long)]
        house: u128,
        /// The most the house may lose on this market, over all open bets; a bet beyond it
        /// is refused.
        #[arg(long, allow_hyphen_values = true, value_parser = parse_amount)]
        liability_limit: u128,
        /// Application data, stored as given (for example an event id).
        #[arg(long, default_value_t = 0)]
        user_data_128: u128,
    },
    /// Look markets up by id.
    Get {
        /// One or more market ids.
        #[arg(required = true)]
        ids: Vec<u128>,
    },
    /// The bets of a market, in placement order.
    Bets {
        /// The market's id.
        market: u128,
        /// At most this many bets (0: all).
        #[arg(long, default_value_t = 0)]
        limit: u32,
    },
    /// Settle a market: pay the winners, void the void selections, the rest lose.
    Settle(SettleArgs),
    /// Correct a settled market with compensating transfers.
    Resettle(SettleArgs),
}

#[derive(Args)]
#[command(group(
    clap::ArgGroup::new("outcome")
        .required(true)
        .multiple(true)
        .args(["winners", "no_winners", "void_market"])
))]
struct SettleArgs {
    /// The settlement's id (idempotency key).
    #[arg(long)]
    id: u128,
    /// The market to settle.
    #[arg(long)]
    market: u128,
    /// Winning selection ids, comma-separated. One of --winners, --no-winners and
    /// --void-market is required.
    #[arg(long, value_delimiter = ',')]
    winners: Vec<u64>,
    /// No selection won: every bet not voided by --voids loses.
    #[arg(long, conflicts_with = "winners")]
    no_winners: bool,
    /// Void selection ids (stakes returned), comma-separated.
    #[arg(long, value_delimiter = ',')]
    voids: Vec<u64>,
    /// Void every bet of the market.
    #[arg(long)]
    void_market: bool,
}

#[derive(Subcommand)]
enum BetCommands {
    /// Place a bet: the stake is held from the player until settlement.
    Place {
        /// The bet's id (its idempotency key).
        #[arg(long)]
        id: u128,
        /// The player's account: the stake is held from it.
        #[arg(long)]
        player: u128,
        /// The market the bet is on.
        #[arg(long)]
        market: u128,
        /// The selection backed (an application's id, for example a runner).
        #[arg(long)]
        selection: u64,
        /// The stake, in the ledger's smallest unit.
        #[arg(long, allow_hyphen_values = true, value_parser = parse_amount)]
        stake: u128,
        /// Decimal odds, at most 4 decimals (2.5 pays 2.5 times the stake).
        #[arg(long)]
        odds: String,
        /// The application's bet type, 1 or more.
        #[arg(long, default_value_t = 1)]
        code: u16,
    },
    /// Look bets up by id.
    Get {
        /// One or more bet ids.
        #[arg(required = true)]
        ids: Vec<u128>,
    },
    /// Void an open bet: its stake goes back to the player.
    Void {
        /// The bet's id.
        id: u128,
    },
    /// Cash out an open bet: the house pays AMOUNT (stake included) now.
    Cashout {
        /// The bet's id.
        id: u128,
        /// What the house pays now, stake included.
        #[arg(long, allow_hyphen_values = true, value_parser = parse_amount)]
        amount: u128,
    },
}

#[derive(Subcommand)]
enum LocalCommands {
    /// Start N nodes in DIR, bootstrap them as one cluster and wait for a leader. On a DIR
    /// that holds a stopped cluster, start that cluster again on its own ports.
    Up {
        /// How many nodes (all voters).
        #[arg(long, default_value_t = 3)]
        nodes: u64,
        /// The cluster's folder: each node's data, logs and cluster.json.
        #[arg(long)]
        dir: PathBuf,
        /// Use fixed ports from here (node i: gRPC base+3(i-1), HTTP base+3(i-1)+1, peer
        /// base+3(i-1)+2); free ports are chosen otherwise.
        #[arg(long)]
        base_port: Option<u16>,
        /// The ledger-server binary (default: next to this ledgerctl).
        #[arg(long)]
        server: Option<PathBuf>,
        /// The nodes' --latency-profile: lan, or regional (round trips up to 300 ms).
        #[arg(long, default_value = "lan")]
        latency_profile: String,
    },
    /// SIGKILL the leader, time until a write succeeds again, restart it; repeat.
    Failover {
        /// The cluster's folder (as given to `local up`).
        #[arg(long)]
        dir: PathBuf,
        /// How many kill-and-restart rounds.
        #[arg(long, default_value_t = 10)]
        trials: u32,
    },
    /// Stop the cluster started in DIR.
    Down {
        /// The cluster's folder (as given to `local up`).
        #[arg(long)]
        dir: PathBuf,
    },
    /// SIGKILL the node of the cluster in DIR that leads (and serves: a leader cut off from
    /// its quorum is passed over), and print its id and pid.
    KillLeader {
        /// The cluster's folder (as given to `local up`).
        #[arg(long)]
        dir: PathBuf,
    },
    /// Stop one node of the cluster in DIR (SIGTERM, or SIGKILL with --kill).
    Stop {
        /// The cluster's folder (as given to `local up`).
        #[arg(long)]
        dir: PathBuf,
        /// The node's id.
        #[arg(long)]
        node: u64,
        /// SIGKILL instead of SIGTERM: a crash, not a clean stop.
        #[arg(long)]
        kill: bool,
    },
    /// Start a stopped node of the cluster in DIR again and time it until it is ready.
    Start {
        /// The cluster's folder (as given to `local up`).
        #[arg(long)]
        dir: PathBuf,
        /// The node's id.
        #[arg(long)]
        node: u64,
    },
}

/// Parses an amount: a whole number of the ledger's smallest unit, 0 or more.
fn parse_amount(s: &str) -> Result<u128, String> {
    let s = s.trim();
    if s.starts_with('-') {
        return Err(
            "an amount cannot be negative: a transfer moves value from --debit to \
                    --credit, so swap them to move it the other way"
                .into(),
        );
    }
    s.replace('_', "").parse::<u128>().map_err(|_| {
        format!(
            "{s:?} is not an amount: a whole number of the ledger's smallest unit \
             (for example cents), without decimals"
        )
    })
}

/// Parses `500ms`, `3s`, `2m`, or a number of seconds.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (500ms, 3s, 1m)"))?;
    let seconds = match unit {
        "ms" => value / 1e3,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{s:?}: unit {unit:?} is not ms, s or m")),
    };
    if !(seconds > 0.0 && seconds < 86_400.0) {
        return Err(format!("{s:?}: between 1ms and a day"));
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let endpoints = cli.endpoints.clone();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            match connect::speaks_tls(&endpoints, &message) {
                // Whatever the client concluded, a server that speaks TLS understood none of
                // the plaintext calls: nothing was applied.
                Some(endpoint) => eprintln!(
                    "ledgerctl: not applied: {endpoint} speaks TLS, and a plaintext call cannot \
                     reach it: use https:// and LEDGER_TLS_CA (--tls-ca); the calls failed at \
                     the transport"
                ),
                // Printed already (results in --json on stdout).
                None if message == ledger::REPORTED => {}
                None => eprintln!("ledgerctl: {message}"),
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    let endpoints: Vec<String> = cli
        .endpoints
        .split(',')
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect();
    if endpoints.is_empty() {
        return Err("--endpoints is empty".into());
    }
    let mut credentials = ledger_client::Credentials::new();
    if let Some(ca) = &cli.tls_ca {
        credentials = credentials
            .with_tls_ca_file(ca)
            .map_err(|e| e.to_string())?;
    }
    if let Some(token) = cli.token.as_deref().filter(|t| !t.is_empty()) {
        credentials = credentials.with_token(token).map_err(|e| e.to_string())?;
    }
    connect::init(credentials);
    connect::set_timeouts(cli.timeout, cli.connect_timeout);
    let block_on = |f: std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>>>>| {
        tokio::runtime::Runtime::new()
            .map_err(|e| e.to_string())?
            .block_on(f)
    };
    match cli.command {
        Commands::Cluster { command } => {
            let json = cli.json;
            block_on(Box::pin(async move {
                match command {
                    ClusterCommands::Status => cluster::status(&endpoints, json).await,
                    ClusterCommands::Members => cluster::members(&endpoints, json).await,
                    ClusterCommands::Init { members } => {
                        cluster::init(&endpoints, &members, json).await
                    }
                    ClusterCommands::AddLearner {
                        node_id,
                        address,
                        peer_address,
                    } => {
                        cluster::add_learner(&endpoints, node_id, address, peer_address, json).await
                    }
                    ClusterCommands::Promote { node_id } => {
                        cluster::change_voters(&endpoints, Some(node_id), None, json).await
                    }
                    ClusterCommands::Remove { node_id } => {
                        cluster::change_voters(&endpoints, None, Some(node_id), json).await
                    }
                    ClusterCommands::Replace { node_id } => {
                        cluster::replace(&endpoints, node_id, json).await
                    }
                }
            }))
        }
        Commands::Verify { anchor } => {
            let json = cli.json;
            let anchor = anchor.as_deref().map(cluster::parse_anchor).transpose()?;
            block_on(Box::pin(async move {
                cluster::verify(&endpoints, anchor, json).await
            }))
        }
        Commands::Local { command } => local(command, cli.json),
        Commands::Completions { shell } => {
            use clap::CommandFactory;
            use std::io::Write;
            // Written whole from memory: a reader that closes early (`| head`) is not an error
            // worth more than its exit code.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "ledgerctl", &mut script);
            match std::io::stdout().write_all(&script) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                other => other.map_err(|e| format!("stdout: {e}")),
            }
        }
        Commands::Certs { out, nodes, hosts } => credentials::certs(&out, nodes, &hosts, cli.json),
        Commands::PeerSecret { out } => {
            ledger_client::local_cluster::write_peer_secret(&out)
                .map_err(|e| format!("{}: {e}", out.display()))?;
            if cli.json {
                println!("{}", serde_json::json!({ "peer_secret_file": out }));
            } else {
                println!(
                    "peer secret written to {} (mode 0600): give every node \
                     --peer-secret-file {}",
                    out.display(),
                    out.display()
                );
            }
            Ok(())
        }
        Commands::Token {
            name,
            role,
            auth_file,
            valid_days,
        } => credentials::token(&name, &role, &auth_file, valid_days, cli.json),
        Commands::Backup { out } => {
            let json = cli.json;
            block_on(Box::pin(async move {
                backup::run(&endpoints, &out, json).await
            }))
        }
        Commands::Account { command } => data(&endpoints, cli.json, Data::Account(command)),
        Commands::Transfer { command } => data(&endpoints, cli.json, Data::Transfer(command)),
        Commands::History(args) => data(&endpoints, cli.json, Data::History(args)),
        Commands::Market { command } => data(&endpoints, cli.json, Data::Market(command)),
        Commands::Bet { command } => data(&endpoints, cli.json, Data::Bet(command)),
        Commands::Bench {
            accounts,
            clients,
            seconds,
            batch,
            seed,
            no_setup,
            rate,
        } => {
            let endpoints = cli
                .endpoints
                .split(',')
                .map(|e| e.trim().to_string())
                .filter(|e| !e.is_empty())
                .collect();
            let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
            runtime.block_on(bench::run(bench::BenchArgs {
                endpoints,
                accounts,
                clients,
                seconds,
                batch,
                seed,
                setup: !no_setup,
                rate,
                json: cli.json,
            }))
        }
    }
}

enum Data {
    Account(AccountCommands),
    Transfer(TransferCommands),
    History(HistoryArgs),
    Market(MarketCommands),
    Bet(BetCommands),
}

/// How long a data command may take, retries through a failover included, unless
/// `--timeout` says otherwise.
const DATA_COMMAND_DEADLINE_MS: u64 = 15_000;

fn data(endpoints: &[String], json: bool, command: Data) -> Result<(), String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let client = LedgerClient::with_config(connect::client_config(endpoints))
            .await
            .map_err(|e| e.to_string())?
            .with_deadline(
                connect::call_timeout().unwrap_or(Duration::from_millis(DATA_COMMAND_DEADLINE_MS)),
            );
        let out = ledger::Out { json };
        let c = &client;
        let o = &out;
        match command {
            Data::Account(command) => match command {
                AccountCommands::Create {
                    id,
                    ledger,
                    code,
                    flags,
                    user_data_128,
                    user_data_64,
                    user_data_32,
                } => {
                    let account = Account {
                        id,
                        ledger,
                        code,
                        flags: ledger::account_flags(&flags)?,
                        user_data_128,
                        user_data_64,
                        user_data_32,
                        ..Account::default()
                    };
                    ledger::account_create(c, o, account).await
                }
                AccountCommands::Get { ids } => ledger::account_get(c, o, &ids).await,
                AccountCommands::List { after, limit } => {
                    ledger::account_list(c, o, after, limit).await
                }
            },
            Data::Transfer(command) => match command {
                TransferCommands::Create {
                    file: Some(file), ..
                } => ledger::transfer_create(c, o, ledger::read_transfers(&file)?).await,
                TransferCommands::Create {
                    file: None,
                    id,
                    debit,
                    credit,
                    amount,
                    ledger,
                    code,
                    pending,
                    timeout,
                    flags,
                    user_data_128,
                } => {
                    let mut flags = ledger::transfer_flags(&flags)?;
                    if pending {
                        flags = flags.union(TransferFlags::PENDING);
                    }
                    let transfer = Transfer {
                        id: id.unwrap_or(0),
                        debit_account_id: debit.unwrap_or(0),
                        credit_account_id: credit.unwrap_or(0),
                        amount: amount.unwrap_or(0),
                        ledger,
                        code,
                        timeout,
                        flags,
                        user_data_128,
                        ..Transfer::default()
                    };
                    ledger::transfer_create(c, o, vec![transfer]).await
                }
                TransferCommands::Post {
                    id,
                    pending_id,
                    amount,
                } => {
                    let post = Transfer {
                        id,
                        pending_id,
                        // 0 posts all of the pending amount.
                        amount: amount.unwrap_or(0),
                        flags: TransferFlags::POST_PENDING_TRANSFER,
                        ..Transfer::default()
                    };
                    ledger::transfer_create(c, o, vec![post]).await
                }
                TransferCommands::Void { id, pending_id } => {
                    let void = Transfer {
                        id,
                        pending_id,
                        flags: TransferFlags::VOID_PENDING_TRANSFER,
                        ..Transfer::default()
                    };
                    ledger::transfer_create(c, o, vec![void]).await
                }
                TransferCommands::Get { ids } => ledger::transfer_get(c, o, &ids).await,
                TransferCommands::Pending { id } => ledger::pending_status(c, o, id).await,
            },
            Data::History(h) => {
                let filter = AccountFilter {
                    account_id: h.account,
                    timestamp_min: h.from,
                    timestamp_max: h.to,
                    code: h.code,
                    limit: h.limit,
                    reverse: h.reverse,
                    debits: h.debits,
                    credits: h.credits,
                };
                ledger::history(c, o, filter, h.balances).await
            }
            Data::Market(command) => match command {
                MarketCommands::Create {
                    id,
                    house,
                    liability_limit,
                    user_data_128,
                } => {
                    let market = NewMarket {
                        id,
                        house_account_id: house,
                        liability_limit,
                        user_data_128,
                    };
                    ledger::market_create(c, o, market).await
                }
                MarketCommands::Get { ids } => ledger::market_get(c, o, &ids).await,
                MarketCommands::Bets { market, limit } => {
                    ledger::market_bets(c, o, market, limit).await
                }
                MarketCommands::Settle(a) => {
                    let s = ledger::settlement(
                        a.id,
                        a.market,
                        &a.winners,
                        &a.voids,
                        false,
                        a.void_market,
                    );
                    ledger::settle(c, o, s).await
                }
                MarketCommands::Resettle(a) => {
                    let s = ledger::settlement(
                        a.id,
                        a.market,
                        &a.winners,
                        &a.voids,
                        true,
                        a.void_market,
                    );
                    ledger::settle(c, o, s).await
                }
            },
            Data::Bet(command) => match command {
                BetCommands::Place {
                    id,
                    player,
                    market,
                    selection,
                    stake,
                    odds,
                    code,
                } => {
                    let bet = NewBet {
                        id,
                        player_account_id: player,
                        market_id: market,
                        selection_id: selection,
                        stake,
                        odds: ledger::parse_odds(&odds)?,
                        code,
                        user_data_128: 0,
                    };
                    ledger::bet_place(c, o, bet).await
                }
                BetCommands::Get { ids } => ledger::bet_get(c, o, &ids).await,
                BetCommands::Void { id } => {
                    ledger::bet_action(c, o, id, BetActionKind::Void, 0).await
                }
                BetCommands::Cashout { id, amount } => {
                    ledger::bet_action(c, o, id, BetActionKind::CashOut, amount).await
                }
            },
        }
    })
}

fn server_binary(explicit: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(path) = explicit {
        return Ok(path);
    }
    let me = std::env::current_exe().map_err(|e| format!("cannot find ledgerctl itself: {e}"))?;
    let sibling = me.with_file_name("ledger-server");
    if sibling.exists() {
        Ok(sibling)
    } else {
        Err(format!(
            "no ledger-server next to {}; pass --server PATH",
            me.display()
        ))
    }
}

/// The running node of `cluster` that says it leads and is healthy (a leader cut off from its
/// quorum reports itself unhealthy), waiting out an election.
async fn serving_leader(cluster: &LocalCluster) -> Result<u64, String> {
    let deadline = std::time::Instant::now() + Duration::from_millis(bench::FIND_LEADER_TIMEOUT_MS);
    loop {
        for node in cluster.nodes.iter().filter(|n| n.pid.is_some()) {
            let Some(addrs) = node.addrs else { continue };
            if let Ok(s) = cluster::status_of(&connect::uri(&addrs.grpc.to_string())).await {
                if s.state == "Leader" && s.healthy {
                    return Ok(node.id);
                }
            }
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "no running node of the cluster leads and serves (waited {} ms)",
                bench::FIND_LEADER_TIMEOUT_MS
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn local(command: LocalCommands, json: bool) -> Result<(), String> {
    match command {
        LocalCommands::Up {
            nodes,
            dir,
            base_port,
            server,
            latency_profile,
        } => {
            if nodes == 0 {
                return Err("--nodes must be 1 or more".into());
            }
            let binary = server_binary(server)?;
            // A folder that holds a cluster brings that cluster back, on its own ports: new
            // ports would not match the addresses in its membership.
            let cluster = if LocalCluster::exists_in(&dir) {
                let layout = LocalCluster::load(&dir).map_err(|e| e.to_string())?;
                if layout.nodes.len() as u64 != nodes {
                    return Err(format!(
                        "{} holds a cluster of {} nodes, not {nodes}: run `ledgerctl local up \
                         --nodes {} --dir {}` to start it again, or `ledgerctl local down` and \
                         a new folder for another",
                        dir.display(),
                        layout.nodes.len(),
                        layout.nodes.len(),
                        dir.display()
                    ));
                }
                LocalCluster::resume(&binary, &dir).map_err(|e| e.to_string())?
            } else {
                let options = NodeOptions {
                    base_port,
                    extra_args: vec!["--latency-profile".into(), latency_profile],
                    ..NodeOptions::default()
                };
                LocalCluster::start(&binary, &dir, nodes, options).map_err(|e| e.to_string())?
            };
            cluster
                .wait_ready(Duration::from_millis(LOCAL_UP_READY_TIMEOUT_MS))
                .map_err(|e| e.to_string())?;
            let http: Vec<String> = cluster
                .nodes
                .iter()
                .filter_map(|n| n.addrs.map(|a| format!("http://{}", a.http)))
                .collect();
            let pids: Vec<u32> = cluster.nodes.iter().filter_map(|n| n.pid).collect();
            let endpoints = cluster.endpoints();
            if json {
                println!(
                    "{}",
                    serde_json::json!({"endpoints": endpoints, "http": http, "pids": pids})
                );
            } else {
                println!("cluster of {nodes} nodes is up in {}", dir.display());
                println!(
                    "{:<6} {:<28} {:<28} {:<22} {:>8}",
                    "node", "grpc", "http", "peer", "pid"
                );
                for n in &cluster.nodes {
                    let a = n.addrs.expect("started nodes report addresses");
                    println!(
                        "{:<6} {:<28} {:<28} {:<22} {:>8}",
                        n.id,
                        format!("http://{}", a.grpc),
                        format!("http://{}", a.http),
                        a.peer,
                        n.pid.unwrap_or(0)
                    );
                }
                println!("export LEDGER_ENDPOINTS={}", endpoints.join(","));
            }
            cluster.detach();
            Ok(())
        }
        LocalCommands::Failover { dir, trials } => {
            if trials == 0 {
                return Err("--trials must be 1 or more".into());
            }
            tokio::runtime::Runtime::new()
                .map_err(|e| e.to_string())?
                .block_on(failover::run(&dir, trials, json))
        }
        LocalCommands::KillLeader { dir } => {
            let mut cluster = LocalCluster::load(&dir).map_err(|e| e.to_string())?;
            let leader = tokio::runtime::Runtime::new()
                .map_err(|e| e.to_string())?
                .block_on(serving_leader(&cluster))?;
            let pid = cluster.node(leader).pid.unwrap_or(0);
            cluster.kill(leader).map_err(|e| e.to_string())?;
            if json {
                println!("{}", serde_json::json!({"killed": leader, "pid": pid}));
            } else {
                println!("node {leader} (pid {pid}), the leader, killed with SIGKILL");
            }
            Ok(())
        }
        LocalCommands::Stop { dir, node, kill } => {
            let mut cluster = LocalCluster::load(&dir).map_err(|e| e.to_string())?;
            cluster
                .signal(node, if kill { "KILL" } else { "TERM" })
                .map_err(|e| e.to_string())?;
            if json {
                println!("{}", serde_json::json!({"stopped": node}));
            } else {
                println!("node {node} stopped");
            }
            Ok(())
        }
        LocalCommands::Start { dir, node } => {
            let mut cluster = LocalCluster::load(&dir).map_err(|e| e.to_string())?;
            let started = std::time::Instant::now();
            cluster.restart(node).map_err(|e| e.to_string())?;
            let deadline = started + Duration::from_millis(LOCAL_UP_READY_TIMEOUT_MS * 10);
            loop {
                if matches!(cluster.ready(node), Some((true, _))) {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    return Err(format!("node {node} not ready in time"));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let ready_ms = started.elapsed().as_millis() as u64;
            let pid = cluster.node(node).pid;
            cluster.detach();
            if json {
                println!(
                    "{}",
                    serde_json::json!({"node": node, "ready_ms": ready_ms, "pid": pid})
                );
            } else {
                println!("node {node} ready {ready_ms} ms after its start");
            }
            Ok(())
        }
        LocalCommands::Down { dir } => {
            let mut cluster = LocalCluster::load(&dir).map_err(|e| e.to_string())?;
            cluster.stop_all();
            if json {
                println!("{}", serde_json::json!({"stopped": cluster.nodes.len()}));
            } else {
                println!("cluster in {} is down", dir.display());
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// Every subcommand path without subcommands of its own (`transfer create`, `local up`).
    fn leaves(command: &clap::Command, path: &str, out: &mut Vec<(String, clap::Command)>) {
        let subcommands: Vec<&clap::Command> = command
            .get_subcommands()
            .filter(|c| c.get_name() != "help")
            .collect();
        if subcommands.is_empty() {
            out.push((path.trim().to_string(), command.clone()));
        }
        for sub in subcommands {
            leaves(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_command_and_option_has_help_text() {
        let mut all = Vec::new();
        leaves(&Cli::command(), "", &mut all);
        assert!(all.len() > 30, "found only {} commands", all.len());
        let mut bare = Vec::new();
        for (path, command) in &all {
            if command.get_about().is_none() {
                bare.push(format!("`{path}` itself"));
            }
            for arg in command.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    bare.push(format!("`{path}` --{}", arg.get_id()));
                }
            }
        }
        assert!(bare.is_empty(), "without help text: {}", bare.join(", "));
    }

    #[test]
    fn docs_client_md_lists_every_command() {
        let docs =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/client.md"))
                .expect("docs/client.md");
        let mut all = Vec::new();
        leaves(&Cli::command(), "", &mut all);
        let undocumented: Vec<&str> = all
            .iter()
            .map(|(path, _)| path.as_str())
            .filter(|path| !docs.contains(&format!("`{path}")))
            .collect();
        assert!(
            undocumented.is_empty(),
            "docs/client.md's ledgerctl table lacks: {}",
            undocumented.join(", ")
        );
    }

    #[test]
    fn amounts_are_whole_non_negative_numbers_with_a_clear_refusal() {
        assert_eq!(parse_amount("1_000"), Ok(1000));
        assert!(parse_amount("-5")
            .unwrap_err()
            .contains("cannot be negative"));
        assert!(parse_amount("2.50")
            .unwrap_err()
            .contains("without decimals"));
        let create = |extra: &[&str]| {
            let mut args = vec![
                "ledgerctl",
                "transfer",
                "create",
                "--id",
                "1",
                "--debit",
                "1",
                "--credit",
                "2",
            ];
            args.extend_from_slice(extra);
            Cli::try_parse_from(args)
        };
        let error = create(&[]).err().expect("--amount is required").to_string();
        assert!(error.contains("--amount"), "{error}");
        let parsed = create(&["--amount", "-5"]);
        let error = parsed
            .err()
            .expect("a negative amount is refused")
            .to_string();
        assert!(error.contains("cannot be negative"), "{error}");
    }

    #[test]
    fn a_settlement_names_its_winners_or_says_there_are_none() {
        let settle = |extra: &[&str]| {
            let mut args = vec![
                "ledgerctl",
                "market",
                "settle",
                "--id",
                "9",
                "--market",
                "1",
            ];
            args.extend_from_slice(extra);
            Cli::try_parse_from(args).map(|_| ())
        };
        assert!(settle(&[]).is_err(), "no outcome given");
        assert!(
            settle(&["--voids", "3"]).is_err(),
            "voids alone leave the winners unsaid"
        );
        assert!(settle(&["--winners", "1,2"]).is_ok());
        assert!(settle(&["--no-winners"]).is_ok());
        assert!(settle(&["--void-market"]).is_ok());
        assert!(settle(&["--no-winners", "--winners", "1"]).is_err());
    }
}
