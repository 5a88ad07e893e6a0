//! `SharedMap` throughput: get and insert (replacing a value) of random keys among
//! 100 000 present ones in a map of capacity 200 000 (64 shards), from one process
//! and from two processes at once, against `std::sync::Mutex<HashMap>` in one
//! process (one thread, and two threads). For scale: Python's
//! `multiprocessing.Manager().dict()` does about 33 000 sets per second from one
//! process (measured on the same machine; every operation is a round trip to the
//! manager process).
//!
//! The second process is this bench binary re-executed with
//! `SHMARRAY_MAPBENCH_CHILD`. Run: `cargo bench --bench map`.
//!
//! Instruction counts (load-independent, for before/after comparisons):
//! `SHMARRAY_MAPBENCH_OPS=get:N` (or `insert:N`) fills the same map and runs N of
//! those operations in this process only; run it under `valgrind --tool=callgrind`
//! for two N and divide the difference of the totals by the difference of the N.
//!
//! CPU time (for a machine busy with other work, where wall-clock throughput
//! measures the scheduler): `SHMARRAY_MAPBENCH_CPU=get:N` (or `insert:N`) runs N
//! operations in this process alone, then N here and N in a second process at
//! once, and prints operations per second of each process's own CPU time (the
//! sharing of cache lines between the two shows as CPU time, as long as both run
//! at the same time). With `SHMARRAY_MAPBENCH_OWN=1` as well, the second process
//! works on a map of its own (same size, same keys): the two then share no cache
//! line, only the caches and memory, which separates the cost of lines passed
//! between the cores from the cost of running two at once.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};

mod common;
use common::ChildSpec;
use shmarray::SharedMap;

const CHILD_ENV: &str = "SHMARRAY_MAPBENCH_CHILD";
const KEYS: u64 = 100_000;
const CAPACITY: usize = 200_000;

/// Random keys in `0..KEYS` (xorshift), a different stream per seed.
struct Keys(u64);

impl Keys {
    #[inline]
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % KEYS
    }
}

fn child(spec: &str) {
    let c = ChildSpec::parse(spec);
    let (op, iters) = (c.kind.as_str(), c.iters);
    let m = SharedMap::<u64, u64>::open(&c.name).unwrap();
    c.wait_go();
    let mut keys = Keys(0x1234_5678_9abc_def1);
    match op {
        "get" => {
            for _ in 0..iters {
                black_box(m.get(&keys.next()).unwrap());
            }
        }
        "insert" => {
            for i in 0..iters {
                black_box(m.insert(keys.next(), i).unwrap());
            }
        }
        _ => std::process::exit(2),
    }
}

/// Runs `iters` operations here and in a second process at the same time; returns
/// the wall time from the start signal until both are done.
fn two_processes(op: &str, name: &str, iters: u64, here: impl FnMut()) -> Duration {
    common::two_processes(CHILD_ENV, op, name, iters, here)
}

fn benches(c: &mut Criterion) {
    let pid = std::process::id();
    let name = format!("shmarray-mapbench-{pid}");
    let m = SharedMap::<u64, u64>::create(&name, CAPACITY).unwrap();
    let mut std_map = HashMap::with_capacity(CAPACITY);
    for k in 0..KEYS {
        m.insert(k, k).unwrap();
        std_map.insert(k, k);
    }
    let std_map = Arc::new(Mutex::new(std_map));

    let mut g = c.benchmark_group("map_1proc");
    g.throughput(Throughput::Elements(1));
    let mut keys = Keys(0x9e37_79b9_7f4a_7c15);
    g.bench_function("shmarray_get", |b| {
        b.iter(|| black_box(m.get(&keys.next()).unwrap()))
    });
    g.bench_function("shmarray_insert", |b| {
        b.iter(|| black_box(m.insert(keys.next(), 7).unwrap()))
    });
    g.bench_function("std_mutex_hashmap_get", |b| {
        b.iter(|| black_box(std_map.lock().unwrap().get(&keys.next()).copied()))
    });
    g.bench_function("std_mutex_hashmap_insert", |b| {
        b.iter(|| black_box(std_map.lock().unwrap().insert(keys.next(), 7)))
    });
    g.finish();

    let mut g = c.benchmark_group("map_2proc");
    g.sample_size(10);
    g.throughput(Throughput::Elements(2));
    g.bench_function("shmarray_get", |b| {
        b.iter_custom(|iters| {
            two_processes("get", &name, iters, || {
                black_box(m.get(&keys.next()).unwrap());
            })
        })
    });
    g.bench_function("shmarray_insert", |b| {
        b.iter_custom(|iters| {
            two_processes("insert", &name, iters, || {
                black_box(m.insert(keys.next(), 7).unwrap());
            })
        })
    });
    for (label, insert) in [
        ("std_mutex_hashmap_get_2threads", false),
        ("std_mutex_hashmap_insert_2threads", true),
    ] {
        g.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let other = std_map.clone();
                let t = Instant::now();
                let h = std::thread::spawn(move || {
                    let mut keys = Keys(0x1234_5678_9abc_def1);
                    for _ in 0..iters {
                        let mut g = other.lock().unwrap();
                        if insert {
                            black_box(g.insert(keys.next(), 7));
                        } else {
                            black_box(g.get(&keys.next()).copied());
                        }
                    }
                });
                let mut keys = Keys(0x9e37_79b9_7f4a_7c15);
                for _ in 0..iters {
                    let mut g = std_map.lock().unwrap();
                    if insert {
                        black_box(g.insert(keys.next(), 7));
                    } else {
                        black_box(g.get(&keys.next()).copied());
                    }
                }
                h.join().unwrap();
                t.elapsed()
            })
        });
    }
    g.finish();
    assert_eq!(m.len(), KEYS as usize);
}

