//! Properties: any valid observation encodes, decodes and re-encodes to the
//! same bytes, signs, and verifies back to itself.

mod support;

use proptest::prelude::*;
use truce_shared::*;

fn category() -> impl Strategy<Value = Category> {
    (0u8..15).prop_map(|i| encoding::decode(&[i]).unwrap())
}

fn observation() -> impl Strategy<Value = Observation> {
    (
        (any::<i64>(), proptest::option::of(0i64..1_000_000_000)),
        (-90.0f64..=90.0, -180.0f64..=180.0, proptest::option::of(any::<u32>())),
        (proptest::option::of(0u16..360), proptest::option::of((any::<u32>(), any::<u32>()))),
        (category(), proptest::option::of(0u8..4), proptest::option::of("\\PC{0,40}")),
        (proptest::option::of((any::<u32>(), 0u8..3)), 0u8..3, "\\PC{0,200}"),
        proptest::collection::vec(
            ("[a-z0-9._-]{1,40}", "[a-z]{1,10}/[a-z0-9.+-]{1,20}", any::<u64>(), any::<[u8; 32]>()),
            0..4,
        ),
    )
        .prop_map(
            |(
                (at, until),
                (lat, lon, acc),
                (bearing, dist),
                (category, effect, weapon),
                (count, basis, description),
                atts,
            )| {
                Observation {
                    observed_at: at,
                    observed_until: until.map(|d| at.saturating_add(d)),
                    position: Position { lat, lon, accuracy_m: acc },
                    bearing_deg: bearing,
                    distance_m: dist.map(|(a, b)| (a.min(b), a.max(b))),
                    category,
                    effect: effect.map(|i| encoding::decode(&[i]).unwrap()),
                    weapon: weapon.map(|w| w.chars().take(30).collect()),
                    count: count.map(|(n, q)| Count { n, qualifier: encoding::decode(&[q]).unwrap() }),
                    basis: encoding::decode(&[basis]).unwrap(),
                    description,
                    attachments: atts
                        .into_iter()
                        .map(|(name, media_type, size, sha256)| Attachment { name, media_type, size, sha256 })
                        .collect(),
                }
            },
        )
}

proptest! {
    #[test]
    fn encode_decode_encode_is_identity(obs in observation(), seq in 1u64..u64::MAX, prev in any::<[u8; 32]>()) {
        prop_assume!(obs.validate().is_ok());
        let env = support::fixed_envelope(seq, if seq == 1 { [0; 32] } else { prev }, obs);
        prop_assume!(env.validate().is_ok());
        let body = encoding::encode(&env);
        let back = encoding::decode_canonical(&body).unwrap();
        prop_assert_eq!(&back, &env);
        prop_assert_eq!(encoding::encode(&back), body);
    }

    #[test]
    fn signed_reports_verify_to_what_was_signed(obs in observation()) {
        prop_assume!(obs.validate().is_ok());
        let env = support::fixed_envelope(1, [0; 32], obs);
        let signed = sign(&support::fixed_key(), &env).unwrap();
        let v = verify(&signed).unwrap();
        prop_assert_eq!(v.envelope, env);
        prop_assert_eq!(v.id, signed.id());
    }

    #[test]
    fn arbitrary_bytes_never_verify_or_panic(body in proptest::collection::vec(any::<u8>(), 0..400), sig in any::<[u8; 32]>()) {
        let mut s = [0u8; 64];
        s[..32].copy_from_slice(&sig);
        let report = SignedReport { body, signature: Signature64(s) };
        prop_assert!(verify(&report).is_err());
    }
}
