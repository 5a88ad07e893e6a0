//! Python's `Process(target=f, args=(i,))`: start four workers, print their pids, join.
//!
//! Run: `cargo run --example process_basic`

use shmarray::{pool::TaskError, Process};

fn work(i: u32) -> String {
    format!("worker {i} ran in pid {}", std::process::id())
}

fn main() -> Result<(), TaskError> {
    shmarray::init(); // a spawned worker runs its task here and exits

    let workers: Vec<Process<String>> = (0..4)
        .map(|i| Process::start(work, i))
        .collect::<Result<_, _>>()?;
    for w in &workers {
        println!("started pid {}", w.pid());
    }
    for w in workers {
        println!("joined: {}", w.join()?);
    }
    Ok(())
}
