//! Known-answer vectors for the transparency log, committed in
//! `vectors/log.json`: the postcard bytes and leaf hash of one entry per
//! kind of event (and per `Stored` and `Via`), the tree of those leaves,
//! a fixed log key, a checkpoint of that tree and a signed receipt.
//!
//! The entry layout is public (see `truce_shared::log`): auditors outside
//! Truce hash these bytes. If this test fails, the log format changed; that
//! must be a new `ENTRY_VERSION` or receipt domain, announced, never a
//! silent edit of the JSON.

use serde_json::{json, Value};
use truce_shared::log::{
    open_checkpoint, receipt_message, record_hash, verify_receipt, Entry, Event, LogKey, MemoryTree, Outcome,
    ReceiptBody, Stored, Via, DEFAULT_MISSION, EMPTY_HASH, ENTRY_VERSION, RECEIPT_DOMAIN,
};
use truce_shared::wire::Status;

/// When the fixed entries were recorded (unix ms).
const AT: i64 = 1_760_000_000_123;

/// The seed of the fixed log key.
const SEED: [u8; 32] = [0x07; 32];

/// 32 distinct bytes from `start` up, so a reversed or shifted array shows.
fn b32(start: u8) -> [u8; 32] {
    std::array::from_fn(|i| start.wrapping_add(i as u8))
}

/// The fixed entries: every `Event`, every `Stored`, every `Via`, both
/// sides of every `Option`.
fn fixed_entries() -> Vec<(&'static str, Entry)> {
    let device = b32(0x20);
    vec![
        (
            "report-verified-tls",
            Entry::new(
                AT,
                Event::Report {
                    id: b32(0x10),
                    device,
                    seq: 1,
                    status: Stored::Verified,
                    via: Via::Tls { serial: "4f2a9c01".into() },
                },
            ),
        ),
        (
            "report-quarantined-import",
            Entry::new(
                AT + 1,
                Event::Report {
                    id: b32(0x30),
                    device: b32(0x40),
                    seq: 300,
                    status: Stored::Quarantined("device key not enrolled".into()),
                    via: Via::Import { bundle: b32(0x50) },
                },
            ),
        ),
        (
            "report-rejected-tls",
            Entry::new(
                AT + 2,
                Event::Report {
                    id: b32(0x60),
                    device,
                    seq: 2,
                    status: Stored::Rejected("device key revoked".into()),
                    via: Via::Tls { serial: "00ff".into() },
                },
            ),
        ),
        (
            "refused-with-device-import",
            Entry::new(
                AT + 3,
                Event::Refused {
                    id: b32(0x70),
                    device: Some(b32(0x40)),
                    reason: "signature does not verify".into(),
                    via: Via::Import { bundle: b32(0x50) },
                },
            ),
        ),
        (
            "refused-without-device-tls",
            Entry::new(
                AT + 4,
                Event::Refused {
                    id: b32(0x80),
                    device: None,
                    reason: "undecodable envelope".into(),
                    via: Via::Tls { serial: "4f2a9c01".into() },
                },
            ),
        ),
        ("enrolled", Entry::new(AT + 5, Event::Enrolled { device: b32(0x40), name: "Beobachtungsposten Süd".into() })),
        ("revoked-since", Entry::new(AT + 6, Event::Revoked { device, since: Some(AT - 86_400_000) })),
        ("revoked", Entry::new(AT + 7, Event::Revoked { device: b32(0x90), since: None })),
        ("promoted", Entry::new(AT + 8, Event::Promoted { id: b32(0x30) })),
        ("fork", Entry::new(AT + 9, Event::Fork { device, seq: 2, kept: b32(0x60), rejected: b32(0xa0) })),
        (
            "report-unrecorded",
            Entry::new(
                AT + 10,
                Event::Report { id: b32(0xb0), device, seq: 3, status: Stored::Verified, via: Via::Unrecorded },
            ),
        ),
    ]
}

// Field-by-field descriptions for the JSON. The matches have no wildcard:
// a new variant does not compile until it has a description and a vector.

fn describe(e: &Entry) -> Value {
    json!({ "version": e.version, "at": e.at, "event": describe_event(&e.event) })
}

