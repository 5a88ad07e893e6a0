//! Forged or corrupted control data in files the caller trusts (issue 18, items 5
//! and 6): lengths, counts, lock words and mutex bytes written by a stray writer of
//! the same user. Each is forged in a real segment file and must give a typed error
//! or the documented recovery: never an abort, a panic or an endless wait.
//!
//! A check that could abort the process (an allocation sized by a forged length, a
//! glibc assertion) runs in a child process (this test binary re-executed with
//! `SHMARRAY_FORGED_CHILD`), so an abort fails the test instead of killing the run;
//! a check that could hang runs under a deadline.

mod common;

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::mpsc;
use std::time::Duration;

use common::{unique_name, Children};
use ndarray::{Ix1, IxDyn};
use shmarray::{
    admin::{inspect, Contents},
    containers::{MapError, VecError},
    format::{Corruption, HeaderError},
    sync::LockFailure,
    Barrier, Error, LockError, Namespace, SharedArray, SharedMap, SharedValue, SharedVec,
};

const CHILD_ENV: &str = "SHMARRAY_FORGED_CHILD";

/// Offsets in the control block (FORMAT.md §4).
const MUTEX_AT: u64 = 256;
const RW_MASK_AT: u64 = 384 + 8;
const READERS_AT: u64 = 2304;
const READER_ENTRY: u64 = 32;
/// glibc's `pthread_mutex_t.__kind` (x86_64 and aarch64).
const KIND_AT: u64 = 16;
/// The liveness lock byte of reader-table entry `i` is `MEMBER_BASE + i`.
const MEMBER_BASE: u64 = (1 << 62) + 1024;

/// The child roles. Not a real test when the variable is unset.
#[test]
fn child_entry() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let args: Vec<&str> = spec.split(':').collect();
    let code = match args.as_slice() {
        ["map_read", name] => {
            let m = SharedMap::<u64, u64>::open(name).unwrap();
            let (len, max) = (m.len(), m.max_len());
            println!("len {len} max {max}");
            let v = m.to_vec().unwrap();
            let n = m.iter().unwrap().count();
            println!(
                "entries {} {n} len {} repairs {}",
                v.len(),
                m.len(),
                m.repairs()
            );
            0
        }
        ["array_read", name] => {
            match SharedArray::<f64, Ix1>::open(name) {
                Ok(a) => {
                    let r = a.read_timeout(Duration::from_millis(300)).map(|_| ());
                    let w = a.write_timeout(Duration::from_millis(300)).map(|_| ());
                    println!(
                        "read {:?} write {:?}",
                        r.map_err(describe),
                        w.map_err(describe)
                    );
                }
                Err(e) => println!("open {}", describe_error(&e)),
            }
            0
        }
        ["lock_and_hold", name] => {
            let a = SharedArray::<f64, Ix1>::open(name).unwrap();
            let g = a.lock();
            println!("holding {}", g.is_ok());
            std::thread::sleep(Duration::from_secs(120));
            1
        }
        _ => 2,
    };
    std::process::exit(code);
}

fn describe<G>(e: LockError<G>) -> String {
    match e.into_failure() {
        LockFailure::Segment(e) => describe_error(&e),
        other => format!("{other:?}"),
    }
}

fn describe_error(e: &Error) -> String {
    match e {
        Error::Corrupt { problem, .. } => format!("Corrupt({problem})"),
        other => format!("{other:?}"),
    }
}

/// The segment file, opened for poking bytes, and its control block offset.
fn poke(name: &str) -> (File, u64, u64) {
    let info = inspect(&Namespace::default_dir().unwrap(), name).unwrap();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&info.path)
        .unwrap();
    (
        file,
        info.layout.control_offset as u64,
        info.layout.data_offset as u64,
    )
}

fn read_u32(f: &File, at: u64) -> u32 {
    let mut b = [0u8; 4];
    f.read_exact_at(&mut b, at).unwrap();
    u32::from_le_bytes(b)
}

/// Runs `f` on a thread; fails the test if it does not return within `limit`.
fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what} did not return within {limit:?}"))
}

/// Runs child role `role` to its end; its stdout, or a failure if it died of a
/// signal (an abort) or did not exit 0.
fn run_child(role: &str) -> String {
    let mut kids = Children::new(CHILD_ENV);
    let k = kids.spawn(role);
    let (code, out) = kids.wait(k);
    assert_eq!(
        code, 0,
        "child {role} failed (-1: killed by a signal): {out}"
    );
    out
}

// ---- item 5, bullet 1: a map shard length beyond the shard ---------------------

