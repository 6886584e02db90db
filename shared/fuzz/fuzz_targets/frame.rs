#![no_main]
//! `cargo fuzz run frame`: see truce_shared::fuzzing::frame for the property.

libfuzzer_sys::fuzz_target!(|data: &[u8]| truce_shared::fuzzing::frame(data));
