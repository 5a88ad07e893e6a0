//! The element types beyond plain numbers — `bool`, `f16`, complex, records — with
//! the real numpy, both ways: Rust creates and numpy reads and writes through
//! `numpy.load(path, mmap_mode="r+")`; numpy saves and Rust opens.
//!
//! As tests/numpy.rs: numpy missing is a failure unless `SHMARRAY_SKIP_NUMPY=1`.

mod common;

use common::{python, unique_name, ShmFile};
use ndarray::{Ix1, Ix2, IxDyn};
use shmarray::half::f16;
use shmarray::num_complex::Complex;
use shmarray::{
    record, Bool, Descr, Element, Error, ObjectKind, Options, Pad, Queue, SharedArray, SharedVec,
};

record! {
    /// numpy: [('x', '<f4'), ('y', '<f4'), ('mass', '<f8')]
    #[derive(Debug, PartialEq, Default)]
    struct Particle {
        x: f32,
        y: f32,
        mass: f64,
    }
}

record! {
    /// numpy: np.dtype([('id', 'u1'), ('v', '<f8'), ('ok', '?')], align=True)
    #[derive(Debug, PartialEq, Default)]
    struct Aligned {
        id: u8,
        _gap: Pad<7>,
        v: f64,
        ok: Bool,
        _tail: Pad<7>,
    }
}

record! {
    /// Arrays, a nested record and the new scalar types as fields.
    #[derive(Debug, PartialEq, Default)]
    struct Rich {
        pos: [f32; 3],
        h: f16,
        flag: Bool,
        _pad: Pad<1>,
        p: Particle,
        z: Complex<f64>,
        m: [[i16; 2]; 2],
    }
}

// Records a numpy-made file must not open as.
record! { struct Renamed { x: f32, why: f32, mass: f64 } }
record! { struct Retyped { x: f32, y: f32, mass: i64 } }
record! { struct Reordered { y: f32, x: f32, mass: f64 } }
record! { struct Shifted { x: f32, _p: Pad<4>, y: f32, _q: Pad<4>, mass: f64 } }
record! { struct Shorter { x: f32, y: f32 } }

