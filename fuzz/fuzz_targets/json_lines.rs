#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gavel::fuzzing::json_lines(data));
