//! ledger-wire: what server and client share on the wire, and nothing else.
//!
//! - [`proto`]: the generated gRPC types and services (`proto/*.proto`, both sides of each).
//! - [`convert`]: ledger-core types to and from the wire types.
//! - [`error_details`]: the standard `google.rpc.Status` details every error carries.
//! - [`token_sha256`]: how a bearer token is hashed in a server's auth file.

pub mod convert;
pub mod error_details;
pub mod proto;

/// The lowercase hex SHA-256 of a token: what a server's auth file holds instead of it.
pub fn token_sha256(token: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn token_hash_is_sha256() {
        assert_eq!(
            super::token_sha256("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
