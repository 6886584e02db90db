//! Evidence uploads over the real wire (DESIGN §10), from a client that
//! speaks the protocol by hand with a device certificate, as a broken or
//! hostile laptop could: bytes that do not match the signed hash are
//! discarded, counted and never exported; every limit holds at its edge
//! with a reason the laptop can show; a session that breaks the frame
//! limit ends alone; one session uploads a file at a time.
//!
//! The honest laptop's side (resume after a cut, the size limit, altered
//! copies on the laptop) is in `truce-tests`' `evidence_travels`; the
//! arithmetic of `Evidence` alone in its unit tests.

use std::time::Duration;

use sha2::{Digest, Sha256};
use truce_server::evidence::{EvidenceLimits, MAX_CHUNK};
use truce_server::Limits;
use truce_shared::wire::{self, Message, Status, UploadState};
use truce_shared::{limits, Attachment, Bytes32, SignedReport};

use crate::common::*;

fn sha(data: &[u8]) -> Bytes32 {
    Sha256::digest(data).into()
}

/// Bytes no two alike (a counter hashed), `len` of them.
fn file(len: usize, seed: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut h = sha(&[seed]);
    while out.len() < len {
        h = sha(&h);
        out.extend_from_slice(&h);
    }
    out.truncate(len);
    out
}

/// The device's next report, naming these files (bytes, as signed).
fn naming(d: &mut Device, files: &[&[u8]]) -> SignedReport {
    let mut env = d.envelope(d.seq + 1, d.head, "impact, photos attached");
    env.observation.attachments = files
        .iter()
        .enumerate()
        .map(|(i, f)| Attachment {
            name: format!("photo-{i}.jpg"),
            media_type: "image/jpeg".into(),
            size: f.len() as u64,
            sha256: sha(f),
        })
        .collect();
    let r = truce_shared::sign(&d.key, &env).expect("sign");
    d.seq += 1;
    d.head = r.id();
    r
}

/// A running server with an enrolled device whose report names `files`,
/// stored (so they may be uploaded).
async fn mission(evidence: EvidenceLimits, files: &[&[u8]]) -> (Pki, InProcessServer, Device) {
    let pki = Pki::new(&["laptop", "other-laptop"]);
    let server = InProcessServer::start_with_evidence(&pki, Limits::default(), evidence).await;
    let mut d = Device::fixed(7);
    ok(server.cli(&["device", "add", &d.hex(), "--name", "laptop"]));
    let mut c = Client::open(server.addr, pki.client_tls("laptop")).await;
    let ack = c.submit(vec![naming(&mut d, files)]).await;
    assert_eq!(ack.statuses(), vec![Status::Accepted]);
    c.bye().await;
    (pki, server, d)
}

/// Sends one evidence message and reads the server's Upload answer.
async fn ask(c: &mut Client, msg: &Message) -> UploadState {
    wire::write_message(&mut c.tls, msg, limits::MAX_FRAME).await.expect("send");
    match tokio::time::timeout(PATIENCE, wire::read_message(&mut c.tls, limits::MAX_FRAME)).await {
        Ok(Ok(Some(Message::Upload { state, .. }))) => state,
        other => panic!("expected Upload, got {other:?}"),
    }
}

async fn offer(c: &mut Client, data: &[u8]) -> UploadState {
    ask(c, &Message::Offer { sha256: sha(data), size: data.len() as u64 }).await
}

async fn chunk(c: &mut Client, sha256: Bytes32, offset: u64, data: &[u8]) -> UploadState {
    ask(c, &Message::Chunk { sha256, offset, data: serde_bytes::ByteBuf::from(data.to_vec()) }).await
}

/// Sends `data` from `from` as `sha256` in chunks of `size`; the answer to
/// the last one.
async fn send_all(c: &mut Client, sha256: Bytes32, data: &[u8], from: usize, size: usize) -> UploadState {
    let mut last = UploadState::From(from as u64);
    for (i, part) in data[from..].chunks(size).enumerate() {
        last = chunk(c, sha256, (from + i * size) as u64, part).await;
    }
    last
}

