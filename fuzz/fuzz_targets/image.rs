#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| media_worker::fuzzing::image(data));
