//! Locks and atomics: shmarray's robust mutex vs raw_sync's (non-robust) mutex vs
//! std's in-process Mutex.
//!
//! - `uncontended`: lock + unlock in one thread.
//! - `contended_2proc`: two processes each increment a shared counter under the lock
//!   (`iters` increments each); throughput counts both processes' increments.
//! - `atomic_2proc`: the same with `fetch_add` on a shared `AtomicU64`.
//! - `uncontended/shmarray_array_read`: the read side of the array's read-write
//!   lock (read lock + load + unlock), beside `shmarray_array_lock`.
//! - `readers`: read lock + load + unlock from one process, then from two processes
//!   at once (throughput counts both), and the same two processes under the mutex.
//!
//! The second process is this bench binary re-executed with `SHMARRAY_LOCKBENCH_CHILD`.
//! Run: `cargo bench --bench locks`.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use ndarray::Ix1;
use raw_sync::locks::{LockImpl, LockInit, Mutex as RawSyncMutex};
use shmarray::{atomic::SharedAtomicU64, SharedArray, SharedValue};
use std::hint::black_box;

mod common;
use common::ChildSpec;

const CHILD_ENV: &str = "SHMARRAY_LOCKBENCH_CHILD";

/// A raw_sync mutex plus a u64 counter in a shared segment.
struct RawSyncShared {
    array: SharedArray<u8, Ix1>,
    lock: Box<dyn LockImpl>,
}

impl RawSyncShared {
    fn create(name: &str) -> RawSyncShared {
        let array = SharedArray::<u8, Ix1>::create(name, 256).unwrap();
        // SAFETY: the data area is 256 writable bytes of a fresh segment that no view
        // of ours touches (raw_sync owns them); the mutex takes the first 64, the
        // counter lives at 128.
        let (lock, _) = unsafe {
            let base = array.view_mut_unchecked().as_mut_ptr();
            RawSyncMutex::new(base, base.add(128)).unwrap()
        };
        RawSyncShared { array, lock }
    }

    fn open(name: &str) -> RawSyncShared {
        let array = SharedArray::<u8, Ix1>::open(name).unwrap();
        // SAFETY: the creator initialised the mutex at the same offset; no view of
        // ours touches these bytes.
        let (lock, _) = unsafe {
            let base = array.view_mut_unchecked().as_mut_ptr();
            RawSyncMutex::from_existing(base, base.add(128)).unwrap()
        };
        RawSyncShared { array, lock }
    }

    fn increment(&self) {
        let g = self.lock.lock().unwrap();
        // SAFETY: the guard's data pointer is the 8-aligned counter slot.
        unsafe { *(*g as *mut u64) += 1 };
    }

    fn counter(&self) -> u64 {
        let _ = &self.array;
        let g = self.lock.lock().unwrap();
        // SAFETY: as above.
        unsafe { *(*g as *const u64) }
    }
}

fn child(spec: &str) {
    let c = ChildSpec::parse(spec);
    let (name, iters) = (c.name.as_str(), c.iters);
    let wait_go = || c.wait_go();
    match c.kind.as_str() {
        "ours" => {
            let v = SharedValue::<u64>::open(name).unwrap();
            wait_go();
            for _ in 0..iters {
                *v.lock().unwrap() += 1;
            }
        }
        "raw_sync" => {
            let s = RawSyncShared::open(name);
            wait_go();
            for _ in 0..iters {
                s.increment();
            }
        }
        "read" => {
            let a = SharedArray::<u64, Ix1>::open(name).unwrap();
            wait_go();
            for _ in 0..iters {
                black_box(a.read().unwrap()[0]);
            }
        }
        "lock_read" => {
            let a = SharedArray::<u64, Ix1>::open(name).unwrap();
            wait_go();
            for _ in 0..iters {
                black_box(a.lock().unwrap()[0]);
            }
        }
        "atomic" => {
            let a = SharedAtomicU64::open(name).unwrap();
            wait_go();
            for _ in 0..iters {
                a.fetch_add(1, Ordering::Relaxed);
            }
        }
        _ => std::process::exit(2),
    }
}

/// Runs `iters` increments here and in a second process at the same time; returns
/// the wall time from the start signal until both are done.
fn two_processes(kind: &str, name: &str, iters: u64, here: impl FnMut()) -> Duration {
    common::two_processes(CHILD_ENV, kind, name, iters, here)
}