/// `SHMARRAY_MAPBENCH_OPS=op:N`: N operations in this process (see the top).
fn ops(spec: &str) {
    let (op, n) = spec.split_once(':').expect("op:N");
    let n: u64 = n.parse().expect("N");
    let name = format!("shmarray-mapbench-ops-{}", std::process::id());
    let m = SharedMap::<u64, u64>::create(&name, CAPACITY).unwrap();
    for k in 0..KEYS {
        m.insert(k, k).unwrap();
    }
    let mut keys = Keys(0x9e37_79b9_7f4a_7c15);
    match op {
        "get" => (0..n).for_each(|_| {
            black_box(m.get(&keys.next()).unwrap());
        }),
        "insert" => (0..n).for_each(|i| {
            black_box(m.insert(keys.next(), i).unwrap());
        }),
        _ => panic!("unknown op {op}"),
    }
}

/// This thread's CPU time.
fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec to write; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// N operations `op` on `m` with key stream `seed`; returns (CPU, wall) time.
fn timed_ops(m: &SharedMap<u64, u64>, op: &str, n: u64, seed: u64) -> (Duration, Duration) {
    let mut keys = Keys(seed);
    let (c, w) = (thread_cpu(), Instant::now());
    match op {
        "get" => (0..n).for_each(|_| {
            black_box(m.get(&keys.next()).unwrap());
        }),
        "insert" => (0..n).for_each(|i| {
            black_box(m.insert(keys.next(), i).unwrap());
        }),
        _ => panic!("unknown op {op}"),
    }
    (thread_cpu() - c, w.elapsed())
}

/// `SHMARRAY_MAPBENCH_CPU=op:N` (see the top).
fn cpu(spec: &str) {
    let (op, n) = spec.split_once(':').expect("op:N");
    let n: u64 = n.parse().expect("N");
    let pid = std::process::id();
    let name = format!("shmarray-mapbench-cpu-{pid}");
    let m = SharedMap::<u64, u64>::create(&name, CAPACITY).unwrap();
    for k in 0..KEYS {
        m.insert(k, k).unwrap();
    }
    let rate = |d: Duration| n as f64 / d.as_secs_f64() / 1e6;
    timed_ops(&m, op, n / 4, 1);
    let (c1, w1) = timed_ops(&m, op, n, 0x9e37_79b9_7f4a_7c15);
    let (ready_name, go_name) = (format!("{name}-ready"), format!("{name}-go"));
    let ready = shmarray::Event::create(&ready_name).unwrap();
    let go = shmarray::Event::create(&go_name).unwrap();
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .env_remove("SHMARRAY_MAPBENCH_CPU")
        .env(
            "SHMARRAY_MAPBENCH_CPU_CHILD",
            format!("{op}:{name}:{ready_name}:{go_name}:{n}"),
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    ready.wait_timeout(Duration::from_secs(60)).unwrap();
    go.set();
    let (c2, w2) = timed_ops(&m, op, n, 0x9e37_79b9_7f4a_7c15);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let child_cpu: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    println!(
        "{op}: 1 process {:.2} M/cpu-s ({:.2} M/s wall); 2 processes {:.2} + {:.2} M/cpu-s \
         ({:.2} M/s wall here)",
        rate(c1),
        rate(w1),
        rate(c2),
        n as f64 / child_cpu / 1e6,
        rate(w2),
    );
}

/// The second process of `cpu`: prints its CPU seconds.
fn cpu_child(spec: &str) {
    let a: Vec<&str> = spec.split(':').collect();
    let [op, name, ready, go, n] = a.as_slice() else {
        std::process::exit(2)
    };
    // `SHMARRAY_MAPBENCH_OWN`: a map of its own (same size and keys), so that the
    // two processes share no cache line, only the caches and memory.
    let m = if std::env::var_os("SHMARRAY_MAPBENCH_OWN").is_some() {
        let m = SharedMap::<u64, u64>::create(&format!("{name}-own"), CAPACITY).unwrap();
        for k in 0..KEYS {
            m.insert(k, k).unwrap();
        }
        m
    } else {
        SharedMap::<u64, u64>::open(name).unwrap()
    };
    let n: u64 = n.parse().unwrap();
    timed_ops(&m, op, n / 4, 2);
    shmarray::Event::open(ready).unwrap().set();
    shmarray::Event::open(go)
        .unwrap()
        .wait_timeout(Duration::from_secs(60))
        .unwrap();
    let (c, _) = timed_ops(&m, op, n, 0x1234_5678_9abc_def1);
    println!("{}", c.as_secs_f64());
}

fn main() {
    if let Ok(spec) = std::env::var("SHMARRAY_MAPBENCH_CPU_CHILD") {
        cpu_child(&spec);
        return;
    }
    if let Ok(spec) = std::env::var("SHMARRAY_MAPBENCH_CPU") {
        cpu(&spec);
        return;
    }
    if let Ok(spec) = std::env::var("SHMARRAY_MAPBENCH_OPS") {
        ops(&spec);
        return;
    }
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child(&spec);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
