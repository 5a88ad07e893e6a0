//! NumPy interop, both ways, with the real numpy (installed by `.ci/run`).
//!
//! If numpy cannot be imported these tests fail, unless `SHMARRAY_SKIP_NUMPY=1` is
//! set: a silently skipped interop test would hide a broken CI.

mod common;

use common::{python, unique_name, ShmFile};
use ndarray::{arr2, Array, Ix0, Ix1, Ix2, IxDyn};
use shmarray::ndarray::Order;
use shmarray::{Error, Options, Segment, SharedArray};

#[test]
fn rust_created_segment_is_a_numpy_array_and_sees_numpy_writes() {
    let name = unique_name("np-rust");
    let src = Array::from_shape_fn((3, 4), |(i, j)| (i * 10 + j) as f64);
    let mut a = SharedArray::create_from(&name, &src).unwrap();
    let path = a.path().unwrap();
    let Some(out) = python(&format!(
        "a = np.load({path:?}, mmap_mode='r+')\n\
         print(a.dtype, a.shape, a.flags['C_CONTIGUOUS'], float(a.sum()), float(a[2, 3]))\n\
         a *= 2\n\
         a[0, 0] = -1\n\
         a.flush()"
    )) else {
        return;
    };
    assert_eq!(out, "float64 (3, 4) True 138.0 23.0");
    // Rust sees numpy's writes through its live mapping, no reopen.
    let mut expect = src.mapv(|x| 2.0 * x);
    expect[(0, 0)] = -1.0;
    assert_eq!(a.view().unwrap(), expect);
}

#[test]
fn element_types_and_orders_reach_numpy_intact() {
    fn check<T: shmarray::element::Element + std::fmt::Debug>(
        v: T,
        np_dtype: &str,
        order: Order,
    ) -> bool {
        let name = unique_name("np-types");
        let opts = Options::new().order(order);
        let src = Array::from_shape_fn(
            (2, 3),
            |(i, j)| if i == 1 && j == 2 { v } else { T::zeroed() },
        );
        let a = opts.create_from(&name, &src).unwrap();
        let fortran = order == Order::ColumnMajor;
        let Some(out) = python(&format!(
            "a = np.load({:?}, mmap_mode='r')\n\
             print(a.dtype, a.shape, a.flags['F_CONTIGUOUS'] and not a.flags['C_CONTIGUOUS'], a[1, 2])",
            a.path().unwrap()
        )) else {
            return false;
        };
        let mut parts = out.split_whitespace();
        assert_eq!(parts.next(), Some(np_dtype), "{out}");
        assert_eq!(parts.next(), Some("(2,"), "{out}");
        assert_eq!(parts.next(), Some("3)"), "{out}");
        assert_eq!(
            parts.next(),
            Some(if fortran { "True" } else { "False" }),
            "{out}"
        );
        assert_eq!(parts.next().unwrap(), format!("{v:?}"), "{out}");
        true
    }
    if !check(7i32, "int32", Order::RowMajor) {
        return;
    }
    check(200u8, "uint8", Order::RowMajor);
    check(-5i8, "int8", Order::ColumnMajor);
    check(1.5f32, "float32", Order::ColumnMajor);
    check(2.25f64, "float64", Order::ColumnMajor);
    check(u64::MAX, "uint64", Order::RowMajor);
    check(i16::MIN, "int16", Order::RowMajor);
}

#[test]
fn zero_length_and_zero_dimensional_arrays_load_in_numpy() {
    let name = unique_name("np-empty");
    let a = SharedArray::<f32, Ix2>::create(&name, (0, 5)).unwrap();
    let name0 = unique_name("np-scalar");
    let mut s = SharedArray::<i64, Ix0>::create(&name0, ()).unwrap();
    s.view_mut().unwrap()[()] = -42;
    let Some(out) = python(&format!(
        "a = np.load({:?}, mmap_mode='r+')\n\
         s = np.load({:?}, mmap_mode='r+')\n\
         print(a.shape, a.dtype, s.shape, int(s))\n\
         s[()] = 7\n\
         s.flush()",
        a.path().unwrap(),
        s.path().unwrap()
    )) else {
        return;
    };
    assert_eq!(out, "(0, 5) float32 () -42");
    assert_eq!(s.view().unwrap()[()], 7);
}

