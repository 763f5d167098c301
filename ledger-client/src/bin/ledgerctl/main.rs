//! `ledgerctl`: the operator and developer CLI of Ledger.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ledger_client::local_cluster::{LocalCluster, NodeOptions};

mod bench;
mod cluster;
mod failover;

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
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Run the transfer workload of shared/peers and report throughput and latency.
    Bench {
        #[arg(long, default_value_t = 10_000)]
        accounts: u64,
        #[arg(long, default_value_t = 16)]
        clients: u64,
        #[arg(long, default_value_t = 15)]
        seconds: u64,
        /// Transfers per request.
        #[arg(long, default_value_t = 1)]
        batch: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Cluster membership and status.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommands,
    },
    /// Check the ledger invariants on every node and that replicas agree.
    Verify,
    /// A local cluster of ledger-server processes for development.
    Local {
        #[command(subcommand)]
        command: LocalCommands,
    },
}

#[derive(Subcommand)]
enum ClusterCommands {
    /// Every node: id, address, role, term, last log, applied, lag, health.
    Status,
    /// Voters and learners.
    Members,
    /// Add a node (started empty, without --init) as a learner and wait until it caught up.
    AddLearner {
        #[arg(long)]
        node_id: u64,
        /// HOST:PORT of its gRPC server.
        #[arg(long)]
        address: String,
    },
    /// Make a learner a voter.
    Promote {
        #[arg(long)]
        node_id: u64,
    },
    /// Remove a node from the voters (do this before wiping its data).
    Remove {
        #[arg(long)]
        node_id: u64,
    },
}

#[derive(Subcommand)]
enum LocalCommands {
    /// Start N nodes in DIR, bootstrap them as one cluster and wait for a leader.
    Up {
        #[arg(long, default_value_t = 3)]
        nodes: u64,
        #[arg(long)]
        dir: PathBuf,
        /// Use fixed ports from here (node i: gRPC base+2(i-1), HTTP base+2(i-1)+1); free ports
        /// are chosen otherwise.
        #[arg(long)]
        base_port: Option<u16>,
        /// The ledger-server binary (default: next to this ledgerctl).
        #[arg(long)]
        server: Option<PathBuf>,
    },
    /// SIGKILL the leader, time until a write succeeds again, restart it; repeat.
    Failover {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 10)]
        trials: u32,
    },
    /// Stop the cluster started in DIR.
    Down {
        #[arg(long)]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ledgerctl: {message}");
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
                    ClusterCommands::AddLearner { node_id, address } => {
                        cluster::add_learner(&endpoints, node_id, address, json).await
                    }
                    ClusterCommands::Promote { node_id } => {
                        cluster::change_voters(&endpoints, Some(node_id), None, json).await
                    }
                    ClusterCommands::Remove { node_id } => {
                        cluster::change_voters(&endpoints, None, Some(node_id), json).await
                    }
                }
            }))
        }
        Commands::Verify => {
            let json = cli.json;
            block_on(Box::pin(
                async move { cluster::verify(&endpoints, json).await },
            ))
        }
        Commands::Local { command } => local(command, cli.json),
        Commands::Bench {
            accounts,
            clients,
            seconds,
            batch,
            seed,
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
                json: cli.json,
            }))
        }
    }
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

fn local(command: LocalCommands, json: bool) -> Result<(), String> {
    match command {
        LocalCommands::Up {
            nodes,
            dir,
            base_port,
            server,
        } => {
            if nodes == 0 {
                return Err("--nodes must be 1 or more".into());
            }
            let binary = server_binary(server)?;
            let options = NodeOptions {
                base_port,
                ..NodeOptions::default()
            };
            let cluster =
                LocalCluster::start(&binary, &dir, nodes, options).map_err(|e| e.to_string())?;
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
                println!("{:<6} {:<28} {:<28} {:>8}", "node", "grpc", "http", "pid");
                for n in &cluster.nodes {
                    let a = n.addrs.expect("started nodes report addresses");
                    println!(
                        "{:<6} {:<28} {:<28} {:>8}",
                        n.id,
                        format!("http://{}", a.grpc),
                        format!("http://{}", a.http),
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
