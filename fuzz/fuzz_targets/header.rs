//! Fuzz the pure NPY header parser: no input may panic, and whatever parses must be
//! internally consistent (sizes computed without overflow).
//!
//! Run (needs a nightly toolchain and `cargo install cargo-fuzz`):
//! `cd fuzz && cargo +nightly fuzz run header -- -max_total_time=60`
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmarray::header::{parse_header, parse_preamble};

fuzz_target!(|data: &[u8]| {
    let _ = parse_preamble(data);
    if let Ok(layout) = parse_header(data) {
        let len = layout
            .header
            .shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .expect("parsed shapes never overflow");
        assert_eq!(len, layout.len);
        assert_eq!(Some(layout.data_len), len.checked_mul(layout.itemsize));
        assert!(layout.data_offset <= data.len());
        assert!(layout.data_end() <= layout.control_offset);
    }
});
