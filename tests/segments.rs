//! Segments and typed views: creation, attach, ownership, the access rules of one
//! process, and every error path of the format.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use common::{unique_name, ShmFile};
use ndarray::{arr2, Array, Ix0, Ix1, Ix2, Ix3, IxDyn};
use shmarray::ndarray::Order;
use shmarray::Segment;
use shmarray::{
    admin::NameProblem,
    format::{Corruption, ObjectKind},
    Error, Namespace, Options, SharedArray, SharedValue,
};

#[test]
fn create_write_open_read() {
    let name = unique_name("basic");
    let a = SharedArray::<f64, Ix2>::create(&name, (3, 4)).unwrap();
    assert_eq!(a.shape(), &[3, 4]);
    assert_eq!(a.len(), 12);
    {
        let mut g = a.lock().unwrap();
        assert_eq!(g.sum(), 0.0, "new arrays are zero-filled");
        g.fill(2.5);
    }
    let b = SharedArray::<f64, Ix2>::open(&name).unwrap();
    assert_eq!(b.lock().unwrap().sum(), 30.0);
    assert!(!b.is_owner());
    assert_eq!(b.name(), Some(name.as_str()));
    assert_eq!(
        b.path().unwrap(),
        std::path::Path::new("/dev/shm").join(&name)
    );
}

