//! The robust read-write lock of arrays (`read()` / `write()` beside `lock()`)
//! across threads and real processes, including readers and writers killed with
//! SIGKILL while they hold it.
//!
//! Child processes are this test binary re-executed with `SHMARRAY_RW_CHILD` set;
//! every child is reaped by a guard and every wait has a deadline.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{unique_name, Children};
use ndarray::Ix1;
use shmarray::{sync::LockFailure, LockError, LockResultExt, SharedArray};

const CHILD_ENV: &str = "SHMARRAY_RW_CHILD";

/// The child roles. Not a real test when the variable is unset.
#[test]
fn child_entry() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let args: Vec<&str> = spec.split(':').collect();
    let code = match args.as_slice() {
        ["read_and_hold", name] => {
            let a = SharedArray::<i64, Ix1>::open(name).unwrap();
            let r = a.read().unwrap();
            println!("reading {}", r.sum());
            std::thread::sleep(Duration::from_secs(120));
            1
        }
        ["write_and_hold", name] => {
            let a = SharedArray::<i64, Ix1>::open(name).unwrap();
            let mut w = a.write().unwrap();
            let half = w.len() / 2;
            w.slice_mut(ndarray::s![..half]).fill(1);
            println!("holding");
            std::thread::sleep(Duration::from_secs(120));
            1
        }
        ["reader_loop", name, ms] => {
            // Keeps a read lock held almost all the time for `ms` milliseconds,
            // checking that every read sees all elements equal.
            let a = SharedArray::<i64, Ix1>::open(name).unwrap();
            let end = Instant::now() + Duration::from_millis(ms.parse().unwrap());
            let (mut reads, mut torn) = (0u64, 0u64);
            println!("started");
            while Instant::now() < end {
                let r = a.read().unwrap();
                let first = r[0];
                if r.iter().any(|&x| x != first) {
                    torn += 1;
                }
                std::thread::sleep(Duration::from_micros(200));
                drop(r);
                reads += 1;
            }
            println!("reads {reads} torn {torn}");
            (torn != 0) as i32
        }
        ["writer_loop", name, k] => {
            let a = SharedArray::<i64, Ix1>::open(name).unwrap();
            for _ in 0..k.parse::<u32>().unwrap() {
                let mut w = a.write().unwrap();
                w.map_inplace(|x| *x += 1);
            }
            0
        }
        _ => 2,
    };
    std::process::exit(code);
}

#[test]
fn readers_share_the_lock_and_a_writer_excludes_them() {
    let name = unique_name("rw-share");
    let a = Arc::new(SharedArray::<i64, Ix1>::create(&name, 64).unwrap());
    // Two threads hold read locks at the same time (each waits for the other
    // inside its read section).
    let inside = Arc::new(AtomicU32::new(0));
    let both = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (a, inside, both) = (a.clone(), inside.clone(), both.clone());
            std::thread::spawn(move || {
                let r = a.read().unwrap();
                inside.fetch_add(1, Ordering::SeqCst);
                let t = Instant::now();
                while inside.load(Ordering::SeqCst) < 2 && t.elapsed() < Duration::from_secs(10) {
                    std::thread::yield_now();
                }
                if inside.load(Ordering::SeqCst) == 2 {
                    both.store(true, Ordering::SeqCst);
                }
                drop(r);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(
        both.load(Ordering::SeqCst),
        "two readers were never inside together"
    );

    // A reader in another process keeps writers out until it is gone.
    let other = SharedArray::<i64, Ix1>::open(&name).unwrap();
    let r = std::thread::scope(|s| {
        s.spawn(|| {
            let r = other.read().unwrap();
            std::thread::sleep(Duration::from_millis(100));
            drop(r);
        });
        std::thread::sleep(Duration::from_millis(20));
        let blocked = matches!(
            a.try_lock(),
            Err(LockError::Failed(LockFailure::WouldBlock))
        );
        let t = Instant::now();
        let w = a.write_timeout(Duration::from_secs(10)).unwrap();
        (blocked, t.elapsed(), w.recovered_readers())
    });
    assert!(r.0, "try_lock must not succeed while a reader holds");
    assert!(
        r.1 >= Duration::from_millis(30),
        "the writer waited for the reader"
    );
    assert_eq!(r.2, 0);
    // A timed write gives up while a reader holds, and lets readers in again.
    let g = a.read().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            let w = other.write_timeout(Duration::from_millis(50));
            assert!(matches!(w, Err(LockError::Failed(LockFailure::Timeout(_)))));
            // After the writer gave up, readers are not kept out.
            drop(other.try_read().expect("readers are let in again"));
        });
    });
    drop(g);
}

