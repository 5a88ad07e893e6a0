//! Property tests of the pure header parser: it round-trips what it builds and never
//! panics, whatever the bytes (the same code `fuzz/` drives with libFuzzer).

use proptest::prelude::*;
use shmarray::header::{
    build_header, parse_header, parse_preamble, Dtype, HeaderError, ALL_DTYPES as DTYPES, PAGE,
};

fn dtype() -> impl Strategy<Value = Dtype> {
    (0..DTYPES.len()).prop_map(|i| DTYPES[i])
}

fn small_shape() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0usize..50, 0..6)
}

fn npy(dict: &str) -> Vec<u8> {
    let mut v = b"\x93NUMPY\x01\x00".to_vec();
    v.extend_from_slice(&(dict.len() as u16 + 1).to_le_bytes());
    v.extend_from_slice(dict.as_bytes());
    v.push(b'\n');
    v
}

proptest! {
    #[test]
    fn build_then_parse_roundtrips(d in dtype(), fortran in any::<bool>(), shape in small_shape()) {
        let (bytes, layout) = build_header(d, fortran, &shape).unwrap();
        prop_assert_eq!(bytes.len(), layout.data_offset);
        prop_assert_eq!(layout.data_offset % PAGE, 0);
        prop_assert_eq!(layout.control_offset % PAGE, 0);
        let parsed = parse_header(&bytes).unwrap();
        prop_assert_eq!(&parsed, &layout);
        prop_assert_eq!(parsed.dtype, Some(d));
        prop_assert_eq!(parsed.header.fortran_order, fortran);
        prop_assert_eq!(parsed.len, shape.iter().product::<usize>());
        prop_assert_eq!(parsed.data_len, parsed.len * d.size());
        prop_assert!(parsed.data_end() <= parsed.control_offset);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = parse_preamble(&bytes);
        let _ = parse_header(&bytes);
        // With a valid magic in front, the parser goes deeper.
        let mut with_magic = b"\x93NUMPY\x01\x00".to_vec();
        with_magic.extend_from_slice(&bytes);
        let _ = parse_header(&with_magic);
    }

    #[test]
    fn mutated_valid_headers_never_panic_and_stay_consistent(
        d in dtype(),
        shape in small_shape(),
        flips in prop::collection::vec((0usize..4096, any::<u8>()), 1..8),
        cut in 0usize..4096,
    ) {
        let (mut bytes, _) = build_header(d, false, &shape).unwrap();
        for (i, b) in flips {
            bytes[i % 200] = b; // the dict lives in the first ~100 bytes
        }
        for input in [&bytes[..], &bytes[..cut.min(bytes.len())]] {
            if let Ok(l) = parse_header(input) {
                // Whatever parsed is internally consistent, computed without overflow.
                prop_assert_eq!(l.len, l.header.shape.iter().try_fold(1usize, |a, &x| a.checked_mul(x)).unwrap());
                prop_assert_eq!(Some(l.data_len), l.len.checked_mul(l.itemsize));
                prop_assert!(l.data_offset.checked_add(l.data_len).is_some());
                prop_assert!(l.data_end() <= l.control_offset);
                prop_assert!(l.data_offset <= input.len());
            }
        }
    }

    #[test]
    fn random_dict_texts_never_panic(text in "[{}()'\":, a-z_0-9<>|TrueFals\\n]{0,120}") {
        let _ = parse_header(&npy(&text));
    }

    #[test]
    fn overflowing_shapes_are_errors(a in (usize::MAX / 8)..usize::MAX, b in 2usize..1000) {
        let dict = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': ({a}, {b}), }}");
        let is_overflow = matches!(parse_header(&npy(&dict)), Err(HeaderError::Overflow { .. }));
        prop_assert!(is_overflow);
        let built_overflow = matches!(build_header(Dtype::F64, false, &[a, b]), Err(HeaderError::Overflow { .. }));
        prop_assert!(built_overflow);
    }
}