#[test]
fn a_forged_map_shard_length_is_clamped_and_recounted_never_an_allocation() {
    for forged in [1u64 << 40, u64::MAX, 101] {
        let name = unique_name("forged-map-len");
        let m = SharedMap::<u64, u64>::create(&name, 100).unwrap();
        for k in 0..3 {
            m.insert(k, k * 10).unwrap();
        }
        let (f, _, data) = poke(&name);
        // Shard 0's head is at data offset 0; its `len` at 64.
        f.write_all_at(&forged.to_le_bytes(), data + 64).unwrap();
        assert!(m.len() <= m.max_len(), "len {} for {forged}", m.len());
        let info = inspect(&Namespace::default_dir().unwrap(), &name).unwrap();
        match info.contents {
            Some(Contents::Map(c)) => assert!(c.len <= c.max_len, "inspect len {}", c.len),
            other => panic!("{other:?}"),
        }
        let out = run_child(&format!("map_read:{name}"));
        assert!(
            out.contains("entries 3 3 len 3 repairs 1"),
            "{forged}: {out}"
        );
        // The recount holds for this handle too, and inserts work again.
        assert_eq!(m.len(), 3);
        assert_eq!(m.insert(7, 70).unwrap(), None);
        assert_eq!(m.len(), 4);
    }
}

#[test]
fn forged_map_tombstone_counts_are_recounted() {
    let name = unique_name("forged-map-tomb");
    let m = SharedMap::<u64, u64>::create(&name, 100).unwrap();
    m.insert(1, 1).unwrap();
    let (f, _, data) = poke(&name);
    f.write_all_at(&u64::MAX.to_le_bytes(), data + 72).unwrap();
    // A get takes no lock and reads no count; the next locker recounts.
    assert_eq!(m.get(&1).unwrap(), Some(1));
    assert_eq!(m.repairs(), 0);
    // Removing works and leaves exact counts (a recount would find the same).
    assert_eq!(m.remove(&1).unwrap(), Some(1));
    assert_eq!(m.repairs(), 1);
    assert_eq!((m.len(), m.to_vec().unwrap().len()), (0, 0));
    assert_eq!(m.repairs(), 1);
}

// ---- item 5, bullet 2: a reader-table entry nobody owns --------------------------

/// Sets entry `slot`'s mask bit, `registered` and `holds`, as a stray write would.
fn forge_reader(name: &str, slot: u64, registered: u32, holds: u32) {
    let (f, cb, _) = poke(name);
    let mut mask = [0u8; 8];
    f.read_exact_at(&mut mask, cb + RW_MASK_AT).unwrap();
    let mask = u64::from_le_bytes(mask) | 1 << slot;
    f.write_all_at(&mask.to_le_bytes(), cb + RW_MASK_AT)
        .unwrap();
    let e = cb + READERS_AT + slot * READER_ENTRY;
    f.write_all_at(&registered.to_le_bytes(), e).unwrap();
    f.write_all_at(&holds.to_le_bytes(), e + 16).unwrap();
}

#[test]
fn an_unregistered_reader_entry_that_holds_never_blocks_writers() {
    let name = unique_name("forged-reader");
    let a = SharedArray::<f64, Ix1>::create(&name, 8).unwrap();
    forge_reader(&name, 5, 0, 3);
    let name2 = name.clone();
    let r = within(Duration::from_secs(20), "write_timeout", move || {
        let a = SharedArray::<f64, Ix1>::open(&name2).unwrap();
        let w = a
            .write_timeout(Duration::from_secs(5))
            .map(|g| g.recovered_readers());
        w.map_err(|e| format!("{e:?}"))
    });
    assert_eq!(r, Ok(1), "the entry is taken back, once");
    // And the lock is an ordinary one afterwards.
    let a2 = within(Duration::from_secs(20), "lock", move || {
        let g = a
            .lock()
            .map(|g| g.recovered_readers())
            .map_err(|e| format!("{e:?}"));
        (a, g)
    });
    assert_eq!(a2.1, Ok(0));
    let (f, cb, _) = poke(&name);
    assert_eq!(read_u32(&f, cb + READERS_AT + 5 * READER_ENTRY + 16), 0);
}

/// Takes the OFD write lock on reader entry `slot`'s liveness byte through a
/// description of its own, as a live member would.
fn hold_member_byte(name: &str, slot: u64) -> File {
    let (f, _, _) = poke(name);
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as i16;
    fl.l_whence = libc::SEEK_SET as i16;
    fl.l_start = (MEMBER_BASE + slot) as i64;
    fl.l_len = 1;
    // SAFETY: a valid descriptor and a valid flock.
    let rc = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    assert_eq!(rc, 0, "F_OFD_SETLK: {}", std::io::Error::last_os_error());
    f
}

