//! A numeric stream between processes: a producer sends 10 million u64 in batches,
//! a consumer sums them.
//!
//! Run: `cargo run --release --example queue_numeric`

use std::process::Command;
use std::time::Instant;

use shmarray::{queue::QueueError, Queue};

const N: u64 = 10_000_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    if let (Some(role), Some(name)) = (args.next(), args.next()) {
        let q = Queue::<u64>::open(&name)?;
        if role == "producer" {
            let batch: Vec<u64> = (0..256).collect();
            let mut next = 0;
            while next < N {
                let items: Vec<u64> = batch
                    .iter()
                    .map(|i| next + i)
                    .take((N - next) as usize)
                    .collect();
                q.put_slice(&items)?;
                next += items.len() as u64;
            }
            q.close();
        } else {
            let mut buf = vec![0u64; 1024];
            let (mut sum, mut count) = (0u64, 0u64);
            loop {
                match q.get_into(&mut buf) {
                    Ok(n) => {
                        sum = sum.wrapping_add(buf[..n].iter().sum::<u64>());
                        count += n as u64;
                    }
                    Err(QueueError::Closed) => break,
                    Err(e) => return Err(e.into()),
                }
            }
            println!("consumer: {count} items, sum {sum}");
            assert_eq!(count, N);
            assert_eq!(sum, N * (N - 1) / 2);
        }
        return Ok(());
    }

    let name = format!("shmarray-example-qnum-{}", std::process::id());
    let _q = Queue::<u64>::create(&name, 8192)?;
    let exe = std::env::current_exe()?;
    let t = Instant::now();
    let mut consumer = Command::new(&exe).args(["consumer", &name]).spawn()?;
    let mut producer = Command::new(&exe).args(["producer", &name]).spawn()?;
    assert!(producer.wait()?.success());
    assert!(consumer.wait()?.success());
    let s = t.elapsed().as_secs_f64();
    println!(
        "{N} u64 between two processes in {s:.2} s ({:.1} M items/s, including process start)",
        N as f64 / s / 1e6
    );
    Ok(())
}
