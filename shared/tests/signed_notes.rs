//! Checkpoints against an implementation of C2SP signed-note and
//! tlog-checkpoint other than ours: the `signed_note` crate's own Ed25519
//! verifier and signer (`StandardVerifier`, `StandardSigner`, which share
//! nothing with `LogKey` but the key bytes) and `tlog_tiles::Checkpoint`.
//! A checkpoint we sign must open with their verifier key string, and a
//! note their signer makes from our seed must be byte for byte ours and
//! open with `open_checkpoint`.

use base64::Engine as _;
use signed_note::{Note, Signer as _, StandardSigner, StandardVerifier, VerifierList};
use truce_shared::log::{open_checkpoint, record_hash, LogError, LogKey, MemoryTree, DEFAULT_MISSION};

const SEED: [u8; 32] = [0x07; 32];

fn tree(n: u64) -> MemoryTree {
    let mut t = MemoryTree::new();
    for i in 0..n {
        t.push(record_hash(&i.to_be_bytes())).unwrap();
    }
    t
}

/// The signed-note signer key string for `seed` under `name`, in the
/// format `signed_note::generate_key` writes:
/// `PRIVATE+KEY+<name>+<key id hex>+<base64(0x01 ‖ seed)>`.
fn their_signer_key(seed: &[u8; 32], name: &str) -> String {
    let public = ed25519_dalek::SigningKey::from_bytes(seed).verifying_key().to_bytes();
    let id = signed_note::key_id(name, &[&[0x01][..], &public].concat());
    let b64 = base64::engine::general_purpose::STANDARD;
    format!("PRIVATE+KEY+{name}+{id:08x}+{}", b64.encode([&[0x01][..], seed].concat()))
}

fn their_note(signer: &StandardSigner, size: u64, root: &tlog_tiles::Hash) -> String {
    let text = tlog_tiles::Checkpoint::new(signer.name(), size, *root, "").unwrap().to_bytes();
    let mut note = Note::new(&text, &[]).unwrap();
    note.add_sigs(&[signer]).unwrap();
    String::from_utf8(note.to_bytes()).unwrap()
}

#[test]
fn our_checkpoint_verifies_with_their_verifier_and_parses_with_their_checkpoint() {
    let key = LogKey::new(&SEED, DEFAULT_MISSION);
    for size in [1u64, 2, 7, 1000] {
        let t = tree(size);
        let root = t.root().unwrap();
        let ours = key.checkpoint(size, &root);

        let verifier = StandardVerifier::new(&key.verifier_key()).expect("our verifier key is one they read");
        let note = Note::from_bytes(ours.as_bytes()).unwrap();
        let (verified, unverified) = note.verify(&VerifierList::new(vec![Box::new(verifier.clone())])).unwrap();
        assert_eq!((verified.len(), unverified.len()), (1, 0));
        assert_eq!(verified[0].name(), key.origin());
        assert_eq!(note.to_bytes(), ours.as_bytes(), "their re-encoding of our note is our note");

        let cp = tlog_tiles::Checkpoint::from_bytes(note.text()).unwrap();
        assert_eq!((cp.origin(), cp.size(), *cp.hash()), (key.origin(), size, root));
        assert!(cp.extension().is_empty());

        // Their verifier refuses it for another tree.
        let forged = ours.replacen(&format!("\n{size}\n"), &format!("\n{}\n", size + 1), 1);
        let forged = Note::from_bytes(forged.as_bytes()).unwrap();
        assert!(forged.verify(&VerifierList::new(vec![Box::new(verifier)])).is_err());
    }
}

#[test]
fn a_note_their_signer_makes_from_our_seed_is_ours_and_opens() {
    let key = LogKey::new(&SEED, DEFAULT_MISSION);
    let signer = StandardSigner::new(&their_signer_key(&SEED, key.origin())).expect("a signer key they read");
    for size in [1u64, 3, 8, 1000] {
        let root = tree(size).root().unwrap();
        let theirs = their_note(&signer, size, &root);
        // Ed25519 is deterministic: same key, same text, same note.
        assert_eq!(theirs, key.checkpoint(size, &root), "size {size}");
        let cp = open_checkpoint(&theirs, &key.public()).unwrap();
        assert_eq!((cp.origin.as_str(), cp.size, cp.root), (key.origin(), size, root));
    }
}

#[test]
fn a_note_their_signer_makes_with_another_key_does_not_open() {
    let key = LogKey::new(&SEED, DEFAULT_MISSION);
    let root = tree(5).root().unwrap();
    // Another seed under our origin (so our key's name): refused.
    let impostor = StandardSigner::new(&their_signer_key(&[0x08; 32], key.origin())).unwrap();
    let note = their_note(&impostor, 5, &root);
    assert!(matches!(open_checkpoint(&note, &key.public()), Err(LogError::NotSigned(_))));
    // Our key, and a second, unknown signature beside ours (a witness
    // cosignature, say): it opens on ours.
    let witness = StandardSigner::new(&their_signer_key(&[0x09; 32], "witness.example")).unwrap();
    let mut both = Note::from_bytes(key.checkpoint(5, &root).as_bytes()).unwrap();
    both.add_sigs(&[&witness]).unwrap();
    let both = String::from_utf8(both.to_bytes()).unwrap();
    assert_eq!(open_checkpoint(&both, &key.public()).unwrap().size, 5);
    // Only the witness's signature: refused.
    assert!(open_checkpoint(&their_note(&witness, 5, &root), &key.public()).is_err());
}