fn refused(state: &UploadState, words: &str) -> bool {
    matches!(state, UploadState::Refused(r) if r.contains(words))
}

fn evidence_dir(server: &InProcessServer) -> std::path::PathBuf {
    server.data_dir().join("evidence")
}

/// Names of the files under `evidence/partial/`.
fn partial(server: &InProcessServer) -> Vec<String> {
    std::fs::read_dir(evidence_dir(server).join("partial"))
        .expect("partial dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_that_do_not_match_the_signed_hash_are_refused_counted_and_never_exported() {
    let photo = file(300_000, 1);
    let (pki, server, _d) = mission(EvidenceLimits::default(), &[&photo]).await;
    let h = sha(&photo);
    let mut c = Client::open(server.addr, pki.client_tls("other-laptop")).await;
    assert_eq!(offer(&mut c, &photo).await, UploadState::From(0));
    // Forged bytes of the signed length: each chunk is taken (nothing can
    // be known before the end), the whole is not.
    let mut forged = photo.clone();
    forged[123_456] ^= 0x20;
    assert_eq!(send_all(&mut c, h, &forged, 0, 100_000).await, UploadState::Mismatch);
    let dir = evidence_dir(&server);
    assert!(!dir.join(hex::encode(h)).exists(), "a mismatched file is never held");
    assert!(partial(&server).is_empty(), "a mismatched file is discarded, not kept to resume");
    let log = std::fs::read_to_string(dir.join("refused.log")).expect("refused.log");
    assert_eq!(log.lines().count(), 1, "{log}");
    assert!(log.contains(&hex::encode(h)), "{log}");
    let stats = stats_json(server.data_dir());
    assert_eq!(
        (&stats["evidence"]["refused"], &stats["evidence"]["held"], &stats["evidence"]["missing"]),
        (&1.into(), &0.into(), &1.into()),
        "{stats}"
    );
    // Investigators see it as not held, and get no file for it.
    let out = tempfile::tempdir().unwrap();
    let to = out.path().join("evidence");
    let rows = ok(server.cli(&["export", "--format", "jsonl", "--evidence", to.to_str().unwrap()]));
    let row: serde_json::Value = serde_json::from_str(rows.lines().next().expect("a row")).unwrap();
    assert_eq!(row["attachments"][0]["held"], false, "{row}");
    assert_eq!(std::fs::read_dir(&to).map(|d| d.count()).unwrap_or(0), 0, "nothing exported for it");
    // The upload starts over; the genuine bytes are held.
    assert_eq!(offer(&mut c, &photo).await, UploadState::From(0));
    assert_eq!(send_all(&mut c, h, &photo, 0, 100_000).await, UploadState::Held);
    assert_eq!(std::fs::read(dir.join(hex::encode(h))).unwrap(), photo);
    c.bye().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_of_exactly_max_chunk_is_taken_and_one_byte_more_is_refused() {
    let video = file(2 * MAX_CHUNK + 1, 2);
    let (pki, server, _d) = mission(EvidenceLimits::default(), &[&video]).await;
    let h = sha(&video);
    let mut c = Client::open(server.addr, pki.client_tls("laptop")).await;
    assert_eq!(offer(&mut c, &video).await, UploadState::From(0));
    let over = chunk(&mut c, h, 0, &video[..MAX_CHUNK + 1]).await;
    assert!(refused(&over, &format!("at most {MAX_CHUNK} bytes")), "{over:?}");
    assert!(partial(&server).is_empty(), "nothing of the refused chunk was written");
    assert_eq!(chunk(&mut c, h, 0, &video[..MAX_CHUNK]).await, UploadState::From(MAX_CHUNK as u64));
    assert_eq!(send_all(&mut c, h, &video, MAX_CHUNK, MAX_CHUNK).await, UploadState::Held);
    assert_eq!(std::fs::read(evidence_dir(&server).join(hex::encode(h))).unwrap(), video);
    c.bye().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_over_the_frame_limit_ends_its_own_session_and_no_other() {
    let (a, b) = (file(500_000, 3), file(500_000, 4));
    let (pki, server, _d) = mission(EvidenceLimits::default(), &[&a, &b]).await;
    let mut steady = Client::open(server.addr, pki.client_tls("laptop")).await;
    assert_eq!(offer(&mut steady, &b).await, UploadState::From(0));
    assert_eq!(chunk(&mut steady, sha(&b), 0, &b[..200_000]).await, UploadState::From(200_000));
    // A chunk whose frame is over the limit the Welcome gave: the session
    // ends (the frame is never read into memory), nothing is written.
    let mut rude = Client::open(server.addr, pki.client_tls("laptop")).await;
    assert_eq!(offer(&mut rude, &a).await, UploadState::From(0));
    let big = Message::Chunk {
        sha256: sha(&a),
        offset: 0,
        data: serde_bytes::ByteBuf::from(vec![0u8; rude.max_frame as usize]),
    };
    let _ = wire::write_message(&mut rude.tls, &big, u32::MAX).await;
    assert!(rude.closed_within(PATIENCE).await, "a frame over the limit ends the session");
    // The other session goes on, and the server takes new ones.
    assert_eq!(send_all(&mut steady, sha(&b), &b, 200_000, 100_000).await, UploadState::Held);
    let mut next = Client::open(server.addr, pki.client_tls("laptop")).await;
    let mut state = offer(&mut next, &a).await;
    let deadline = std::time::Instant::now() + PATIENCE;
    while refused(&state, "another session") && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        state = offer(&mut next, &a).await;
    }
    assert_eq!(state, UploadState::From(0), "nothing of the over-limit chunk was written");
    assert_eq!(send_all(&mut next, sha(&a), &a, 0, 250_000).await, UploadState::Held);
    steady.bye().await;
    next.bye().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_past_the_held_bytes_or_the_signed_length_are_not_written() {
    let photo = file(10_000, 5);
    let (pki, server, _d) = mission(EvidenceLimits::default(), &[&photo]).await;
    let h = sha(&photo);
    let mut c = Client::open(server.addr, pki.client_tls("laptop")).await;
    assert_eq!(offer(&mut c, &photo).await, UploadState::From(0));
    assert_eq!(chunk(&mut c, h, 0, &photo[..4_000]).await, UploadState::From(4_000));
    // Past the held bytes but inside the file: not written, told where to send from.
    assert_eq!(chunk(&mut c, h, 6_000, &photo[6_000..8_000]).await, UploadState::From(4_000));
    // Past the signed length, and an offset whose end overflows u64: refused, with the reason.
    for (offset, len) in [(4_000u64, 6_001usize), (10_000, 1), (u64::MAX - 4, 10), (u64::MAX, 1)] {
        let state = chunk(&mut c, h, offset, &vec![0u8; len]).await;
        assert!(refused(&state, "beyond the file's signed length of 10000 bytes"), "{offset}+{len}: {state:?}");
    }
    let held = std::fs::metadata(evidence_dir(&server).join("partial").join(hex::encode(h))).unwrap().len();
    assert_eq!(held, 4_000, "nothing past the held bytes was written");
    // The session goes on from where the server said.
    assert_eq!(chunk(&mut c, h, 4_000, &photo[4_000..]).await, UploadState::Held);
    assert_eq!(std::fs::read(evidence_dir(&server).join(hex::encode(h))).unwrap(), photo);
    c.bye().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_no_report_names_or_a_chunk_before_its_offer_is_refused() {
    let (named, stranger) = (file(5_000, 6), file(5_000, 7));
    let (pki, server, _d) = mission(EvidenceLimits::default(), &[&named]).await;
    let mut c = Client::open(server.addr, pki.client_tls("laptop")).await;
    let state = offer(&mut c, &stranger).await;
    assert!(refused(&state, "no report stored here names this file"), "{state:?}");
    let state = chunk(&mut c, sha(&stranger), 0, &stranger).await;
    assert!(refused(&state, "offer the file before sending its chunks"), "{state:?}");
    // A named file, but no Offer yet in this session.
    let state = chunk(&mut c, sha(&named), 0, &named).await;
    assert!(refused(&state, "offer the file before sending its chunks"), "{state:?}");
    // The size the report signed, or nothing.
    let state = ask(&mut c, &Message::Offer { sha256: sha(&named), size: 5_001 }).await;
    assert!(refused(&state, "another size (5000 bytes)"), "{state:?}");
    assert!(partial(&server).is_empty(), "nothing was written");
    assert!(!evidence_dir(&server).join(hex::encode(sha(&stranger))).exists());
    assert_eq!(offer(&mut c, &named).await, UploadState::From(0));
    assert_eq!(chunk(&mut c, sha(&named), 0, &named).await, UploadState::Held);
    c.bye().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_session_uploading_the_same_file_waits_its_turn() {
    let (cut, finished) = (file(300_000, 8), file(300_000, 9));
    let (pki, server, _d) = mission(EvidenceLimits::default(), &[&cut, &finished]).await;
    let mut first = Client::open(server.addr, pki.client_tls("laptop")).await;
    let mut second = Client::open(server.addr, pki.client_tls("other-laptop")).await;
    // The first session's link breaks mid-file: the second is told to try
    // later until the server sees it end, then resumes at what is held.
    assert_eq!(offer(&mut first, &cut).await, UploadState::From(0));
    assert_eq!(chunk(&mut first, sha(&cut), 0, &cut[..100_000]).await, UploadState::From(100_000));
    let state = offer(&mut second, &cut).await;
    assert!(refused(&state, "another session is uploading this file: try again later"), "{state:?}");
    drop(first);
    let deadline = std::time::Instant::now() + PATIENCE;
    let mut state = offer(&mut second, &cut).await;
    while refused(&state, "another session") && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        state = offer(&mut second, &cut).await;
    }
    assert_eq!(state, UploadState::From(100_000), "resumed at the first session's durable offset");
    assert_eq!(send_all(&mut second, sha(&cut), &cut, 100_000, 100_000).await, UploadState::Held);
    // The first session finishes while the second waits: the second is then
    // told the file is held, and sends nothing.
    let mut first = Client::open(server.addr, pki.client_tls("laptop")).await;
    assert_eq!(offer(&mut first, &finished).await, UploadState::From(0));
    let state = offer(&mut second, &finished).await;
    assert!(refused(&state, "try again later"), "{state:?}");
    assert_eq!(send_all(&mut first, sha(&finished), &finished, 0, 150_000).await, UploadState::Held);
    assert_eq!(offer(&mut second, &finished).await, UploadState::Held);
    for (f, bytes) in [(sha(&cut), &cut), (sha(&finished), &finished)] {
        assert_eq!(&std::fs::read(evidence_dir(&server).join(hex::encode(f))).unwrap(), bytes);
    }
    assert!(partial(&server).is_empty());
    first.bye().await;
    second.bye().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_evidence_quota_fills_at_its_edge_and_reports_still_go_through() {
    let (a, b, c1) = (file(600, 10), file(400, 11), file(1, 12));
    let limits = EvidenceLimits { quota: 1_000, ..Default::default() };
    let (pki, server, mut d) = mission(limits, &[&a, &b, &c1]).await;
    let mut c = Client::open(server.addr, pki.client_tls("laptop")).await;
    assert_eq!(offer(&mut c, &a).await, UploadState::From(0));
    assert_eq!(chunk(&mut c, sha(&a), 0, &a).await, UploadState::Held);
    // Exactly the quota: taken.
    assert_eq!(offer(&mut c, &b).await, UploadState::From(0));
    assert_eq!(chunk(&mut c, sha(&b), 0, &b).await, UploadState::Held);
    // One byte more: refused, saying which limit, and reports still flow.
    let state = offer(&mut c, &c1).await;
    assert!(refused(&state, "evidence quota of 1000 bytes is full (--evidence-quota)"), "{state:?}");
    let ack = c.submit(vec![d.next("after the quota filled")]).await;
    assert_eq!(ack.statuses(), vec![Status::Accepted]);
    let stats = stats_json(server.data_dir());
    assert_eq!(stats["evidence"]["held_bytes"], 1_000, "{stats}");
    c.bye().await;
}
