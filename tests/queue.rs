//! The shared-memory queue across real processes: a million items through 2 producers
//! and 2 consumers, close/timeout semantics, producers/consumers SIGKILLed in the
//! middle of an operation (processes, threads of one process, a process and its
//! forked child), member entries of dead processes, and hostile inputs: absurd
//! sizes, forged queue files, a peer scribbling over the ring.
//!
//! Every multi-process test has a watchdog (a hang aborts the test binary, after
//! removing this process's segments) and its children die with the thread that
//! spawned them (`PR_SET_PDEATHSIG`).

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common::{leftovers, unique_name, wait_with_deadline, ShmFile};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use shmarray::Segment;
use shmarray::{
    format::{Dtype, ObjectKind},
    queue::QueueError,
    ByteQueue, Error, Queue,
};

const CHILD_ENV: &str = "SHMARRAY_QUEUE_CHILD";
const PARENT_ENV: &str = "SHMARRAY_QUEUE_PARENT";

/// Child roles; not a real test without the variable.
#[test]
fn child_entry() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    die_with_parent();
    let args: Vec<&str> = spec.split(':').collect();
    match args.as_slice() {
        ["produce", name, id, n] => {
            let q = Queue::<u64>::open(name).unwrap();
            let (id, n): (u64, u64) = (id.parse().unwrap(), n.parse().unwrap());
            let items: Vec<u64> = (0..n).map(|i| (id << 32) | i).collect();
            for chunk in items.chunks(256) {
                q.put_slice(chunk).unwrap();
            }
        }
        ["consume", name] => {
            let q = Queue::<u64>::open(name).unwrap();
            let mut buf = vec![0u64; 512];
            let (mut count, mut sum, mut sq) = (0u64, 0u64, 0u64);
            let mut last = [None::<u64>; 2];
            loop {
                match q.get_into(&mut buf) {
                    Ok(n) => {
                        for &v in &buf[..n] {
                            let (p, i) = ((v >> 32) as usize, v & 0xffff_ffff);
                            assert!(last[p].is_none_or(|l| l < i), "producer order broken");
                            last[p] = Some(i);
                            count += 1;
                            sum = sum.wrapping_add(v);
                            sq = sq.wrapping_add(v.wrapping_mul(v));
                        }
                    }
                    Err(QueueError::Closed) => break,
                    Err(e) => panic!("{e}"),
                }
            }
            println!("result {count} {sum} {sq}");
        }
        ["put_and_die", name] => {
            let q = ByteQueue::open(name).unwrap();
            q.put_with(5, |buf| {
                buf.copy_from_slice(b"half-");
                println!("claimed");
                std::thread::sleep(Duration::from_secs(120));
            })
            .unwrap();
        }
        ["anon_produce", path] => {
            // Attach an anonymous queue through the parent's /proc fd link.
            let q = Queue::<u64>::from_file(
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                    .unwrap(),
            )
            .unwrap();
            q.put_slice(&(0..1000).collect::<Vec<u64>>()).unwrap();
            q.close();
        }
        ["get_and_die", name] => {
            let q = ByteQueue::open(name).unwrap();
            q.get_with(|_| {
                println!("taken");
                std::thread::sleep(Duration::from_secs(120));
            })
            .unwrap();
        }
        ["produce_forever", name, id] => {
            // Large messages written in place, so a kill often lands mid-write.
            let q = ByteQueue::open(name).unwrap();
            println!("ready");
            produce_forever(&q, id.parse().unwrap(), 0, Duration::ZERO, || true);
        }
        ["consume_forever", name] => {
            let q = ByteQueue::open(name).unwrap();
            println!("ready");
            consume_forever(&q);
        }
        ["threads_forever", name, round] => {
            // Two producer and two consumer threads, each with a handle of its own.
            let round: u64 = round.parse().unwrap();
            let opened = Arc::new(std::sync::Barrier::new(5));
            for t in 0..4u64 {
                let (name, opened) = (name.to_string(), opened.clone());
                std::thread::spawn(move || {
                    let q = ByteQueue::open(&name).unwrap();
                    opened.wait();
                    if t < 2 {
                        produce_forever(&q, (round << 1) | t, 0, Duration::ZERO, || true);
                    } else {
                        consume_forever(&q);
                    }
                });
            }
            opened.wait();
            println!("ready");
            loop {
                std::thread::park();
            }
        }
        ["fork_and_produce", name, id] => {
            // The handle joins here, is used once, and is then inherited by a
            // forked child: both go on producing through it.
            const HOLD: Duration = Duration::from_millis(1);
            let id: u64 = id.parse().unwrap();
            let q = ByteQueue::open(name).unwrap();
            q.put_with(CHAOS_MESSAGE, |b| fill_message(b, id << 32))
                .unwrap();
            let test_pid = parent_pid();
            // SAFETY: this process is single-threaded apart from the test harness's
            // main thread, which is blocked waiting for this test; the child only
            // uses the queue and exits through `_exit`-like paths.
            match unsafe { nix::unistd::fork() }.unwrap() {
                nix::unistd::ForkResult::Child => {
                    // This child must outlive its parent on purpose, so pdeathsig
                    // (which fork clears anyway) cannot end it: it stops when the
                    // test process is gone, or after a minute blocked on a queue
                    // nobody drains any more (SIGALRM).
                    nix::unistd::alarm::set(60);
                    let test_alive = || kill(Pid::from_raw(test_pid), None).is_ok();
                    produce_forever(&q, id + 1, 0, HOLD, test_alive);
                    std::process::exit(0);
                }
                nix::unistd::ForkResult::Parent { child } => {
                    println!("forked {child}");
                    produce_forever(&q, id, 1, HOLD, || true);
                }
            }
        }
        ["attach_many", name, n] => {
            let handles: Vec<ByteQueue> = (0..n.parse::<usize>().unwrap())
                .map(|_| ByteQueue::open(name).unwrap())
                .collect();
            println!("ready {}", handles.len());
            loop {
                std::thread::park();
            }
        }
        ["sleep_in_get", name] => {
            let q = Queue::<u64>::open(name).unwrap();
            println!("ready");
            let v = q.get().unwrap();
            println!("got {v}");
        }
        ["attach_and_leave", name] => {
            let q = ByteQueue::open(name).unwrap();
            // Anything a newcomer does announces or withdraws claims in its entry.
            assert!(matches!(q.try_get(), Err(QueueError::Empty)));
            println!("joined and leaving");
        }
        _ => std::process::exit(2),
    }
    std::process::exit(0);
}

/// In a child: die when the thread that spawned it ends (a test that panics or is
/// aborted by its watchdog leaves no child running).
fn die_with_parent() {
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    if nix::unistd::getppid().as_raw() != parent_pid() {
        std::process::exit(3);
    }
}

