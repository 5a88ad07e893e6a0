//! Hand an N-MiB f64 array to a worker process which doubles it and hands it back:
//! through a pipe (two copies) versus by attaching the shared segment (zero copy).
//!
//! The worker is the `shmarray` binary's `__worker` command, started once per size
//! and kept for all iterations, so process start-up is not measured. In the zero
//! copy case each iteration attaches the segment by name afresh (open, mmap, header
//! validation, page faults on first touch), doubles it in place and detaches.
//!
//! Run: `cargo bench --bench zero_copy` (add `-- --quick` for a fast look).

use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ndarray::Ix1;
use shmarray::demo::WorkerProc;
use shmarray::{Namespace, Options, SharedArray};

fn zero_copy(c: &mut Criterion) {
    let exe = Path::new(env!("CARGO_BIN_EXE_shmarray"));
    let ns = Namespace::default_dir().expect("/dev/shm");
    let mut group = c.benchmark_group("double_in_worker");
    group.sample_size(10);
    for mib in [1usize, 16, 256] {
        let n = mib * (1 << 20) / 8;
        group.throughput(Throughput::Bytes((n * 8) as u64));
        let mut worker = WorkerProc::start(exe, &ns).expect("start worker");

        let name = format!("shmarray-bench-zc-{}-{mib}", std::process::id());
        let mut arr =
            SharedArray::<f64, Ix1>::create_with(&Options::new().namespace(ns.clone()), &name, n)
                .expect("create");
        arr.view_mut().expect("writable").fill(1.0);
        group.bench_with_input(BenchmarkId::new("shared_memory", mib), &name, |b, name| {
            b.iter(|| worker.double_shm(name).expect("worker"))
        });

        drop(arr);

        let mut data = vec![1.0f64; n];
        group.bench_with_input(BenchmarkId::new("pipe", mib), &mib, |b, _| {
            b.iter(|| worker.double_pipe(&mut data).expect("worker"))
        });
    }
    group.finish();
}

criterion_group!(benches, zero_copy);
criterion_main!(benches);
