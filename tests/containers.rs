//! `SharedMap` and `SharedVec`: semantics, many processes at once, forged files, and
//! processes killed with SIGKILL at random instants in the middle of operations.
//!
//! Child processes are this test binary re-executed with `SHMARRAY_CONT_CHILD` set;
//! every child is reaped by a guard and every wait has a deadline; a watchdog aborts
//! the whole binary if a test hangs (e.g. on a lock left stuck).

mod common;

use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{leftovers, unique_name, Children};
use ndarray::Ix1;
use shmarray::{
    admin::{inspect, Contents},
    containers::{BytesMap, FixedStr, FixedStrError, MapError, VecError},
    format::ObjectKind,
    Error, Namespace, Segment, SharedArray, SharedMap, SharedVec,
};

const CHILD_ENV: &str = "SHMARRAY_CONT_CHILD";

/// The chaos value: eight equal words `key << 32 | generation`, so a torn write
/// shows as unequal words.
type Chaos = [u64; 8];

/// Tag of every element the chaos children write into the vec.
const VEC_TAG: u64 = 0xC0FFEE;

/// Aborts the test binary if the guard is not dropped within `limit`.
struct Watchdog(Arc<AtomicBool>);

fn watchdog(what: &'static str, limit: Duration) -> Watchdog {
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    std::thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < limit {
            if d.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("watchdog: {what} did not finish within {limit:?} (a stuck lock?)");
        std::process::abort();
    });
    Watchdog(done)
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A small deterministic PRNG (xorshift64*).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The child roles. Not a real test when the variable is unset.
#[test]
fn child_entry() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let args: Vec<&str> = spec.split(':').collect();
    let code = match args.as_slice() {
        ["fill", map, vec, who, n] => {
            let (who, n): (u64, u64) = (who.parse().unwrap(), n.parse().unwrap());
            let m = SharedMap::<u64, u64>::open(map).unwrap();
            let v = SharedVec::<u64>::open(vec).unwrap();
            for j in 0..n {
                let k = who * 1_000_000 + j;
                assert_eq!(m.insert(k, k * 2).unwrap(), None);
                v.push(k).unwrap();
            }
            0
        }
        ["chaos", map, vec, seed] => {
            let m = SharedMap::<u64, Chaos>::open(map).unwrap();
            let v = SharedVec::<u64>::open(vec).unwrap();
            println!("ready");
            let mut rng = Rng::new(seed.parse().unwrap());
            let mut gen = 0u64;
            loop {
                gen = (gen + 1) & 0xffff_ffff;
                let key = rng.below(64);
                match rng.below(10) {
                    8 | 9 => {
                        // A lock-free read: never torn, never another key's value.
                        if let Some(v) = m.get(&key).unwrap() {
                            if v.iter().any(|w| *w != v[0]) || v[0] >> 32 != key {
                                println!("VIOLATION key {key} value {v:x?}");
                                std::process::exit(3);
                            }
                        }
                    }
                    0..=2 => match m.insert(key, [key << 32 | gen; 8]) {
                        Ok(_) | Err(MapError::Full { .. }) => {}
                        Err(e) => panic!("{e}"),
                    },
                    3 | 4 => {
                        m.update(&key, |x| {
                            for w in x.iter_mut() {
                                *w = key << 32 | (*w + 1) & 0xffff_ffff;
                            }
                        })
                        .unwrap();
                    }
                    5 => {
                        m.remove(&key).unwrap();
                    }
                    6 => match v.push(VEC_TAG << 32 | gen) {
                        Ok(_) => {}
                        Err(VecError::Full { .. }) => v.truncate(10).unwrap(),
                        Err(e) => panic!("{e}"),
                    },
                    _ => {
                        let len = v.len();
                        if len > 0 {
                            let _ = v.set(rng.below(len as u64) as usize, VEC_TAG << 32 | gen);
                        }
                        if rng.below(16) == 0 {
                            v.pop().unwrap();
                        }
                    }
                }
            }
        }
        ["chaos8", map, seed] => {
            // Inline (8-byte) values `key << 32 | n`: replaced without the lock,
            // read without the lock. Every value seen must carry its key.
            let m = SharedMap::<u64, u64>::open(map).unwrap();
            println!("ready");
            let check = |key: u64, v: Option<u64>| {
                if let Some(v) = v {
                    if v >> 32 != key {
                        println!("VIOLATION key {key} value {v:#x}");
                        std::process::exit(3);
                    }
                }
            };
            let mut rng = Rng::new(seed.parse().unwrap());
            let mut gen = 0u64;
            loop {
                gen = (gen + 1) & 0xffff_ffff;
                let key = rng.below(64);
                let bump = move |v: &mut u64| *v = key << 32 | (*v + 1) & 0xffff_ffff;
                match rng.below(10) {
                    0..=2 => match m.insert(key, key << 32 | gen) {
                        Ok(old) => check(key, old),
                        Err(MapError::Full { .. }) => {}
                        Err(e) => panic!("{e}"),
                    },
                    3 => {
                        m.update(&key, bump).unwrap();
                    }
                    4 => match m.upsert(key, key << 32, bump) {
                        Ok(v) => check(key, Some(v)),
                        Err(MapError::Full { .. }) => {}
                        Err(e) => panic!("{e}"),
                    },
                    5 => check(key, m.remove(&key).unwrap()),
                    _ => {
                        check(key, m.get(&key).unwrap());
                        m.contains_key(&key).unwrap();
                    }
                }
            }
        }
        _ => 2,
    };
    std::process::exit(code);
}

