//! Hand an N-MiB f64 array to a worker process which doubles it and hands it back:
//! through a pipe (two copies) versus by attaching the shared segment (zero copy).
//!
//! The worker is the `shmarray` binary's `__worker` command, started once per size
//! and kept for all iterations, so process start-up is not measured. In the zero
//! copy case each iteration attaches the segment by name afresh (open, mmap, header
//! validation, page faults on first touch), doubles it in place and detaches.
//!
//! With huge-page directories in the default namespace (a hugetlbfs or THP tmpfs
//! mount, see `shmarray doctor`), the shared-memory case runs on each kind of page
//! too (`shared_memory_hugetlb`, `shared_memory_thp`).
//!
//! Run: `cargo bench --bench zero_copy` (add `-- --quick` for a fast look).

#[path = "../../benches/common/mod.rs"]
mod common;

use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shmarray_cli::worker::WorkerProc;

fn zero_copy(c: &mut Criterion) {
    let exe = Path::new(env!("CARGO_BIN_EXE_shmarray"));
    let variants = common::page_variants();
    let mut group = c.benchmark_group("double_in_worker");
    group.sample_size(10);
    for mib in [1usize, 16, 256] {
        let n = mib * (1 << 20) / 8;
        group.throughput(Throughput::Bytes((n * 8) as u64));
        for (label, ns) in &variants {
            let id = match *label {
                "4k" => "shared_memory".to_string(),
                l => format!("shared_memory_{l}"),
            };
            let name = format!("shmarray-bench-zc-{}-{mib}-{label}", std::process::id());
            let Some(_arr) = common::array(label, ns, &name, n) else {
                continue;
            };
            let mut worker = WorkerProc::start(exe, ns).expect("start worker");
            group.bench_with_input(BenchmarkId::new(id, mib), &name, |b, name| {
                b.iter(|| worker.double_shm(name).expect("worker"))
            });
        }

        let mut worker = WorkerProc::start(exe, &variants[0].1).expect("start worker");
        let mut data = vec![1.0f64; n];
        group.bench_with_input(BenchmarkId::new("pipe", mib), &mib, |b, _| {
            b.iter(|| worker.double_pipe(&mut data).expect("worker"))
        });
    }
    group.finish();
}

criterion_group!(benches, zero_copy);
criterion_main!(benches);
