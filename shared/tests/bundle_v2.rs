//! Bundle version 2 (TRUCEB02): the known answer of a small fixed bundle,
//! committed in `vectors/bundle_v2.json` frame by frame, and how the
//! readers take both versions. If the known answer fails, the bundle
//! format changed: every bundle on every USB stick would read differently,
//! which must never happen silently.

mod support;

use truce_shared::bundle::{
    BundleError, BundleReader, BundleWriter, EvidenceFile, Item, ItemReader, ItemWriter, PieceError, Version,
    MAX_ITEM_FRAME,
};
use truce_shared::limits::MAX_EVIDENCE_CHUNK;
use truce_shared::log::{
    check_inclusion, open_checkpoint, prove_record, Entry, Event, LogKey, MemoryTree, Stored, Via,
};

/// One fixed report, logged after its device's enrolment (a tree of two),
/// exported as a server exports it: checkpoint, then report, entry, proof.
fn fixed_bundle() -> (Vec<u8>, LogKey) {
    let report = support::fixed_reports().remove(0);
    let device = support::fixed_key().verifying_key().to_bytes();
    let key = LogKey::new(&[7; 32], "smm-east");
    let entries = [
        Entry::new(1_795_338_800_000, Event::Enrolled { device, name: "laptop-1".into() }),
        Entry::new(
            1_795_338_900_000,
            Event::Report {
                id: report.id(),
                device,
                seq: 1,
                status: Stored::Verified,
                via: Via::Tls { serial: "5f3a09c2".into() },
            },
        ),
    ];
    let mut tree = MemoryTree::new();
    for e in &entries {
        tree.push(e.leaf_hash()).unwrap();
    }
    let note = key.checkpoint(tree.size(), &tree.root().unwrap());
    let proof = prove_record(2, 1, &tree).unwrap().into_iter().map(|h| h.0).collect();
    let mut w = ItemWriter::new(Vec::new()).unwrap();
    w.write(&Item::Checkpoint { log_key: key.public(), note }).unwrap();
    w.write(&Item::Report(report)).unwrap();
    w.write(&Item::Entry { index: 1, entry: entries[1].encode() }).unwrap();
    w.write(&Item::Inclusion { index: 1, size: 2, proof }).unwrap();
    assert_eq!(w.reports(), 1);
    (w.finish().unwrap(), key)
}

/// The frames of a bundle, as hex, after checking the magic.
fn frames(bytes: &[u8]) -> (String, Vec<String>) {
    let mut out = Vec::new();
    let mut at = 8;
    while at < bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        out.push(hex::encode(&bytes[at + 4..at + 4 + len]));
        at += 4 + len;
    }
    (String::from_utf8(bytes[..8].to_vec()).unwrap(), out)
}

#[derive(serde::Deserialize, serde::Serialize)]
struct Vector {
    magic: String,
    /// (what the frame holds, its body in hex)
    frames: Vec<(String, String)>,
}

#[test]
fn a_fixed_bundle_writes_its_known_answer() {
    let (bytes, _) = fixed_bundle();
    let committed: Vector = serde_json::from_str(include_str!("vectors/bundle_v2.json")).unwrap();
    let (magic, made) = frames(&bytes);
    assert_eq!(magic, committed.magic);
    assert_eq!(made.len(), committed.frames.len());
    for (m, (what, c)) in made.iter().zip(&committed.frames) {
        assert_eq!(m, c, "the {what} frame changed");
    }
    // Each frame starts with its kind: 1 checkpoint, 0 report, 2 entry, 3 inclusion.
    let kinds: Vec<&str> = made.iter().map(|f| &f[..2]).collect();
    assert_eq!(kinds, ["01", "00", "02", "03"]);
    // A report's item is its version-1 frame after the kind byte.
    let v1 = {
        let mut w = BundleWriter::new(Vec::new()).unwrap();
        w.write(&support::fixed_reports()[0]).unwrap();
        w.finish().unwrap()
    };
    assert_eq!(made[1][2..], hex::encode(&v1[12..]));
}