fn parent_pid() -> i32 {
    std::env::var(PARENT_ENV).unwrap().parse().unwrap()
}

/// Message size of the chaos tests: big enough that a process spends most of its
/// time inside a claimed slot.
const CHAOS_MESSAGE: usize = 32 << 10;

/// Writes message `tag`: the tag, then bytes derived from it.
fn fill_message(buf: &mut [u8], tag: u64) {
    buf[..8].copy_from_slice(&tag.to_le_bytes());
    for (k, b) in buf[8..].iter_mut().enumerate() {
        *b = (tag as usize).wrapping_mul(31).wrapping_add(k) as u8;
    }
}

/// The tag of a message written by `fill_message`, or `None` if it is torn.
fn check_message(buf: &[u8]) -> Option<u64> {
    let tag = u64::from_le_bytes(buf.get(..8)?.try_into().ok()?);
    let intact = buf.len() == CHAOS_MESSAGE
        && buf[8..]
            .iter()
            .enumerate()
            .all(|(k, &b)| b == (tag as usize).wrapping_mul(31).wrapping_add(k) as u8);
    intact.then_some(tag)
}

/// Puts messages `(id << 32) | i` for `i = first..`, written in place (so a kill
/// often lands mid-write), while `go()`. `hold`: how long to stay inside the claimed
/// slot after writing (a kill then almost always finds one claimed).
fn produce_forever(q: &ByteQueue, id: u64, first: u64, hold: Duration, go: impl Fn() -> bool) {
    for i in first.. {
        if !go() {
            return;
        }
        q.put_with(CHAOS_MESSAGE, |buf| {
            fill_message(buf, (id << 32) | i);
            std::thread::sleep(hold);
        })
        .unwrap();
    }
}

/// Takes messages forever; a torn one is reported on stdout and ends the process.
fn consume_forever(q: &ByteQueue) {
    loop {
        if !q.get_with(|b| check_message(b).is_some()).unwrap() {
            println!("torn message");
            std::process::exit(4);
        }
    }
}