fn describe_event(event: &Event) -> Value {
    match event {
        Event::Report { id, device, seq, status, via } => json!({
            "variant": 0, "kind": "Report", "id": hex::encode(id), "device": hex::encode(device), "seq": seq,
            "status": describe_stored(status), "via": describe_via(via),
        }),
        Event::Refused { id, device, reason, via } => json!({
            "variant": 1, "kind": "Refused", "id": hex::encode(id), "device": device.map(hex::encode),
            "reason": reason, "via": describe_via(via),
        }),
        Event::Enrolled { device, name } => {
            json!({ "variant": 2, "kind": "Enrolled", "device": hex::encode(device), "name": name })
        }
        Event::Revoked { device, since } => {
            json!({ "variant": 3, "kind": "Revoked", "device": hex::encode(device), "since": since })
        }
        Event::Promoted { id } => json!({ "variant": 4, "kind": "Promoted", "id": hex::encode(id) }),
        Event::Fork { device, seq, kept, rejected } => json!({
            "variant": 5, "kind": "Fork", "device": hex::encode(device), "seq": seq,
            "kept": hex::encode(kept), "rejected": hex::encode(rejected),
        }),
    }
}

fn describe_stored(s: &Stored) -> Value {
    match s {
        Stored::Verified => json!({ "variant": 0, "kind": "Verified" }),
        Stored::Quarantined(r) => json!({ "variant": 1, "kind": "Quarantined", "reason": r }),
        Stored::Rejected(r) => json!({ "variant": 2, "kind": "Rejected", "reason": r }),
    }
}

fn describe_via(v: &Via) -> Value {
    match v {
        Via::Tls { serial } => json!({ "variant": 0, "kind": "Tls", "serial": serial }),
        Via::Import { bundle } => json!({ "variant": 1, "kind": "Import", "bundle": hex::encode(bundle) }),
        Via::Unrecorded => json!({ "variant": 2, "kind": "Unrecorded" }),
    }
}

fn describe_status(s: &Status) -> Value {
    match s {
        Status::Accepted => json!({ "variant": 0, "kind": "Accepted" }),
        Status::Duplicate => json!({ "variant": 1, "kind": "Duplicate" }),
        Status::Quarantined(r) => json!({ "variant": 2, "kind": "Quarantined", "reason": r }),
        Status::Rejected(r) => json!({ "variant": 3, "kind": "Rejected", "reason": r }),
    }
}

fn key() -> LogKey {
    LogKey::new(&SEED, DEFAULT_MISSION)
}

fn tree(entries: &[(&str, Entry)]) -> MemoryTree {
    let mut t = MemoryTree::new();
    for (_, e) in entries {
        t.push(e.leaf_hash()).unwrap();
    }
    t
}

/// The prefixes of the tree whose roots are pinned: all of them, the empty
/// one included.
fn prefix_roots(entries: &[(&str, Entry)]) -> Vec<Value> {
    let mut t = MemoryTree::new();
    let mut out = vec![json!({ "size": 0, "root": hex::encode(t.root().unwrap().0) })];
    for (_, e) in entries {
        t.push(e.leaf_hash()).unwrap();
        out.push(json!({ "size": t.size(), "root": hex::encode(t.root().unwrap().0) }));
    }
    out
}

fn fixed_outcomes() -> Vec<Outcome> {
    vec![
        Outcome { id: b32(0x10), status: Status::Accepted, entry: 0 },
        Outcome { id: b32(0x30), status: Status::Quarantined("device key not enrolled".into()), entry: 1 },
        Outcome { id: b32(0x60), status: Status::Rejected("device key revoked".into()), entry: 2 },
        Outcome { id: b32(0x10), status: Status::Duplicate, entry: 0 },
    ]
}

/// The whole document, as the generator prints it and the file holds it.
fn generate() -> Value {
    let entries = fixed_entries();
    let key = key();
    let t = tree(&entries);
    let root = t.root().unwrap();
    let note = key.checkpoint(t.size(), &root);
    let outcomes = fixed_outcomes();
    let body = ReceiptBody {
        batch: 3,
        received_at: AT,
        results: outcomes.as_slice().into(),
        checkpoint: note.as_str().into(),
    };
    let body_bytes = receipt_message(&body)[RECEIPT_DOMAIN.len()..].to_vec();
    json!({
        "entry_version": ENTRY_VERSION,
        "entries": entries.iter().map(|(name, e)| json!({
            "name": name,
            "entry": describe(e),
            "bytes": hex::encode(e.encode()),
            "leaf_hash": hex::encode(e.leaf_hash().0),
        })).collect::<Vec<_>>(),
        "tree": {
            "size": t.size(),
            "root": hex::encode(root.0),
            "prefixes": prefix_roots(&entries),
        },
        "key": {
            "seed": hex::encode(SEED),
            "mission": DEFAULT_MISSION,
            "public": hex::encode(key.public()),
            "origin": key.origin(),
            "verifier_key": key.verifier_key(),
        },
        "checkpoint": { "size": t.size(), "root": hex::encode(root.0), "note": note },
        "receipt": {
            "domain": hex::encode(RECEIPT_DOMAIN),
            "body": {
                "batch": body.batch,
                "received_at": body.received_at,
                "results": outcomes.iter().map(|o| json!({
                    "id": hex::encode(o.id), "status": describe_status(&o.status), "entry": o.entry,
                })).collect::<Vec<_>>(),
                "checkpoint": "the checkpoint note above",
            },
            "body_bytes": hex::encode(&body_bytes),
            "signature": hex::encode(key.sign_receipt(&body).0),
        },
    })
}

