//! An in-place parallel kernel over a shared array: each worker process doubles its
//! own disjoint block of rows, then a reduction sums the parts.
//!
//! Run: `cargo run --release --example parallel_kernel`

use std::time::Instant;

use ndarray::{ArrayView2, ArrayViewMut2, Axis, Ix2};
use shmarray::{
    pool::{Partition, Pool},
    SharedArray,
};

fn double(mut rows: ArrayViewMut2<'_, f64>) {
    rows *= 2.0;
}

fn sum(rows: ArrayView2<'_, f64>) -> f64 {
    rows.sum()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shmarray::init();
    let name = format!("shmarray-example-kernel-{}", std::process::id());
    let frames = SharedArray::<f64, Ix2>::create(&name, (4096, 4096))?; // 128 MiB
    frames.lock().map_err(|e| e.to_string())?.fill(1.0);

    let pool = Pool::new(0)?;
    for round in 1..=3 {
        let t = Instant::now();
        pool.for_each_chunk(&frames, Axis(0), double)?;
        println!(
            "round {round}: {} workers doubled 128 MiB in place in {:.1?}",
            pool.size(),
            t.elapsed()
        );
    }
    let parts = pool.map_chunks(&frames, Axis(0), Partition::Parts(8), sum)?;
    let total: f64 = parts.iter().sum();
    println!("sum over {} parts = {total}", parts.len());
    assert_eq!(total, 8.0 * 4096.0 * 4096.0);
    Ok(())
}
