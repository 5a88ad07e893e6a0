//! Locks, atomics, events and barriers across real processes, including processes
//! killed with SIGKILL at the worst moment.
//!
//! Child processes are this test binary re-executed with `SHMARRAY_SYNC_CHILD` set:
//! the `child_entry` test then performs one role and exits. Every child is reaped by
//! a guard (killed if still running), and every wait has a deadline.

mod common;

use std::time::{Duration, Instant};

use common::{unique_name, Children};
use ndarray::Ix1;
use shmarray::{
    atomic::{SharedAtomicU32, SharedAtomicU64},
    sync::{BarrierError, LockFailure},
    Barrier, Event, LockError, SharedArray, SharedValue,
};

const CHILD_ENV: &str = "SHMARRAY_SYNC_CHILD";

/// The child roles. Not a real test when the variable is unset.
#[test]
fn child_entry() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let args: Vec<&str> = spec.split(':').collect();
    let code = match args.as_slice() {
        ["inc", name, k] => {
            let v = SharedValue::<u64>::open(name).unwrap();
            for _ in 0..k.parse::<u64>().unwrap() {
                *v.lock().unwrap() += 1;
            }
            0
        }
        ["atomic", name, k] => {
            let a = SharedAtomicU64::open(name).unwrap();
            for _ in 0..k.parse::<u64>().unwrap() {
                a.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            0
        }
        ["hold", name] => {
            // Take the array lock, write half of the update, then wait to be killed.
            let a = SharedArray::<i64, Ix1>::open(name).unwrap();
            let mut g = a.lock().unwrap();
            let half = g.len() / 2;
            g.slice_mut(ndarray::s![..half]).fill(1);
            println!("holding");
            std::thread::sleep(Duration::from_secs(120));
            1
        }
        ["forget", name] => {
            // Leak a held guard (safe code), drop the handle, then lock another
            // robust mutex (glibc walks this thread's robust list) and exit normally
            // (the kernel walks it again).
            let a = SharedArray::<i64, Ix1>::open(name).unwrap();
            let g = a.lock().unwrap();
            std::mem::forget(g);
            drop(a);
            let other = SharedArray::<i64, Ix1>::create(&format!("{name}-other"), 1).unwrap();
            drop(other.lock().unwrap());
            println!("leaked");
            0
        }
        ["barrier", name, rounds] => {
            let b = Barrier::open(name).unwrap();
            let mut leaders = 0;
            let mut code = 0;
            for _ in 0..rounds.parse::<u32>().unwrap() {
                match b.wait_timeout(Duration::from_secs(20)) {
                    Ok(leader) => leaders += leader as u32,
                    Err(e) => {
                        println!("err {e:?}");
                        code = 3;
                        break;
                    }
                }
            }
            println!("leaders {leaders}");
            code
        }
        ["join_and_sleep", name] => {
            let _b = Barrier::open(name).unwrap();
            println!("joined");
            std::thread::sleep(Duration::from_secs(120));
            1
        }
        ["event_wait", name] => {
            let e = Event::open(name).unwrap();
            match e.wait_timeout(Duration::from_secs(20)) {
                Ok(()) => 0,
                Err(_) => 4,
            }
        }
        ["futex_wait", name] => {
            let w = SharedAtomicU32::open(name).unwrap();
            match w.wait_while_equal_timeout(0, Duration::from_secs(20)) {
                Ok(()) if w.load(std::sync::atomic::Ordering::Acquire) == 7 => 0,
                _ => 5,
            }
        }
        _ => 2,
    };
    std::process::exit(code);
}

#[test]
fn locked_increments_from_four_processes_add_up_exactly() {
    let name = unique_name("inc");
    let v = SharedValue::<u64>::create(&name, 0).unwrap();
    let mut kids = Children::new(CHILD_ENV);
    let (n, k) = (4, 5_000);
    let ids: Vec<usize> = (0..n)
        .map(|_| kids.spawn(&format!("inc:{name}:{k}")))
        .collect();
    for i in ids {
        assert_eq!(kids.wait(i).0, 0);
    }
    assert_eq!(v.get().unwrap(), n * k);
}

