//! Known-answer vectors: the canonical bytes, id and signature of three fixed
//! reports under a fixed key, committed in `vectors/reports.json`. If this
//! test fails, the wire format changed: that breaks every tool that reads
//! Truce reports and must never happen silently.

mod support;

use truce_shared::{verify, SignedReport};

#[derive(serde::Deserialize)]
struct Vector {
    public_key: String,
    body: String,
    id: String,
    signature: String,
}

fn committed() -> Vec<Vector> {
    serde_json::from_str(include_str!("vectors/reports.json")).expect("vectors/reports.json parses")
}

#[test]
fn fixed_reports_encode_and_sign_to_the_committed_bytes() {
    let made = support::fixed_reports();
    let vectors = committed();
    assert_eq!(made.len(), vectors.len());
    let key = hex::encode(support::fixed_key().verifying_key().to_bytes());
    for (r, v) in made.iter().zip(&vectors) {
        assert_eq!(v.public_key, key);
        assert_eq!(hex::encode(&r.body), v.body, "canonical body changed");
        assert_eq!(hex::encode(r.id()), v.id, "report id changed");
        assert_eq!(hex::encode(r.signature.0), v.signature, "signature changed");
    }
}

#[test]
fn committed_vectors_verify_and_keep_their_ids() {
    for v in committed() {
        let report = SignedReport {
            body: hex::decode(&v.body).unwrap(),
            signature: truce_shared::Signature64(hex::decode(&v.signature).unwrap().try_into().unwrap()),
        };
        let ok = verify(&report).expect("committed vector verifies");
        assert_eq!(hex::encode(ok.id), v.id);
        assert_eq!(hex::encode(ok.envelope.device), v.public_key);
    }
}

/// Prints the vectors; run with `--ignored --nocapture` to regenerate the
/// file after a deliberate, announced format change.
#[test]
#[ignore = "generator, not a check"]
fn print_vectors() {
    let key = hex::encode(support::fixed_key().verifying_key().to_bytes());
    let out: Vec<_> = support::fixed_reports()
        .iter()
        .map(|r| {
            serde_json::json!({
                "public_key": key,
                "body": hex::encode(&r.body),
                "id": hex::encode(r.id()),
                "signature": hex::encode(r.signature.0),
            })
        })
        .collect();
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}