/// A small xorshift generator; the seed is printed so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn from_env() -> Rng {
        let seed = std::env::var("SHMARRAY_CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        println!("SHMARRAY_CHAOS_SEED={seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Aborts the test binary if a test runs longer than `limit` (a hang must fail,
/// not stall CI), after removing this process's test segments. Disarmed on drop.
struct Watchdog(#[allow(dead_code)] mpsc::Sender<()>);

fn watchdog(what: &'static str, limit: Duration) -> Watchdog {
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            eprintln!("watchdog: {what} still running after {limit:?}; aborting");
            for name in leftovers(&format!("shmarray-test-{}-", std::process::id())) {
                let _ = std::fs::remove_file(format!("/dev/shm/{name}"));
            }
            std::process::abort();
        }
    });
    Watchdog(tx)
}

/// Children of a test (re-executions of this binary in a child role), killed and
/// reaped on drop.
struct Kids(Vec<Child>);

impl Kids {
    fn spawn(&mut self, role: String) -> usize {
        self.0.push(
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
                .env(CHILD_ENV, role)
                .env(PARENT_ENV, std::process::id().to_string())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        self.0.len() - 1
    }

    /// Waits for child `i` to print `word`; returns the rest of that line from
    /// `word` on (the first line may follow the harness's `test child_entry ... `).
    fn wait_line(&mut self, i: usize, word: &str) -> String {
        let mut r = BufReader::new(self.0[i].stdout.as_mut().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                r.read_line(&mut line).unwrap() > 0,
                "child {i} ended before {word:?}"
            );
            if let Some(at) = line.find(word) {
                return line[at..].trim().to_string();
            }
        }
    }

    fn finish(&mut self, i: usize) -> String {
        let status = wait_with_deadline(&mut self.0[i], Duration::from_secs(120));
        let out = self.output(i);
        assert!(status.success(), "child {i} failed: {status}\n{out}");
        out
    }

    /// SIGKILLs child `i` and reaps it.
    fn kill(&mut self, i: usize) {
        self.0[i].kill().unwrap();
        self.0[i].wait().unwrap();
    }

    fn output(&mut self, i: usize) -> String {
        let mut out = String::new();
        if let Some(mut o) = self.0[i].stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        out
    }
}

impl Drop for Kids {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn a_million_items_through_two_producers_and_two_consumers_exactly_once() {
    let _w = watchdog("a million items", Duration::from_secs(240));
    let name = unique_name("mpmc");
    let q = Queue::<u64>::create(&name, 4096).unwrap();
    let per = 500_000u64;
    let mut kids = Kids(Vec::new());
    let consumers: Vec<usize> = (0..2)
        .map(|_| kids.spawn(format!("consume:{name}")))
        .collect();
    let producers: Vec<usize> = (0..2)
        .map(|p| kids.spawn(format!("produce:{name}:{p}:{per}")))
        .collect();
    for p in producers {
        kids.finish(p);
    }
    q.close();
    let (mut count, mut sum, mut sq) = (0u64, 0u64, 0u64);
    for c in consumers {
        let out = kids.finish(c);
        let line = out.lines().find(|l| l.contains("result ")).expect(&out);
        let nums: Vec<u64> = line
            .split("result ")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        count += nums[0];
        sum = sum.wrapping_add(nums[1]);
        sq = sq.wrapping_add(nums[2]);
    }
    let all = (0..2u64).flat_map(|p| (0..per).map(move |i| (p << 32) | i));
    let (want_sum, want_sq) = all.fold((0u64, 0u64), |(s, q), v| {
        (s.wrapping_add(v), q.wrapping_add(v.wrapping_mul(v)))
    });
    assert_eq!(count, 2 * per, "every item exactly once (count)");
    assert_eq!(
        (sum, sq),
        (want_sum, want_sq),
        "every item exactly once (sums)"
    );
    assert_eq!(q.lost() + q.abandoned(), 0);
}

#[test]
fn close_drains_then_reports_closed_and_a_sentinel_still_works() {
    let name = unique_name("close");
    let q = Queue::<i32>::create(&name, 8).unwrap();
    q.put(1).unwrap();
    q.put(2).unwrap();
    q.put(-1).unwrap(); // sentinel
    q.close();
    assert!(matches!(q.put(3), Err(QueueError::Closed)));
    let mut got = Vec::new();
    loop {
        match q.get() {
            Ok(v) => got.push(v),
            Err(QueueError::Closed) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got, vec![1, 2, -1]);
    assert!(q.is_closed() && q.is_empty());
}

#[test]
fn timeouts_and_try_forms() {
    let name = unique_name("timeouts");
    let q = Queue::<f64>::create(&name, 2).unwrap();
    assert!(matches!(q.try_get(), Err(QueueError::Empty)));
    let t = Instant::now();
    assert!(
        matches!(q.get_timeout(Duration::from_millis(100)), Err(QueueError::Timeout(d)) if d == Duration::from_millis(100))
    );
    assert!(t.elapsed() >= Duration::from_millis(100) && t.elapsed() < Duration::from_secs(3));
    q.try_put(1.0).unwrap();
    q.put(2.0).unwrap();
    assert!(matches!(q.try_put(3.0), Err(QueueError::Full)));
    assert!(matches!(
        q.put_timeout(3.0, Duration::from_millis(50)),
        Err(QueueError::Timeout(_))
    ));
    assert_eq!(q.len(), 2);
    let mut buf = [0.0; 8];
    assert_eq!(q.get_into(&mut buf).unwrap(), 2);
    assert_eq!(&buf[..2], &[1.0, 2.0]);
    // A timeout too large for the clock waits like `put`, and never panics.
    q.put_timeout(4.0, Duration::MAX).unwrap();
    assert_eq!(q.get_timeout(Duration::MAX).unwrap(), 4.0);
}

#[test]
fn batch_forms_with_timeouts() {
    let name = unique_name("batch-timeouts");
    let q = Queue::<u32>::create(&name, 4).unwrap();
    let mut buf = [0u32; 8];
    assert!(matches!(
        q.get_into_timeout(&mut buf, Duration::from_millis(20)),
        Err(QueueError::Timeout(_))
    ));
    assert_eq!(q.get_into_timeout(&mut [], Duration::ZERO).unwrap(), 0);
    // A run longer than the free room: the leading part goes in, the rest waits.
    let items = [1, 2, 3, 4, 5, 6];
    let put = q
        .put_slice_timeout(&items, Duration::from_millis(20))
        .unwrap();
    assert_eq!(put, 4);
    assert!(matches!(
        q.put_slice_timeout(&items[put..], Duration::from_millis(20)),
        Err(QueueError::Timeout(_))
    ));
    assert_eq!(
        q.get_into_timeout(&mut buf, Duration::from_secs(5))
            .unwrap(),
        4
    );
    assert_eq!(&buf[..4], &[1, 2, 3, 4]);
    assert_eq!(
        q.put_slice_timeout(&items[put..], Duration::ZERO).unwrap(),
        2
    );
    q.close();
    assert_eq!(q.get_into_timeout(&mut buf, Duration::ZERO).unwrap(), 2);
    assert!(matches!(
        q.get_into_timeout(&mut buf, Duration::from_millis(20)),
        Err(QueueError::Closed)
    ));
}

#[test]
fn byte_messages_fruit_and_errors() {
    let name = unique_name("bytes");
    let q = ByteQueue::create(&name, 4, 16).unwrap();
    for fruit in ["apple", "banana", "cherry"] {
        q.put(fruit.as_bytes()).unwrap();
    }
    assert!(matches!(
        q.put(&[0u8; 17]),
        Err(QueueError::TooLarge { len: 17, max: 16 })
    ));
    assert_eq!(q.get().unwrap(), b"apple");
    assert_eq!(q.get_with(|b| b.len()).unwrap(), 6);
    let other = ByteQueue::open(&name).unwrap();
    assert_eq!(other.get().unwrap(), b"cherry");
    assert_eq!(other.max_message(), 16);
    assert!(not_a_queue(Queue::<u64>::open(&name)));
    let typed = unique_name("typed");
    let _t = Queue::<u32>::create(&typed, 4).unwrap();
    assert!(not_a_queue(Queue::<u64>::open(&typed)));
    assert!(not_a_queue(Queue::<f32>::open(&typed)));
    assert!(not_a_queue(ByteQueue::open(&typed)));
    // Arrays are not queues, and queues never pose as arrays.
    let arr = unique_name("array");
    let _a = shmarray::SharedArray::<u8, shmarray::ndarray::Ix1>::create(&arr, 1 << 16).unwrap();
    assert!(not_a_queue(Queue::<u8>::open(&arr)));
    assert!(matches!(
        shmarray::SharedArray::<u8, shmarray::ndarray::Ix1>::open(&typed),
        Err(Error::KindMismatch {
            found: ObjectKind::Queue,
            ..
        })
    ));
}

/// The in-place forms with `try_`/timeout variants: the closure runs only when a
/// slot was claimed, so a full or empty queue leaves it uncalled.
#[test]
fn in_place_byte_messages_try_and_timeout_forms() {
    let name = unique_name("bytes-in-place");
    let q = ByteQueue::create(&name, 2, 8).unwrap();
    let mut called = false;
    assert!(matches!(
        q.try_get_with(|_| called = true),
        Err(QueueError::Empty)
    ));
    assert!(matches!(
        q.get_with_timeout(Duration::from_millis(20), |_| called = true),
        Err(QueueError::Timeout(_))
    ));
    q.try_put_with(3, |b| b.copy_from_slice(b"abc")).unwrap();
    q.put_with_timeout(2, Duration::from_millis(20), |b| b.copy_from_slice(b"de"))
        .unwrap();
    assert!(matches!(
        q.try_put_with(1, |_| called = true),
        Err(QueueError::Full)
    ));
    assert!(matches!(
        q.put_with_timeout(1, Duration::from_millis(20), |_| called = true),
        Err(QueueError::Timeout(_))
    ));
    assert!(matches!(
        q.try_put_with(9, |_| called = true),
        Err(QueueError::TooLarge { len: 9, max: 8 })
    ));
    assert!(!called);
    assert_eq!(q.try_get_with(|b| b.to_vec()).unwrap(), b"abc");
    assert_eq!(
        q.get_with_timeout(Duration::from_secs(5), |b| b.to_vec())
            .unwrap(),
        b"de"
    );
    q.close();
    assert!(matches!(q.try_get_with(|_| ()), Err(QueueError::Closed)));
    assert!(matches!(q.try_put_with(1, |_| ()), Err(QueueError::Closed)));
}

/// The segment is reachable by name, path and file, never as an array of bytes
/// (which would be a non-atomic view of the ring's atomics).
#[test]
fn name_path_file_and_unlink() {
    let name = unique_name("names");
    let q = Queue::<u64>::create(&name, 4).unwrap();
    assert_eq!(q.name(), Some(name.as_str()));
    let path = q.path().unwrap();
    assert_eq!(path, std::path::Path::new("/dev/shm").join(&name));
    assert!(path.exists() && q.is_owner());
    assert_eq!(
        q.file().metadata().unwrap().len(),
        path.metadata().unwrap().len()
    );
    let other = Queue::<u64>::open(&name).unwrap();
    assert!(!other.is_owner());
    assert!(format!("{other:?}").contains(&name));
    other.unlink().unwrap();
    assert!(!path.exists());
    assert!(matches!(
        Queue::<u64>::open(&name),
        Err(QueueError::Segment(Error::NotFound { .. }))
    ));
    // Attached handles keep working; dropping the owner removes nothing else.
    other.put(7).unwrap();
    assert_eq!(q.get().unwrap(), 7);
    let q2 = Queue::<u64>::create(&name, 4).unwrap();
    drop(q);
    assert!(path.exists(), "a re-created name is not the old owner's");
    drop(q2);
    assert!(!path.exists());
}

#[test]
fn a_producer_killed_mid_put_does_not_wedge_the_queue() {
    let _w = watchdog("producer killed mid-put", Duration::from_secs(60));
    let name = unique_name("deadproducer");
    let q = ByteQueue::create(&name, 4, 32).unwrap();
    let mut kids = Kids(Vec::new());
    let p = kids.spawn(format!("put_and_die:{name}"));
    kids.wait_line(p, "claimed");
    q.put(b"after").unwrap(); // lands behind the dead producer's slot
    kids.kill(p);
    let t = Instant::now();
    assert_eq!(q.get_timeout(Duration::from_secs(10)).unwrap(), b"after");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(
        q.lost(),
        1,
        "the dead producer's half-written item is reported lost"
    );
    q.put(b"more").unwrap();
    assert_eq!(q.get().unwrap(), b"more");
}

/// A 2-slot byte queue holding "one" and "two", whose first slot a consumer took
/// and died holding (SIGKILL); this process has taken "two" since.
fn a_dead_consumer_holds_the_first_slot(tag: &str) -> (String, ByteQueue, Kids) {
    let name = unique_name(tag);
    let q = ByteQueue::create(&name, 2, 32).unwrap();
    q.put(b"one").unwrap();
    q.put(b"two").unwrap();
    let mut kids = Kids(Vec::new());
    let c = kids.spawn(format!("get_and_die:{name}"));
    kids.wait_line(c, "taken");
    kids.kill(c);
    assert_eq!(q.get().unwrap(), b"two");
    (name, q, kids)
}

#[test]
fn a_consumer_killed_mid_get_does_not_wedge_the_queue() {
    let _w = watchdog("consumer killed mid-get", Duration::from_secs(60));
    let (_name, q, _kids) = a_dead_consumer_holds_the_first_slot("deadconsumer");
    // Position 2 maps to the slot the dead consumer still holds.
    let t = Instant::now();
    q.put_timeout(b"three", Duration::from_secs(10)).unwrap();
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(q.abandoned(), 1);
    assert_eq!(q.get().unwrap(), b"three");
}

/// Issue 9.8, with real processes: a consumer dies holding a slot, dead attachers
/// fill the member table, and a newcomer that attaches, calls, and leaves cleanly
/// must not erase the record of the blocked slot (before the fix it reused the dead
/// consumer's entry, and the remaining process timed out on every put for good).
/// The entry is reused only once the slot is recovered; a full table of live
/// members refuses newcomers.
#[test]
fn a_dead_consumers_entry_is_reused_only_after_its_slot_is_recovered() {
    let _w = watchdog("member entry reuse", Duration::from_secs(60));
    let (name, q, mut kids) = a_dead_consumer_holds_the_first_slot("reuse");
    // 62 handles in one process fill the rest of the table, then die.
    let dead = kids.spawn(format!("attach_many:{name}:62"));
    assert_eq!(kids.wait_line(dead, "ready"), "ready 62");
    kids.kill(dead);
    let n = kids.spawn(format!("attach_and_leave:{name}"));
    kids.finish(n);
    // The slot the dead consumer held comes back; its item is counted once.
    q.put_timeout(b"three", Duration::from_secs(10))
        .expect("the dead consumer's slot is recovered, not forgotten");
    assert_eq!(q.abandoned(), 1);
    assert_eq!(q.get().unwrap(), b"three");
    for m in [b"four", b"five"] {
        q.put_timeout(m, Duration::from_secs(10)).unwrap();
    }
    assert!(matches!(q.try_put(b"six"), Err(QueueError::Full)));
    assert_eq!(q.get().unwrap(), b"four");
    assert_eq!(q.get().unwrap(), b"five");
    // 63 live members and this one: the table is full.
    let live = kids.spawn(format!("attach_many:{name}:63"));
    assert_eq!(kids.wait_line(live, "ready"), "ready 63");
    assert!(matches!(
        ByteQueue::open(&name),
        Err(QueueError::TooManyProcesses)
    ));
    kids.kill(live);
    let again = ByteQueue::open(&name).expect("dead members' entries are reused");
    again.put(b"seven").unwrap();
    assert_eq!(q.get().unwrap(), b"seven");
    assert_eq!(q.lost() + q.abandoned(), 1);
}

/// Issue 21.2: a put or get wakes the other side only if a member is registered
/// as waiting (a bit per member in the ring header), so uncontended operations make
/// no futex call. A member killed while asleep must not leave its bit behind, or
/// every later put would make one: a waker that woke nobody clears the bits of
/// entries nobody owns, and a newcomer clears those of the entry it takes.
#[test]
fn a_consumer_killed_while_asleep_leaves_no_waiter_behind() {
    let _w = watchdog("killed sleeper", Duration::from_secs(60));
    let name = unique_name("sleeper");
    let q = Queue::<u64>::create(&name, 4).unwrap();
    let file = std::fs::File::open(q.path().unwrap()).unwrap();
    // `get_waiters`: the fifth 128-byte word of the ring header.
    let get_waiters = || {
        let mut b = [0u8; 8];
        file.read_exact_at(&mut b, 4096 + MEMBER_TABLE + 4 * 128)
            .unwrap();
        u64::from_le_bytes(b)
    };
    let mut kids = Kids(Vec::new());
    // A sleeper that is woken leaves nothing behind either.
    let k = kids.spawn(format!("sleep_in_get:{name}"));
    kids.wait_line(k, "ready");
    let t = Instant::now();
    while get_waiters() == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the child never slept"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    q.put(7).unwrap();
    assert_eq!(kids.wait_line(k, "got"), "got 7");
    kids.finish(k);
    assert_eq!(get_waiters(), 0);
    for round in 0..2 {
        let k = kids.spawn(format!("sleep_in_get:{name}"));
        kids.wait_line(k, "ready");
        let t = Instant::now();
        while get_waiters() == 0 {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "the child never slept"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        kids.kill(k);
        assert_ne!(
            get_waiters(),
            0,
            "nobody has cleared the dead sleeper's bit yet"
        );
        if round == 0 {
            // Wakes nobody, and clears the bit of the unowned entry.
            q.put(1).unwrap();
            assert_eq!(get_waiters(), 0);
            assert_eq!(q.get().unwrap(), 1);
        } else {
            // Takes the dead sleeper's entry (the lowest free one).
            let newcomer = Queue::<u64>::open(&name).unwrap();
            assert_eq!(get_waiters(), 0);
            newcomer.put(2).unwrap();
            assert_eq!(q.get().unwrap(), 2);
        }
    }
}

/// Kill rounds per chaos test: 24, or `SHMARRAY_CHAOS_ROUNDS` for long runs.
fn chaos_rounds() -> u64 {
    std::env::var("SHMARRAY_CHAOS_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24)
}

/// A chaos test's watchdog: generous, and longer for long runs.
fn chaos_watchdog(what: &'static str) -> Watchdog {
    watchdog(
        what,
        Duration::from_secs(60) + Duration::from_millis(200) * chaos_rounds() as u32,
    )
}

/// Spawns `rounds` children (`role(round)`) one after another from a killer thread,
/// each SIGKILLed after a random 0–15 ms of work, while `work` runs on this thread
/// until the last one is dead. Fails if a child reported a torn message. Returns
/// how many `work` calls were made.
fn with_random_kills(
    rounds: u64,
    role: impl Fn(u64) -> String + Send + 'static,
    mut work: impl FnMut(),
) -> u64 {
    let mut rng = Rng::from_env();
    let done = Arc::new(AtomicBool::new(false));
    let killer = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut kids = Kids(Vec::new());
            for round in 0..rounds {
                let k = kids.spawn(role(round));
                kids.wait_line(k, "ready");
                std::thread::sleep(Duration::from_micros(rng.below(15_000)));
                kids.kill(k);
                let out = kids.output(k);
                assert!(!out.contains("torn"), "round {round}: {out}");
            }
            done.store(true, Ordering::Release);
        })
    };
    let mut calls = 0;
    while !done.load(Ordering::Acquire) && !killer.is_finished() {
        work();
        calls += 1;
    }
    killer.join().expect("killer thread");
    calls
}

/// Checks the messages one consumer sees: intact, and per producer in order
/// without repeats (`consecutive`: without gaps either, when no other consumer
/// takes any).
struct Seen {
    next: HashMap<u64, u64>,
    consecutive: bool,
}

impl Seen {
    fn new(consecutive: bool) -> Seen {
        Seen {
            next: HashMap::new(),
            consecutive,
        }
    }

    fn take(&mut self, m: &[u8]) {
        let v = check_message(m).expect("a torn message was delivered");
        let (id, i) = (v >> 32, v & 0xffff_ffff);
        let want = self.next.entry(id).or_insert(0);
        if self.consecutive {
            assert_eq!(
                i, *want,
                "producer {id}: a message duplicated, reordered or skipped"
            );
        } else {
            assert!(
                i >= *want,
                "producer {id}: message {i} duplicated or reordered"
            );
        }
        *want = i + 1;
    }
}

/// Takes messages until the queue stays empty for 500 ms.
fn drain(q: &ByteQueue, seen: &mut Seen) {
    loop {
        match q.get_timeout(Duration::from_millis(500)) {
            Ok(m) => seen.take(&m),
            Err(QueueError::Timeout(_)) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(q.is_empty(), "drained");
}

/// Every slot can be filled and emptied again: nothing is held by the dead.
fn every_slot_comes_back(q: &ByteQueue) {
    let mut msg = vec![0u8; CHAOS_MESSAGE];
    for v in 0..q.capacity() as u64 {
        fill_message(&mut msg, u64::MAX - v);
        q.put_timeout(&msg, Duration::from_secs(10))
            .expect("every slot comes back");
    }
    for v in 0..q.capacity() as u64 {
        let m = q.get_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(check_message(&m), Some(u64::MAX - v));
    }
}

/// Producers SIGKILLed at random instants while a consumer is busy (mid-claim,
/// mid-write, between the CAS and anything else): the queue never wedges, no torn
/// message is delivered, and every producer's messages arrive exactly once and in
/// order, with at most its last one lost.
#[test]
fn producers_killed_at_random_instants_never_wedge_or_duplicate() {
    let _w = chaos_watchdog("chaos producers");
    let name = unique_name("chaosprod");
    let q = ByteQueue::create(&name, 4, CHAOS_MESSAGE).unwrap();
    let mut seen = Seen::new(true);
    let rounds = chaos_rounds();
    let n = name.clone();
    with_random_kills(
        rounds,
        move |r| format!("produce_forever:{n}:{r}"),
        || match q.get_timeout(Duration::from_millis(1)) {
            Ok(m) => seen.take(&m),
            Err(QueueError::Timeout(_)) => {}
            Err(e) => panic!("{e}"),
        },
    );
    // What is left drains; slots of dead producers are skipped within ~10 ms each.
    drain(&q, &mut seen);
    println!("{rounds} producers killed, {} messages lost", q.lost());
    assert!(q.lost() <= rounds, "at most one message lost per kill");
    assert!(!seen.next.is_empty(), "messages flowed");
    every_slot_comes_back(&q);
}

/// Consumers SIGKILLed at random instants (mostly while reading a message in place)
/// never wedge the producer; messages stay in order.
#[test]
fn consumers_killed_at_random_instants_never_wedge_the_producer() {
    let _w = chaos_watchdog("chaos consumers");
    let name = unique_name("chaoscons");
    let q = ByteQueue::create(&name, 4, CHAOS_MESSAGE).unwrap();
    let rounds = chaos_rounds();
    let mut msg = vec![0u8; CHAOS_MESSAGE];
    let mut sent = 0u64;
    let n = name.clone();
    with_random_kills(
        rounds,
        move |_| format!("consume_forever:{n}"),
        || {
            fill_message(&mut msg, sent);
            match q.put_timeout(&msg, Duration::from_millis(1)) {
                Ok(()) => sent += 1,
                Err(QueueError::Timeout(_)) => {}
                Err(e) => panic!("{e}"),
            }
        },
    );
    // No consumer left: take what is still queued (in order), then fill the ring
    // completely (needs every slot back) and drain it.
    let mut seen = Seen::new(false);
    drain(&q, &mut seen);
    assert!(seen.next.get(&0).is_none_or(|&n| n <= sent));
    every_slot_comes_back(&q);
    println!(
        "{rounds} consumers killed, {} messages abandoned",
        q.abandoned()
    );
    assert!(q.abandoned() <= rounds, "at most one message per kill");
    assert!(sent > 0);
}

/// Issue 8.5: threads of one process, each with a handle of its own (two producers,
/// two consumers), SIGKILLed together at random instants while this process both
/// produces and consumes. Had the threads shared one handle, they would overwrite
/// each other's claim record, and a slot claimed at the kill could be covered by
/// none: the queue would stay blocked. Here nothing wedges, nothing is torn or
/// repeated, and at most one message per killed thread is lost or abandoned.
#[test]
fn threads_of_a_killed_process_each_with_its_own_handle_never_wedge_the_queue() {
    let _w = chaos_watchdog("chaos threads");
    let name = unique_name("chaosthreads");
    let q = ByteQueue::create(&name, 4, CHAOS_MESSAGE).unwrap();
    let rounds = chaos_rounds();
    let mut seen = Seen::new(false);
    let mut msg = vec![0u8; CHAOS_MESSAGE];
    let (mine, mut sent, mut turn) = (u64::from(u32::MAX), 0u64, 0u64);
    let n = name.clone();
    with_random_kills(
        rounds,
        move |r| format!("threads_forever:{n}:{r}"),
        || {
            turn += 1;
            if turn % 2 == 0 {
                fill_message(&mut msg, (mine << 32) | sent);
                match q.put_timeout(&msg, Duration::from_millis(1)) {
                    Ok(()) => sent += 1,
                    Err(QueueError::Timeout(_)) => {}
                    Err(e) => panic!("{e}"),
                }
            } else {
                match q.get_timeout(Duration::from_millis(1)) {
                    Ok(m) => seen.take(&m),
                    Err(QueueError::Timeout(_)) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        },
    );
    drain(&q, &mut seen);
    every_slot_comes_back(&q);
    println!(
        "{rounds} processes of 4 threads killed: {} lost, {} abandoned, {} of ours sent",
        q.lost(),
        q.abandoned(),
        sent
    );
    assert!(q.lost() <= 2 * rounds && q.abandoned() <= 2 * rounds);
    assert!(
        seen.next.keys().any(|&id| id != mine),
        "the threads produced"
    );
}

/// Kills `pid` (a grandchild: reaped by init once its parent is gone).
fn kill_pid(pid: i32) {
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
}

/// Issue 8.3: a handle inherited across `fork` must not share its parent's member
/// entry. A child opens a queue, uses it, forks, and both processes go on producing
/// through the same handle; one of them is SIGKILLed at a random instant, then the
/// survivor must keep getting through (a slot the dead one claimed is recovered,
/// which needs its own entry and its own liveness lock), and finally the other.
#[test]
fn a_handle_inherited_across_fork_joins_as_a_member_of_its_own() {
    let _w = watchdog("fork", Duration::from_secs(120));
    let mut rng = Rng::from_env();
    for (round, kill_forked_first) in [(0u64, true), (1, false), (2, true), (3, false)] {
        let name = unique_name("fork");
        let q = ByteQueue::create(&name, 4, CHAOS_MESSAGE).unwrap();
        let mut kids = Kids(Vec::new());
        let id = 2 * round;
        let c = kids.spawn(format!("fork_and_produce:{name}:{id}"));
        let line = kids.wait_line(c, "forked ");
        let forked: i32 = line["forked ".len()..].parse().unwrap();
        // Kills the forked child if the test fails before it does so itself.
        struct Reap(Option<i32>);
        impl Drop for Reap {
            fn drop(&mut self) {
                if let Some(pid) = self.0 {
                    kill_pid(pid);
                }
            }
        }
        let mut reap = Reap(Some(forked));
        let mut seen = Seen::new(true);
        let until = Instant::now() + Duration::from_micros(rng.below(15_000));
        while Instant::now() < until {
            if let Ok(m) = q.get_timeout(Duration::from_millis(1)) {
                seen.take(&m);
            }
        }
        let survivor = if kill_forked_first {
            kill_pid(forked);
            reap.0 = None;
            id
        } else {
            kids.kill(c);
            id + 1
        };
        // The survivor gets through, whatever the victim held.
        let mut from_survivor = 0;
        while from_survivor < 12 {
            let m = q
                .get_timeout(Duration::from_secs(10))
                .expect("the survivor's messages keep coming");
            seen.take(&m);
            from_survivor += u64::from(check_message(&m).unwrap() >> 32 == survivor);
        }
        if kill_forked_first {
            kids.kill(c);
        } else {
            kill_pid(forked);
            reap.0 = None;
        }
        drain(&q, &mut seen);
        every_slot_comes_back(&q);
        println!("round {round}: {} lost", q.lost());
        assert!(q.lost() <= 2, "round {round}: {} lost", q.lost());
    }
}

/// A panic inside `put_with`/`get_with` unwinds out of the call; the slot it held is
/// finished (lost / abandoned), so the queue does not stay blocked while this
/// process lives.
#[test]
fn a_panicking_closure_does_not_leave_its_slot_claimed() {
    let name = unique_name("panicclosure");
    let q = ByteQueue::create(&name, 2, 16).unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        q.put_with(4, |_| panic!("producer bug")).unwrap();
    }));
    assert!(r.is_err());
    q.put(b"next").unwrap();
    assert_eq!(
        q.get_timeout(Duration::from_secs(10)).unwrap(),
        b"next",
        "the unwritten slot is skipped at once"
    );
    assert_eq!(q.lost(), 1);
    q.put(b"a").unwrap();
    q.put(b"b").unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        q.get_with(|_| panic!("consumer bug")).unwrap();
    }));
    assert!(r.is_err());
    assert_eq!(q.abandoned(), 1);
    assert_eq!(q.get().unwrap(), b"b");
    // Both slots are free again: the ring fills to capacity.
    q.try_put(b"c").unwrap();
    q.try_put(b"d").unwrap();
    assert!(matches!(q.try_put(b"e"), Err(QueueError::Full)));
}

