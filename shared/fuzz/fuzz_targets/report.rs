#![no_main]
//! `cargo fuzz run report`: see truce_shared::fuzzing::report for the property.

libfuzzer_sys::fuzz_target!(|data: &[u8]| truce_shared::fuzzing::report(data));
