//! The tests of `truce-certs`, one module per promise. One test binary, so
//! the crate links once.

// Shared helpers: run the binary and openssl, load PEM, handshake in memory.
mod util;

// `init` makes a CA, a server certificate and an empty CRL, keys 0600, and never overwrites.
mod init_makes_a_pki;
// `client` makes a clientAuth certificate signed by the CA, and never overwrites.
mod client_certificates;
// `revoke` puts a client on the CRL, keeps earlier entries, and openssl then refuses it.
mod revocation;
// rustls, configured as Truce's server is, accepts our clients and refuses revoked, expired and foreign ones.
mod rustls_handshake;
// openssl-steps.sh, the README's steps, make a PKI that works exactly like ours.
mod openssl_steps;
