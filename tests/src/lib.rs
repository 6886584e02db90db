//! truce-tests