fn benches(c: &mut Criterion) {
    let pid = std::process::id();
    let mut g = c.benchmark_group("uncontended");
    g.throughput(Throughput::Elements(1));
    let ours = SharedArray::<u64, Ix1>::create(&format!("shmarray-bench-u-{pid}"), 1).unwrap();
    g.bench_function("shmarray_array_lock", |b| {
        b.iter(|| {
            let mut guard = ours.lock().unwrap();
            guard[0] += 1;
        })
    });
    g.bench_function("shmarray_array_read", |b| {
        b.iter(|| black_box(ours.read().unwrap()[0]))
    });
    let value = SharedValue::<u64>::create(&format!("shmarray-bench-v-{pid}"), 0).unwrap();
    g.bench_function("shmarray_value_lock", |b| {
        b.iter(|| *value.lock().unwrap() += 1)
    });
    let rs = RawSyncShared::create(&format!("shmarray-bench-r-{pid}"));
    g.bench_function("raw_sync_mutex", |b| b.iter(|| rs.increment()));
    let std_mutex = std::sync::Mutex::new(0u64);
    g.bench_function("std_mutex_in_process", |b| {
        b.iter(|| *black_box(&std_mutex).lock().unwrap() += 1)
    });
    g.finish();

    let mut g = c.benchmark_group("readers");
    g.sample_size(10);
    let rwname = format!("shmarray-bench-rw-{pid}");
    let rw = SharedArray::<u64, Ix1>::create(&rwname, 1).unwrap();
    g.throughput(Throughput::Elements(1));
    g.bench_function("rwlock_read_1proc", |b| {
        b.iter(|| black_box(rw.read().unwrap()[0]))
    });
    g.throughput(Throughput::Elements(2));
    g.bench_function("rwlock_read_2proc", |b| {
        b.iter_custom(|iters| {
            two_processes("read", &rwname, iters, || {
                black_box(rw.read().unwrap()[0]);
            })
        })
    });
    g.bench_function("mutex_read_2proc", |b| {
        b.iter_custom(|iters| {
            two_processes("lock_read", &rwname, iters, || {
                black_box(rw.lock().unwrap()[0]);
            })
        })
    });
    g.finish();

    let mut g = c.benchmark_group("contended_2proc");
    g.sample_size(10);
    g.throughput(Throughput::Elements(2));
    let vname = format!("shmarray-bench-cv-{pid}");
    let v = SharedValue::<u64>::create(&vname, 0).unwrap();
    g.bench_function("shmarray_lock", |b| {
        b.iter_custom(|iters| two_processes("ours", &vname, iters, || *v.lock().unwrap() += 1))
    });
    let rname = format!("shmarray-bench-cr-{pid}");
    let r = RawSyncShared::create(&rname);
    g.bench_function("raw_sync_mutex", |b| {
        b.iter_custom(|iters| two_processes("raw_sync", &rname, iters, || r.increment()))
    });
    let std_counter = std::sync::Arc::new(std::sync::Mutex::new(0u64));
    g.bench_function("std_mutex_2_threads", |b| {
        b.iter_custom(|iters| {
            let other = std_counter.clone();
            let t = Instant::now();
            let h = std::thread::spawn(move || {
                for _ in 0..iters {
                    *other.lock().unwrap() += 1;
                }
            });
            for _ in 0..iters {
                *std_counter.lock().unwrap() += 1;
            }
            h.join().unwrap();
            t.elapsed()
        })
    });
    g.finish();
    // The counters really were shared: both processes' increments are there
    // (unless a filter on the command line skipped these benchmarks).
    let filtered = std::env::args().skip(1).any(|a| !a.starts_with('-'));
    assert!(filtered || (v.get().unwrap() > 0 && r.counter() > 0));

    let mut g = c.benchmark_group("atomic_2proc");
    g.sample_size(10);
    g.throughput(Throughput::Elements(2));
    let aname = format!("shmarray-bench-ca-{pid}");
    let a = SharedAtomicU64::create(&aname, 0).unwrap();
    g.bench_function("shmarray_fetch_add", |b| {
        b.iter_custom(|iters| {
            two_processes("atomic", &aname, iters, || {
                a.fetch_add(1, Ordering::Relaxed);
            })
        })
    });
    g.finish();
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child(&spec);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
