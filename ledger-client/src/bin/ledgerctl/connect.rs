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
/// `--timeout` and `--connect-timeout`, when given.
static TIMEOUTS: OnceLock<(Option<Duration>, Option<Duration>)> = OnceLock::new();

/// Sets the deadline of each call and the connect timeout of this run (once, at start).
pub fn set_timeouts(call: Option<Duration>, connect: Option<Duration>) {
    let _ = TIMEOUTS.set((call, connect));
}

fn connect_timeout() -> Duration {
    TIMEOUTS
        .get()
        .and_then(|(_, connect)| *connect)
        .unwrap_or(Duration::from_millis(CONNECT_TIMEOUT_MS))
}

/// The deadline of one call, retries included, if `--timeout` was given.
pub fn call_timeout() -> Option<Duration> {
    TIMEOUTS.get().and_then(|(call, _)| *call)
}

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
    let mut config = ClientConfig::new(endpoints.to_vec()).with_credentials(credentials());
    config.connect_timeout = connect_timeout();
    if let Some(deadline) = call_timeout() {
        config.deadline = deadline;
    }
    config
}

pub async fn channel(endpoint: &str) -> Result<AuthChannel, String> {
    credentials()
        .channel(endpoint, connect_timeout())
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

/// After a call failed at the transport (an HTTP/2 protocol error, a closed stream): the
/// first plaintext endpoint whose
/// server answers an HTTP/2 preface with a TLS record (it speaks TLS, so the call was never
/// understood there, let alone applied), if any.
pub fn speaks_tls(endpoints: &str, error: &str) -> Option<String> {
    use std::io::{Read, Write};
    // What a TLS server's answer to a plaintext call looks like, depending on timing.
    if !error.contains("h2 protocol error") && !error.contains("transport error") {
        return None;
    }
    endpoints
        .split(',')
        .map(str::trim)
        .filter(|e| !e.starts_with("https://"))
        .find(|endpoint| {
            let address = endpoint.trim_start_matches("http://").trim_end_matches('/');
            let probe = || -> std::io::Result<bool> {
                let address = std::net::ToSocketAddrs::to_socket_addrs(address)?
                    .next()
                    .ok_or_else(|| std::io::Error::other("no address"))?;
                let timeout = Duration::from_secs(1);
                let mut stream = std::net::TcpStream::connect_timeout(&address, timeout)?;
                stream.set_read_timeout(Some(timeout))?;
                stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")?;
                let mut first = [0u8; 1];
                stream.read_exact(&mut first)?;
                // A TLS record: an alert (21) or a handshake (22).
                Ok(first[0] == 21 || first[0] == 22)
            };
            probe().unwrap_or(false)
        })
        .map(str::to_string)
}
