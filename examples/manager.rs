//! Python's `multiprocessing.Manager()` example, without the manager process:
//!
//! ```python
//! def f(d, l):
//!     d[1] = '1'; d['2'] = 2; d[0.25] = None; l.reverse()
//! with Manager() as manager:
//!     d = manager.dict(); l = manager.list(range(10))
//!     p = Process(target=f, args=(d, l)); p.start(); p.join()
//!     print(d); print(l)
//! ```
//!
//! Here `d` is a [`SharedMap`] of short strings to numbers and `l` a [`SharedVec`]:
//! both live in shared memory, and a worker process changes them in place, with no
//! server and no pickling. Then the crash case: a worker killed with SIGKILL in
//! the middle of its updates leaves both consistent and usable.
//!
//! Run: `cargo run --release --example manager`

use std::time::{Duration, Instant};

use shmarray::{containers::FixedStr, Process, SharedMap, SharedVec};

type Key = FixedStr<16>;

fn key(s: &str) -> Key {
    Key::new(s).expect("short key")
}

/// The worker: Python's `f(d, l)`.
fn f((d, l): (String, String)) -> Result<(), String> {
    let d = SharedMap::<Key, f64>::open(&d).map_err(|e| e.to_string())?;
    let l = SharedVec::<i64>::open(&l).map_err(|e| e.to_string())?;
    d.insert(key("1"), 1.0).map_err(|e| e.to_string())?;
    d.insert(key("2"), 2.0).map_err(|e| e.to_string())?;
    d.insert(key("0.25"), f64::NAN).map_err(|e| e.to_string())?; // "None"
    let mut items = l.to_vec().map_err(|e| e.to_string())?;
    items.reverse();
    for (i, v) in items.into_iter().enumerate() {
        l.set(i, v).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A worker that counts and rewrites forever, until it is killed.
fn busy((d, l): (String, String)) {
    let d = SharedMap::<Key, f64>::open(&d).expect("open map");
    let l = SharedVec::<i64>::open(&l).expect("open vec");
    for i in 0i64.. {
        d.upsert(key("ticks"), 0.0, |t| *t += 1.0).expect("upsert");
        d.insert(key(&format!("k{}", i % 50)), i as f64)
            .expect("insert");
        l.set((i % 10) as usize, i).expect("set");
    }
}

fn show(d: &SharedMap<Key, f64>) -> String {
    let mut entries: Vec<(Key, f64)> = d.to_vec().expect("snapshot");
    entries.sort_by_key(|a| a.0);
    let items: Vec<String> = entries.iter().map(|(k, v)| format!("'{k}': {v}")).collect();
    format!("{{{}}}", items.join(", "))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shmarray::init(); // a spawned worker runs its task here and exits

    let pid = std::process::id();
    let (dname, lname) = (format!("manager-d-{pid}"), format!("manager-l-{pid}"));
    let d = SharedMap::<Key, f64>::create(&dname, 1000)?;
    let l = SharedVec::<i64>::create(&lname, 10)?;
    l.extend_from_slice(&(0..10).collect::<Vec<_>>())?;

    let p = Process::start(f, (dname.clone(), lname.clone()))?;
    p.join()??;
    println!("{}", show(&d));
    println!("{:?}", l.to_vec()?);

    // The crash case: kill a worker while it is busy updating both.
    let p = Process::start(busy, (dname.clone(), lname.clone()))?;
    let start = Instant::now();
    while d.get(&key("ticks"))?.unwrap_or(0.0) < 10_000.0 {
        if start.elapsed() > Duration::from_secs(5) {
            return Err("the busy worker made no progress".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    p.kill();
    let died = p.join().expect_err("killed");
    println!("worker killed mid-update: {died}");
    // Every operation after the kill goes through: the first locker of a shard
    // the worker held repairs it (rolls back its half-done update) and goes on.
    let ticks = d.get(&key("ticks"))?.unwrap_or(0.0);
    d.insert(key("after"), ticks)?;
    assert!(l.push(-1).is_err()); // full: an error, not a hang
    println!(
        "recovered: {} entries (ticks = {ticks}), list {:?}, {} repair(s) of the map, {} of the list",
        d.len(),
        l.to_vec()?,
        d.repairs(),
        l.repairs()
    );
    let entries = d.to_vec()?;
    assert_eq!(entries.len(), d.len());
    assert!(entries
        .iter()
        .all(|(k, v)| !k.as_str().starts_with('k') || v.fract() == 0.0));
    Ok(())
}
