//! The seed's producer/consumer: one process puts fruit names, another gets them
//! until the queue is closed. Byte messages are written straight into shared memory
//! (`put_with`) and read in place (`get_with`).
//!
//! Run: `cargo run --example queue`

use std::process::Command;

use shmarray::{queue::QueueError, ByteQueue};

const FRUITS: [&str; 6] = ["apple", "banana", "cherry", "durian", "elderberry", "fig"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    if let (Some(role), Some(name)) = (args.next(), args.next()) {
        let q = ByteQueue::open(&name)?;
        if role == "producer" {
            for fruit in FRUITS {
                q.put_with(fruit.len(), |slot| slot.copy_from_slice(fruit.as_bytes()))?;
                println!("producer {}: put {fruit}", std::process::id());
            }
            q.close(); // no sentinel needed: the consumer drains, then sees Closed
        } else {
            loop {
                match q.get_with(|bytes| String::from_utf8_lossy(bytes).into_owned()) {
                    Ok(fruit) => println!("consumer {}: got {fruit}", std::process::id()),
                    Err(QueueError::Closed) => break,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        return Ok(());
    }

    let name = format!("shmarray-example-queue-{}", std::process::id());
    let _q = ByteQueue::create(&name, 4, 64)?; // owner: removed when dropped
    let exe = std::env::current_exe()?;
    let mut consumer = Command::new(&exe).args(["consumer", &name]).spawn()?;
    let mut producer = Command::new(&exe).args(["producer", &name]).spawn()?;
    assert!(producer.wait()?.success());
    assert!(consumer.wait()?.success());
    println!(
        "done: {} fruits passed through a 4-slot queue",
        FRUITS.len()
    );
    Ok(())
}
