//! What a fresh attach costs, per page size: a worker process attaches a 256 MiB
//! f64 array by name, doubles it in place and detaches (open, validation, mmap,
//! the page faults, the kernel, munmap), against the same kernel in a process that
//! has the array mapped and faulted in already. Their ratio is the price of
//! attaching; with 4 KiB pages it is mapping and unmapping 65 536 pages (the kernel
//! maps up to 16 per fault: fault-around), with 2 MiB pages 128.
//!
//! Each way of mapping the pages runs in the same run (`Prefault`):
//! `fresh_attach_and_kernel` faults them in on first touch (what `open` does),
//! `fresh_attach_populate_read_and_kernel` / `..._write_...` populate them first
//! with `MADV_POPULATE_READ` / `MADV_POPULATE_WRITE`.
//!
//! The second group is a worker that touches 1% of a 1 GiB array (a contiguous
//! part in the middle), which must stay cheap: lazily, populating only the part,
//! and populating the whole array first (what mapping everything populated would
//! cost it).
//!
//! Variants: `4k` (the default directory) and, where the default namespace has
//! them, `hugetlb` and `thp` huge-page directories (see `shmarray doctor`).
//!
//! Run: `cargo bench --bench attach` (set `SHMARRAY_BENCH_MIB` for another size of
//! the first group, `SHMARRAY_BENCH_BIG_MIB` for the second).

mod common;

use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shmarray::demo::{Prefault, WorkerProc};

fn mib_from_env(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn attach(c: &mut Criterion) {
    let exe = Path::new(env!("CARGO_BIN_EXE_shmarray"));
    let mib = mib_from_env("SHMARRAY_BENCH_MIB", 256);
    let n = mib * (1 << 20) / 8;
    let mut group = c.benchmark_group(format!("attach_kernel_{mib}MiB"));
    group.sample_size(10);
    group.throughput(Throughput::Bytes((n * 8) as u64));
    for (label, ns) in common::page_variants() {
        let name = format!("shmarray-bench-attach-{}-{label}", std::process::id());
        let Some(mut arr) = common::array(label, &ns, &name, n) else {
            continue;
        };
        group.bench_function(BenchmarkId::new("in_process_kernel", label), |b| {
            b.iter(|| {
                let mut v = arr.view_mut().expect("writable");
                v *= 2.0;
            })
        });
        let mut worker = WorkerProc::start(exe, &ns).expect("start worker");
        for (id, mode) in [
            ("fresh_attach_and_kernel", Prefault::Lazy),
            ("fresh_attach_populate_read_and_kernel", Prefault::Read),
            ("fresh_attach_populate_write_and_kernel", Prefault::Write),
        ] {
            group.bench_function(BenchmarkId::new(id, label), |b| {
                b.iter(|| worker.double_shm_with(&name, mode, None).expect("worker"))
            });
        }
    }
    group.finish();
}

fn touch_little(c: &mut Criterion) {
    let exe = Path::new(env!("CARGO_BIN_EXE_shmarray"));
    let mib = mib_from_env("SHMARRAY_BENCH_BIG_MIB", 1024);
    let n = mib * (1 << 20) / 8;
    // 1% of the elements, in the middle.
    let part = n / 2..n / 2 + n / 100;
    let mut group = c.benchmark_group(format!("attach_touch_1pct_of_{mib}MiB"));
    group.sample_size(10);
    group.throughput(Throughput::Bytes((part.len() * 8) as u64));
    for (label, ns) in common::page_variants() {
        let name = format!("shmarray-bench-attach-big-{}-{label}", std::process::id());
        let Some(mut arr) = common::array(label, &ns, &name, n) else {
            continue;
        };
        group.bench_function(BenchmarkId::new("in_process_kernel", label), |b| {
            b.iter(|| {
                let mut v = arr.view_mut().expect("writable");
                let mut p = v.slice_mut(shmarray::ndarray::s![part.clone()]);
                p *= 2.0;
            })
        });
        let mut worker = WorkerProc::start(exe, &ns).expect("start worker");
        for (id, mode) in [
            ("fresh_attach_and_kernel", Prefault::Lazy),
            ("fresh_attach_populate_part_and_kernel", Prefault::Read),
            ("fresh_attach_populate_all_and_kernel", Prefault::All),
        ] {
            group.bench_function(BenchmarkId::new(id, label), |b| {
                b.iter(|| {
                    worker
                        .double_shm_with(&name, mode, Some(part.clone()))
                        .expect("worker")
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, attach, touch_little);
criterion_main!(benches);
