#![no_main]
//! `cargo fuzz run bundle`: see truce_shared::fuzzing::bundle for the property.

libfuzzer_sys::fuzz_target!(|data: &[u8]| truce_shared::fuzzing::bundle(data));