#[test]
fn map_insert_get_remove_update_len_iter_clear() {
    let name = unique_name("map");
    let m = SharedMap::<u64, f64>::create(&name, 100).unwrap();
    assert_eq!(
        (m.len(), m.capacity(), m.max_len(), m.shards()),
        (0, 100, 100, 1)
    );
    assert!(m.is_empty());
    assert_eq!(m.insert(1, 1.5).unwrap(), None);
    assert_eq!(m.insert(1, 2.5).unwrap(), Some(1.5));
    assert_eq!(m.get(&1).unwrap(), Some(2.5));
    assert_eq!(m.get(&2).unwrap(), None);
    assert!(m.contains_key(&1).unwrap() && !m.contains_key(&2).unwrap());
    assert!(m.update(&1, |v| *v *= 2.0).unwrap());
    assert!(!m.update(&2, |v| *v *= 2.0).unwrap());
    assert_eq!(m.get(&1).unwrap(), Some(5.0));
    assert_eq!(m.upsert(7, 0.0, |v| *v += 1.0).unwrap(), 1.0);
    assert_eq!(m.upsert(7, 0.0, |v| *v += 1.0).unwrap(), 2.0);
    assert_eq!(m.len(), 2);
    assert_eq!(m.remove(&1).unwrap(), Some(5.0));
    assert_eq!(m.remove(&1).unwrap(), None);
    assert_eq!(m.len(), 1);
    // A second handle (as another process would) sees the same entries.
    let other = SharedMap::<u64, f64>::open(&name).unwrap();
    assert_eq!(other.get(&7).unwrap(), Some(2.0));
    // Exactly `capacity` entries fit in a one-shard map.
    for k in 100..199 {
        m.insert(k, k as f64).unwrap();
    }
    assert_eq!(m.len(), 100);
    assert!(matches!(
        m.insert(1000, 0.0),
        Err(MapError::Full {
            capacity: 100,
            len: 100
        })
    ));
    assert!(matches!(
        m.upsert(1000, 0.0, |_| {}),
        Err(MapError::Full { .. })
    ));
    // Replacing an existing key in a full map is fine; removing makes room.
    assert_eq!(m.insert(100, -1.0).unwrap(), Some(100.0));
    m.remove(&100).unwrap();
    m.insert(1000, 3.0).unwrap();
    let mut all = m.to_vec().unwrap();
    all.sort_by_key(|e| e.0);
    assert_eq!(all.len(), 100);
    assert_eq!((all[0], all[99]), ((7, 2.0), (1000, 3.0)));
    assert_eq!(m.iter().unwrap().count(), 100);
    // Churn: removals and inserts many times the table size keep working.
    for round in 0..50u64 {
        for k in 100..199 {
            if k != 100 {
                m.remove(&k).unwrap();
                m.insert(k + round * 1000, 1.0).unwrap();
                m.remove(&(k + round * 1000)).unwrap();
                m.insert(k, 1.0).unwrap();
            }
        }
    }
    assert_eq!(m.len(), 100);
    m.clear().unwrap();
    assert!(other.is_empty() && other.get(&7).unwrap().is_none());
    assert_eq!(m.repairs(), 0);
    assert!(m.path().unwrap().exists());
}