/// A closure that calls back into its own handle would overwrite the claim record
/// of the operation it runs in: refused. Another handle works.
#[test]
fn a_closure_calling_back_into_its_own_handle_is_refused() {
    let name = unique_name("reentrant");
    let q = ByteQueue::create(&name, 4, 16).unwrap();
    let other = ByteQueue::open(&name).unwrap();
    q.put_with(3, |b| {
        b.copy_from_slice(b"abc");
        assert!(matches!(q.try_put(b"x"), Err(QueueError::Reentrant)));
        assert!(matches!(q.try_get(), Err(QueueError::Reentrant)));
        other.put(b"other").unwrap();
    })
    .unwrap();
    // The outer put claimed the first slot, the other handle's the second.
    let inner = q
        .get_with(|m| {
            assert_eq!(m, b"abc");
            q.try_get()
        })
        .unwrap();
    assert!(matches!(inner, Err(QueueError::Reentrant)));
    assert_eq!(q.get().unwrap(), b"other");
    assert_eq!(q.lost() + q.abandoned(), 0);
}

#[test]
fn capacity_one_is_rounded_up_and_never_overwrites_an_unread_item() {
    // With a single slot the stamp scheme cannot tell "published" from "free for
    // the next lap" (loom found it); the queue rounds up to 2.
    let name = unique_name("cap1");
    let q = Queue::<u32>::create(&name, 1).unwrap();
    assert_eq!(q.capacity(), 2);
    q.put(1).unwrap();
    q.put(2).unwrap();
    assert!(matches!(q.try_put(3), Err(QueueError::Full)));
    assert_eq!(q.get().unwrap(), 1);
    q.put(3).unwrap();
    assert_eq!((q.get().unwrap(), q.get().unwrap()), (2, 3));
}