#[test]
fn creator_unlinks_on_drop_openers_do_not() {
    let name = unique_name("own");
    let a = SharedArray::<u8, Ix1>::create(&name, 10).unwrap();
    let b = SharedArray::<u8, Ix1>::open(&name).unwrap();
    drop(b);
    assert!(
        SharedArray::<u8, Ix1>::open(&name).is_ok(),
        "opener must not unlink"
    );
    drop(a);
    assert!(matches!(
        SharedArray::<u8, Ix1>::open(&name),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn persistent_segments_survive_their_handle() {
    let name = unique_name("persist");
    let _guard = ShmFile::new(&name);
    let a = SharedArray::<i32, Ix1>::create(&name, 4)
        .unwrap()
        .into_persistent();
    assert!(!a.is_owner());
    drop(a);
    let b = SharedArray::<i32, Ix1>::open(&name).unwrap();
    let info = shmarray::admin::inspect(&Namespace::default_dir().unwrap(), &name).unwrap();
    assert!(info.is_persistent());
    b.unlink().unwrap();
    assert!(matches!(
        SharedArray::<i32, Ix1>::open(&name),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn segment_file_is_mode_0600_whatever_the_umask() {
    let name = unique_name("mode");
    // SAFETY: umask is process-wide but only affects file creation; the previous
    // value is restored right after.
    let old = unsafe { libc_umask(0o000) };
    let a = SharedArray::<u8, Ix1>::create(&name, 1).unwrap();
    // SAFETY: as above.
    unsafe { libc_umask(old) };
    let mode = std::fs::metadata(a.path().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// `umask(2)`.
///
/// # Safety
/// Process-wide: callers must restore the previous mask right after use.
unsafe fn libc_umask(mask: u32) -> u32 {
    extern "C" {
        fn umask(mask: u32) -> u32;
    }
    // SAFETY: umask has no preconditions.
    unsafe { umask(mask) }
}

#[test]
fn create_from_copies_and_keeps_order() {
    let src = arr2(&[[1i64, 2, 3], [4, 5, 6]]);
    let name = unique_name("from");
    let mut a = SharedArray::create_from(&name, &src).unwrap();
    assert_eq!(a.view().unwrap(), src.view());
    let name_f = unique_name("fromf");
    let f = Options::new()
        .order(Order::ColumnMajor)
        .create_from(&name_f, &src)
        .unwrap();
    assert!(f.is_fortran());
    let g = SharedArray::<i64, Ix2>::open(&name_f).unwrap();
    let v = g.lock().unwrap();
    assert_eq!(
        v.view(),
        src.view(),
        "Fortran-order files read back logically equal"
    );
    assert_eq!(v.t().as_slice().unwrap(), &[1, 4, 2, 5, 3, 6]);
}

#[test]
fn all_element_types_and_dyn_dimensions() {
    fn roundtrip<T: shmarray::element::Element + PartialEq + std::fmt::Debug>(v: T) {
        let name = unique_name("types");
        let a = SharedArray::<T, IxDyn>::create(&name, IxDyn(&[2, 2, 2])).unwrap();
        a.lock().unwrap().fill(v);
        let b = SharedArray::<T, Ix3>::open(&name).unwrap();
        assert!(b.lock().unwrap().iter().all(|x| *x == v));
    }
    roundtrip(1i8);
    roundtrip(-2i16);
    roundtrip(3i32);
    roundtrip(-4i64);
    roundtrip(5u8);
    roundtrip(6u16);
    roundtrip(7u32);
    roundtrip(8u64);
    roundtrip(9.5f32);
    roundtrip(10.25f64);
}

#[test]
fn zero_length_and_zero_dimensional_arrays() {
    let name = unique_name("empty");
    let a = SharedArray::<f32, Ix2>::create(&name, (0, 7)).unwrap();
    assert!(a.is_empty());
    drop(a);
    let name = unique_name("empty");
    let _a = SharedArray::<f32, Ix2>::create(&name, (0, 7)).unwrap();
    let b = SharedArray::<f32, Ix2>::open(&name).unwrap();
    assert_eq!(b.shape(), &[0, 7]);
    assert_eq!(b.lock().unwrap().sum(), 0.0);

    let name0 = unique_name("scalar");
    let s = SharedArray::<u64, Ix0>::create(&name0, ()).unwrap();
    s.lock().unwrap()[()] = 42;
    assert_eq!(
        SharedArray::<u64, Ix0>::open(&name0)
            .unwrap()
            .lock()
            .unwrap()[()],
        42
    );
}

#[test]
fn not_found() {
    let name = unique_name("missing");
    match SharedArray::<f64, Ix1>::open(&name) {
        Err(Error::NotFound { name: n }) => assert_eq!(n, name),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[test]
fn already_exists_leaves_the_existing_segment_untouched() {
    let name = unique_name("taken");
    let a = SharedArray::<f64, Ix1>::create(&name, 3).unwrap();
    a.lock().unwrap().fill(7.0);
    match SharedArray::<u8, Ix2>::create(&name, (100, 100)) {
        Err(Error::AlreadyExists { name: n }) => assert_eq!(n, name),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    let b = SharedArray::<f64, Ix1>::open(&name).unwrap();
    assert_eq!(b.lock().unwrap().to_vec(), vec![7.0; 3]);
    // 4096 header + 24 data bytes, control block at the next page: 3 pages.
    assert_eq!(std::fs::metadata(b.path().unwrap()).unwrap().len(), 12288);
}

#[test]
fn a_foreign_file_with_the_name_is_never_adopted() {
    let name = unique_name("foreignexists");
    let guard = ShmFile::new(&name);
    std::fs::write(&guard.0, b"someone else's data").unwrap();
    assert!(matches!(
        SharedArray::<f64, Ix1>::create(&name, 3),
        Err(Error::AlreadyExists { .. })
    ));
    assert_eq!(std::fs::read(&guard.0).unwrap(), b"someone else's data");
}

#[test]
fn invalid_names_are_rejected_before_any_syscall() {
    let long = "x".repeat(256);
    for (name, problem) in [
        ("", NameProblem::Empty),
        ("/", NameProblem::Empty),
        ("a/b", NameProblem::Slash),
        ("..", NameProblem::Dots),
        (".", NameProblem::Dots),
        ("a\0b", NameProblem::Nul),
        (long.as_str(), NameProblem::TooLong),
        (".shmarray-build-1-2", NameProblem::Reserved),
    ] {
        match SharedArray::<f64, Ix1>::create(name, 1) {
            Err(Error::InvalidName { problem: p, .. }) => assert_eq!(p, problem, "{name:?}"),
            other => panic!("{name:?}: expected InvalidName, got {other:?}"),
        }
        assert!(matches!(
            SharedArray::<f64, Ix1>::open(name),
            Err(Error::InvalidName { .. })
        ));
    }
    // A namespace in a directory that does not exist proves no syscall touched the
    // name: validation fails first, with InvalidName rather than NotFound.
    let ns = Namespace::default_dir().unwrap();
    assert!(matches!(ns.remove("a/b"), Err(Error::InvalidName { .. })));
}

#[test]
fn wrong_type_or_dimension_is_a_type_mismatch() {
    let name = unique_name("mismatch");
    let _a = SharedArray::<f64, Ix2>::create(&name, (2, 3)).unwrap();
    match SharedArray::<f32, Ix2>::open(&name) {
        Err(Error::TypeMismatch {
            expected, found, ..
        }) => {
            assert!(expected.contains("f32"), "{expected}");
            assert!(found.contains("<f8"), "{found}");
        }
        other => panic!("expected TypeMismatch, got {other:?}"),
    }
    match SharedArray::<f64, Ix3>::open(&name) {
        Err(Error::TypeMismatch {
            expected, found, ..
        }) => {
            assert!(expected.contains("3 dimension"), "{expected}");
            assert!(found.contains("[2, 3]"), "{found}");
        }
        other => panic!("expected TypeMismatch, got {other:?}"),
    }
    assert!(SharedArray::<f64, IxDyn>::open(&name).is_ok());
}

#[test]
fn foreign_non_npy_file_is_not_shmarray() {
    let name = unique_name("foreign");
    let guard = ShmFile::new(&name);
    std::fs::write(&guard.0, b"PK\x03\x04 this is a zip file, not an array").unwrap();
    assert!(matches!(
        SharedArray::<f64, Ix1>::open(&name),
        Err(Error::NotShmarray { .. })
    ));
    assert!(guard.0.exists(), "open never removes anything");
    let tiny = unique_name("tiny");
    let guard2 = ShmFile::new(&tiny);
    std::fs::write(&guard2.0, b"abc").unwrap();
    assert!(matches!(
        SharedArray::<f64, Ix1>::open(&tiny),
        Err(Error::NotShmarray { .. })
    ));
}

#[test]
fn directories_symlinks_and_fifos_are_refused() {
    let name = unique_name("link");
    let guard = ShmFile::new(&name);
    std::os::unix::fs::symlink("/etc/passwd", &guard.0).unwrap();
    assert!(matches!(
        SharedArray::<u8, Ix1>::open(&name),
        Err(Error::NotShmarray {
            reason: "it is a symbolic link",
            ..
        })
    ));
    let dir = unique_name("dir");
    let dir_path = std::path::Path::new("/dev/shm").join(&dir);
    std::fs::create_dir(&dir_path).unwrap();
    let res = SharedArray::<u8, Ix1>::open(&dir);
    let inspected = shmarray::admin::inspect(&Namespace::default_dir().unwrap(), &dir);
    std::fs::remove_dir(&dir_path).unwrap();
    assert!(
        matches!(
            res,
            Err(Error::NotShmarray {
                reason: "it is a directory",
                ..
            })
        ),
        "{res:?}"
    );
    assert!(matches!(inspected, Err(Error::NotShmarray { .. })));
}

/// Writes raw bytes as a file in /dev/shm and returns its guard.
fn write_raw(name: &str, bytes: &[u8]) -> ShmFile {
    let guard = ShmFile::new(name);
    let mut f = std::fs::File::create(&guard.0).unwrap();
    f.write_all(bytes).unwrap();
    guard
}

fn npy_bytes(dict: &str, data_len: usize) -> Vec<u8> {
    let mut v = b"\x93NUMPY\x01\x00".to_vec();
    let header_len = 128 - 10;
    v.extend_from_slice(&(header_len as u16).to_le_bytes());
    v.extend_from_slice(dict.as_bytes());
    v.resize(127, b' ');
    v.push(b'\n');
    v.resize(128 + data_len, 0);
    v
}

#[test]
fn truncated_file_is_corrupt_not_sigbus() {
    // A segment of ours, then shrunk behind our back.
    let name = unique_name("trunc");
    let a = SharedArray::<f64, Ix1>::create(&name, 100_000).unwrap();
    let path = a.path().unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(4096 + 1000)
        .unwrap();
    match SharedArray::<f64, Ix1>::open(&name) {
        Err(Error::Corrupt {
            problem: Corruption::Truncated { needed, actual },
            ..
        }) => {
            assert_eq!(needed, 4096 + 800_000);
            assert_eq!(actual, 5096);
        }
        other => panic!("expected Corrupt(Truncated), got {other:?}"),
    }
    // A plain npy that claims more data than it has.
    let n2 = unique_name("trunc2");
    let _g = write_raw(
        &n2,
        &npy_bytes(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1000,), }",
            16,
        ),
    );
    assert!(matches!(
        SharedArray::<f64, Ix1>::open(&n2),
        Err(Error::Corrupt {
            problem: Corruption::Truncated { .. },
            ..
        })
    ));
}

#[test]
fn overflowing_shape_is_corrupt() {
    let name = unique_name("overflow");
    let dict = format!(
        "{{'descr': '<f8', 'fortran_order': False, 'shape': ({}, {}), }}",
        u64::MAX / 4,
        1u64 << 40
    );
    let _g = write_raw(&name, &npy_bytes(&dict, 0));
    match SharedArray::<f64, Ix2>::open(&name) {
        Err(Error::Corrupt {
            problem: Corruption::Header(_),
            ..
        }) => {}
        other => panic!("expected Corrupt(Header), got {other:?}"),
    }
    assert!(matches!(
        SharedArray::<f64, Ix2>::create(&unique_name("bigshape"), (usize::MAX / 2, 4)),
        Err(Error::ShapeOverflow { .. })
    ));
}

#[test]
fn garbled_header_is_corrupt() {
    for dict in [
        "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), 'extra': 1}",
        "{'descr': '<f8', 'fortran_order': Maybe, 'shape': (3,), }",
        "{'descr': '<f8', 'shape': (3,), }",
        "not a dict at all",
    ] {
        let name = unique_name("garbled");
        let _g = write_raw(&name, &npy_bytes(dict, 24));
        assert!(
            matches!(
                SharedArray::<f64, Ix1>::open(&name),
                Err(Error::Corrupt { .. })
            ),
            "{dict}"
        );
    }
}

#[test]
fn unpublished_or_empty_files_are_never_attached() {
    // Zero bytes where the magic should be (what an older version's creator left
    // before publishing) are NotReady; an empty file is nobody's segment.
    let name = unique_name("half");
    let _g = write_raw(&name, &vec![0u8; 8192]);
    assert!(matches!(
        SharedArray::<f64, Ix1>::open(&name),
        Err(Error::NotReady { .. })
    ));
    let empty = unique_name("half0");
    let _g2 = write_raw(&empty, b"");
    assert!(matches!(
        SharedArray::<f64, Ix1>::open(&empty),
        Err(Error::NotShmarray { .. })
    ));
    // A control block whose state is not READY behind a visible magic: NotReady.
    let name3 = unique_name("half3");
    let a = SharedArray::<f64, Ix1>::create(&name3, 4).unwrap();
    let path = a.path().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let state_at = 8192 + 144;
    bytes[state_at..state_at + 4].copy_from_slice(&0u32.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        SharedArray::<f64, Ix1>::open(&name3),
        Err(Error::NotReady { .. })
    ));
}

#[test]
fn tampered_header_fails_the_checksum() {
    let name = unique_name("tamper");
    let a = SharedArray::<f64, Ix1>::create(&name, 4).unwrap();
    let path = a.path().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    // Rewrite the shape (4,) -> (2,) in the header: still a valid npy, same data size
    // region, but the control block checksum no longer matches.
    let pos = bytes.windows(4).position(|w| w == b"(4,)").unwrap();
    bytes[pos + 1] = b'2';
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        SharedArray::<f64, Ix1>::open(&name),
        Err(Error::Corrupt {
            problem: Corruption::Control(_),
            ..
        })
    ));
}

#[test]
fn plain_npy_files_open_without_a_control_block() {
    let name = unique_name("plain");
    let mut bytes = npy_bytes(
        "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 2), }",
        0,
    );
    for v in [1i32, 2, 3, 4] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    let _g = write_raw(&name, &bytes);
    let mut a = SharedArray::<i32, Ix2>::open(&name).unwrap();
    assert_eq!(a.view().unwrap(), arr2(&[[1, 2], [3, 4]]));
    assert!(a.control().is_none());
    assert!(matches!(
        a.lock(),
        Err(shmarray::LockError::Failed(
            shmarray::sync::LockFailure::Segment(Error::NoControlBlock { .. })
        ))
    ));
    // Big-endian data is reported, not misread.
    let be = unique_name("bigendian");
    let _g2 = write_raw(
        &be,
        &npy_bytes(
            "{'descr': '>f8', 'fortran_order': False, 'shape': (1,), }",
            8,
        ),
    );
    assert!(matches!(
        SharedArray::<f64, Ix1>::open(&be),
        Err(Error::TypeMismatch { .. })
    ));
}

#[test]
fn misaligned_data_is_refused() {
    let name = unique_name("misaligned");
    // Header padded so the data starts at an offset that is not a multiple of 8.
    let dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }";
    let mut data_offset = 10 + dict.len() + 1;
    if data_offset.is_multiple_of(8) {
        data_offset += 1;
    }
    let mut v = b"\x93NUMPY\x01\x00".to_vec();
    v.extend_from_slice(&((data_offset - 10) as u16).to_le_bytes());
    v.extend_from_slice(dict.as_bytes());
    v.resize(data_offset - 1, b' ');
    v.push(b'\n');
    v.resize(data_offset + 8, 0);
    let _g = write_raw(&name, &v);
    assert!(matches!(
        SharedArray::<f64, Ix1>::open(&name),
        Err(Error::Corrupt {
            problem: Corruption::Misaligned { .. },
            ..
        })
    ));
}

#[test]
fn read_only_open_refuses_mutation() {
    let name = unique_name("ro");
    let _a = SharedArray::<u16, Ix1>::create(&name, 8).unwrap();
    drop(_a);
    let a = SharedArray::<u16, Ix1>::create(&name, 8)
        .unwrap()
        .into_persistent();
    drop(a);
    let mut r = Options::new()
        .read_only(true)
        .open::<SharedArray<u16, Ix1>>(&name)
        .unwrap();
    assert_eq!(r.view().unwrap().len(), 8);
    assert!(matches!(r.view_mut(), Err(Error::ReadOnly { .. })));
    assert!(r.lock().is_err());
    r.unlink().unwrap();
}

#[test]
fn anonymous_segments_are_shared_through_their_descriptor() {
    let a = SharedArray::<f64, Ix1>::create_anonymous(16).unwrap();
    assert!(a.name().is_none());
    a.lock().unwrap().fill(3.0);
    let file = a.file().try_clone().unwrap();
    let b = SharedArray::<f64, Ix1>::from_file(file).unwrap();
    assert_eq!(b.lock().unwrap().sum(), 48.0);
    // Sealed: nobody can shrink it under the mapping.
    assert!(a.file().set_len(10).is_err());
}

#[test]
fn no_space_is_an_error_not_sigbus() {
    // Mount a 1 MiB tmpfs and create a 4 MiB array in it.
    let dir = std::env::temp_dir().join(unique_name("tmpfs"));
    std::fs::create_dir_all(&dir).unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&dir)
        .stderr(std::process::Stdio::null())
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        let _ = std::fs::remove_dir(&dir);
        eprintln!(
            "SKIPPED no_space_is_an_error_not_sigbus: cannot mount a tmpfs here (needs root)"
        );
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let _unmount = Unmount(dir.clone());
    let ns = Namespace::at(&dir).unwrap();
    let opts = Options::new().namespace(ns.clone());
    match opts.create::<SharedArray<f64, Ix1>, _>("big", 512 * 1024) {
        Err(Error::NoSpace { name, requested }) => {
            assert_eq!(name, "big");
            assert!(requested > 4 << 20);
        }
        other => panic!("expected NoSpace, got {other:?}"),
    }
    assert!(
        ns.entries().unwrap().is_empty(),
        "a failed create leaves nothing behind"
    );
    // A small one still fits.
    let mut small = opts
        .create::<SharedArray<f64, Ix1>, _>("small", 1000)
        .unwrap();
    assert_eq!(small.view().unwrap().sum(), 0.0);
}

#[test]
fn dyn_array_matches_ndarray_semantics() {
    let src = Array::from_shape_fn((2, 3, 4), |(i, j, k)| (i * 100 + j * 10 + k) as u32);
    let name = unique_name("semantics");
    let a = SharedArray::create_from(&name, &src).unwrap();
    let b = SharedArray::<u32, IxDyn>::open(&name).unwrap();
    assert_eq!(b.lock().unwrap().view(), src.view().into_dyn());
    assert_eq!(a.nbytes(), 2 * 3 * 4 * 4);
}

#[test]
fn direct_views_need_the_only_handle_in_the_process() {
    let name = unique_name("claims");
    let mut a = SharedArray::<f64, Ix1>::create(&name, 4).unwrap();
    let b = SharedArray::<f64, Ix1>::open(&name).unwrap();
    // Two handles: neither may hand out direct views; both may lock.
    assert!(matches!(a.view(), Err(Error::InUse { .. })));
    b.lock().unwrap().fill(1.0);
    drop(b);
    // Alone now: the first direct view claims the segment for `a`...
    a.view_mut().unwrap()[0] = 5.0;
    assert_eq!(a.view().unwrap().sum(), 8.0);
    // ...so a second handle cannot be opened in this process while `a` lives.
    assert!(matches!(
        SharedArray::<f64, Ix1>::open(&name),
        Err(Error::InUse { .. })
    ));
    // The lock still works on the claiming handle (not while a view is borrowed:
    // the borrow checker sees to that; see the compile_fail doctest on `view`).
    assert_eq!(a.lock().unwrap()[0], 5.0);
    drop(a);
    assert!(matches!(
        SharedArray::<f64, Ix1>::open(&name),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn an_object_is_only_opened_as_the_kind_it_is() {
    let name = unique_name("kinds");
    let _v = SharedValue::<f64>::create(&name, 1.5).unwrap();
    match SharedArray::<f64, Ix0>::open(&name) {
        Err(Error::KindMismatch {
            expected, found, ..
        }) => {
            assert_eq!(expected, ObjectKind::Array);
            assert_eq!(found, ObjectKind::Value);
        }
        other => panic!("expected KindMismatch, got {other:?}"),
    }
    let q = unique_name("kindq");
    let _q = shmarray::Queue::<u64>::create(&q, 8).unwrap();
    assert!(matches!(
        SharedArray::<u8, Ix1>::open(&q),
        Err(Error::KindMismatch {
            found: ObjectKind::Queue,
            ..
        })
    ));
    assert!(matches!(
        SharedValue::<u8>::open(&q),
        Err(Error::KindMismatch { .. })
    ));
    let info = shmarray::admin::inspect(&Namespace::default_dir().unwrap(), &q).unwrap();
    assert_eq!(info.kind(), ObjectKind::Queue);
}