#[test]
fn an_unregistered_entry_whose_byte_a_live_process_holds_is_waited_for() {
    let name = unique_name("forged-reader-held");
    let a = SharedArray::<f64, Ix1>::create(&name, 8).unwrap();
    forge_reader(&name, 7, 0, 1);
    let holder = hold_member_byte(&name, 7);
    let a = within(Duration::from_secs(20), "write_timeout", move || {
        let r = a
            .write_timeout(Duration::from_millis(300))
            .map(|_| ())
            .map_err(|e| format!("{e:?}"));
        assert!(r.as_ref().is_err_and(|e| e.contains("Timeout")), "{r:?}");
        a
    });
    drop(holder);
    let r = within(Duration::from_secs(20), "write_timeout", move || {
        a.write_timeout(Duration::from_secs(5))
            .map(|g| g.recovered_readers())
            .map_err(|e| format!("{e:?}"))
    });
    assert_eq!(r, Ok(1));
}

#[test]
fn stray_mask_bits_beyond_the_table_are_cleared() {
    let name = unique_name("forged-mask");
    let a = SharedArray::<f64, Ix1>::create(&name, 8).unwrap();
    let (f, cb, _) = poke(&name);
    f.write_all_at(&(0xffu64 << 56).to_le_bytes(), cb + RW_MASK_AT)
        .unwrap();
    drop(a.write().unwrap());
    let mut mask = [0u8; 8];
    f.read_exact_at(&mut mask, cb + RW_MASK_AT).unwrap();
    assert_eq!(u64::from_le_bytes(mask), 0);
}

// ---- item 5, bullets 3 and 4: the glibc mutex ------------------------------------

/// glibc's kind bits.
const PTHREAD_MUTEX_PRIO_INHERIT_NP: u32 = 32;
const PTHREAD_MUTEX_PRIO_PROTECT_NP: u32 = 64;

#[test]
fn a_mutex_of_another_kind_is_corrupt_at_attach_never_a_glibc_abort() {
    const GOOD: u32 = 2 | 16 | 128;
    for (what, forged) in [
        ("prio protect", GOOD | PTHREAD_MUTEX_PRIO_PROTECT_NP),
        (
            "prio protect, not robust",
            2 | 128 | PTHREAD_MUTEX_PRIO_PROTECT_NP,
        ),
        ("prio protect, private", PTHREAD_MUTEX_PRIO_PROTECT_NP),
        ("prio inherit", GOOD | PTHREAD_MUTEX_PRIO_INHERIT_NP),
        ("not robust", GOOD & !16),
        ("not pshared", GOOD & !128),
        ("not errorcheck", GOOD & !2),
        ("normal", 0),
        ("garbage", 0x7fff_0000),
    ] {
        let name = unique_name("forged-kind");
        let a = SharedArray::<f64, Ix1>::create(&name, 8).unwrap();
        let (f, cb, _) = poke(&name);
        let kind = read_u32(&f, cb + MUTEX_AT + KIND_AT);
        assert_eq!(kind, GOOD, "glibc's robust+pshared+errorcheck kind");
        f.write_all_at(&forged.to_le_bytes(), cb + MUTEX_AT + KIND_AT)
            .unwrap();
        let out = run_child(&format!("array_read:{name}"));
        assert!(
            out.contains("read Err(\"Corrupt(") && out.contains("write Err(\"Corrupt("),
            "{what}: {out}"
        );
        // This process's handle validated its mutex when it attached: a kind
        // changed afterwards is not seen by it, but every new attach is refused.
        drop(a);
    }
}

#[test]
fn a_lock_flag_set_over_a_zeroed_mutex_is_corrupt_never_a_stuck_lock() {
    let name = unique_name("forged-zero-mutex");
    let a = SharedArray::<f64, Ix1>::create(&name, 8).unwrap();
    let (f, cb, _) = poke(&name);
    f.write_all_at(&[0u8; 128], cb + MUTEX_AT).unwrap();
    let b = SharedArray::<f64, Ix1>::open(&name).unwrap();
    match b.lock_timeout(Duration::from_millis(100)) {
        Err(LockError::Failed(LockFailure::Segment(Error::Corrupt {
            problem: Corruption::Lock { .. },
            ..
        }))) => {}
        other => panic!("{other:?}"),
    }
    // Before: a holder killed over the zeroed (non-robust) mutex left it locked
    // for good, and every lock_timeout timed out.
    let mut kids = Children::new(CHILD_ENV);
    let k = kids.spawn(&format!("lock_and_hold:{name}"));
    kids.expect_line(k, "holding");
    kids.kill(k);
    let r = within(Duration::from_secs(20), "lock_timeout", move || {
        b.lock_timeout(Duration::from_millis(300))
            .map(|_| ())
            .map_err(describe)
    });
    assert!(
        r.as_ref().is_err_and(|e| e.starts_with("Corrupt(")),
        "{r:?}"
    );
    drop(a);
}