#[test]
fn value_try_lock_would_block_while_held() {
    let name = unique_name("value-try");
    let v = SharedValue::<u64>::create(&name, 1).unwrap();
    {
        let mut g = v.try_lock().unwrap();
        *g += 1;
        assert!(matches!(
            v.try_lock(),
            Err(LockError::Failed(
                LockFailure::WouldBlock | LockFailure::Deadlock
            ))
        ));
    }
    assert_eq!(*v.try_lock().unwrap(), 2);
}

#[test]
fn atomic_increments_from_four_processes_add_up_exactly() {
    let name = unique_name("atomic");
    let a = SharedAtomicU64::create(&name, 0).unwrap();
    let mut kids = Children::new(CHILD_ENV);
    let (n, k) = (4u64, 100_000u64);
    let ids: Vec<usize> = (0..n)
        .map(|_| kids.spawn(&format!("atomic:{name}:{k}")))
        .collect();
    for i in ids {
        assert_eq!(kids.wait(i).0, 0);
    }
    assert_eq!(a.load(std::sync::atomic::Ordering::SeqCst), n * k);
    // compare_exchange across the same shared word
    assert_eq!(
        a.compare_exchange(
            n * k,
            1,
            std::sync::atomic::Ordering::AcqRel,
            std::sync::atomic::Ordering::Acquire
        ),
        Ok(n * k)
    );
}

/// Starts a child that takes the array lock, half-writes, and is then SIGKILLed.
fn kill_holder(name: &str, kids: &mut Children) {
    let h = kids.spawn(&format!("hold:{name}"));
    kids.expect_line(h, "holding");
    kids.kill(h);
}

#[test]
fn sigkill_while_holding_the_lock_gives_owner_died_and_recovery() {
    let name = unique_name("ownerdied");
    let a = SharedArray::<i64, Ix1>::create(&name, 1000).unwrap();
    let mut kids = Children::new(CHILD_ENV);
    kill_holder(&name, &mut kids);

    let start = Instant::now();
    let mut g = match a.lock() {
        Err(LockError::OwnerDied(g)) => g,
        other => panic!("expected OwnerDied, got {:?}", other.map(|_| ())),
    };
    assert!(start.elapsed() < Duration::from_secs(5), "no hang");
    assert!(g.owner_died());
    // The dead holder's torn update is visible: repair it (roll back), then continue.
    assert_eq!(g.sum(), 500);
    g.fill(0);
    g.mark_consistent();
    drop(g);
    let mut g = a.lock().expect("usable again after mark_consistent");
    g.fill(2);
    drop(g);
    assert_eq!(a.lock().unwrap().sum(), 2000);
    // And another process can use it too.
    let v = SharedArray::<i64, Ix1>::open(&name).unwrap();
    assert_eq!(v.lock().expect("fine from another handle").sum(), 2000);
}

/// `mem::forget` of a guard is safe code: the handle dropped after it must leave its
/// mapping in place (the mutex is on the holding thread's robust list), so the
/// holder's exit still reports `OwnerDied` instead of hanging every later locker.
#[test]
fn a_leaked_guard_then_a_dropped_handle_still_gives_owner_died_when_the_holder_exits() {
    let name = unique_name("forget");
    let a = SharedArray::<i64, Ix1>::create(&name, 10).unwrap();
    let mut kids = Children::new(CHILD_ENV);
    let c = kids.spawn(&format!("forget:{name}"));
    kids.expect_line(c, "leaked");
    let (code, _) = kids.wait(c);
    assert_eq!(code, 0, "the child ran to its end");
    let r = a.lock_timeout(Duration::from_secs(10));
    assert!(
        matches!(r, Err(LockError::OwnerDied(_))),
        "expected OwnerDied, got {:?}",
        r.map(|_| ())
    );
}

