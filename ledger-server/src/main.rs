//! The `ledger-server` binary: one node of a Ledger cluster.

use std::process::ExitCode;

use clap::Parser;
use ledger_server::config::{Args, Command, LogFormat, NodeConfig, RestoreArgs};
use ledger_server::{backup, startup};
use tracing_subscriber::EnvFilter;

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.log_format);
    #[cfg(feature = "negative-control")]
    {
        if args.unsafe_skip_idempotency {
            tracing::warn!("negative control: retried transfers are applied again");
            ledger_core::negative_control::skip_idempotency();
        }
        if args.unsafe_stale_reads || args.unsafe_early_ack || args.unsafe_skip_fsync {
            tracing::warn!(
                stale_reads = args.unsafe_stale_reads,
                early_ack = args.unsafe_early_ack,
                skip_fsync = args.unsafe_skip_fsync,
                "negative control: a deliberately broken server"
            );
            ledger_server::negative_control::enable(
                args.unsafe_stale_reads,
                args.unsafe_early_ack,
                args.unsafe_skip_fsync,
            );
        }
    }
    if let Some(Command::Restore(restore)) = &args.command {
        return run_restore(restore).await;
    }
    let config = match NodeConfig::from_args(&args) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("ledger-server: {message}");
            return ExitCode::from(2);
        }
    };
    let running = match startup::bind(&config).await {
        Ok(listeners) => startup::start(config, listeners).await,
        Err(e) => Err(e),
    };
    let running = match running {
        Ok(running) => running,
        Err(e) => {
            eprintln!("ledger-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(e) => {
                eprintln!("ledger-server: cannot listen for SIGTERM: {e}");
                return ExitCode::FAILURE;
            }
        };
    let failed = tokio::select! {
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("interrupted; shutting down");
            None
        }
        _ = terminate.recv() => {
            tracing::info!("terminated; shutting down");
            None
        }
        fatal = running.raft_failed() => Some(fatal),
    };
    running.shutdown().await;
    match failed {
        None => ExitCode::SUCCESS,
        Some(fatal) => {
            tracing::error!(error = %fatal, "Raft stopped on a fatal error; exiting, to be restarted from the durable state");
            eprintln!("ledger-server: Raft stopped on a fatal error: {fatal}");
            ExitCode::FAILURE
        }
    }
}

async fn run_restore(r: &RestoreArgs) -> ExitCode {
    if r.node_id == 0 {
        eprintln!("ledger-server: --node-id must be 1 or more");
        return ExitCode::from(2);
    }
    if let Err(e) = startup::claim_data_dir(&r.data_dir, &r.cluster, r.node_id) {
        eprintln!("ledger-server: {e}");
        return ExitCode::FAILURE;
    }
    match backup::restore(
        &r.from,
        &r.data_dir,
        r.node_id,
        &r.advertise_addr,
        &r.advertise_peer_addr,
        ledger_server::config::RESTORE_BLOCK_CACHE_MB,
    )
    .await
    {
        Ok(header) => {
            println!(
                "{}",
                serde_json::json!({
                    "restored": r.data_dir,
                    "applied_index": header.applied_index,
                    "state_digest": header.state_digest,
                    "from_cluster": header.cluster,
                    "from_node": header.node_id,
                    "node_id": r.node_id,
                    "cluster": r.cluster,
                })
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ledger-server: restore failed: {e}");
            ExitCode::FAILURE
        }
    }
}