#[test]
fn a_reader_killed_while_reading_is_recovered_by_the_next_writer() {
    let name = unique_name("rw-deadreader");
    let a = SharedArray::<i64, Ix1>::create(&name, 16).unwrap();
    let mut kids = Children::new(CHILD_ENV);
    let r = kids.spawn(&format!("read_and_hold:{name}"));
    kids.expect_line(r, "reading");
    assert!(
        matches!(
            a.try_lock(),
            Err(LockError::Failed(LockFailure::WouldBlock))
        ),
        "a live reader holds the lock"
    );
    kids.kill(r);
    let start = Instant::now();
    let mut w = a.write().expect("a dead reader's data needs no repair");
    assert!(start.elapsed() < Duration::from_secs(5), "no hang");
    assert_eq!(w.recovered_readers(), 1);
    assert!(!w.owner_died());
    w.fill(3);
    drop(w);
    assert_eq!(a.read().unwrap().sum(), 48);
    // The recovered slot is free again for new readers.
    let r = kids.spawn(&format!("read_and_hold:{name}"));
    assert!(kids.expect_line(r, "reading").ends_with("reading 48"));
    kids.kill(r);
    assert_eq!(a.lock().unwrap().recovered_readers(), 1);
}

#[test]
fn a_writer_killed_while_writing_hands_the_repair_to_the_next_reader() {
    let name = unique_name("rw-deadwriter");
    let a = SharedArray::<i64, Ix1>::create(&name, 100).unwrap();
    let mut kids = Children::new(CHILD_ENV);
    let w = kids.spawn(&format!("write_and_hold:{name}"));
    kids.expect_line(w, "holding");
    assert!(matches!(
        a.try_read(),
        Err(LockError::Failed(LockFailure::WouldBlock))
    ));
    kids.kill(w);
    // The next reader gets the write guard with the torn data, repairs, and reads.
    let mut g = match a.read() {
        Err(LockError::OwnerDied(g)) => g,
        other => panic!("expected OwnerDied, got {:?}", other.map(|_| ())),
    };
    assert!(g.owner_died());
    assert_eq!(g.sum(), 50, "the dead writer's half update is visible");
    g.fill(0);
    g.mark_consistent();
    let r = g.downgrade().unwrap();
    assert_eq!(r.sum(), 0);
    // Other readers come in beside the downgraded one.
    let other = SharedArray::<i64, Ix1>::open(&name).unwrap();
    assert_eq!(other.try_read().unwrap().sum(), 0);
    drop(r);

    // The same through `recover`, which gives the read guard.
    let w = kids.spawn(&format!("write_and_hold:{name}"));
    kids.expect_line(w, "holding");
    kids.kill(w);
    let r = other.read().recover(|g| g.fill(9)).unwrap();
    assert_eq!(r.sum(), 900);
    drop(r);

    // Dropped unrepaired: readers and writers get NotRecoverable, never torn data.
    let w = kids.spawn(&format!("write_and_hold:{name}"));
    kids.expect_line(w, "holding");
    kids.kill(w);
    drop(a.lock().unwrap_err().into_guard().expect("OwnerDied"));
    assert!(matches!(
        other.read(),
        Err(LockError::Failed(LockFailure::NotRecoverable))
    ));
    assert!(matches!(
        a.read(),
        Err(LockError::Failed(LockFailure::NotRecoverable))
    ));
    assert!(matches!(
        a.lock(),
        Err(LockError::Failed(LockFailure::NotRecoverable))
    ));
}

#[test]
fn writers_are_not_starved_by_overlapping_readers_and_reads_are_never_torn() {
    let name = unique_name("rw-starve");
    let a = SharedArray::<i64, Ix1>::create(&name, 4096).unwrap();
    let mut kids = Children::new(CHILD_ENV);
    // Two reader processes, each holding a read lock ~all the time: without
    // writer preference a writer would never find the lock free of readers.
    let readers: Vec<usize> = (0..2)
        .map(|_| kids.spawn(&format!("reader_loop:{name}:3000")))
        .collect();
    for &r in &readers {
        kids.expect_line(r, "started");
    }
    let writer = kids.spawn(&format!("writer_loop:{name}:200"));
    let mut writes = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        let mut w = a
            .write_timeout(Duration::from_secs(10))
            .expect("a writer gets in despite readers");
        w.map_inplace(|x| *x += 1);
        writes += 1;
        drop(w);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(writes >= 20, "only {writes} writes in 1.5 s");
    assert_eq!(kids.wait(writer).0, 0);
    for r in readers {
        let (code, out) = kids.wait(r);
        assert_eq!(code, 0, "torn reads: {out}");
    }
    let total = 200 + writes;
    assert!(a.read().unwrap().iter().all(|&x| x == total));
}

