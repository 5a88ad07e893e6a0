//! Fuzz the pure format code: the NPY header parser and the whole-segment
//! description (header + control block + kind parameters). No input may panic, and
//! whatever is accepted must be internally consistent and fit in the bytes given.
//!
//! Run (needs a nightly toolchain and `cargo install cargo-fuzz`):
//! `cd fuzz && cargo +nightly fuzz run header corpus/header seeds -- -max_len=20000 -max_total_time=180`
//! (`seeds/` holds real segment images of every kind, records and complex numbers
//! included, and numpy-written files, one of them structured, so the fuzzer starts
//! past the magic and the checksum).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmarray::__fuzz::{describe_bytes, parse_header, parse_preamble, QueueGeometry};

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
        assert!(layout.data_offset.min(4096) <= data.len());
        assert!(layout.data_end() <= layout.control_offset);
        // A descriptor (a type string or a record's fields) renders to a literal
        // that parses back to itself, and gives the element size used.
        let d = &layout.header.descr;
        assert_eq!(shmarray::Descr::from_literal(&d.literal()).as_ref(), Ok(d));
        assert_eq!(d.itemsize().unwrap_or(0), layout.itemsize);
    }
    if let Ok(desc) = describe_bytes(data) {
        assert!(desc.mapped_len() <= data.len());
        if let Some(c) = desc.control {
            if let Ok(g) = QueueGeometry::from_control(&c) {
                assert_eq!(g.data_len, c.data_len);
                assert!(g.slot_offset(g.capacity - 1) + g.stride <= g.data_len);
            }
        }
    }
});
