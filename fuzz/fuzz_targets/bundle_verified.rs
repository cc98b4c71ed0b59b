#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gavel::fuzzing::bundle_verified(data));