/// Issue 9.1: sizes from callers are checked before anything is created; the
/// failed creates leave nothing behind.
#[test]
fn absurd_sizes_are_typed_errors_and_leave_nothing_behind() {
    let prefix = format!("shmarray-test-{}-absurd-", std::process::id());
    for capacity in [(1usize << 59) + 2, usize::MAX, 1 << 40] {
        let name = unique_name("absurd");
        assert!(
            matches!(
                Queue::<u64>::create(&name, capacity),
                Err(QueueError::Params(_))
            ),
            "capacity {capacity}"
        );
        assert!(!std::path::Path::new("/dev/shm").join(&name).exists());
    }
    for (capacity, max) in [
        (4, 0),
        (4, usize::MAX),
        (4, (1 << 30) + 1),
        (1 << 20, 1 << 30),
    ] {
        assert!(
            matches!(
                ByteQueue::create(&unique_name("absurd"), capacity, max),
                Err(QueueError::Params(_))
            ),
            "{capacity} x {max}"
        );
    }
    assert!(matches!(
        Queue::<u64>::create_anonymous(usize::MAX),
        Err(QueueError::Params(_))
    ));
    assert_eq!(leftovers(&prefix), Vec::<String>::new());
}

/// Writes a queue file by hand, from the documented format: an NPY 1.0 header
/// (`|u1`, shape `(data_len,)`) padded to `data_offset`, the data area, and at the
/// next page boundary a control block whose checksum is FNV-1a 64 over the header
/// region followed by control-block bytes 0..136. `tweak` forges the fields.
struct QueueFile {
    data_offset: usize,
    data_len: u64,
    kind: ObjectKind,
    kind_version: u32,
    params: [u64; 8],
}