#[test]
fn the_items_read_back_and_the_proof_checks() {
    let (bytes, key) = fixed_bundle();
    let mut r = ItemReader::new(&bytes[..]).unwrap();
    assert_eq!(r.version(), Version::V2);
    let items: Vec<Item> = r.by_ref().map(Result::unwrap).collect();
    assert_eq!(r.reports(), 1);
    let [Item::Checkpoint { log_key, note }, Item::Report(report), Item::Entry { index, entry }, Item::Inclusion { proof, size, .. }] =
        &items[..]
    else {
        panic!("four items in order: {items:?}");
    };
    assert_eq!(*log_key, key.public());
    let cp = open_checkpoint(note, log_key).unwrap();
    assert_eq!((cp.size, *size), (2, 2));
    check_inclusion(&cp, *index, entry, proof).unwrap();
    let Event::Report { id, .. } = Entry::decode(entry).unwrap().event else { panic!("a report entry") };
    assert_eq!(id, report.id());
    // A changed entry, a changed path, another index: each fails.
    let mut bad = entry.clone();
    bad[3] ^= 1;
    assert!(check_inclusion(&cp, *index, &bad, proof).is_err());
    let mut bad_path = proof.clone();
    bad_path[0][0] ^= 1;
    assert!(check_inclusion(&cp, *index, entry, &bad_path).is_err());
    assert!(check_inclusion(&cp, 0, entry, proof).is_err());
    assert!(check_inclusion(&cp, 2, entry, proof).is_err());
    assert!(check_inclusion(&cp, *index, entry, &vec![[0; 32]; 65]).is_err());
}

#[test]
fn the_report_reader_takes_both_versions_and_passes_over_log_items() {
    let (v2, _) = fixed_bundle();
    let reports: Vec<_> = BundleReader::new(&v2[..]).unwrap().map(Result::unwrap).collect();
    assert_eq!(reports, vec![support::fixed_reports().remove(0)]);

    let mut w = BundleWriter::new(Vec::new()).unwrap();
    for r in support::fixed_reports() {
        w.write(&r).unwrap();
    }
    let v1 = w.finish().unwrap();
    let mut items = ItemReader::new(&v1[..]).unwrap();
    assert_eq!(items.version(), Version::V1);
    let read: Vec<Item> = items.by_ref().map(Result::unwrap).collect();
    assert_eq!(read, support::fixed_reports().into_iter().map(Item::Report).collect::<Vec<_>>());
    assert_eq!(BundleReader::new(&v1[..]).unwrap().count(), support::fixed_reports().len());
}

#[test]
fn an_item_of_a_later_kind_is_named_and_read_past() {
    let (mut bytes, _) = fixed_bundle();
    // A frame of kind 9 (a varint), then the bundle goes on.
    let mut later = bytes[..8].to_vec();
    later.extend_from_slice(&3u32.to_be_bytes());
    later.extend_from_slice(&[9, 1, 2]);
    later.extend_from_slice(&bytes.split_off(8));
    let items: Vec<_> = ItemReader::new(&later[..]).unwrap().collect();
    assert!(matches!(items[0], Err(BundleError::UnknownItem { kind: 9, after: 0 })), "{:?}", items[0]);
    assert_eq!(items.len(), 5);
    assert!(items[1..].iter().all(Result::is_ok));
    assert_eq!(BundleReader::new(&later[..]).unwrap().count(), 1);
}

/// An evidence item's bytes, written out by hand from the format in the
/// module documentation: kind 4, the 32 hash bytes, size, offset and the
/// data's length as varints, then the data.
#[test]
fn an_evidence_item_has_known_bytes() {
    use sha2::Digest;
    let sha256: [u8; 32] = sha2::Sha256::digest(b"photo").into();
    let mut w = ItemWriter::new(Vec::new()).unwrap();
    w.write(&Item::Evidence { sha256, size: 200, offset: 195, data: b"photo".to_vec() }).unwrap();
    let bytes = w.finish().unwrap();
    let (magic, made) = frames(&bytes);
    assert_eq!(magic, "TRUCEB02");
    let expected = format!("04{}c801c30105{}", hex::encode(sha256), hex::encode(b"photo"));
    assert_eq!(made, [expected]);
}

