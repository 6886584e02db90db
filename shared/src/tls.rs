//! The one crypto provider every Truce TLS configuration is built with:
//! the server's, the agent's, and the test clients'.
//!
//! AWS-LC (rustls's `aws_lc_rs` provider) with the key exchange groups cut
//! to two, in this order:
//!
//! - `X25519MLKEM768`: the hybrid of X25519 and ML-KEM-768 (FIPS 203), what
//!   two Truce ends always agree on. Reports name positions, units and
//!   weapons; traffic recorded today stays unreadable even to someone who
//!   can later break X25519 alone (DESIGN §5);
//! - `X25519`: for other clients (an `openssl s_client` check, a mission's
//!   own tools) that do not speak the hybrid yet.
//!
//! Protocol versions are each side's `tls.rs`: both allow TLS 1.3 only.
//! This module only exists with the crate's `tls` feature, so crates that
//! need no TLS (the fuzz targets) do not build AWS-LC.

use rustls::crypto::aws_lc_rs::{self, kx_group};
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::CommonState;

/// The key exchange groups, most preferred first.
pub static KX_GROUPS: &[&dyn SupportedKxGroup] = &[kx_group::X25519MLKEM768, kx_group::X25519];

/// AWS-LC's provider with [`KX_GROUPS`] as its only key exchange groups.
pub fn provider() -> CryptoProvider {
    CryptoProvider { kx_groups: KX_GROUPS.to_vec(), ..aws_lc_rs::default_provider() }
}

/// The key exchange group a finished handshake agreed on, by its IANA name
/// (`X25519MLKEM768`, `X25519`), for logs; `none` before the handshake.
pub fn key_exchange_group(conn: &CommonState) -> String {
    match conn.negotiated_key_exchange_group() {
        Some(group) => format!("{:?}", group.name()),
        None => "none".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hybrid_comes_first_and_x25519_is_the_only_fallback() {
        let names: Vec<String> = provider().kx_groups.iter().map(|g| format!("{:?}", g.name())).collect();
        assert_eq!(names, ["X25519MLKEM768", "X25519"]);
    }
}