#[test]
fn unrepaired_owner_died_makes_the_lock_not_recoverable_not_deadlocked() {
    let name = unique_name("notrecoverable");
    let a = SharedArray::<i64, Ix1>::create(&name, 10).unwrap();
    let mut kids = Children::new(CHILD_ENV);
    kill_holder(&name, &mut kids);
    let g = a.lock().unwrap_err().into_guard().expect("OwnerDied");
    drop(g); // not marked consistent
    assert!(matches!(
        a.lock(),
        Err(LockError::Failed(LockFailure::NotRecoverable))
    ));
    assert!(matches!(
        a.try_lock(),
        Err(LockError::Failed(LockFailure::NotRecoverable))
    ));
    let r = a.lock_timeout(Duration::from_millis(10));
    assert!(
        matches!(r, Err(LockError::Failed(LockFailure::NotRecoverable))),
        "{:?}",
        r.map(|_| ())
    );
}

#[test]
fn timed_lock_times_out_close_to_the_request_and_never_einval() {
    let name = unique_name("timeout");
    let a = SharedArray::<i64, Ix1>::create(&name, 10).unwrap();
    // Free lock: any duration, including sub-second carries and absurdly large ones.
    for d in [
        Duration::ZERO,
        Duration::from_nanos(999_999_999),
        Duration::from_millis(1500),
        Duration::from_secs(u64::MAX / 4),
        Duration::MAX,
    ] {
        drop(a.lock_timeout(d).unwrap_or_else(|e| panic!("{d:?}: {e}")));
    }
    let mut kids = Children::new(CHILD_ENV);
    let h = kids.spawn(&format!("hold:{name}"));
    kids.expect_line(h, "holding");
    for want in [
        Duration::from_millis(50),
        Duration::from_millis(300),
        Duration::from_millis(1100),
    ] {
        let t = Instant::now();
        match a.lock_timeout(want) {
            Err(LockError::Failed(LockFailure::Timeout(d))) => assert_eq!(d, want),
            other => panic!("expected Timeout, got {:?}", other.map(|_| ())),
        }
        let took = t.elapsed();
        assert!(took >= want, "returned early: {took:?} < {want:?}");
        assert!(
            took < want + Duration::from_secs(2),
            "far too late: {took:?}"
        );
    }
    assert!(matches!(
        a.try_lock(),
        Err(LockError::Failed(LockFailure::WouldBlock))
    ));
    kids.kill(h);
}

#[test]
fn lock_on_a_plain_npy_or_read_only_array_is_a_typed_error() {
    let name = unique_name("plainlock");
    let guard = common::ShmFile::new(&name);
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&118u16.to_le_bytes());
    bytes.extend_from_slice(b"{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }");
    bytes.resize(127, b' ');
    bytes.push(b'\n');
    bytes.resize(136, 0);
    std::fs::write(&guard.0, &bytes).unwrap();
    let a = SharedArray::<i64, Ix1>::open(&name).unwrap();
    assert!(matches!(
        a.lock(),
        Err(LockError::Failed(LockFailure::Segment(
            shmarray::Error::NoControlBlock { .. }
        )))
    ));
    let name2 = unique_name("rolock");
    let _w = SharedArray::<i64, Ix1>::create(&name2, 1).unwrap();
    let r = (shmarray::Options::new().read_only(true))
        .open::<SharedArray<i64, Ix1>>(&name2)
        .unwrap();
    assert!(matches!(
        r.lock(),
        Err(LockError::Failed(LockFailure::Segment(
            shmarray::Error::ReadOnly { .. }
        )))
    ));
}

#[test]
fn same_thread_relock_is_an_error_not_a_deadlock() {
    let name = unique_name("relock");
    let a = SharedArray::<u8, Ix1>::create(&name, 1).unwrap();
    let g = a.lock().unwrap();
    assert!(matches!(
        a.lock(),
        Err(LockError::Failed(LockFailure::Deadlock))
    ));
    drop(g);
}