fn committed() -> Value {
    serde_json::from_str(include_str!("vectors/log.json")).expect("vectors/log.json parses")
}

fn unhex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("a hex string")).expect("valid hex")
}

fn hash32(v: &Value) -> [u8; 32] {
    unhex(v).try_into().expect("32 bytes")
}

#[test]
fn fixed_entries_encode_to_the_committed_bytes_and_leaf_hashes() {
    let doc = committed();
    assert_eq!(doc["entry_version"], json!(ENTRY_VERSION));
    let vectors = doc["entries"].as_array().unwrap();
    let entries = fixed_entries();
    assert_eq!(entries.len(), vectors.len());
    for ((name, e), v) in entries.iter().zip(vectors) {
        assert_eq!(v["name"], json!(name));
        assert_eq!(v["entry"], describe(e), "{name}: the described fields");
        let bytes = unhex(&v["bytes"]);
        assert_eq!(hex::encode(e.encode()), v["bytes"].as_str().unwrap(), "{name}: entry bytes changed");
        assert_eq!(e.leaf_hash().0, hash32(&v["leaf_hash"]), "{name}: leaf hash changed");
        // The leaf hash is RFC 9162's over exactly these bytes.
        assert_eq!(record_hash(&bytes).0, hash32(&v["leaf_hash"]), "{name}");
        let mut rfc = vec![0u8];
        rfc.extend_from_slice(&bytes);
        use sha2::Digest as _;
        assert_eq!(<[u8; 32]>::from(sha2::Sha256::digest(&rfc)), hash32(&v["leaf_hash"]), "{name}");
    }
}

#[test]
fn committed_entry_bytes_decode_to_the_fixed_entries_and_nothing_else() {
    let doc = committed();
    for ((name, e), v) in fixed_entries().iter().zip(doc["entries"].as_array().unwrap()) {
        let bytes = unhex(&v["bytes"]);
        assert_eq!(&Entry::decode(&bytes).unwrap(), e, "{name}");
        // Version first, as one byte; the event's variant index follows
        // `at`, as the documented table numbers it.
        assert_eq!(bytes[0], ENTRY_VERSION, "{name}");
        let at_len = bytes[1..].iter().position(|b| b & 0x80 == 0).unwrap() + 1;
        assert_eq!(json!(bytes[1 + at_len]), v["entry"]["event"]["variant"], "{name}");
        // Trailing bytes, an overlong `at` and another version are refused.
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(Entry::decode(&trailing).is_err(), "{name}: trailing byte");
        let mut overlong = bytes[..at_len].to_vec();
        overlong.push(bytes[at_len] | 0x80);
        overlong.push(0);
        overlong.extend_from_slice(&bytes[1 + at_len..]);
        assert!(Entry::decode(&overlong).is_err(), "{name}: overlong varint");
        let mut v2 = bytes.clone();
        v2[0] = ENTRY_VERSION + 1;
        assert!(Entry::decode(&v2).is_err(), "{name}: version");
    }
}

#[test]
fn the_vectors_cover_every_kind_of_entry() {
    let doc = committed();
    let mut kinds = std::collections::BTreeSet::new();
    let mut absent_and_present = std::collections::BTreeSet::new();
    for v in doc["entries"].as_array().unwrap() {
        let ev = &v["entry"]["event"];
        kinds.insert(format!("Event::{}", ev["kind"].as_str().unwrap()));
        for (field, prefix) in [("status", "Stored"), ("via", "Via")] {
            if let Some(k) = ev[field]["kind"].as_str() {
                kinds.insert(format!("{prefix}::{k}"));
            }
        }
        for (kind, field) in [("Refused", "device"), ("Revoked", "since")] {
            if ev["kind"] == json!(kind) {
                absent_and_present.insert((kind, ev[field].is_null()));
            }
        }
    }
    let want = [
        "Event::Report",
        "Event::Refused",
        "Event::Enrolled",
        "Event::Revoked",
        "Event::Promoted",
        "Event::Fork",
        "Stored::Verified",
        "Stored::Quarantined",
        "Stored::Rejected",
        "Via::Tls",
        "Via::Import",
        "Via::Unrecorded",
    ];
    assert_eq!(kinds, want.iter().map(|s| s.to_string()).collect());
    assert_eq!(absent_and_present.len(), 4, "Refused.device and Revoked.since, both None and Some");
}

