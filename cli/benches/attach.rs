//! What a fresh attach costs, per page size: a worker process attaches a 256 MiB
//! f64 array by name, doubles it in place and detaches (open, validation, mmap,
//! one page fault per page, the kernel, munmap), against the same kernel in a
//! process that has the array mapped and faulted in already. Their ratio is the
//! price of attaching; with 4 KiB pages it is mostly 65 536 page faults, with
//! 2 MiB pages 128.
//!
//! Variants: `4k` (the default directory) and, where the default namespace has
//! them, `hugetlb` and `thp` huge-page directories (see `shmarray doctor`).
//!
//! Run: `cargo bench --bench attach` (set `SHMARRAY_BENCH_MIB` for another size).

#[path = "../../benches/common/mod.rs"]
mod common;

use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shmarray_cli::worker::WorkerProc;

fn attach(c: &mut Criterion) {
    let exe = Path::new(env!("CARGO_BIN_EXE_shmarray"));
    let mib: usize = std::env::var("SHMARRAY_BENCH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
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
        group.bench_function(BenchmarkId::new("fresh_attach_and_kernel", label), |b| {
            b.iter(|| worker.double_shm(&name).expect("worker"))
        });
    }
    group.finish();
}

criterion_group!(benches, attach);
criterion_main!(benches);