/// The layout constants of a queue's data area (`format::objects`).
const MEMBER_TABLE: u64 = 64 * 32;
const RING_HEADER: u64 = 9 * 128 + 64 * 64;

impl QueueFile {
    /// A consistent queue of `capacity` slots of `item` bytes (element code).
    fn consistent(item: u64, capacity: u64, element: u32) -> QueueFile {
        let stride = (16 + item).div_ceil(16) * 16;
        QueueFile {
            data_offset: 4096,
            data_len: MEMBER_TABLE + RING_HEADER + stride * capacity,
            kind: if element == 0 {
                ObjectKind::ByteQueue
            } else {
                ObjectKind::Queue
            },
            kind_version: 4,
            params: [item, capacity, stride, u64::from(element), 0, 0, 0, 0],
        }
    }

    fn fnv1a64(parts: &[&[u8]]) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for part in parts {
            for &b in *part {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        h
    }

    fn write(&self, name: &str) -> ShmFile {
        let guard = ShmFile::new(name);
        let dict = format!(
            "{{'descr': '|u1', 'fortran_order': False, 'shape': ({},), }}",
            self.data_len
        );
        let mut header = Vec::new();
        header.extend_from_slice(b"\x93NUMPY\x01\x00");
        header.extend_from_slice(&((self.data_offset - 10) as u16).to_le_bytes());
        header.extend_from_slice(dict.as_bytes());
        header.resize(self.data_offset - 1, b' ');
        header.push(b'\n');
        let control_offset = (self.data_offset as u64 + self.data_len).div_ceil(4096) * 4096;
        let mut cb = vec![0u8; 4096];
        let put = |cb: &mut Vec<u8>, at: usize, bytes: &[u8]| {
            cb[at..at + bytes.len()].copy_from_slice(bytes)
        };
        put(&mut cb, 0, b"SHMARRCB");
        put(&mut cb, 8, &3u32.to_le_bytes()); // layout version
        put(&mut cb, 12, &self.kind.code().to_le_bytes());
        put(&mut cb, 16, &self.kind_version.to_le_bytes());
        put(&mut cb, 20, &Dtype::U8.code().to_le_bytes());
        put(&mut cb, 24, &1u32.to_le_bytes()); // ndim
        put(&mut cb, 28, &std::process::id().to_le_bytes());
        put(&mut cb, 56, &(self.data_offset as u64).to_le_bytes());
        put(&mut cb, 64, &self.data_len.to_le_bytes());
        for (i, p) in self.params.iter().enumerate() {
            put(&mut cb, 72 + 8 * i, &p.to_le_bytes());
        }
        let sum = Self::fnv1a64(&[&header, &cb[..136]]);
        put(&mut cb, 136, &sum.to_le_bytes());
        put(&mut cb, 144, &1u32.to_le_bytes()); // state: ready
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&guard.0)
            .unwrap();
        file.write_all_at(&header, 0).unwrap();
        file.set_len(control_offset + 4096).unwrap();
        file.write_all_at(&cb, control_offset).unwrap();
        // Slot i free for position i, as a creator initialises the ring (where the
        // forged geometry leaves room for it).
        let (cap, stride) = (self.params[1], self.params[2]);
        let slots = MEMBER_TABLE + RING_HEADER;
        let end = stride.checked_mul(cap).and_then(|n| n.checked_add(slots));
        if stride % 16 == 0 && end.is_some_and(|end| end <= self.data_len) {
            for i in 0..cap {
                let at = self.data_offset as u64 + slots + i * stride;
                file.write_all_at(&i.to_le_bytes(), at).unwrap();
            }
        }
        guard
    }
}