#[test]
fn self_deadlocks_are_errors_and_a_second_read_never_waits() {
    let name = unique_name("rw-self");
    let a = SharedArray::<i64, Ix1>::create(&name, 8).unwrap();
    let b = SharedArray::<i64, Ix1>::open(&name).unwrap();
    let r = a.read().unwrap();
    // Writing while this thread reads would wait for itself.
    for res in [
        a.lock().map(drop),
        b.write().map(drop),
        a.try_lock().map(drop),
    ] {
        assert!(matches!(res, Err(LockError::Failed(LockFailure::Deadlock))));
    }
    std::thread::scope(|s| {
        // A writer in another thread waits for our read...
        let waiting = s.spawn(|| {
            let w = b.write_timeout(Duration::from_secs(20)).unwrap();
            w.len()
        });
        std::thread::sleep(Duration::from_millis(50));
        // ...a second read through the same handle does not wait for it...
        let again = a.try_read().expect("a second read of the same handle");
        // ...and one through another handle is an error, not a deadlock.
        assert!(matches!(
            b.read(),
            Err(LockError::Failed(LockFailure::Deadlock))
        ));
        drop(again);
        drop(r);
        assert_eq!(waiting.join().unwrap(), 8);
    });
    // A thread that holds the lock and reads: an error too.
    let g = a.lock().unwrap();
    assert!(matches!(
        a.read(),
        Err(LockError::Failed(LockFailure::Deadlock))
    ));
    drop(g);
    drop(a.read().unwrap());
}

#[test]
fn the_reader_table_has_56_entries_and_handles_give_theirs_back() {
    let name = unique_name("rw-table");
    let a = SharedArray::<i64, Ix1>::create(&name, 8).unwrap();
    let handles: Vec<_> = (0..56)
        .map(|_| SharedArray::<i64, Ix1>::open(&name).unwrap())
        .collect();
    // A thread holds read guards of at most 16 handles at once (its record of
    // held reads, which turns self-deadlocks into errors, has 16 places).
    let guards: Vec<_> = handles[..16].iter().map(|h| h.read().unwrap()).collect();
    assert!(matches!(
        handles[16].read(),
        Err(LockError::Failed(LockFailure::TooManyHeldReads {
            limit: 16
        }))
    ));
    drop(guards);
    // Each handle takes an entry on its first read and keeps it while it lives.
    for h in &handles {
        drop(h.read().unwrap());
    }
    assert!(matches!(
        a.read(),
        Err(LockError::Failed(LockFailure::TooManyReaders { slots: 56 }))
    ));
    drop(handles);
    drop(a.read().expect("entries are given back when handles drop"));
    let w = a.write().unwrap();
    assert_eq!(w.recovered_readers(), 0);
}

#[test]
fn inspect_shows_the_readers_their_liveness_and_the_writer() {
    let name = unique_name("rw-inspect");
    let a = SharedArray::<i64, Ix1>::create(&name, 16).unwrap();
    let ns = shmarray::Namespace::default_dir().unwrap();
    let rw = || {
        shmarray::admin::inspect(&ns, &name)
            .unwrap()
            .rwlock
            .unwrap()
    };
    assert_eq!((rw().writer, rw().readers.len()), ("free", 0));
    let mut kids = Children::new(CHILD_ENV);
    let r = kids.spawn(&format!("read_and_hold:{name}"));
    kids.expect_line(r, "reading");
    let seen = rw();
    assert_eq!(seen.readers.len(), 1);
    let reader = &seen.readers[0];
    assert_eq!(
        (reader.pid, reader.holds, reader.liveness),
        (kids.pid(r), 1, shmarray::admin::Liveness::Alive)
    );
    kids.kill(r);
    let seen = rw();
    assert_eq!(
        (seen.readers[0].holds, seen.readers[0].liveness),
        (1, shmarray::admin::Liveness::Dead),
        "a dead reader still holding, until a writer comes"
    );
    assert_eq!(a.write().unwrap().recovered_readers(), 1);
    assert_eq!(
        rw().readers.len(),
        0,
        "the writer vacated the dead reader's entry"
    );
    // A reader of this process registers; a writer in another process then holds
    // the lock and waits for nobody.
    drop(a.read().unwrap());
    let w = kids.spawn(&format!("write_and_hold:{name}"));
    kids.expect_line(w, "holding");
    let seen = rw();
    assert_eq!(seen.writer, "writer");
    assert_eq!(
        (
            seen.readers.len(),
            seen.readers[0].holds,
            seen.readers[0].pid
        ),
        (1, 0, std::process::id())
    );
    kids.kill(w);
}
