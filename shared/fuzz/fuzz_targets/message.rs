#![no_main]
//! `cargo fuzz run message`: see truce_shared::fuzzing::message for the property.

libfuzzer_sys::fuzz_target!(|data: &[u8]| truce_shared::fuzzing::message(data));
