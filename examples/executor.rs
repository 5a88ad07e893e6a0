//! Python's `ProcessPoolExecutor`: submit, as_completed, timeout, cancel.
//!
//! Run: `cargo run --example executor`

use std::time::Duration;

use shmarray::pool::{as_completed, Pool, TaskError};

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn main() -> Result<(), TaskError> {
    shmarray::init();
    let pool = Pool::new(2)?;

    let futures: Vec<_> = [300, 100, 200]
        .into_iter()
        .map(|ms| pool.submit(nap, ms))
        .collect::<Result<_, _>>()?;
    for (i, r) in as_completed(&futures) {
        println!("future {i} finished: slept {} ms", r?);
    }

    let slow = pool.submit(nap, 10_000)?;
    match slow.result_timeout(Duration::from_millis(100)) {
        Err(TaskError::Timeout(d)) => println!("no result within {d:?}; cancelling"),
        other => println!("unexpected: {other:?}"),
    }
    println!("cancelled: {}", slow.cancel()); // kills and replaces the busy worker
    match slow.result() {
        Err(e) => println!("result after cancel: {e}"),
        Ok(v) => println!("finished anyway: {v}"),
    }
    println!("pool still works: {}", pool.submit(nap, 1)?.result()?);
    Ok(())
}