fn type_mismatch<T: Element>(name: &str) -> (String, String) {
    match SharedArray::<T, Ix1>::open(name) {
        Err(Error::TypeMismatch {
            expected, found, ..
        }) => (expected, found),
        other => panic!("expected TypeMismatch, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn bool_f16_and_complex_arrays_round_trip_with_numpy() {
    let (nb, nh, nc, nz) = (
        unique_name("dt-bool"),
        unique_name("dt-f16"),
        unique_name("dt-c8"),
        unique_name("dt-c16"),
    );
    let mut b =
        SharedArray::create_from(&nb, &ndarray::arr1(&[Bool::TRUE, Bool::FALSE, Bool::TRUE]))
            .unwrap();
    let mut h = SharedArray::create_from(
        &nh,
        &ndarray::arr1(&[f16::from_f32(1.5), f16::from_f32(-0.25), f16::MAX]),
    )
    .unwrap();
    let mut c = SharedArray::create_from(
        &nc,
        &ndarray::arr1(&[Complex::new(1.0f32, -2.0), Complex::new(0.5, 0.25)]),
    )
    .unwrap();
    let mut z = SharedArray::<Complex<f64>, Ix2>::create(&nz, (2, 2)).unwrap();
    z.view_mut().unwrap()[(1, 0)] = Complex::new(3.0, 4.0);
    let Some(out) = python(&format!(
        "b = np.load({:?}, mmap_mode='r+')\n\
         h = np.load({:?}, mmap_mode='r+')\n\
         c = np.load({:?}, mmap_mode='r+')\n\
         z = np.load({:?}, mmap_mode='r+')\n\
         print(b.dtype, b.tolist(), h.dtype, h.tolist(), c.dtype, c.tolist(), z.dtype, z.shape, z[1, 0], abs(z[1, 0]))\n\
         b[:] = [False, True, False]\n\
         b.view(np.uint8)[2] = 7\n\
         h[:] = [2.0, -65504.0, 0.0009765625]\n\
         c[1] = 1j\n\
         z[0, 1] = -1 - 1j\n\
         for a in (b, h, c, z): a.flush()",
        b.path().unwrap(),
        h.path().unwrap(),
        c.path().unwrap(),
        z.path().unwrap(),
    )) else {
        return;
    };
    assert_eq!(
        out,
        "bool [True, False, True] float16 [1.5, -0.25, 65504.0] complex64 \
         [(1-2j), (0.5+0.25j)] complex128 (2, 2) (3+4j) 5.0"
    );
    // numpy's writes, seen through the live mappings. A byte 7 (written through a
    // uint8 view) is `true`, and never an invalid Rust `bool`.
    let bv = b.view().unwrap().to_vec();
    assert_eq!(
        bv.iter().map(|x| x.get()).collect::<Vec<_>>(),
        [false, true, true]
    );
    assert_eq!(bv[2].to_byte(), 7);
    assert_eq!(
        h.view().unwrap().to_vec(),
        [f16::from_f32(2.0), f16::MIN, f16::from_f32(0.000_976_562_5)]
    );
    assert_eq!(c.view().unwrap()[1], Complex::new(0.0, 1.0));
    assert_eq!(z.view().unwrap()[(0, 1)], Complex::new(-1.0, -1.0));
}

#[test]
fn numpy_saved_bool_f16_and_complex_files_open_in_rust() {
    let names: Vec<String> = (0..4).map(|_| unique_name("dt-saved")).collect();
    let guards: Vec<ShmFile> = names.iter().map(|n| ShmFile::new(n)).collect();
    let Some(_) = python(&format!(
        "def save(p, a):\n    with open(p, 'wb') as f: np.save(f, a)\n\
         save({:?}, np.array([[True, False], [False, True]]))\n\
         save({:?}, np.arange(4, dtype=np.float16) / 4)\n\
         save({:?}, np.array([1+2j, -3j], dtype=np.complex64))\n\
         save({:?}, np.asfortranarray(np.array([[1j, 2], [3, 4-1j]])))",
        guards[0].0, guards[1].0, guards[2].0, guards[3].0
    )) else {
        return;
    };
    let mut b = SharedArray::<Bool, Ix2>::open(&names[0]).unwrap();
    assert_eq!(
        b.view().unwrap().mapv(Bool::get),
        ndarray::arr2(&[[true, false], [false, true]])
    );
    let mut h = SharedArray::<f16, Ix1>::open(&names[1]).unwrap();
    assert_eq!(
        h.view().unwrap().mapv(f16::to_f32).to_vec(),
        [0.0, 0.25, 0.5, 0.75]
    );
    let mut c = SharedArray::<Complex<f32>, Ix1>::open(&names[2]).unwrap();
    assert_eq!(
        c.view().unwrap().to_vec(),
        [Complex::new(1.0, 2.0), Complex::new(0.0, -3.0)]
    );
    let mut z = SharedArray::<Complex<f64>, Ix2>::open(&names[3]).unwrap();
    assert!(z.is_fortran());
    assert_eq!(z.view().unwrap()[(1, 1)], Complex::new(4.0, -1.0));
    drop((b, h, c, z));
    // Same sizes, other types: refused.
    assert!(matches!(
        SharedArray::<u8, Ix2>::open(&names[0]),
        Err(Error::TypeMismatch { .. })
    ));
    assert!(matches!(
        SharedArray::<u16, Ix1>::open(&names[1]),
        Err(Error::TypeMismatch { .. })
    ));
    assert!(matches!(
        SharedArray::<f64, Ix1>::open(&names[2]),
        Err(Error::TypeMismatch { .. })
    ));
}

#[test]
fn rust_records_are_numpy_structured_arrays_both_ways() {
    let name = unique_name("dt-rec");
    let mut a = SharedArray::<Particle, Ix1>::create(&name, 3).unwrap();
    a.view_mut().unwrap()[1] = Particle {
        x: 1.5,
        y: -2.0,
        mass: 1e10,
    };
    let rname = unique_name("dt-rich");
    let mut r = SharedArray::<Rich, Ix1>::create(&rname, 2).unwrap();
    r.view_mut().unwrap()[0] = Rich {
        pos: [1.0, 2.0, 3.0],
        h: f16::from_f32(0.5),
        flag: Bool::TRUE,
        p: Particle {
            x: 4.0,
            y: 5.0,
            mass: 6.0,
        },
        z: Complex::new(7.0, 8.0),
        m: [[1, 2], [3, -4]],
        ..Default::default()
    };
    let Some(out) = python(&format!(
        "a = np.load({:?}, mmap_mode='r+')\n\
         print(a.dtype.names, a.dtype.itemsize, [a.dtype.fields[n][1] for n in a.dtype.names])\n\
         print(a[1]['x'], a[1]['y'], a['mass'][1])\n\
         a[2] = (9.0, 8.0, 7.0)\n\
         a['mass'][0] = 0.5\n\
         a.flush()\n\
         r = np.load({:?}, mmap_mode='r+')\n\
         print(r.dtype.itemsize, r['pos'][0].tolist(), r['h'][0], r['flag'][0], r['p']['mass'][0], r['z'][0], r['m'][0].tolist())\n\
         r['p']['y'][1] = 42\n\
         r['m'][1] = [[5, 6], [7, 8]]\n\
         r['flag'][1] = True\n\
         r.flush()",
        a.path().unwrap(),
        r.path().unwrap(),
    )) else {
        return;
    };
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "('x', 'y', 'mass') 16 [0, 4, 8]");
    assert_eq!(lines[1], "1.5 -2.0 10000000000.0");
    assert_eq!(
        lines[2],
        "56 [1.0, 2.0, 3.0] 0.5 True 6.0 (7+8j) [[1, 2], [3, -4]]"
    );
    let v = a.view().unwrap();
    assert_eq!(
        v[2],
        Particle {
            x: 9.0,
            y: 8.0,
            mass: 7.0
        }
    );
    assert_eq!(v[0].mass, 0.5);
    let rv = r.view().unwrap();
    assert_eq!(rv[1].p.y, 42.0);
    assert_eq!(rv[1].m, [[5, 6], [7, 8]]);
    assert!(rv[1].flag.get());
}

#[test]
fn numpy_made_structured_arrays_open_as_records_and_wrong_records_are_refused() {
    let (packed, aligned) = (unique_name("dt-np-rec"), unique_name("dt-np-al"));
    let (gp, ga) = (ShmFile::new(&packed), ShmFile::new(&aligned));
    let Some(_) = python(&format!(
        "a = np.zeros(4, dtype=[('x', '<f4'), ('y', '<f4'), ('mass', '<f8')])\n\
         a['x'] = np.arange(4); a['mass'] = [10, 20, 30, 40]\n\
         with open({:?}, 'wb') as f: np.save(f, a)\n\
         b = np.zeros(2, dtype=np.dtype([('id', 'u1'), ('v', '<f8'), ('ok', '?')], align=True))\n\
         b[1] = (7, 2.5, True)\n\
         with open({:?}, 'wb') as f: np.save(f, b)",
        gp.0, ga.0
    )) else {
        return;
    };
    let mut p = SharedArray::<Particle, Ix1>::open(&packed).unwrap();
    let v = p.view().unwrap();
    assert_eq!(
        v.iter().map(|q| (q.x, q.mass)).collect::<Vec<_>>(),
        [(0.0, 10.0), (1.0, 20.0), (2.0, 30.0), (3.0, 40.0)]
    );
    drop(p);
    let mut al = SharedArray::<Aligned, Ix1>::open(&aligned).unwrap();
    let w = al.view().unwrap()[1];
    assert_eq!((w.id, w.v, w.ok.get()), (7, 2.5, true));
    drop(al);
    // A field renamed, retyped, moved or missing, or the fields reordered: refused,
    // with both sides in the error.
    let (expected, found) = type_mismatch::<Renamed>(&packed);
    assert!(expected.contains("('why', '<f4')"), "{expected}");
    assert!(found.contains("('y', '<f4')"), "{found}");
    type_mismatch::<Retyped>(&packed);
    type_mismatch::<Reordered>(&packed);
    type_mismatch::<Shifted>(&packed);
    type_mismatch::<Shorter>(&packed);
    type_mismatch::<Particle>(&aligned);
    type_mismatch::<f64>(&packed);
    assert!(matches!(
        SharedArray::<u8, Ix1>::open(&packed),
        Err(Error::TypeMismatch { .. })
    ));
    // The packed numpy layout of `Aligned` (no gaps) is another layout.
    let np_packed = unique_name("dt-np-pk");
    let gk = ShmFile::new(&np_packed);
    python(&format!(
        "with open({:?}, 'wb') as f: np.save(f, np.zeros(2, dtype=[('id', 'u1'), ('v', '<f8'), ('ok', '?')]))",
        gk.0
    ))
    .unwrap();
    type_mismatch::<Aligned>(&np_packed);
    // Any of them opens as bytes.
    let mut bytes = SharedArray::open_bytes(&np_packed).unwrap();
    assert_eq!(bytes.view().unwrap().shape(), &[2, 10]);
    assert_eq!(bytes.descr().itemsize(), Some(10));
}

#[test]
fn byte_views_create_records_numpy_reads() {
    let name = unique_name("dt-bytes");
    let descr: Descr =
        Descr::from_literal("[('a', '|u1'), ('', '|V3'), ('b', '<i4', (2,))]").unwrap();
    let _cleanup = ShmFile::new(&name);
    let opts = Options::new().persistent(true);
    let mut a = SharedArray::create_bytes_with(&opts, &name, &descr, &[3]).unwrap();
    assert_eq!(a.shape(), &[3]);
    assert_eq!(a.descr(), &descr);
    {
        let mut v = a.view_mut().unwrap();
        v[[1, 0]] = 9;
        v[[1, 8]] = 0xff;
        v[[1, 9]] = 0xff;
        v[[1, 10]] = 0xff;
        v[[1, 11]] = 0xff;
    }
    let Some(out) = python(&format!(
        "a = np.load({:?}, mmap_mode='r+')\n\
         print(a.dtype.names, a.dtype.itemsize, a[1]['a'], a[1]['b'].tolist())\n\
         a[2]['b'] = [1, 2]\n\
         a.flush()",
        a.path().unwrap()
    )) else {
        return;
    };
    assert_eq!(out, "('a', 'b') 12 9 [0, -1]");
    assert_eq!(a.view().unwrap()[[2, 4]], 1);
    drop(a);
    // Types this library does not map are refused at create.
    for bad in ["[('s', '<U4')]", "'>f8'", "'|O'"] {
        let d = Descr::from_literal(bad).unwrap();
        assert!(matches!(
            SharedArray::create_bytes_with(&Options::new(), &unique_name("dt-bad"), &d, &[1]),
            Err(Error::TypeMismatch { .. })
        ));
    }
    // The record type with the same fields opens it.
    record! { struct AB { a: u8, _p: Pad<3>, b: [i32; 2] } }
    let mut typed = SharedArray::<AB, IxDyn>::open_with(&opts, &name).unwrap();
    assert_eq!(typed.view().unwrap()[1].a, 9);
}

#[test]
fn queues_and_vecs_of_the_new_types() {
    let qn = unique_name("dt-queue");
    let q = Queue::<Particle>::create(&qn, 8).unwrap();
    q.put(Particle {
        x: 1.0,
        y: 2.0,
        mass: 3.0,
    })
    .unwrap();
    let other = Queue::<Particle>::open(&qn).unwrap();
    assert_eq!(other.get().unwrap().mass, 3.0);
    // Same size, other record or other type: refused.
    record! { struct Other { a: f32, b: f32, c: f64 } }
    assert!(Queue::<Other>::open(&qn).is_err());
    assert!(Queue::<Complex<f64>>::open(&qn).is_err());
    let zq = Queue::<Complex<f64>>::create(&unique_name("dt-zq"), 4).unwrap();
    zq.put(Complex::new(1.0, -1.0)).unwrap();
    assert_eq!(zq.get().unwrap(), Complex::new(1.0, -1.0));

    let vn = unique_name("dt-vec");
    let v = SharedVec::<Complex<f64>>::create(&vn, 4).unwrap();
    v.push(Complex::new(1.0, 2.0)).unwrap();
    assert_eq!(
        v.set(0, Complex::new(3.0, 4.0)).unwrap(),
        Complex::new(1.0, 2.0)
    );
    assert_eq!(v.to_vec().unwrap(), [Complex::new(3.0, 4.0)]);
    let r = SharedVec::<Rich>::create(&unique_name("dt-vrec"), 2).unwrap();
    r.push(Rich::default()).unwrap();
    let mut big = Rich::default();
    big.m[1][1] = 99;
    assert_eq!(r.set(0, big).unwrap(), Rich::default());
    assert_eq!(r.get(0).unwrap().unwrap().m[1][1], 99);
    let bv = SharedVec::<Bool>::create(&unique_name("dt-vbool"), 2).unwrap();
    bv.push(Bool::TRUE).unwrap();
    assert_eq!(bv.pop().unwrap(), Some(Bool::TRUE));
    let Some(out) = python(&format!(
        "v = np.load({:?}, mmap_mode='r')\nprint(v.dtype, v[0])",
        v.path().unwrap()
    )) else {
        return;
    };
    assert_eq!(out, "complex128 (3+4j)");
    let _ = ObjectKind::Vec;
}
