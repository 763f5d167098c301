//! The `ledger-server` binary: one node of a Ledger cluster.

use std::process::ExitCode;

use clap::Parser;
use ledger_server::config::{Args, LogFormat, NodeConfig};
use ledger_server::node;
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
    if args.unsafe_skip_idempotency {
        tracing::warn!("negative control: retried transfers are applied again");
        ledger_core::negative_control::skip_idempotency();
    }
    let config = match NodeConfig::from_args(&args) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("ledger-server: {message}");
            return ExitCode::from(2);
        }
    };
    let running = match node::bind(&config).await {
        Ok((grpc, http)) => node::start(config, grpc, http).await,
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
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; shutting down"),
        _ = terminate.recv() => tracing::info!("terminated; shutting down"),
    }
    running.shutdown().await;
    ExitCode::SUCCESS
}
