//! How a client proves who it is and checks who it talks to: the cluster CA to verify the
//! nodes' TLS certificates, and the bearer token sent with every call.
//!
//! ```
//! use ledger_client::{ClientConfig, Credentials};
//!
//! let credentials = Credentials::new()
//!     .with_tls_ca_pem(b"-----BEGIN CERTIFICATE-----\n...".to_vec())
//!     .with_token("ldg_...")?;
//! let config = ClientConfig::new(["https://10.0.0.1:7000"]).with_credentials(credentials);
//! # Ok::<(), ledger_client::Error>(())
//! ```
//!
//! `Credentials::from_env` reads `LEDGER_TLS_CA` (a PEM file) and `LEDGER_TOKEN`.

use std::path::Path;
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use super::error::Error;

/// A channel that adds the token to every call.
pub type AuthChannel = InterceptedService<Channel, TokenInterceptor>;

/// The credentials of a client. The default is plaintext without a token.
#[derive(Clone, Default)]
pub struct Credentials {
    tls_ca_pem: Option<Vec<u8>>,
    token: Option<MetadataValue<Ascii>>,
}

impl std::fmt::Debug for Credentials {
    // Never prints the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("tls", &self.tls_ca_pem.is_some())
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl Credentials {
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses TLS, trusting the nodes' certificates signed by this CA (PEM).
    pub fn with_tls_ca_pem(mut self, pem: Vec<u8>) -> Self {
        self.tls_ca_pem = Some(pem);
        self
    }

    /// Uses TLS, trusting the CA in this PEM file. A file without a PEM certificate is refused
    /// here, not at the first call.
    pub fn with_tls_ca_file(self, path: &Path) -> Result<Self, Error> {
        let pem = std::fs::read(path)
            .map_err(|e| Error::Config(format!("TLS CA {}: {e}", path.display())))?;
        let text = String::from_utf8_lossy(&pem);
        if !text.contains("-----BEGIN CERTIFICATE-----")
            || !text.contains("-----END CERTIFICATE-----")
        {
            return Err(Error::Config(format!(
                "TLS CA {}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----; \
                 `ledgerctl certs` writes ca.pem)",
                path.display()
            )));
        }
        Ok(self.with_tls_ca_pem(pem))
    }

    /// Sends `authorization: Bearer <token>` with every call.
    pub fn with_token(mut self, token: &str) -> Result<Self, Error> {
        let value = format!("Bearer {}", token.trim())
            .parse()
            .map_err(|_| Error::Config("the token is not printable ASCII".into()))?;
        self.token = Some(value);
        Ok(self)
    }

    /// `LEDGER_TLS_CA` (path of the CA's PEM file) and `LEDGER_TOKEN`, when set.
    pub fn from_env() -> Result<Self, Error> {
        let mut credentials = Self::new();
        if let Some(path) = std::env::var_os("LEDGER_TLS_CA").filter(|p| !p.is_empty()) {
            credentials = credentials.with_tls_ca_file(Path::new(&path))?;
        }
        if let Ok(token) = std::env::var("LEDGER_TOKEN") {
            if !token.is_empty() {
                credentials = credentials.with_token(&token)?;
            }
        }
        Ok(credentials)
    }

    pub fn uses_tls(&self) -> bool {
        self.tls_ca_pem.is_some()
    }

    /// The URI of `address` (`host:port`, `http://...` or `https://...`): `https` with TLS or
    /// when the address says so (never downgraded: [`Credentials::endpoint`] then refuses it
    /// without a CA), `http` otherwise.
    pub fn uri(&self, address: &str) -> String {
        let (scheme, rest) = address.split_once("://").unwrap_or(("http", address));
        let rest = rest.trim_end_matches('/');
        let scheme = if self.uses_tls() || scheme == "https" {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{rest}")
    }

    /// An endpoint for `address`, with TLS when configured.
    pub fn endpoint(&self, address: &str, connect_timeout: Duration) -> Result<Endpoint, Error> {
        if let Some((scheme, _)) = address.split_once("://") {
            if scheme != "http" && scheme != "https" {
                return Err(Error::Config(format!(
                    "endpoint {address:?}: scheme {scheme}:// is not supported; use http:// \
                     or https:// (or host:port)"
                )));
            }
        }
        let uri = self.uri(address);
        if uri.starts_with("https://") && !self.uses_tls() {
            return Err(Error::Config(format!(
                "{address} is https but no CA is given (LEDGER_TLS_CA or --tls-ca)"
            )));
        }
        let endpoint = Endpoint::from_shared(uri)
            .map_err(|e| Error::Config(format!("endpoint {address:?}: {e}")))?
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true);
        match &self.tls_ca_pem {
            None => Ok(endpoint),
            Some(ca) => endpoint
                .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)))
                .map_err(|e| Error::Config(format!("TLS for {address:?}: {e}"))),
        }
    }

    /// A channel to `address` that connects on first use.
    pub fn lazy_channel(
        &self,
        address: &str,
        connect_timeout: Duration,
    ) -> Result<AuthChannel, Error> {
        let channel = self.endpoint(address, connect_timeout)?.connect_lazy();
        Ok(InterceptedService::new(channel, self.interceptor()))
    }

    /// A channel to `address`, connected now.
    pub async fn channel(
        &self,
        address: &str,
        connect_timeout: Duration,
    ) -> Result<AuthChannel, Error> {
        let channel = self
            .endpoint(address, connect_timeout)?
            .connect()
            .await
            .map_err(|e| Error::Unavailable {
                attempts: 1,
                elapsed: Duration::ZERO,
                last_error: format!("{address}: cannot connect: {e}"),
            })?;
        Ok(InterceptedService::new(channel, self.interceptor()))
    }

    pub fn interceptor(&self) -> TokenInterceptor {
        TokenInterceptor {
            header: self.token.clone(),
        }
    }
}

/// Adds the token, if any, to each call.
#[derive(Clone, Default)]
pub struct TokenInterceptor {
    header: Option<MetadataValue<Ascii>>,
}

impl Interceptor for TokenInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(header) = &self.header {
            request
                .metadata_mut()
                .insert("authorization", header.clone());
        }
        Ok(request)
    }
}

pub use ledger_wire::token_sha256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_follows_tls() {
        let plain = Credentials::new();
        assert_eq!(plain.uri("127.0.0.1:7000"), "http://127.0.0.1:7000");
        assert_eq!(plain.uri("http://h:1/"), "http://h:1");
        // Never downgraded: an https endpoint without a CA is refused, not sent in clear.
        assert_eq!(plain.uri("https://h:1/"), "https://h:1");
        assert!(matches!(
            plain.endpoint("https://h:1", Duration::from_secs(1)),
            Err(Error::Config(_))
        ));
        let tls = Credentials::new().with_tls_ca_pem(b"x".to_vec());
        assert_eq!(tls.uri("http://127.0.0.1:7000"), "https://127.0.0.1:7000");
        assert_eq!(tls.uri("h:1"), "https://h:1");
    }

    #[test]
    fn token_is_sent_and_never_printed() {
        let credentials = Credentials::new().with_token("s3cret").expect("ascii");
        assert!(!format!("{credentials:?}").contains("s3cret"));
        let request = credentials
            .interceptor()
            .call(tonic::Request::new(()))
            .expect("intercepted");
        assert_eq!(
            request.metadata().get("authorization").expect("header"),
            "Bearer s3cret"
        );
        assert!(Credentials::new().with_token("bad\ntoken").is_err());
    }
}
