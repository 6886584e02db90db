//! truce-certs
