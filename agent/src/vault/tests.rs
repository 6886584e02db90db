//! The vault's promises: keyrings open with their passphrase only, rows
//! and files are bound to what they are, sizes are padded.

use super::*;

fn pass(s: &str) -> Passphrase {
    Passphrase::new(s.to_string()).unwrap()
}

#[test]
fn a_keyring_opens_with_its_passphrase_only() {
    let seed = [7u8; 32];
    let device = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key().to_bytes();
    let secrets = Secrets::new(&seed);
    let ring = Keyring::seal(device, &secrets, &Protection::Passphrase(pass("correct horse"))).unwrap();
    assert!(ring.is_protected());
    let back = Keyring::load_from_bytes(&ring.to_bytes());
    let opened = back.unseal(Some(&pass("correct horse"))).unwrap();
    assert_eq!(opened.seed, seed);
    assert_eq!(opened.data_key, secrets.data_key);
    assert!(matches!(back.unseal(Some(&pass("wrong horse"))), Err(AgentError::WrongPassphrase)));
    assert!(matches!(back.unseal(None), Err(AgentError::PassphraseNeeded)));
    // Weakening the parameters in the file breaks the seal.
    let mut weak = back.clone();
    weak.t = 4;
    assert!(matches!(weak.unseal(Some(&pass("correct horse"))), Err(AgentError::WrongPassphrase)));
    let text = String::from_utf8(ring.to_bytes()).unwrap();
    assert!(!text.contains(&hex::encode(seed)) && !text.contains(&hex::encode(secrets.data_key)));
}

#[test]
fn an_unprotected_keyring_opens_without_a_passphrase() {
    let seed = [9u8; 32];
    let device = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key().to_bytes();
    let ring = Keyring::seal(device, &Secrets::new(&seed), &Protection::None).unwrap();
    assert!(!ring.is_protected());
    assert_eq!(ring.unseal(None).unwrap().seed, seed);
}

#[test]
fn rows_are_bound_to_their_seq_and_id() {
    let k = DataKey::derive(&[1; 32]);
    let sealed = k.seal_report(3, &[4; 32], b"body", &[5; 64]);
    assert_eq!(k.open_report(3, &[4; 32], &sealed), Some((b"body".to_vec(), [5; 64])));
    assert_eq!(k.open_report(4, &[4; 32], &sealed), None);
    assert_eq!(k.open_report(3, &[6; 32], &sealed), None);
    assert_eq!(DataKey::derive(&[2; 32]).open_report(3, &[4; 32], &sealed), None);
    assert_eq!(k.open_report(3, &[4; 32], &sealed[..10]), None);
}

#[test]
fn files_round_trip_at_chunk_edges_and_refuse_truncation() {
    let k = DataKey::derive(&[1; 32]);
    let p = Path::new("f");
    let io = |e| AgentError::io("io", Path::new("f"), e);
    for len in [0, 1, FILE_CHUNK - 9, FILE_CHUNK - 8, FILE_CHUNK, FILE_CHUNK + 1, 3 * FILE_CHUNK, 700_001] {
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut sealed = Vec::new();
        let sha = k.seal_file(&mut &data[..], len as u64, &mut sealed, &io, &io).unwrap();
        assert_eq!(sha, <[u8; 32]>::from(Sha256::digest(&data)));
        let chunks = padded_len(len as u64) / FILE_CHUNK as u64;
        assert_eq!(sealed.len() as u64, 27 + chunks * (FILE_CHUNK + TAG) as u64, "length {len}");
        let mut back = Vec::new();
        assert_eq!(k.open_file(&mut &sealed[..], &mut back, p).unwrap(), (sha, len as u64));
        assert_eq!(back, data, "length {len}");
        let cut = &sealed[..sealed.len() - 1];
        assert!(k.open_file(&mut &cut[..], &mut Vec::new(), p).is_err(), "truncated {len}");
        if chunks > 1 {
            let cut = &sealed[..sealed.len() - (FILE_CHUNK + TAG)];
            assert!(k.open_file(&mut &cut[..], &mut Vec::new(), p).is_err(), "a whole chunk short {len}");
        }
    }
    // A source that is not the length it was said to be is refused.
    let data = [7u8; 100];
    assert!(k.seal_file(&mut &data[..], 99, &mut Vec::new(), &io, &io).is_err());
    assert!(k.seal_file(&mut &data[..], 101, &mut Vec::new(), &io, &io).is_err());
}

#[test]
fn sealed_sizes_hide_the_exact_length() {
    // Files of many nearby sizes seal to the same size.
    assert_eq!(padded_len(0), FILE_CHUNK as u64);
    assert_eq!(padded_len(3_000_000), padded_len(3_000_000 - 40_000));
    assert_eq!(padded_len(3_000_000), padded_len(2_990_001));
    for len in [0u64, 1, 1000, 65_528, 65_529, 1 << 20, 3_000_000, 1 << 30, 2 << 30] {
        let p = padded_len(len);
        assert!(p >= len + 8 && p.is_multiple_of(FILE_CHUNK as u64), "{len} -> {p}");
        assert!(p <= (len + 8) + (len + 8) / 8 + FILE_CHUNK as u64, "{len} -> {p}: at most about 12% more");
    }
}

#[test]
fn names_and_debug_show_nothing_secret() {
    let k = DataKey::derive(&[1; 32]);
    let sha = [3u8; 32];
    assert_ne!(k.file_name(&sha), hex::encode(sha));
    assert_eq!(format!("{k:?}"), "DataKey(…)");
    assert_eq!(format!("{:?}", pass("secret words")), "Passphrase(…)");
}

impl Keyring {
    fn load_from_bytes(b: &[u8]) -> Keyring {
        serde_json::from_slice(b).unwrap()
    }
}
