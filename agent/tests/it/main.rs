//! Integration tests of `truce-agent`: they run the real binary
//! (`CARGO_BIN_EXE_truce-agent`) in temporary data directories, and read
//! the queue back through the library and truce-shared's verifier.
//!
//! One module per promise of issue 4:

/// Shared helpers: a temp data dir, running the binary (truce-testkit's runner), checking the chain.
mod support;

/// Bad input is refused with one line naming the field; nothing changes.
mod bad_input;
/// `bundle export` is read back by truce-shared's reader and verifies.
mod bundle;
/// 1,000 records form one unbroken, verifiable chain.
mod chain;
/// Concurrent `record`s serialize: the chain never forks.
mod concurrent;
/// A data dir made before sealing, converted with nothing lost.
mod conversion;
/// `init` makes a 0600 key once; every other command asks for it first.
mod init;
/// Interactive entry through a real pseudo-terminal.
mod interactive;
/// SIGKILL during a record loop loses no printed id and breaks no link.
mod kill;
/// A stand-in server (real mTLS, DESIGN §4) for the sync tests.
mod mock_server;
/// `list`, `show`, `status` and their JSON; answers and receipts.
mod queries;
/// A seized laptop: nothing in clear, passphrase, pruning, wipe.
mod sealed;
/// 100,000 reports listed, exported and synced in bounded memory.
mod streaming;
/// `sync` and `sync --watch` against it; `link` validation.
mod sync;