#[test]
fn values_vecs_and_maps_with_a_forged_mutex_are_corrupt() {
    let value = unique_name("forged-kind-value");
    let v = SharedValue::<u64>::create(&value, 1).unwrap();
    let vec = unique_name("forged-kind-vec");
    let w = SharedVec::<u64>::create(&vec, 4).unwrap();
    let map = unique_name("forged-kind-map");
    let m = SharedMap::<u64, u64>::create(&map, 10_000).unwrap();
    assert!(m.shards() > 1);
    for name in [&value, &vec] {
        let (f, cb, _) = poke(name);
        f.write_all_at(&0u32.to_le_bytes(), cb + MUTEX_AT + KIND_AT)
            .unwrap();
    }
    // The last shard's mutex (its head is at data offset (shards - 1) * 128).
    let (f, _, data) = poke(&map);
    let last = data + (m.shards() as u64 - 1) * 128;
    f.write_all_at(&(2u32 | 16 | 128 | 64).to_le_bytes(), last + KIND_AT)
        .unwrap();
    let corrupt = |r: Result<(), String>| r.is_err_and(|e| e.contains("Corrupt"));
    let got = SharedValue::<u64>::open(&value)
        .map_err(|e| describe_error(&e))
        .and_then(|v| v.get().map(drop).map_err(describe));
    assert!(corrupt(got.clone()), "{got:?}");
    match SharedVec::<u64>::open(&vec) {
        Err(VecError::Segment(Error::Corrupt {
            problem: Corruption::Lock { .. },
            ..
        })) => {}
        other => panic!("{other:?}"),
    }
    match SharedMap::<u64, u64>::open(&map) {
        Err(MapError::Segment(Error::Corrupt {
            problem: Corruption::Lock { offset, .. },
            ..
        })) => assert_eq!(offset, last),
        other => panic!("{other:?}"),
    }
    drop((v, w, m));
}

// ---- audit: the barrier's party count --------------------------------------------

#[test]
fn a_forged_party_count_in_the_data_never_makes_a_barrier_wait_forever() {
    let name = unique_name("forged-parties");
    let b = Barrier::create(&name, 1).unwrap();
    let (f, _, data) = poke(&name);
    // The barrier state follows the 2048-byte member table; parties is its first word.
    f.write_all_at(&1000u32.to_le_bytes(), data + 2048).unwrap();
    let r = within(Duration::from_secs(20), "barrier wait", move || {
        let r = b.wait_timeout(Duration::from_secs(5));
        (b, r)
    });
    assert_eq!(r.1, Ok(true), "one party: its wait passes");
    assert_eq!(r.0.parties(), 1);
}

// ---- item 6: more than 64 dimensions ---------------------------------------------

#[test]
fn more_than_64_dimensions_are_refused_at_create() {
    let name = unique_name("dims");
    for ndim in [65usize, 66, 200] {
        match SharedArray::<u8, IxDyn>::create(&name, IxDyn(&vec![1; ndim])) {
            Err(Error::TooManyDimensions { ndim: n, max: 64 }) => assert_eq!(n, ndim),
            other => panic!("{ndim}: {other:?}"),
        }
        assert!(!std::path::Path::new("/dev/shm").join(&name).exists());
        assert!(matches!(
            shmarray::__fuzz::build_header(shmarray::format::Dtype::U8, false, &vec![1; ndim]),
            Err(HeaderError::TooManyDimensions { ndim: n, max: 64 }) if n == ndim
        ));
    }
    // 64 is numpy's limit too, and works end to end.
    let a = SharedArray::<u8, IxDyn>::create(&name, IxDyn(&[1; 64])).unwrap();
    let b = SharedArray::<u8, IxDyn>::open(&name).unwrap();
    assert_eq!(b.shape().len(), 64);
    assert!(inspect(&Namespace::default_dir().unwrap(), &name).is_ok());
    drop((a, b));
}
