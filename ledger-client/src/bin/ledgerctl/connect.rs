//! The connections of every command, with the one set of credentials given on the command
//! line or in the environment (`--tls-ca`/`LEDGER_TLS_CA`, `--token`/`LEDGER_TOKEN`).

use std::sync::OnceLock;
use std::time::Duration;

use ledger_client::proto::admin::admin_client::AdminClient;
use ledger_client::proto::ledger::ledger_client::LedgerClient as LedgerGrpc;
use ledger_client::{AuthChannel, ClientConfig, Credentials};

const CONNECT_TIMEOUT_MS: u64 = 2_000;
/// Backup chunks and bench batches are larger than tonic's 4 MiB default.
const MESSAGE_BYTES_MAX: usize = 64 << 20;

static CREDENTIALS: OnceLock<Credentials> = OnceLock::new();

/// Sets the credentials of this run (once, at start).
pub fn init(credentials: Credentials) {
    let _ = CREDENTIALS.set(credentials);
}

pub fn credentials() -> Credentials {
    CREDENTIALS.get().cloned().unwrap_or_default()
}

/// The URI of a node's `host:port` (or URI) with this run's scheme.
pub fn uri(address: &str) -> String {
    credentials().uri(address)
}

/// A `LedgerClient` configuration for these endpoints, with this run's credentials.
pub fn client_config(endpoints: &[String]) -> ClientConfig {
    ClientConfig::new(endpoints.to_vec()).with_credentials(credentials())
}

pub async fn channel(endpoint: &str) -> Result<AuthChannel, String> {
    credentials()
        .channel(endpoint, Duration::from_millis(CONNECT_TIMEOUT_MS))
        .await
        .map_err(|e| e.to_string())
}

pub async fn admin(endpoint: &str) -> Result<AdminClient<AuthChannel>, String> {
    Ok(AdminClient::new(channel(endpoint).await?)
        .max_decoding_message_size(MESSAGE_BYTES_MAX)
        .max_encoding_message_size(MESSAGE_BYTES_MAX))
}

pub async fn ledger(endpoint: &str) -> Result<LedgerGrpc<AuthChannel>, String> {
    Ok(LedgerGrpc::new(channel(endpoint).await?)
        .max_decoding_message_size(MESSAGE_BYTES_MAX)
        .max_encoding_message_size(MESSAGE_BYTES_MAX))
}