#[test]
fn the_tree_of_the_fixed_entries_has_the_committed_roots() {
    let doc = committed();
    let entries = fixed_entries();
    let t = tree(&entries);
    assert_eq!(doc["tree"]["size"], json!(entries.len()));
    assert_eq!(t.root().unwrap().0, hash32(&doc["tree"]["root"]));
    let prefixes = doc["tree"]["prefixes"].as_array().unwrap();
    assert_eq!(prefixes.len(), entries.len() + 1);
    assert_eq!(hash32(&prefixes[0]["root"]), EMPTY_HASH.0);
    // The roots follow from the committed leaf hashes alone.
    let mut from_file = MemoryTree::new();
    for (i, p) in prefixes.iter().enumerate() {
        assert_eq!(p["size"], json!(i));
        assert_eq!(from_file.root().unwrap().0, hash32(&p["root"]), "prefix of {i}");
        if let Some(v) = doc["entries"].get(i) {
            from_file.push(truce_shared::log::Hash(hash32(&v["leaf_hash"]))).unwrap();
        }
    }
    assert_eq!(prefix_roots(&entries), *prefixes);
}

#[test]
fn the_fixed_key_checkpoint_and_receipt_are_the_committed_ones() {
    let doc = committed();
    let key = key();
    let k = &doc["key"];
    assert_eq!(unhex(&k["seed"]), SEED);
    assert_eq!(k["mission"], json!(DEFAULT_MISSION));
    assert_eq!(hex::encode(key.public()), k["public"].as_str().unwrap(), "public key");
    assert_eq!(key.origin(), k["origin"].as_str().unwrap(), "origin");
    assert_eq!(key.verifier_key(), k["verifier_key"].as_str().unwrap(), "verifier key");

    // Ed25519 is deterministic, so the note is fixed.
    let cp = &doc["checkpoint"];
    let root = truce_shared::log::Hash(hash32(&cp["root"]));
    let note = cp["note"].as_str().unwrap();
    assert_eq!(cp["size"], doc["tree"]["size"]);
    assert_eq!(cp["root"], doc["tree"]["root"]);
    assert_eq!(key.checkpoint(cp["size"].as_u64().unwrap(), &root), note, "checkpoint note changed");
    let opened = open_checkpoint(note, &key.public()).unwrap();
    assert_eq!((opened.origin.as_str(), opened.size, opened.root), (key.origin(), 11, root));

    let r = &doc["receipt"];
    assert_eq!(unhex(&r["domain"]), RECEIPT_DOMAIN);
    let outcomes = fixed_outcomes();
    let body = ReceiptBody { batch: 3, received_at: AT, results: outcomes.as_slice().into(), checkpoint: note.into() };
    let body_bytes = unhex(&r["body_bytes"]);
    let message = receipt_message(&body);
    assert_eq!(message[..RECEIPT_DOMAIN.len()], *RECEIPT_DOMAIN);
    assert_eq!(
        hex::encode(&message[RECEIPT_DOMAIN.len()..]),
        r["body_bytes"].as_str().unwrap(),
        "receipt body changed"
    );
    let decoded: ReceiptBody<'_> = postcard::from_bytes(&body_bytes).unwrap();
    assert_eq!(decoded, body);
    let sig = key.sign_receipt(&body);
    assert_eq!(hex::encode(sig.0), r["signature"].as_str().unwrap(), "receipt signature changed");
    assert!(verify_receipt(&key.public(), &body, &sig));
    // And by plain Ed25519 over domain ‖ body bytes, without our code.
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&hash32(&k["public"])).unwrap();
    let mut signed = RECEIPT_DOMAIN.to_vec();
    signed.extend_from_slice(&body_bytes);
    let sig64: [u8; 64] = unhex(&r["signature"]).try_into().unwrap();
    vk.verify_strict(&signed, &ed25519_dalek::Signature::from_bytes(&sig64)).unwrap();
}

#[test]
fn the_committed_file_is_exactly_what_the_generator_writes() {
    assert_eq!(generate(), committed(), "vectors/log.json differs from the fixed values: run print_vectors and look");
}

/// Prints the vectors; run with `--ignored --nocapture` to regenerate
/// `vectors/log.json` after a deliberate, announced format change.
#[test]
#[ignore = "generator, not a check"]
fn print_vectors() {
    println!("{}", serde_json::to_string_pretty(&generate()).unwrap());
}