#[test]
fn barrier_synchronises_three_processes_for_many_rounds() {
    let name = unique_name("barrier");
    let b = Barrier::create(&name, 3).unwrap();
    let mut kids = Children::new(CHILD_ENV);
    let rounds = 30;
    let ids: Vec<usize> = (0..2)
        .map(|_| kids.spawn(&format!("barrier:{name}:{rounds}")))
        .collect();
    let mut leaders = 0;
    for _ in 0..rounds {
        leaders += b.wait_timeout(Duration::from_secs(20)).unwrap() as u32;
    }
    for i in ids {
        let (code, out) = kids.wait(i);
        assert_eq!(code, 0, "{out}");
        leaders += out
            .split_whitespace()
            .last()
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap();
    }
    assert_eq!(leaders, rounds, "exactly one leader per round");
}

#[test]
fn barrier_with_a_killed_participant_errors_out_instead_of_hanging() {
    let name = unique_name("barrierdead");
    let b = Barrier::create(&name, 3).unwrap();
    let mut kids = Children::new(CHILD_ENV);
    let victim = kids.spawn(&format!("join_and_sleep:{name}"));
    kids.expect_line(victim, "joined");
    let waiter = kids.spawn(&format!("barrier:{name}:1"));
    let victim_pid = kids.pid(victim);
    std::thread::sleep(Duration::from_millis(50));
    kids.kill(victim);
    let t = Instant::now();
    let r = b.wait_timeout(Duration::from_secs(20));
    // Slots are taken in joining order: this process 0, the victim 1.
    assert_eq!(
        r,
        Err(BarrierError::ParticipantDied {
            slot: 1,
            pid: victim_pid
        })
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    let (code, out) = kids.wait(waiter);
    assert_eq!(code, 3, "the other survivor errors out too: {out}");
    assert!(out.contains("ParticipantDied"), "{out}");
    assert!(b.is_broken());
}

#[test]
fn barrier_timeout_when_a_party_never_comes() {
    let name = unique_name("barriertimeout");
    let b = Barrier::create(&name, 2).unwrap();
    let t = Instant::now();
    assert_eq!(
        b.wait_timeout(Duration::from_millis(200)),
        Err(BarrierError::Timeout(Duration::from_millis(200)))
    );
    assert!(t.elapsed() >= Duration::from_millis(200));
    b.reset();
    assert!(!b.is_broken());
}

#[test]
fn event_and_futex_wake_a_waiting_process() {
    let name = unique_name("event");
    let e = Event::create(&name).unwrap();
    let wname = unique_name("futex");
    let w = SharedAtomicU32::create(&wname, 0).unwrap();
    let mut kids = Children::new(CHILD_ENV);
    let a = kids.spawn(&format!("event_wait:{name}"));
    let b = kids.spawn(&format!("futex_wait:{wname}"));
    std::thread::sleep(Duration::from_millis(100));
    assert!(!e.is_set());
    e.set();
    w.store(7, std::sync::atomic::Ordering::Release);
    w.wake_all();
    assert_eq!(kids.wait(a).0, 0);
    assert_eq!(kids.wait(b).0, 0);
    assert!(e.is_set());
    e.clear();
    assert_eq!(
        e.wait_timeout(Duration::from_millis(20)),
        Err(shmarray::sync::TimedOut)
    );
}

#[test]
fn named_objects_refuse_foreign_segments() {
    let name = unique_name("notabarrier");
    let _a = SharedArray::<u8, Ix1>::create(&name, 1088).unwrap();
    assert!(Barrier::open(&name).is_err());
    assert!(Event::open(&name).is_err());
    assert!(matches!(
        SharedAtomicU64::open(&name),
        Err(shmarray::Error::KindMismatch { .. })
    ));
}
