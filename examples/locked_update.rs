//! In-place update of a shared array under its robust lock; a worker is killed with
//! SIGKILL in the middle of an update, and the survivor recovers.
//!
//! Invariant: every element holds the same "version". A worker bumps the version of
//! all elements under the lock. The victim is killed after writing half of them.
//!
//! Run: `cargo run --example locked_update`

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use shmarray::ndarray::{self, Ix1};
use shmarray::{LockError, SharedArray};

fn consistent(a: &ndarray::ArrayViewMut1<'_, u64>) -> bool {
    a.iter().all(|&x| x == a[0])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    if let (Some(role), Some(name)) = (args.next(), args.next()) {
        let array = SharedArray::<u64, Ix1>::open(&name)?;
        let mut g = array.lock().map_err(LockError::into_failure)?;
        let next = g[0] + 1;
        if role == "victim" {
            let half = g.len() / 2;
            g.slice_mut(ndarray::s![..half]).fill(next);
            println!("mid-write");
            std::thread::sleep(Duration::from_secs(60)); // killed here
        }
        g.fill(next);
        return Ok(());
    }

    let name = format!("shmarray-example-locked-{}", std::process::id());
    let array = SharedArray::<u64, Ix1>::create(&name, 1_000_000)?;
    let exe = std::env::current_exe()?;

    let mut victim = Command::new(&exe)
        .args(["victim", &name])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(victim.stdout.take().unwrap()).read_line(&mut line)?;
    assert_eq!(line.trim(), "mid-write");
    victim.kill()?; // SIGKILL while it holds the lock
    victim.wait()?;
    println!(
        "killed worker {} while it held the lock mid-write",
        victim.id()
    );

    match array.lock() {
        Ok(_) => unreachable!("the dead holder must be reported"),
        Err(LockError::OwnerDied(mut g)) => {
            let torn = !consistent(&g);
            println!("next locker: OwnerDied, data torn = {torn}; rolling forward");
            let v = *g.iter().max().unwrap();
            g.fill(v);
            g.mark_consistent();
        }
        Err(LockError::Failed(e)) => return Err(e.into()),
        Err(e) => return Err(e.into_failure().into()),
    }

    let status = Command::new(&exe).args(["worker", &name]).status()?;
    assert!(status.success());
    let g = array.lock().map_err(LockError::into_failure)?;
    assert!(consistent(&g));
    println!(
        "a new worker updated it under the recovered lock: all {} elements = {}",
        g.len(),
        g[0]
    );
    Ok(())
}
