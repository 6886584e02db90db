#![no_main]
//! `cargo fuzz run session`: arbitrary client bytes into one server
//! session; see truce_server::fuzzing::session for the property.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    truce_server::fuzzing::session(data);
});
