//! truce-server
