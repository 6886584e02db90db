//! The property the session fuzz target checks, as a plain function.
//!
//! `server/fuzz`'s `session` target feeds libFuzzer's bytes to [`session`];
//! `tests/fuzz_corpus.rs` replays the committed seeds and every input the
//! fuzzer ever failed on, so `cargo test` runs them without the fuzzer.

use std::sync::OnceLock;
use std::time::Duration;

use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;
use truce_shared::log::{self, LogKey, ReceiptBody};
use truce_shared::wire::Message;
use truce_shared::{encoding, frame};

use crate::config::Limits;
use crate::session::{self, Context, Summary};
use crate::shutdown::Shutdown;
use crate::store::Store;
use crate::verify::Verifier;
use crate::writer::Writer;

/// One server's moving parts, shared by every input: setting up a store
/// and a writer thread per input would make the fuzzer a hundred times
/// slower. Reports from earlier inputs stay stored, so a resubmission is a
/// Duplicate, as on a real server.
struct World {
    runtime: Runtime,
    ctx: Context,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
        // A file, not memory: the prover reads it on a connection of its own.
        let path = std::env::temp_dir().join(format!("truce-fuzz-{}.sqlite", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut store = Store::open_sqlite(&path).expect("a store");
        store.open_log(&[7; 32], log::DEFAULT_MISSION).expect("the log");
        let prover = Store::open_sqlite(&path).expect("a second connection");
        let (writer, thread) = Writer::spawn(store, crate::store::Quotas::default()).expect("the writer thread");
        // The writer lives as long as the process.
        std::mem::forget(thread);
        let limits = Limits { idle_timeout: Duration::from_secs(5), ..Limits::default() };
        let key = Arc::new(LogKey::new(&[7; 32], log::DEFAULT_MISSION));
        let ctx = Context::new(writer, Verifier::new(1), key, prover, limits);
        World { runtime, ctx }
    })
}

/// Runs one session with `data` as everything the client sends, then the
/// client's end of stream. The session must end (no hang, no panic), and
/// everything the server sent must be well-formed server messages: a
/// Welcome or Refuse first, then Acks whose receipts verify under the
/// log key for every result, with a checkpoint that includes them. Returns the number of
/// Acks, so tests can see an input reached the commit path.
pub fn session(data: &[u8]) -> usize {
    let world = world();
    let sent = world.runtime.block_on(async {
        let (mut server_io, client_io) = tokio::io::duplex(64 * 1024);
        let (mut from_server, mut to_server) = tokio::io::split(client_io);
        let client = async {
            // The server may stop reading at any point; a failed write is
            // then expected.
            let _ = to_server.write_all(data).await;
            let _ = to_server.shutdown().await;
            let mut out = Vec::new();
            let _ = from_server.read_to_end(&mut out).await;
            out
        };
        let server = async {
            let mut stop = Shutdown::never();
            let mut summary = Summary::default();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            let _ = session::serve(&mut server_io, &world.ctx, deadline, &mut stop, "fuzz", None, &mut summary).await;
            drop(server_io);
        };
        let (out, ()) = tokio::join!(client, server);
        out
    });
    check_server_output(&sent, &world.ctx.log_key.public())
}

fn check_server_output(mut sent: &[u8], server_key: &[u8; 32]) -> usize {
    let mut first = true;
    let mut acks = 0;
    while let Some(bytes) = frame::read_frame_sync(&mut sent, u32::MAX).expect("the server sends whole frames") {
        let msg: Message = encoding::decode(&bytes).expect("the server sends decodable messages");
        match msg {
            Message::Welcome { .. } => assert!(first, "Welcome after the first message"),
            // A Refuse answers a Hello, or a Prove the log cannot answer.
            Message::Refuse { .. } | Message::Proofs { .. } | Message::Upload { .. } => {}
            Message::Ack { batch, received_at, results, checkpoint, signature } => {
                assert!(!first, "an Ack before Welcome");
                let body = ReceiptBody {
                    batch,
                    received_at,
                    results: results.as_slice().into(),
                    checkpoint: checkpoint.as_str().into(),
                };
                assert!(log::verify_receipt(server_key, &body, &signature), "an Ack whose receipt does not verify");
                let cp = log::open_checkpoint(&checkpoint, server_key).expect("a checkpoint signed by the log key");
                assert!(results.iter().all(|o| o.entry < cp.size), "a result outside its checkpoint");
                acks += 1;
            }
            other => panic!("the server sent a client message: {other:?}"),
        }
        first = false;
    }
    acks
}
