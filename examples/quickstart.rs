//! Quickstart: one process creates a named array, another attaches by name and
//! doubles it in place, the first sees the result. No copies.
//!
//! Run: `cargo run --example quickstart`

use std::process::Command;

use shmarray::ndarray::{Array2, Ix2};
use shmarray::Segment;
use shmarray::SharedArray;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The child half: attach by name (type and dimension are checked against the
    // segment's header) and double in place.
    if let Some(name) = std::env::args().nth(1) {
        let mut frames = SharedArray::<f64, Ix2>::open(&name)?;
        frames.view_mut()?.mapv_inplace(|x| 2.0 * x);
        return Ok(());
    }

    let name = format!("shmarray-example-quickstart-{}", std::process::id());
    let src = Array2::from_shape_fn((512, 512), |(i, j)| (i * 512 + j) as f64);
    // Owner: the name is removed when `frames` is dropped, even on error paths.
    let mut frames = SharedArray::create_from(&name, &src)?;
    println!(
        "created {name}: {:?} {} ({} bytes) at {}",
        frames.shape(),
        frames.dtype(),
        frames.nbytes(),
        frames.path().unwrap().display()
    );
    println!(
        "numpy can map it too: numpy.load({:?}, mmap_mode=\"r+\")",
        frames.path().unwrap()
    );

    let status = Command::new(std::env::current_exe()?).arg(&name).status()?;
    assert!(status.success(), "child failed: {status}");

    // The child's handle is gone, so this handle is the only one in this process:
    // a direct view needs no lock (another process could still write; here none does).
    let doubled = frames.view()?;
    assert_eq!(doubled, src.mapv(|x| 2.0 * x));
    println!(
        "a second process doubled all {} elements in place; sum = {}",
        doubled.len(),
        doubled.sum()
    );
    Ok(())
}