/// A file in pieces of the largest size, the last one short, reads back
/// through the reader (whose frame limit takes a full piece) and hashes
/// to its SHA-256; a bundle's report reader passes over the pieces.
#[test]
fn a_file_in_full_pieces_reads_back_and_matches() {
    use sha2::Digest;
    let file: Vec<u8> = (0..MAX_EVIDENCE_CHUNK * 2 + 17).map(|i| (i * 7 % 251) as u8).collect();
    let sha256: [u8; 32] = sha2::Sha256::digest(&file).into();
    let size = file.len() as u64;
    let mut w = ItemWriter::new(Vec::new()).unwrap();
    w.write(&Item::Report(support::fixed_reports().remove(0))).unwrap();
    for (i, piece) in file.chunks(MAX_EVIDENCE_CHUNK).enumerate() {
        let offset = (i * MAX_EVIDENCE_CHUNK) as u64;
        w.write(&Item::Evidence { sha256, size, offset, data: piece.to_vec() }).unwrap();
    }
    let bytes = w.finish().unwrap();
    assert!(MAX_EVIDENCE_CHUNK + 58 <= MAX_ITEM_FRAME as usize);
    let mut f = EvidenceFile::new(sha256, size);
    let mut pieces = 0;
    for item in ItemReader::new(&bytes[..]).unwrap() {
        if let Item::Evidence { size, offset, data, .. } = item.unwrap() {
            f.take(size, offset, &data).unwrap();
            pieces += 1;
        }
    }
    assert_eq!(pieces, 3);
    assert!(f.matches());
    assert_eq!(BundleReader::new(&bytes[..]).unwrap().count(), 1);
}

#[test]
fn pieces_out_of_order_too_big_past_the_end_or_of_another_size_are_refused() {
    use sha2::Digest;
    let sha256: [u8; 32] = sha2::Sha256::digest([1u8; 10]).into();
    let mut f = EvidenceFile::new(sha256, 10);
    assert_eq!(f.take(10, 4, &[1; 2]), Err(PieceError::OutOfOrder { expected: 0, got: 4 }));
    assert_eq!(f.take(11, 0, &[1; 2]), Err(PieceError::OtherSize { size: 10, got: 11 }));
    assert_eq!(f.take(10, 0, &[1; 11]), Err(PieceError::PastTheEnd { size: 10 }));
    f.take(10, 0, &[1; 4]).unwrap();
    assert!(!f.is_complete());
    assert_eq!(f.take(10, 2, &[1; 2]), Err(PieceError::OutOfOrder { expected: 4, got: 2 }));
    f.take(10, 4, &[1; 6]).unwrap();
    assert!(f.is_complete());
    assert!(f.matches(), "ten ones hash to the hash of ten ones");
    // A piece of exactly the limit is taken; one byte more is not.
    let big = vec![0u8; MAX_EVIDENCE_CHUNK + 1];
    let mut f = EvidenceFile::new([0; 32], u64::MAX);
    f.take(u64::MAX, 0, &big[..MAX_EVIDENCE_CHUNK]).unwrap();
    assert_eq!(f.take(u64::MAX, MAX_EVIDENCE_CHUNK as u64, &big), Err(PieceError::TooBig { got: big.len() }));
    // Complete but other bytes: no match.
    let mut f = EvidenceFile::new(sha256, 10);
    f.take(10, 0, &[2; 10]).unwrap();
    assert!(f.is_complete() && !f.matches());
    // Short of the size: no match, whatever the bytes.
    let mut f = EvidenceFile::new(sha256, 10);
    f.take(10, 0, &[1; 9]).unwrap();
    assert!(!f.matches());
}

/// Prints the vector; run with `--ignored --nocapture` to regenerate the
/// file after a deliberate, announced format change.
#[test]
#[ignore = "generator, not a check"]
fn print_vector() {
    let (bytes, _) = fixed_bundle();
    let (magic, frames) = frames(&bytes);
    let names = ["checkpoint", "report", "entry", "inclusion"];
    let v = Vector { magic, frames: names.iter().map(|n| n.to_string()).zip(frames).collect() };
    println!("{}", serde_json::to_string_pretty(&v).unwrap());
}