#[test]
fn numpy_saved_files_open_in_rust() {
    let name = unique_name("np-saved");
    let guard = ShmFile::new(&name);
    let namef = unique_name("np-savedf");
    let guardf = ShmFile::new(&namef);
    // np.save appends ".npy" to str paths, so hand it open files.
    let Some(_) = python(&format!(
        "with open({:?}, 'wb') as f: np.save(f, np.arange(12, dtype=np.int32).reshape(3, 4))\n\
         with open({:?}, 'wb') as f: np.save(f, np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3)))",
        guard.0, guardf.0
    )) else {
        return;
    };
    let mut a = SharedArray::<i32, Ix2>::open(&name).unwrap();
    assert_eq!(
        a.view().unwrap(),
        Array::from_shape_fn((3, 4), |(i, j)| (i * 4 + j) as i32)
    );
    assert!(a.control().is_none(), "a plain .npy has no control block");
    drop(a);
    let mut f = SharedArray::<f64, Ix2>::open(&namef).unwrap();
    assert!(f.is_fortran());
    assert_eq!(f.view().unwrap(), arr2(&[[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]));
    // Wrong type: a typed error naming both sides, nothing adopted or changed.
    match SharedArray::<f64, Ix2>::open(&name) {
        Err(Error::TypeMismatch {
            expected, found, ..
        }) => {
            assert!(expected.contains("f64"), "{expected}");
            assert!(found.contains("<i4"), "{found}");
        }
        other => panic!("expected TypeMismatch, got {other:?}"),
    }
    assert!(matches!(
        SharedArray::<i32, Ix1>::open(&name),
        Err(Error::TypeMismatch { .. })
    ));
}

#[test]
fn numpy_open_memmap_segment_is_shared_both_ways() {
    let name = unique_name("np-memmap");
    let guard = ShmFile::new(&name);
    let Some(_) = python(&format!(
        "m = np.lib.format.open_memmap({:?}, mode='w+', dtype=np.uint16, shape=(4, 2, 3))\n\
         m[...] = np.arange(24).reshape(4, 2, 3)\n\
         m.flush()",
        guard.0
    )) else {
        return;
    };
    let mut a = SharedArray::<u16, IxDyn>::open(&name).unwrap();
    assert_eq!(a.shape(), &[4, 2, 3]);
    assert_eq!(
        a.view().unwrap().iter().map(|&x| x as u32).sum::<u32>(),
        (0..24).sum()
    );
    a.view_mut().unwrap().mapv_inplace(|x| x + 100);
    let Some(out) = python(&format!(
        "m = np.load({:?}, mmap_mode='r')\nprint(int(m.min()), int(m.max()))",
        guard.0
    )) else {
        return;
    };
    assert_eq!(out, "100 123");
}

/// The map's entries are a numpy structured array at the offset `inspect` gives,
/// and Python finds a key with the hash function and probe rule of FORMAT.md; a
/// vec is a plain 1-d array whose first `len` elements are valid.
#[test]
fn maps_and_vecs_read_from_numpy() {
    use shmarray::{
        admin::{inspect, Contents},
        Namespace, Segment, SharedMap, SharedVec,
    };
    let name = unique_name("np-map");
    let m = SharedMap::<u64, f64>::create(&name, 100).unwrap();
    for k in 0..10u64 {
        m.insert(k * 7, k as f64 / 2.0).unwrap();
    }
    m.remove(&14).unwrap();
    let ns = Namespace::default_dir().unwrap();
    let info = inspect(&ns, &name).unwrap();
    let Some(Contents::Map(c)) = info.contents else {
        panic!("{:?}", info.contents)
    };
    let Some(out) = python(&format!(
        r#"
M = (1 << 64) - 1
K = 0x9e3779b97f4a7c15
def fmix64(h):
    h ^= h >> 33; h = (h * 0xff51afd7ed558ccd) & M
    h ^= h >> 33; h = (h * 0xc4ceb9fe1a85ec53) & M
    return h ^ (h >> 33)
def key_hash(seed, key):
    h = seed ^ ((len(key) * K) & M)
    for i in range(0, len(key), 8):
        h = ((h ^ int.from_bytes(key[i:i + 8].ljust(8, b'\0'), 'little')) * K) & M
        h ^= h >> 32
    return fmix64(h)
path, seed, shards, slots = {path:?}, {seed}, {shards}, {slots}
raw = np.load(path, mmap_mode='r')
dt = np.dtype({{'names': ['state', 'hash', 'key', 'value'], 'formats': ['<u4', '<u4', '<u8', '<f8'],
               'offsets': [0, 4, {key_offset}, {value_offset}], 'itemsize': {stride}}})
e = np.memmap(path, dtype=dt, mode='r', offset={entries_offset}, shape=({count},))
full = e[e['state'] & 3 == 1]
print(raw.dtype, len(full), sorted(full['key'].tolist()) == [0, 7, 21, 28, 35, 42, 49, 56, 63])
def get(key):
    h = key_hash(seed, key.to_bytes(8, 'little'))
    shard = 0 if shards == 1 else h >> (64 - shards.bit_length() + 1)
    table = e[shard * slots:(shard + 1) * slots]
    i = h & (slots - 1)
    while table[i]['state'] & 3 != 0:
        if table[i]['state'] & 3 == 1 and table[i]['hash'] == h >> 32 and table[i]['key'] == key:
            return float(table[i]['value'])
        i = (i + 1) % slots
    return None
print(get(63), get(14), get(1000))
"#,
        path = m.path().unwrap(),
        seed = m.seed(),
        shards = c.shards,
        slots = c.slots_per_shard,
        key_offset = c.key_offset,
        value_offset = c.value_offset,
        stride = c.entry_stride,
        entries_offset = c.entries_offset,
        count = c.entry_count,
    )) else {
        return;
    };
    assert_eq!(out, "uint8 9 True\n4.5 None None");

    let name = unique_name("np-vec");
    let v = SharedVec::<f32>::create(&name, 8).unwrap();
    v.extend_from_slice(&[1.5, 2.5, 3.5]).unwrap();
    let Some(Contents::Vec(c)) = inspect(&ns, &name).unwrap().contents else {
        panic!()
    };
    let out = python(&format!(
        "a = np.load({path:?}, mmap_mode='r+')\n\
         n = int(np.memmap({path:?}, dtype='<u8', mode='r', offset={len_offset}, shape=(1,))[0])\n\
         print(a.dtype, a.shape, n, a[:n].tolist())\n\
         a[1] = -1",
        path = v.path().unwrap(),
        len_offset = c.len_offset,
    ))
    .unwrap();
    assert_eq!(out, "float32 (8,) 3 [1.5, 2.5, 3.5]");
    assert_eq!(v.get(1).unwrap(), Some(-1.0));
}
