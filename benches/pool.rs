//! Pool dispatch overhead and in-place kernels over a shared array, against rayon
//! threads in one process (the upper bound).
//!
//! `harness = false` with our own `main`, because spawned workers re-execute this
//! binary and must reach `shmarray::init()` first.
//! Run: `cargo bench --bench pool`.

use criterion::{BenchmarkId, Criterion, Throughput};
use ndarray::{ArrayViewMut2, Axis, Ix2};
use rayon::prelude::*;
use shmarray::pool::{Pool, StartMethod};
use shmarray::SharedArray;

fn trivial(x: u64) -> u64 {
    x.wrapping_add(1)
}

fn double(mut rows: ArrayViewMut2<'_, f64>) {
    rows *= 2.0;
}

/// Before and after in one run: `lanes` is the pool as it is (several tasks in
/// flight per worker in a shared-memory lane); `socket` is how it dispatched
/// before lanes (one task in flight per worker, a socket round trip each), which
/// is still what a pool falls back to when a lane cannot be made.
fn dispatch(c: &mut Criterion) {
    let pools = [
        ("lanes", Pool::new(2).expect("pool")),
        (
            "socket",
            Pool::without_lanes(2, StartMethod::Spawn).expect("pool"),
        ),
    ];
    let mut g = c.benchmark_group("pool_dispatch");
    g.sample_size(10);
    let n = 20_000u64;
    g.throughput(Throughput::Elements(n));
    for chunksize in [1usize, 100, 1000] {
        for (mode, pool) in &pools {
            let id = BenchmarkId::new(format!("trivial_task_chunksize_{chunksize}"), mode);
            g.bench_function(id, |b| {
                b.iter(|| {
                    let out = pool
                        .map_chunked(trivial, (0..n).collect(), chunksize)
                        .unwrap();
                    assert_eq!(out.len() as u64, n);
                })
            });
        }
    }
    g.finish();
}

fn kernel(c: &mut Criterion) {
    // 256 MiB of f64: 32768 rows of 1024.
    let name = format!("shmarray-bench-kernel-{}", std::process::id());
    let a = SharedArray::<f64, Ix2>::create(&name, (32_768, 1024)).expect("array");
    a.lock().unwrap().fill(1.0);
    let mut g = c.benchmark_group("kernel_double_256MiB");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(a.nbytes() as u64));
    for workers in [1usize, 2] {
        let pool = Pool::new(workers).expect("pool");
        pool.for_each_chunk(&a, Axis(0), double).unwrap(); // attach + fault once
        g.bench_function(format!("processes_{workers}"), |b| {
            b.iter(|| pool.for_each_chunk(&a, Axis(0), double).unwrap())
        });
    }
    for threads in [1usize, 2] {
        let tp = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        g.bench_function(format!("rayon_threads_{threads}"), |b| {
            b.iter(|| {
                let mut guard = a.lock().unwrap();
                let rows = guard.len_of(Axis(0)).div_ceil(threads);
                let parts: Vec<ArrayViewMut2<'_, f64>> =
                    guard.axis_chunks_iter_mut(Axis(0), rows).collect();
                tp.install(|| parts.into_par_iter().for_each(double));
            })
        });
    }
    g.finish();
}

fn main() {
    shmarray::init();
    let mut c = Criterion::default().configure_from_args();
    dispatch(&mut c);
    kernel(&mut c);
    c.final_summary();
}
