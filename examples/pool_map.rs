//! Python's `Pool.map`, `starmap`, `imap`, `map_async` with worker processes.
//!
//! Run: `cargo run --example pool_map`

use std::time::Duration;

use shmarray::pool::{Pool, TaskError};

fn square(x: u64) -> u64 {
    x * x
}

fn power(base: u64, exp: u32) -> u64 {
    base.pow(exp)
}

fn main() -> Result<(), TaskError> {
    shmarray::init();
    let pool = Pool::new(0)?; // one worker per core
    println!(
        "pool of {} worker processes: {:?}",
        pool.size(),
        pool.worker_pids()
    );

    let squares = pool.map(square, 0..10)?;
    println!("map:       {squares:?}");

    let powers = pool.starmap(power, [(2, 10), (3, 4), (10, 3)])?;
    println!("starmap:   {powers:?}");

    let lazy: Vec<u64> = pool
        .imap(square, 0u64.., 64) // endless input, consumed lazily
        .take(5)
        .map(|(_, r)| r)
        .collect::<Result<_, _>>()?;
    println!("imap:      {lazy:?}");

    let pending = pool.map_async(square, (0..100_000).collect(), 10_000)?;
    let total: u64 = pending.get_timeout(Duration::from_secs(30))?.iter().sum();
    println!("map_async: sum of 100000 squares = {total}");
    assert_eq!(total, (0..100_000u64).map(|x| x * x).sum());
    Ok(())
}
