//! The properties the fuzz targets check, as plain functions.
//!
//! The cargo-fuzz targets in `shared/fuzz` call these with libFuzzer's
//! inputs; `tests/fuzz_corpus.rs` calls them with the committed seed corpus
//! and every input the fuzzer ever crashed on, so `cargo test` replays them
//! without the fuzzer or a nightly compiler. Each function must return
//! normally for any input: a panic is a finding.

use std::io::Cursor;

use crate::bundle::{BundleReader, MAX_BUNDLE_FRAME};
use crate::encoding;
use crate::frame;
use crate::limits;
use crate::report::SignedReport;
use crate::signing;
use crate::wire::Message;

/// A frame limit small enough that the fuzzer reaches the "over the limit"
/// branch with short inputs.
const FUZZ_FRAME_LIMIT: u32 = 4096;

/// Frame decoding: reads frames until the input ends or an error; every
/// frame read is at most the limit, and re-framing it gives back the exact
/// bytes it came from.
pub fn frame(data: &[u8]) {
    let mut input = Cursor::new(data);
    loop {
        let start = input.position() as usize;
        match frame::read_frame_sync(&mut input, FUZZ_FRAME_LIMIT) {
            Ok(Some(body)) => {
                assert!(body.len() <= FUZZ_FRAME_LIMIT as usize, "a frame over the limit was returned");
                let mut again = Vec::new();
                frame::write_frame_sync(&mut again, &body, FUZZ_FRAME_LIMIT)
                    .expect("a frame within the limit re-frames");
                let end = input.position() as usize;
                assert_eq!(again, data[start..end], "re-framing changed the bytes");
            }
            Ok(None) | Err(_) => return,
        }
    }
}

/// Message decoding: any frame body either fails to decode or decodes to a
/// message whose own encoding decodes to the same message.
pub fn message(data: &[u8]) {
    if let Ok(msg) = encoding::decode::<Message>(data) {
        let bytes = encoding::encode(&msg);
        let again: Message = encoding::decode(&bytes).expect("a message's own encoding decodes");
        assert_eq!(msg, again, "decode(encode(m)) != m");
        assert_eq!(bytes, encoding::encode(&again), "encoding is not stable");
    }
}

/// Report verification: decode a SignedReport, then the one verification
/// function. A report that verifies has the canonical body, the id of its
/// bytes, and verifies again after its own re-encoding.
pub fn report(data: &[u8]) {
    let Ok(report) = encoding::decode::<SignedReport>(data) else { return };
    let Ok(verified) = signing::verify(&report) else { return };
    assert!(report.body.len() <= limits::MAX_REPORT_BODY);
    assert_eq!(encoding::encode(&verified.envelope), report.body, "a verified body is not canonical");
    assert_eq!(verified.id, signing::report_id(&report.body));
    let again: SignedReport = encoding::decode(&encoding::encode(&report)).expect("re-encoded report decodes");
    let reverified = signing::verify(&again).expect("a verified report verifies after re-encoding");
    assert_eq!(reverified.id, verified.id);
}

/// The bundle reader: never returns more reports than the input could
/// hold, stops after the first framing error, and every report that
/// verifies is checked as in [`report`].
pub fn bundle(data: &[u8]) {
    let Ok(reader) = BundleReader::new(Cursor::new(data)) else { return };
    let mut n = 0usize;
    let mut framing_error = false;
    for item in reader {
        assert!(!framing_error, "the reader went on after a framing error");
        match item {
            Ok(report) => {
                n += 1;
                // Each report takes at least its 4-byte header after the
                // 8-byte magic. (A truncated header is one error item, and
                // is allowed to take fewer bytes.)
                assert!(8 + 4 * n <= data.len(), "more reports than the input can frame");
                assert!(report.body.len() <= MAX_BUNDLE_FRAME as usize);
                if let Ok(v) = signing::verify(&report) {
                    assert_eq!(v.id, report.id());
                }
            }
            Err(crate::bundle::BundleError::Frame { .. }) => framing_error = true,
            Err(_) => {}
        }
    }
}