#[test]
fn large_maps_have_shards_and_hold_their_capacity() {
    let name = unique_name("map-large");
    let cap = 200_000;
    let m = SharedMap::<u64, u32>::create(&name, cap).unwrap();
    assert_eq!(m.shards(), 64);
    assert!(m.max_len() > cap);
    for k in 0..cap as u64 {
        m.insert(k.wrapping_mul(0x9e37_79b9), k as u32).unwrap();
    }
    assert_eq!(m.len(), cap);
    for k in (0..cap as u64).step_by(997) {
        assert_eq!(m.get(&k.wrapping_mul(0x9e37_79b9)).unwrap(), Some(k as u32));
    }
    // The map refuses at some point beyond capacity, never beyond max_len.
    let mut extra = 0;
    for k in 0u64.. {
        match m.insert(u64::MAX - k, 0) {
            Ok(_) => extra += 1,
            Err(MapError::Full { capacity, .. }) => {
                assert_eq!(capacity, cap);
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(cap + extra <= m.max_len());
    let info = inspect(&Namespace::default_dir().unwrap(), &name).unwrap();
    let Some(Contents::Map(c)) = &info.contents else {
        panic!("{:?}", info.contents)
    };
    assert_eq!(c.len as usize, cap + extra);
    assert_eq!((c.shards, c.key_size, c.value_size), (64, 8, 4));
}

#[test]
fn fixed_str_keys() {
    type Name = FixedStr<16>;
    assert_eq!(
        Name::new("a string that is too long"),
        Err(FixedStrError::TooLong { len: 25, max: 16 })
    );
    assert!(matches!(
        Name::new("a\0b"),
        Err(FixedStrError::Nul { position: 1 })
    ));
    let full = Name::new("exactly 16 bytes").unwrap();
    assert_eq!(full.as_str(), "exactly 16 bytes");
    assert_eq!(
        format!("{full} {full:?}"),
        "exactly 16 bytes FixedStr(\"exactly 16 bytes\")"
    );
    assert_eq!(Name::new("").unwrap().as_str(), "");
    let name = unique_name("map-str");
    let m = SharedMap::<Name, i64>::create(&name, 10).unwrap();
    for (i, w) in ["apple", "pear", "plum", "ünïcödé"].iter().enumerate() {
        m.insert(Name::new(w).unwrap(), i as i64).unwrap();
    }
    assert_eq!(m.get(&Name::new("plum").unwrap()).unwrap(), Some(2));
    assert_eq!(m.get(&Name::new("ünïcödé").unwrap()).unwrap(), Some(3));
    assert_eq!(m.get(&Name::new("Plum").unwrap()).unwrap(), None);
    let mut keys: Vec<String> = m.iter().unwrap().map(|(k, _)| k.to_string()).collect();
    keys.sort();
    assert_eq!(keys, ["apple", "pear", "plum", "ünïcödé"]);
}

#[test]
fn vec_push_pop_get_set_truncate_full() {
    let name = unique_name("vec");
    let v = SharedVec::<i32>::create(&name, 5).unwrap();
    assert!(v.is_empty());
    assert_eq!(v.push(10).unwrap(), 0);
    assert_eq!(v.push(11).unwrap(), 1);
    v.extend_from_slice(&[12, 13]).unwrap();
    assert!(matches!(
        v.extend_from_slice(&[1, 2]),
        Err(VecError::Full {
            capacity: 5,
            len: 4,
            additional: 2
        })
    ));
    assert_eq!(v.len(), 4);
    assert_eq!(v.push(14).unwrap(), 4);
    assert!(matches!(v.push(15), Err(VecError::Full { len: 5, .. })));
    assert_eq!(v.get(4).unwrap(), Some(14));
    assert_eq!(v.get(5).unwrap(), None);
    assert_eq!(v.set(0, -10).unwrap(), 10);
    assert!(matches!(
        v.set(5, 0),
        Err(VecError::OutOfBounds { index: 5, len: 5 })
    ));
    let other = SharedVec::<i32>::open(&name).unwrap();
    assert_eq!(other.to_vec().unwrap(), [-10, 11, 12, 13, 14]);
    assert_eq!(other.pop().unwrap(), Some(14));
    v.truncate(2).unwrap();
    v.truncate(4).unwrap(); // longer than it is: no effect
    assert_eq!(v.iter().unwrap().collect::<Vec<_>>(), [-10, 11]);
    v.clear().unwrap();
    assert_eq!((v.pop().unwrap(), other.len(), v.capacity()), (None, 0, 5));
    let info = inspect(&Namespace::default_dir().unwrap(), &name).unwrap();
    assert_eq!(info.kind(), ObjectKind::Vec);
    assert_eq!(info.contents.unwrap().occupancy(), (0, 5));
}

#[test]
fn maps_vecs_and_arrays_open_only_as_themselves() {
    let (m, v, a) = (
        unique_name("kind"),
        unique_name("kind"),
        unique_name("kind"),
    );
    let _map = SharedMap::<u64, u64>::create(&m, 10).unwrap();
    let _vec = SharedVec::<u64>::create(&v, 10).unwrap();
    let _arr = SharedArray::<u64, Ix1>::create(&a, 10).unwrap();
    let kind_mismatch = |e: &Error| matches!(e, Error::KindMismatch { .. });
    assert!(kind_mismatch(
        &SharedArray::<u8, Ix1>::open(&m).unwrap_err()
    ));
    assert!(kind_mismatch(
        &SharedArray::<u64, Ix1>::open(&v).unwrap_err()
    ));
    for name in [&v, &a] {
        match SharedMap::<u64, u64>::open(name) {
            Err(MapError::Segment(e)) => assert!(kind_mismatch(&e), "{e}"),
            other => panic!("{other:?}"),
        }
    }
    for name in [&m, &a] {
        match SharedVec::<u64>::open(name) {
            Err(VecError::Segment(e)) => assert!(kind_mismatch(&e), "{e}"),
            other => panic!("{other:?}"),
        }
    }
    // Other key/value sizes or element types are type mismatches.
    assert!(matches!(
        SharedMap::<u32, u64>::open(&m),
        Err(MapError::Segment(Error::TypeMismatch { .. }))
    ));
    assert!(matches!(
        SharedMap::<u64, [u64; 2]>::open(&m),
        Err(MapError::Segment(Error::TypeMismatch { .. }))
    ));
    assert!(matches!(
        SharedVec::<i64>::open(&v),
        Err(VecError::Segment(Error::TypeMismatch { .. }))
    ));
    assert!(matches!(
        SharedMap::<u64, u64>::create(&unique_name("kind"), 0),
        Err(MapError::Params(_))
    ));
}

/// Rewrites a segment's control block (params, kind version) in place, with a
/// correct checksum (FNV-1a 64 over the header window and control bytes 0..136,
/// as FORMAT.md specifies).
fn forge(name: &str, f: impl Fn(&mut [u64; 8], &mut u32)) {
    let info = inspect(&Namespace::default_dir().unwrap(), name).unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&info.path)
        .unwrap();
    let cb_at = info.layout.control_offset as u64;
    let mut cb = [0u8; 136];
    file.read_exact_at(&mut cb, cb_at).unwrap();
    let mut params = [0u64; 8];
    for (i, p) in params.iter_mut().enumerate() {
        *p = u64::from_le_bytes(cb[72 + 8 * i..80 + 8 * i].try_into().unwrap());
    }
    let mut version = u32::from_le_bytes(cb[16..20].try_into().unwrap());
    f(&mut params, &mut version);
    for (i, p) in params.iter().enumerate() {
        cb[72 + 8 * i..80 + 8 * i].copy_from_slice(&p.to_le_bytes());
    }
    cb[16..20].copy_from_slice(&version.to_le_bytes());
    let mut header = vec![0u8; info.layout.data_offset.min(4096)];
    file.read_exact_at(&mut header, 0).unwrap();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in header.iter().chain(cb.iter()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    file.write_all_at(&cb, cb_at).unwrap();
    file.write_all_at(&h.to_le_bytes(), cb_at + 136).unwrap();
}

#[test]
fn forged_parameters_are_typed_errors() {
    type F = fn(&mut [u64; 8], &mut u32);
    let map_forgeries: [(&str, F); 9] = [
        ("capacity 0", |p, _| p[2] = 0),
        ("capacity 2^40", |p, _| p[2] = 1 << 40),
        ("capacity larger than the table", |p, _| p[2] = 5000),
        ("key size u64::MAX", |p, _| p[0] = u64::MAX),
        ("shards", |p, _| p[3] = 2),
        ("slots", |p, _| p[4] = 1 << 40),
        ("shard capacity", |p, _| p[5] += 1),
        ("stride", |p, _| p[6] = 8),
        ("layout version", |_, v| *v = 99),
    ];
    for (what, f) in map_forgeries {
        let name = unique_name("forged-map");
        let m = SharedMap::<u64, u64>::create(&name, 1000).unwrap();
        forge(&name, f);
        match SharedMap::<u64, u64>::open(&name) {
            Err(MapError::Segment(Error::Corrupt { .. })) => {}
            other => panic!("{what}: {other:?}"),
        }
        // inspect and ls read the same parameters: an error, not a crash.
        assert!(
            inspect(&Namespace::default_dir().unwrap(), &name).is_err(),
            "{what}"
        );
        drop(m);
    }
    // The seed is free: a forged seed opens (and finds nothing).
    let name = unique_name("forged-map");
    let m = SharedMap::<u64, u64>::create(&name, 1000).unwrap();
    m.insert(1, 1).unwrap();
    forge(&name, |p, _| p[7] ^= 1);
    let forged = SharedMap::<u64, u64>::open(&name).unwrap();
    assert_eq!(forged.len(), 1);

    let vec_forgeries: [(&str, F); 3] = [
        ("capacity", |p, _| p[0] = 11),
        ("capacity 2^50", |p, _| p[0] = 1 << 50),
        ("layout version", |_, v| *v = 0),
    ];
    for (what, f) in vec_forgeries {
        let name = unique_name("forged-vec");
        let v = SharedVec::<u64>::create(&name, 10).unwrap();
        forge(&name, f);
        match SharedVec::<u64>::open(&name) {
            Err(VecError::Segment(Error::Corrupt { .. })) => {}
            other => panic!("{what}: {other:?}"),
        }
        drop(v);
    }
}

#[test]
fn four_processes_insert_and_push_at_once_and_nothing_is_lost() {
    let _w = watchdog("four writers", Duration::from_secs(60));
    let (mname, vname) = (unique_name("map4"), unique_name("vec4"));
    let n = 5000u64;
    let m = SharedMap::<u64, u64>::create(&mname, 4 * n as usize).unwrap();
    let v = SharedVec::<u64>::create(&vname, 4 * n as usize).unwrap();
    assert!(m.shards() > 1);
    let mut kids = Children::new(CHILD_ENV);
    let ids: Vec<usize> = (0..4)
        .map(|who| kids.spawn(&format!("fill:{mname}:{vname}:{who}:{n}")))
        .collect();
    for i in ids {
        assert_eq!(kids.wait(i).0, 0);
    }
    assert_eq!(m.len(), 4 * n as usize);
    for who in 0..4 {
        for j in 0..n {
            let k = who * 1_000_000 + j;
            assert_eq!(m.get(&k).unwrap(), Some(2 * k));
        }
    }
    let mut pushed = v.to_vec().unwrap();
    assert_eq!(pushed.len(), 4 * n as usize);
    pushed.sort_unstable();
    let mut expect: Vec<u64> = (0..4)
        .flat_map(|who| (0..n).map(move |j| who * 1_000_000 + j))
        .collect();
    expect.sort_unstable();
    assert_eq!(pushed, expect);
    assert_eq!((m.repairs(), v.repairs()), (0, 0));
}

/// Checks every invariant a reader can see: values never torn and of their key,
/// vec elements all written; when nobody else is running (`quiet`), also `len`
/// equal to the entries counted and every entry found by `get`.
fn check_invariants(m: &SharedMap<u64, Chaos>, v: &SharedVec<u64>, quiet: bool) {
    let check = |k: u64, val: &Chaos| {
        assert!(k < 64, "key {k}");
        assert!(val.iter().all(|w| *w == val[0]), "torn value {val:x?}");
        assert_eq!(val[0] >> 32, k, "value {:#x} of key {k}", val[0]);
    };
    let entries = m.to_vec().unwrap();
    for (k, val) in &entries {
        check(*k, val);
        match m.get(k).unwrap() {
            Some(now) => check(*k, &now),
            None => assert!(!quiet, "key {k} listed but not found"),
        }
        if quiet {
            assert_eq!(m.get(k).unwrap(), Some(*val));
        }
    }
    if quiet {
        assert_eq!(m.len(), entries.len());
    }
    let elems = v.to_vec().unwrap();
    if quiet {
        assert_eq!(elems.len(), v.len());
    }
    assert!(elems.len() <= v.capacity());
    for e in elems {
        assert_eq!(e >> 32, VEC_TAG, "element {e:#x}");
    }
}

#[test]
fn processes_killed_at_random_instants_leave_map_and_vec_consistent_and_unlocked() {
    let _w = watchdog("the SIGKILL test", Duration::from_secs(50));
    let (mname, vname) = (unique_name("chaos-map"), unique_name("chaos-vec"));
    let m = SharedMap::<u64, Chaos>::create(&mname, 48).unwrap();
    let v = SharedVec::<u64>::create(&vname, 200).unwrap();
    let mut rng = Rng::new(u64::from(std::process::id()) * 7919);
    let mut kids = Children::new(CHILD_ENV);
    let spawn = |kids: &mut Children, rng: &mut Rng| {
        let i = kids.spawn(&format!("chaos:{mname}:{vname}:{}", rng.next()));
        kids.expect_line(i, "ready");
        i
    };
    // Two workers at a time; kill one at a random instant, check, replace it.
    let mut running = [spawn(&mut kids, &mut rng), spawn(&mut kids, &mut rng)];
    let kills = 40;
    for round in 0..kills {
        std::thread::sleep(Duration::from_micros(rng.below(20_000)));
        let victim = round % 2;
        kill_and_check(&mut kids, running[victim]);
        // Operations after the kill complete (the watchdog fails a stuck lock) and
        // see a consistent map, while the other worker keeps going.
        check_invariants(&m, &v, false);
        if round % 4 == 3 {
            // Now and then, with nobody running, the exact checks.
            kill_and_check(&mut kids, running[1 - victim]);
            check_invariants(&m, &v, true);
            running[1 - victim] = spawn(&mut kids, &mut rng);
        }
        running[victim] = spawn(&mut kids, &mut rng);
    }
    kill_and_check(&mut kids, running[0]);
    kill_and_check(&mut kids, running[1]);
    check_invariants(&m, &v, true);
    // Still fully usable.
    m.clear().unwrap();
    for k in 0..48 {
        m.insert(k, [k << 32; 8]).unwrap();
    }
    assert!(matches!(m.insert(99, [0; 8]), Err(MapError::Full { .. })));
    v.clear().unwrap();
    v.push(1).unwrap();
    eprintln!(
        "{kills} kills: {} map repairs, {} vec repairs",
        m.repairs(),
        v.repairs()
    );
    assert!(
        m.repairs() + v.repairs() > 0,
        "no process was ever killed holding a lock: the test did not test recovery"
    );
}

/// A child killed with SIGKILL: it must not have ended by itself (a child that
/// sees a torn or foreign value exits with 3 and says why).
fn kill_and_check(kids: &mut Children, i: usize) {
    let pid = nix::unistd::Pid::from_raw(kids.pid(i) as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    let (code, out) = kids.wait(i);
    assert_eq!(code, -1, "the child ended by itself: {out}");
    assert!(!out.contains("VIOLATION"), "{out}");
}

#[test]
fn inline_values_stay_whole_and_of_their_key_while_lock_free_users_are_killed() {
    let _w = watchdog("the inline SIGKILL test", Duration::from_secs(50));
    let name = unique_name("chaos8-map");
    // One shard, 64 keys for 48 places: inserts, removes, updates and lock-free
    // replaces and reads all meet on the same entries.
    let m = SharedMap::<u64, u64>::create(&name, 48).unwrap();
    let mut rng = Rng::new(u64::from(std::process::id()) * 104_729);
    let mut kids = Children::new(CHILD_ENV);
    let spawn = |kids: &mut Children, rng: &mut Rng| {
        let i = kids.spawn(&format!("chaos8:{name}:{}", rng.next()));
        kids.expect_line(i, "ready");
        i
    };
    let check = |quiet: bool| {
        let entries = m.to_vec().unwrap();
        for (k, v) in &entries {
            assert_eq!(v >> 32, *k, "value {v:#x} of key {k}");
        }
        for k in 0..64 {
            if let Some(v) = m.get(&k).unwrap() {
                assert_eq!(v >> 32, k, "value {v:#x} of key {k}");
            }
        }
        if quiet {
            assert_eq!(m.len(), entries.len());
            for (k, v) in &entries {
                assert_eq!(m.get(k).unwrap(), Some(*v));
            }
        }
    };
    let mut running = [spawn(&mut kids, &mut rng), spawn(&mut kids, &mut rng)];
    let kills = 40;
    for round in 0..kills {
        std::thread::sleep(Duration::from_micros(rng.below(20_000)));
        let victim = round % 2;
        kill_and_check(&mut kids, running[victim]);
        check(false);
        if round % 4 == 3 {
            kill_and_check(&mut kids, running[1 - victim]);
            check(true);
            running[1 - victim] = spawn(&mut kids, &mut rng);
        }
        running[victim] = spawn(&mut kids, &mut rng);
    }
    kill_and_check(&mut kids, running[0]);
    kill_and_check(&mut kids, running[1]);
    check(true);
    eprintln!("{kills} kills: {} map repairs", m.repairs());
}

/// Two keys keep taking each other's slot (capacity 1: two slots) while this
/// thread looks them up without the lock; `check` must hold for every value read.
/// Returns how many reads found an entry.
fn slot_reuse_under_readers<V: bytemuck::Pod + Send>(
    m: &SharedMap<u64, V>,
    value: impl Fn(u64, u64) -> V + Sync,
    check: impl Fn(u64, &V) -> bool,
) -> u64 {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            for round in 0u64..30_000 {
                for k in [1u64, 2] {
                    m.insert(k, value(k, round)).unwrap();
                    assert!(m.remove(&k).unwrap().is_some());
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
        let mut hits = 0u64;
        while !stop.load(Ordering::Relaxed) {
            for k in [1u64, 2] {
                if let Some(v) = m.get(&k).unwrap() {
                    assert!(check(k, &v), "a foreign or torn value for key {k}");
                    hits += 1;
                }
            }
        }
        writer.join().unwrap();
        hits
    })
}

#[test]
fn a_reader_never_gets_the_value_of_a_key_that_took_its_slot() {
    let _w = watchdog("slot reuse under readers", Duration::from_secs(60));
    let m = SharedMap::<u64, u64>::create(&unique_name("map-reuse8"), 1).unwrap();
    let hits = slot_reuse_under_readers(&m, |k, r| k << 32 | r, |k, v| v >> 32 == k);
    assert!(
        hits > 0,
        "the readers never met an entry: the test tested nothing"
    );
    let m = SharedMap::<u64, Chaos>::create(&unique_name("map-reuse64"), 1).unwrap();
    let hits = slot_reuse_under_readers(
        &m,
        |k, r| [k << 32 | r; 8],
        |k, v| v.iter().all(|w| *w == v[0]) && v[0] >> 32 == k,
    );
    assert!(
        hits > 0,
        "the readers never met an entry: the test tested nothing"
    );
}

/// A `BytesMap` writer (inserts, in-place updates, removes: two keys taking each
/// other's slot, capacity 1) under lock-free readers of both kinds: a typed
/// `SharedMap` and a `BytesMap` on the same segment. `check` must hold for every
/// value read; returns how many reads found an entry.
fn byte_writer_under_typed_readers<V: bytemuck::Pod + Send + Sync>(
    name: &str,
    value: impl Fn(u64, u64) -> V + Sync,
    check: impl Fn(u64, &V) -> bool + Sync,
) -> u64 {
    let raw = BytesMap::create(name, 8, size_of::<V>(), 1).unwrap();
    let typed = SharedMap::<u64, V>::open(name).unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            for round in 0u64..15_000 {
                for k in [1u64, 2] {
                    let key = k.to_ne_bytes();
                    raw.insert(&key, bytemuck::bytes_of(&value(k, round)))
                        .unwrap();
                    let next = value(k, round + 1);
                    assert!(raw
                        .update(&key, |v| v.copy_from_slice(bytemuck::bytes_of(&next)))
                        .unwrap());
                    let old = raw.remove(&key).unwrap().expect("only this thread removes");
                    assert!(check(k, &bytemuck::pod_read_unaligned(&old)));
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
        let mut hits = 0u64;
        while !stop.load(Ordering::Relaxed) {
            for k in [1u64, 2] {
                if let Some(v) = typed.get(&k).unwrap() {
                    assert!(
                        check(k, &v),
                        "typed reader: a foreign or torn value for key {k}"
                    );
                    hits += 1;
                }
                if let Some(v) = raw.get(&k.to_ne_bytes()).unwrap() {
                    let v: V = bytemuck::pod_read_unaligned(&v);
                    assert!(
                        check(k, &v),
                        "byte reader: a foreign or torn value for key {k}"
                    );
                    hits += 1;
                }
            }
        }
        writer.join().unwrap();
        hits
    })
}

#[test]
fn byte_map_writes_follow_the_lock_free_readers_protocol() {
    let _w = watchdog("byte writer under readers", Duration::from_secs(90));
    let hits = byte_writer_under_typed_readers(
        &unique_name("bmap-reuse8"),
        |k, r| k << 32 | (r & 0xffff_ffff),
        |k, v: &u64| v >> 32 == k,
    );
    assert!(
        hits > 0,
        "the readers never met an entry: the test tested nothing"
    );
    let hits = byte_writer_under_typed_readers(
        &unique_name("bmap-reuse64"),
        |k, r| [k << 32 | (r & 0xffff_ffff); 8],
        |k, v: &Chaos| v.iter().all(|w| *w == v[0]) && v[0] >> 32 == k,
    );
    assert!(
        hits > 0,
        "the readers never met an entry: the test tested nothing"
    );
}

#[test]
fn a_byte_map_replace_never_lands_in_the_entry_of_another_key() {
    let _w = watchdog("byte replaces under slot reuse", Duration::from_secs(60));
    // As `a_lock_free_replace_never_lands_in_the_entry_of_another_key`, with the
    // replaces made through a `BytesMap` and the slot handed over by a typed map.
    let name = unique_name("bmap-replace");
    let m = SharedMap::<u64, u64>::create(&name, 1).unwrap();
    let raw = BytesMap::open(&name).unwrap();
    let stop = AtomicBool::new(false);
    let tagged = |k: u64, v: u64| v >> 32 == k;
    std::thread::scope(|s| {
        let replacer = s.spawn(|| {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let v = 1 << 32 | (n & 0xffff_ffff);
                match raw.insert(&1u64.to_ne_bytes(), &u64::to_ne_bytes(v)) {
                    Ok(old) => assert!(
                        old.is_none_or(|o| tagged(1, u64::from_ne_bytes(o.try_into().unwrap()))),
                        "key 1 held a foreign value"
                    ),
                    Err(MapError::Full { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        });
        for n in 0u64..50_000 {
            if let Some(v) = m.remove(&1).unwrap() {
                assert!(tagged(1, v), "key 1 held {v:#x}");
            }
            match m.insert(2, 2 << 32 | n) {
                Ok(old) => assert_eq!(old, None),
                Err(MapError::Full { .. }) => continue,
                Err(e) => panic!("{e}"),
            }
            if let Some(v) = m.get(&2).unwrap() {
                assert!(tagged(2, v), "key 2 read as {v:#x}");
            }
            let v = m
                .remove(&2)
                .unwrap()
                .expect("only this thread removes key 2");
            assert!(tagged(2, v), "key 2 held {v:#x}");
        }
        stop.store(true, Ordering::Relaxed);
        replacer.join().unwrap();
    });
}

#[test]
fn a_lock_free_replace_never_lands_in_the_entry_of_another_key() {
    let _w = watchdog("replaces under slot reuse", Duration::from_secs(60));
    // Capacity 1: key 1 is replaced (without the lock while it is there) as fast
    // as possible, while another thread keeps removing it and putting key 2 in
    // the freed place; every value seen must carry its key.
    let m = SharedMap::<u64, u64>::create(&unique_name("map-replace"), 1).unwrap();
    let stop = AtomicBool::new(false);
    let tagged = |k: u64, v: u64| v >> 32 == k;
    std::thread::scope(|s| {
        let replacer = s.spawn(|| {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                match m.insert(1, 1 << 32 | (n & 0xffff_ffff)) {
                    Ok(old) => assert!(old.is_none_or(|v| tagged(1, v)), "{old:x?}"),
                    Err(MapError::Full { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        });
        for n in 0u64..100_000 {
            if let Some(v) = m.remove(&1).unwrap() {
                assert!(tagged(1, v), "key 1 held {v:#x}");
            }
            match m.insert(2, 2 << 32 | n) {
                Ok(old) => assert_eq!(old, None),
                Err(MapError::Full { .. }) => continue,
                Err(e) => panic!("{e}"),
            }
            if let Some(v) = m.get(&2).unwrap() {
                assert!(tagged(2, v), "key 2 read as {v:#x}");
            }
            let v = m
                .remove(&2)
                .unwrap()
                .expect("only this thread removes key 2");
            assert!(tagged(2, v), "key 2 held {v:#x}");
        }
        stop.store(true, Ordering::Relaxed);
        replacer.join().unwrap();
    });
}

#[test]
fn a_held_shard_lock_stops_neither_gets_nor_replaces() {
    let _w = watchdog("gets beside a held lock", Duration::from_secs(30));
    let name = unique_name("map-nolock");
    // One shard: every key shares the lock `update` holds below.
    let m = SharedMap::<u64, u64>::create(&name, 100).unwrap();
    m.insert(1, 10).unwrap();
    m.insert(2, 20).unwrap();
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        let m = &m;
        let holder = s.spawn(move || {
            let mut released_by_us = false;
            m.update(&1, |v| {
                held_tx.send(()).unwrap();
                // Held until the other thread is done (or 10 s, if it blocked).
                released_by_us = done_rx.recv_timeout(Duration::from_secs(10)).is_ok();
                *v += 1;
            })
            .unwrap();
            released_by_us
        });
        held_rx.recv().unwrap();
        // The shard's lock is held and entry 1 is busy: reads go on, the busy
        // inline value reads as it was, and a key that is there is replaced.
        assert_eq!(m.get(&2).unwrap(), Some(20));
        assert_eq!(m.get(&1).unwrap(), Some(10));
        assert!(m.contains_key(&2).unwrap() && !m.contains_key(&3).unwrap());
        #[cfg(target_arch = "x86_64")]
        assert_eq!(m.insert(2, 21).unwrap(), Some(20));
        done_tx.send(()).unwrap();
        assert!(
            holder.join().unwrap(),
            "a get or replace waited for the shard's lock"
        );
    });
    assert_eq!(m.get(&1).unwrap(), Some(11));
}

#[test]
fn an_update_that_panics_leaves_the_entry_as_it_was_and_usable() {
    let name = unique_name("map-panic8");
    let m = SharedMap::<u64, u64>::create(&name, 100).unwrap();
    m.insert(1, 10).unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        m.update(&1, |v| {
            *v = 99;
            panic!("in the closure")
        })
    }));
    assert!(r.is_err());
    assert_eq!(m.get(&1).unwrap(), Some(10));
    assert_eq!(m.insert(1, 11).unwrap(), Some(10));
    assert!(m.update(&1, |v| *v += 1).unwrap());
    assert_eq!(m.remove(&1).unwrap(), Some(12));

    let name = unique_name("map-panic64");
    let m = SharedMap::<u64, Chaos>::create(&name, 100).unwrap();
    m.insert(1, [1; 8]).unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        m.update(&1, |v| {
            v[0] = 99;
            panic!("in the closure")
        })
    }));
    assert!(r.is_err());
    assert_eq!(m.get(&1).unwrap(), Some([1; 8]));
    assert_eq!(m.insert(1, [2; 8]).unwrap(), Some([1; 8]));
    assert_eq!(m.to_vec().unwrap(), vec![(1, [2; 8])]);
    assert_eq!(m.repairs(), 0);
}

#[test]
fn a_map_of_the_previous_layout_is_refused_with_a_clear_error() {
    let name = unique_name("map-v1");
    let m = SharedMap::<u64, u64>::create(&name, 1000).unwrap();
    forge(&name, |_, v| *v = 1);
    match SharedMap::<u64, u64>::open(&name) {
        Err(MapError::Segment(e @ Error::Corrupt { .. })) => {
            let text = e.to_string();
            assert!(
                text.contains("map layout version 1")
                    && text.contains("older shmarray")
                    && text.contains("re-create"),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
    drop(m);
}

#[test]
fn no_leftovers_after_owners_drop() {
    let prefix = format!("shmarray-test-{}-left", std::process::id());
    {
        let _m = SharedMap::<u64, u64>::create(&unique_name("left"), 10).unwrap();
        let _v = SharedVec::<u8>::create(&unique_name("left"), 10).unwrap();
        assert_eq!(leftovers(&prefix).len(), 2);
    }
    assert_eq!(leftovers(&prefix), Vec::<String>::new());
}
