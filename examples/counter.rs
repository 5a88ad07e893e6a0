//! Python's `Value('i', 0)` + `with counter.get_lock(): counter.value += 1`, with four
//! worker processes.
//!
//! Run: `cargo run --example counter`

use std::process::Command;

use shmarray::{LockResultExt, SharedValue};

const WORKERS: usize = 4;
const INCREMENTS: i64 = 10_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Worker half: attach by name and increment under the value's robust lock.
    if let Some(name) = std::env::args().nth(1) {
        let counter = SharedValue::<i64>::open(&name)?;
        for _ in 0..INCREMENTS {
            // A worker killed mid-increment leaves the value whole (one word):
            // nothing to repair, just go on.
            let mut value = counter.lock().recover(|_| {})?;
            *value += 1;
        }
        return Ok(());
    }

    let name = format!("shmarray-example-counter-{}", std::process::id());
    let counter = SharedValue::<i64>::create(&name, 0)?; // removed when dropped
    let exe = std::env::current_exe()?;
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        workers.push(Command::new(&exe).arg(&name).spawn()?);
    }
    for mut w in workers {
        let pid = w.id();
        let status = w.wait()?;
        println!("worker {pid} finished: {status}");
        assert!(status.success());
    }
    let total = counter.get().map_err(shmarray::LockError::into_failure)?;
    println!("{WORKERS} processes x {INCREMENTS} locked increments = {total}");
    assert_eq!(total, WORKERS as i64 * INCREMENTS);
    Ok(())
}
