//! Property tests of the pure format code: the header parser round-trips what it
//! builds and never panics, whatever the bytes; whole segment images, valid or
//! mutated, are described without panics and with checked sizes; queue geometry is
//! checked for any numbers. `fuzz/` drives the same code with libFuzzer.

use proptest::prelude::*;

use super::control::{checksum, ControlFields, ObjectKind, LAYOUT_VERSION};
use super::descr::{Descr, DescrField};
use super::describe::describe_bytes;
use super::dtype::{Dtype, ALL_DTYPES as DTYPES};
use super::npy::{
    build_header, build_header_aligned, parse_header, parse_preamble, HeaderError, COMPACT_ALIGN,
};
use super::objects::QueueGeometry;
use super::{CONTROL_SIZE, PAGE};

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
    fn compact_headers_put_the_data_inside_the_first_page(
        d in dtype(),
        fortran in any::<bool>(),
        shape in prop::collection::vec(any::<usize>(), 0..=64),
    ) {
        // Any dims, up to the 64 readers accept; a leading 0 keeps the product finite.
        let shape: Vec<usize> = std::iter::once(0).chain(shape).take(64).collect();
        let (bytes, layout) = build_header_aligned(&d.descr(), fortran, &shape, COMPACT_ALIGN).unwrap();
        prop_assert_eq!(bytes.len(), layout.data_offset);
        prop_assert!(layout.data_offset < PAGE);
        prop_assert_eq!(layout.data_offset % COMPACT_ALIGN, 0);
        // The smallest such offset: the dict and its `\n` end less than 128 bytes before.
        let dict_end = bytes.iter().rposition(|&b| b == b'}').unwrap() + 1;
        prop_assert!(layout.data_offset < dict_end + 1 + COMPACT_ALIGN);
        prop_assert_eq!(&parse_header(&bytes).unwrap(), &layout);
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
                prop_assert!(super::npy::header_window(l.data_offset) <= input.len());
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

/// Random record descriptors: fields of every element type, padding, array
/// fields, nested records; unique names.
fn record_descr() -> impl Strategy<Value = Descr> {
    let leaf =
        (dtype(), prop::collection::vec(1usize..4, 0..3)).prop_map(|(d, shape)| (d.descr(), shape));
    let field = leaf.prop_recursive(2, 12, 4, |inner| {
        prop::collection::vec((inner, any::<bool>(), 1usize..9), 1..4)
            .prop_map(|fs| (fields_of(fs), Vec::new()))
    });
    prop::collection::vec((field, any::<bool>(), 1usize..9), 1..6).prop_map(fields_of)
}

/// A record of `fs`, each field preceded by `pad` bytes of padding where asked.
fn fields_of(fs: Vec<((Descr, Vec<usize>), bool, usize)>) -> Descr {
    let mut out = Vec::new();
    for (i, ((descr, shape), padded, pad)) in fs.into_iter().enumerate() {
        if padded {
            out.push(DescrField {
                name: String::new(),
                descr: Descr::Simple(format!("|V{pad}")),
                shape: Vec::new(),
            });
        }
        out.push(DescrField {
            name: format!("f{i}"),
            descr,
            shape,
        });
    }
    Descr::Record(out)
}

proptest! {
    #[test]
    fn record_descriptors_round_trip_through_headers(r in record_descr(), shape in small_shape()) {
        prop_assert!(r.is_supported());
        let lit = r.literal();
        prop_assert_eq!(&Descr::from_literal(&lit).unwrap(), &r);
        let (bytes, layout) = build_header_aligned(&r, false, &shape, PAGE).unwrap();
        let parsed = parse_header(&bytes).unwrap();
        prop_assert_eq!(&parsed, &layout);
        prop_assert_eq!(&parsed.header.descr, &r);
        prop_assert_eq!(parsed.dtype, None);
        prop_assert_eq!(Some(parsed.itemsize), r.itemsize());
        prop_assert_eq!(parsed.data_len, parsed.len * parsed.itemsize);
        // Canonical forms are idempotent, keep the size, and fingerprint alike.
        let c = r.canonical();
        prop_assert_eq!(&c.canonical(), &c);
        prop_assert_eq!(c.itemsize(), r.itemsize());
        prop_assert_eq!(c.fingerprint(), r.fingerprint());
        // Named fields come with increasing offsets inside the record.
        let named = r.named_fields();
        prop_assert!(named.windows(2).all(|w| w[0].0 < w[1].0));
        prop_assert!(named.iter().all(|(o, f)| o + f.itemsize().unwrap() <= r.itemsize().unwrap()));
    }

    #[test]
    fn mutated_record_headers_never_panic(
        r in record_descr(),
        flips in prop::collection::vec((0usize..4096, any::<u8>()), 1..8),
    ) {
        let (mut bytes, _) = build_header_aligned(&r, false, &[3], PAGE).unwrap();
        let dict_end = bytes.iter().rposition(|&b| b == b'}').unwrap();
        for (i, b) in flips {
            bytes[10 + i % (dict_end - 9)] = b;
        }
        if let Ok(l) = parse_header(&bytes) {
            prop_assert_eq!(Some(l.data_len), l.len.checked_mul(l.itemsize));
            prop_assert_eq!(Descr::from_literal(&l.header.descr.literal()).unwrap(), l.header.descr);
        }
    }
}

/// A complete, valid segment image of `kind` with a checksummed control block.
fn image(d: Dtype, shape: &[usize], kind: ObjectKind, params: [u64; 8]) -> Vec<u8> {
    let (hdr, layout) = build_header(d, false, shape).unwrap();
    let mut f = ControlFields {
        layout_version: LAYOUT_VERSION,
        kind,
        kind_version: super::objects::QUEUE_VERSION,
        dtype_code: d.code(),
        ndim: shape.len() as u32,
        creator_pid: 1,
        creator_start_time: 2,
        creator_pid_ns: 3,
        created_unix_ms: 4,
        data_offset: layout.data_offset as u64,
        data_len: layout.data_len as u64,
        params,
        checksum: 0,
        state: super::control::state::READY,
        flags: 0,
    };
    f.checksum = checksum(&hdr, &f);
    let mut bytes = vec![0u8; layout.total_len()];
    bytes[..hdr.len()].copy_from_slice(&hdr);
    let cb = &mut bytes[layout.control_offset..layout.control_offset + CONTROL_SIZE];
    cb[..136].copy_from_slice(&f.encode_immutable());
    cb[136..144].copy_from_slice(&f.checksum.to_le_bytes());
    cb[144..148].copy_from_slice(&f.state.to_le_bytes());
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn valid_images_describe_and_mutated_ones_never_panic(
        d in dtype(),
        shape in small_shape(),
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in any::<usize>(),
    ) {
        let bytes = image(d, &shape, ObjectKind::Array, [0; 8]);
        let desc = describe_bytes(&bytes).unwrap();
        prop_assert!(desc.control.is_some());
        prop_assert_eq!(desc.mapped_len(), bytes.len());
        let mut m = bytes.clone();
        for (i, b) in flips {
            let at = i % m.len();
            m[at] = b;
        }
        let cut = cut % (m.len() + 1);
        for input in [&m[..], &m[..cut]] {
            if let Ok(desc) = describe_bytes(input) {
                // Whatever is accepted fits in the bytes we have.
                prop_assert!(desc.layout.data_end() <= input.len());
                if desc.control.is_some() {
                    prop_assert!(desc.layout.total_len() <= input.len());
                }
            }
        }
    }

    #[test]
    fn forged_queue_parameters_are_errors_or_consistent(
        item in prop_oneof![Just(0u64), 1u64..64, Just(u64::from(u32::MAX)), any::<u64>()],
        cap in prop_oneof![Just(0u64), Just(1), Just(3), Just(1u64 << 40), any::<u64>()],
        stride in any::<u64>(),
    ) {
        let mut f = ControlFields::decode(&image(Dtype::U8, &[64], ObjectKind::Queue, [0; 8])[4096 + 4096..]).unwrap().unwrap();
        f.params = [item, cap, stride, 0, 0, 0, 0, 0];
        if let Ok(g) = QueueGeometry::from_control(&f) {
            // Accepted only when every product is exact and the area is what it claims.
            prop_assert_eq!(g.stride.checked_mul(g.capacity).and_then(|s| s.checked_add(g.slots_offset)), Some(g.data_len));
            prop_assert_eq!(g.data_len, f.data_len);
        }
        if let Ok(g) = QueueGeometry::new(item, cap) {
            prop_assert!(g.data_len <= super::objects::MAX_DATA_BYTES);
            prop_assert!(g.stride >= item + 16);
        }
    }
}

/// The fuzz seeds' headers (records, complex numbers, numpy-written structured
/// files among them) parse, and their descriptors round-trip as the fuzz target
/// asserts.
#[test]
fn fuzz_seed_headers_parse_and_their_descriptors_round_trip() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let mut records = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let layout = parse_header(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let d = &layout.header.descr;
        assert_eq!(Descr::from_literal(&d.literal()).as_ref(), Ok(d));
        assert_eq!(d.itemsize(), Some(layout.itemsize));
        records += usize::from(d.is_record());
    }
    assert!(records >= 2, "record seeds in {}", dir.display());
}