fn not_a_queue<T>(r: Result<T, QueueError>) -> bool {
    matches!(r, Err(QueueError::NotAQueue { .. }))
}

fn corrupt<T>(r: Result<T, QueueError>) -> bool {
    matches!(r, Err(QueueError::Segment(Error::Corrupt { .. })))
}

/// Issue 9.1: queue files with a valid header and a correctly checksummed control
/// block but forged parameters are typed errors at open, never a crash. The
/// consistent file written the same way opens and works, which checks the test's
/// reading of the format as well.
#[test]
fn forged_queue_files_are_typed_errors_at_open() {
    let u64_code = Dtype::U64.code();
    let ok = QueueFile::consistent(8, 4, u64_code);
    let name = unique_name("forged");
    let _f = ok.write(&name);
    let q = Queue::<u64>::open(&name).expect("a consistent hand-written queue opens");
    q.put_slice(&[1, 2, 3, 4]).unwrap();
    assert!(matches!(q.try_put(5), Err(QueueError::Full)));
    assert_eq!(q.get().unwrap(), 1);
    drop(q);
    // A capacity that is not a power of two is legitimate: the ring wraps modulo it.
    let name = unique_name("forged");
    let _f = QueueFile::consistent(8, 3, u64_code).write(&name);
    let q = Queue::<u64>::open(&name).unwrap();
    for v in 0..10u64 {
        q.put(v).unwrap();
        assert_eq!(q.get().unwrap(), v);
    }
    drop(q);

    let with = |f: &dyn Fn(&mut QueueFile)| {
        let mut qf = QueueFile::consistent(8, 4, u64_code);
        f(&mut qf);
        qf
    };
    let forged: Vec<(&str, QueueFile)> = vec![
        ("capacity 0", with(&|q| q.params[1] = 0)),
        ("capacity 1", with(&|q| q.params[1] = 1)),
        ("capacity 2^40", with(&|q| q.params[1] = 1 << 40)),
        ("capacity u64::MAX", with(&|q| q.params[1] = u64::MAX)),
        ("capacity 3, data of 4", with(&|q| q.params[1] = 3)),
        ("item size 0", with(&|q| q.params[0] = 0)),
        (
            "item size u32::MAX",
            with(&|q| q.params[0] = u64::from(u32::MAX)),
        ),
        ("item size u64::MAX", with(&|q| q.params[0] = u64::MAX)),
        ("stride smaller than an item", with(&|q| q.params[2] = 16)),
        ("stride 2^60", with(&|q| q.params[2] = 1 << 60)),
        (
            // stride x capacity wraps to 0 in 64 bits: the data length of an
            // empty ring
            "wrapping stride x capacity",
            with(&|q| {
                q.params[2] = 1 << 62;
                q.params[1] = 4;
                q.data_len = MEMBER_TABLE + RING_HEADER;
            }),
        ),
        (
            "data shorter than the geometry",
            with(&|q| q.data_len -= 32),
        ),
        (
            "data longer than the geometry",
            with(&|q| q.data_len += 4096),
        ),
        ("layout version", with(&|q| q.kind_version = 99)),
    ];
    for (what, qf) in &forged {
        let name = unique_name("forged");
        let _f = qf.write(&name);
        let r = Queue::<u64>::open(&name);
        assert!(corrupt(r), "{what}: {:?}", Queue::<u64>::open(&name));
    }
    // Item size and element code must agree with the handle's type.
    let name = unique_name("forged");
    let _f = with(&|q| q.params[3] = u64::from(Dtype::U32.code())).write(&name);
    assert!(not_a_queue(Queue::<u32>::open(&name)));
    assert!(not_a_queue(Queue::<u64>::open(&name)));
    // Data that starts 64-aligned (legal NPY) cannot hold the ring's layout.
    let name = unique_name("forged");
    let mut qf = QueueFile::consistent(8, 4, u64_code);
    qf.data_offset = 192;
    let _f = qf.write(&name);
    assert!(matches!(
        Queue::<u64>::open(&name),
        Err(QueueError::Segment(Error::Corrupt { .. }))
    ));
    // A byte queue with a forged maximum message size.
    let name = unique_name("forged");
    let mut qf = QueueFile::consistent(4096, 2, 0);
    qf.params[0] = u64::from(u32::MAX);
    let _f = qf.write(&name);
    assert!(corrupt(ByteQueue::open(&name)));
}

/// Issue 9.1: a peer that scribbles over the ring header, stamps and lengths can
/// make items go missing or repeat, but this process never crashes, indexes
/// outside the mapping or hangs in a call with a timeout.
#[test]
fn a_peer_scribbling_over_the_ring_cannot_crash_this_process() {
    let _w = watchdog("scribbles", Duration::from_secs(60));
    let name = unique_name("scribble");
    let q = ByteQueue::create(&name, 3, 40).unwrap();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(q.path().unwrap())
        .unwrap();
    let ring = 4096 + MEMBER_TABLE;
    let slots = ring + RING_HEADER;
    let end = slots + 3 * 64;
    let mut rng = Rng(0x5eed_1234_5678_9abc);
    let words = [
        0u64,
        1,
        2,
        3,
        4,
        1 << 63,
        (1 << 63) | 1,
        u64::MAX,
        u64::MAX - 1,
    ];
    let short = Duration::from_millis(1);
    for _ in 0..3000 {
        // Scribble one 8-byte word: a control word, an intent, a stamp or a length.
        let at = if rng.below(2) == 0 {
            ring + 128 * rng.below(9)
        } else {
            ring + rng.below(end - ring) / 8 * 8
        };
        let v = if rng.below(2) == 0 {
            words[rng.below(words.len() as u64) as usize]
        } else {
            rng.below(u64::MAX)
        };
        file.write_all_at(&v.to_le_bytes(), at).unwrap();
        let _ = q.try_put(b"scribble");
        let _ = q.put_timeout(&[7u8; 40], short);
        if let Ok(m) = q.try_get() {
            assert!(m.len() <= 40);
        }
        if let Ok(m) = q.get_timeout(short) {
            assert!(m.len() <= 40);
        }
        assert!(q.len() <= 3);
    }
}

#[test]
fn anonymous_queue_is_shared_through_its_descriptor() {
    use std::os::fd::AsRawFd;
    let _w = watchdog("anonymous queue", Duration::from_secs(60));
    let q = Queue::<u64>::create_anonymous(64).unwrap();
    assert!(q.name().is_none() && q.path().is_none());
    let path = format!("/proc/{}/fd/{}", std::process::id(), q.file().as_raw_fd());
    let mut kids = Kids(Vec::new());
    let p = kids.spawn(format!("anon_produce:{path}"));
    let mut sum = 0u64;
    let mut n = 0;
    loop {
        match q.get_timeout(Duration::from_secs(30)) {
            Ok(v) => {
                sum += v;
                n += 1
            }
            Err(QueueError::Closed) => break,
            Err(e) => panic!("{e}"),
        }
    }
    kids.finish(p);
    assert_eq!((n, sum), (1000, 999 * 1000 / 2));
    assert!(not_a_queue(ByteQueue::from_file(
        q.file().try_clone().unwrap()
    )));
}
