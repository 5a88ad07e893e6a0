//! The shared-memory queue across real processes: a million items through 2 producers
//! and 2 consumers, close/timeout semantics, and producers/consumers SIGKILLed in the
//! middle of an operation.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{unique_name, wait_with_deadline};
use shmarray::{ByteQueue, Queue, QueueError};

const CHILD_ENV: &str = "SHMARRAY_QUEUE_CHILD";

/// Child roles; not a real test without the variable.
#[test]
fn child_entry() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
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
            let id: u64 = id.parse().unwrap();
            println!("ready");
            for i in 0.. {
                q.put_with(CHAOS_MESSAGE, |buf| fill_message(buf, (id << 32) | i))
                    .unwrap();
            }
        }
        ["consume_forever", name] => {
            let q = ByteQueue::open(name).unwrap();
            println!("ready");
            loop {
                q.get_with(|b| assert!(check_message(b).is_some(), "torn message"))
                    .unwrap();
            }
        }
        _ => std::process::exit(2),
    }
    std::process::exit(0);
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

struct Kids(Vec<Child>);

impl Kids {
    fn spawn(&mut self, role: String) -> usize {
        self.0.push(
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
                .env(CHILD_ENV, role)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        self.0.len() - 1
    }

    fn wait_line(&mut self, i: usize, suffix: &str) -> String {
        let mut r = BufReader::new(self.0[i].stdout.as_mut().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                r.read_line(&mut line).unwrap() > 0,
                "child {i} ended before {suffix:?}"
            );
            if line.trim_end().ends_with(suffix) || line.contains(suffix) {
                return line.trim().to_string();
            }
        }
    }

    fn finish(&mut self, i: usize) -> String {
        let status = wait_with_deadline(&mut self.0[i], Duration::from_secs(120));
        let mut out = String::new();
        if let Some(mut o) = self.0[i].stdout.take() {
            let _ = std::io::Read::read_to_string(&mut o, &mut out);
        }
        assert!(status.success(), "child {i} failed: {status}\n{out}");
        out
    }

    fn kill(&mut self, i: usize) {
        self.0[i].kill().unwrap();
        self.0[i].wait().unwrap();
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
            Ok(-1) => got.push(-1),
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
    assert!(matches!(
        Queue::<u64>::open(&name),
        Err(QueueError::NotAQueue { .. })
    ));
    let typed = unique_name("typed");
    let _t = Queue::<u32>::create(&typed, 4).unwrap();
    assert!(matches!(
        Queue::<u64>::open(&typed),
        Err(QueueError::NotAQueue { .. })
    ));
    assert!(matches!(
        ByteQueue::open(&typed),
        Err(QueueError::NotAQueue { .. })
    ));
}

#[test]
fn a_producer_killed_mid_put_does_not_wedge_the_queue() {
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

#[test]
fn a_consumer_killed_mid_get_does_not_wedge_the_queue() {
    let name = unique_name("deadconsumer");
    let q = ByteQueue::create(&name, 2, 32).unwrap();
    q.put(b"one").unwrap();
    q.put(b"two").unwrap();
    let mut kids = Kids(Vec::new());
    let c = kids.spawn(format!("get_and_die:{name}"));
    kids.wait_line(c, "taken");
    kids.kill(c);
    assert_eq!(q.get().unwrap(), b"two");
    // Position 2 maps to the slot the dead consumer still holds.
    let t = Instant::now();
    q.put_timeout(b"three", Duration::from_secs(10)).unwrap();
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(q.abandoned(), 1);
    assert_eq!(q.get().unwrap(), b"three");
}

/// Kill rounds per chaos test: 24, or `SHMARRAY_CHAOS_ROUNDS` for long runs.
fn chaos_rounds() -> u64 {
    std::env::var("SHMARRAY_CHAOS_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24)
}

/// Spawns `rounds` children (`role(round)`) one after another from a killer thread,
/// each SIGKILLed after a random 0–15 ms of work, while `work` runs on this thread
/// until the last one is dead. Returns how many `work` calls were made.
fn with_random_kills(
    rounds: u64,
    role: impl Fn(u64) -> String + Send + 'static,
    mut work: impl FnMut(),
) -> u64 {
    let mut rng = Rng::from_env();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killer = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut kids = Kids(Vec::new());
            for round in 0..rounds {
                let k = kids.spawn(role(round));
                kids.wait_line(k, "ready");
                std::thread::sleep(Duration::from_micros(rng.below(15_000)));
                kids.kill(k);
            }
            done.store(true, std::sync::atomic::Ordering::Release);
        })
    };
    let mut calls = 0;
    while !done.load(std::sync::atomic::Ordering::Acquire) {
        work();
        calls += 1;
    }
    killer.join().expect("killer thread");
    calls
}

/// Producers SIGKILLed at random instants while a consumer is busy (mid-claim,
/// mid-write, between the CAS and anything else): the queue never wedges, no torn
/// message is delivered, and every producer's messages arrive exactly once and in
/// order, with at most its last one lost.
#[test]
fn producers_killed_at_random_instants_never_wedge_or_duplicate() {
    let name = unique_name("chaosprod");
    let q = ByteQueue::create(&name, 4, CHAOS_MESSAGE).unwrap();
    let mut next = std::collections::HashMap::<u64, u64>::new();
    let mut take = |m: Vec<u8>| {
        let v = check_message(&m).expect("a torn message was delivered");
        let (id, i) = (v >> 32, v & 0xffff_ffff);
        let want = next.entry(id).or_insert(0);
        assert_eq!(
            i, *want,
            "producer {id}: a message duplicated, reordered or skipped"
        );
        *want += 1;
    };
    let rounds = chaos_rounds();
    let n = name.clone();
    with_random_kills(
        rounds,
        move |r| format!("produce_forever:{n}:{r}"),
        || match q.get_timeout(Duration::from_millis(1)) {
            Ok(m) => take(m),
            Err(QueueError::Timeout(_)) => {}
            Err(e) => panic!("{e}"),
        },
    );
    // What is left drains; slots of dead producers are skipped within ~10 ms each.
    loop {
        match q.get_timeout(Duration::from_millis(500)) {
            Ok(m) => take(m),
            Err(QueueError::Timeout(_)) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(q.is_empty(), "drained");
    println!("{rounds} producers killed, {} messages lost", q.lost());
    assert!(q.lost() <= rounds, "at most one message lost per kill");
    assert!(!next.is_empty(), "messages flowed");
    q.put(b"after").unwrap();
    assert_eq!(q.get_timeout(Duration::from_secs(10)).unwrap(), b"after");
}

/// Consumers SIGKILLed at random instants (mostly while reading a message in place)
/// never wedge the producer; messages stay in order.
#[test]
fn consumers_killed_at_random_instants_never_wedge_the_producer() {
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
    let mut last = None;
    while let Ok(m) = q.get_timeout(Duration::from_millis(300)) {
        let v = check_message(&m).expect("intact");
        assert!(v < sent && last.is_none_or(|l| l < v), "order kept");
        last = Some(v);
    }
    for v in 0..4 {
        fill_message(&mut msg, v);
        q.put_timeout(&msg, Duration::from_secs(10))
            .expect("every slot comes back");
    }
    for v in 0..4 {
        let m = q.get_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(check_message(&m), Some(v));
    }
    println!(
        "{rounds} consumers killed, {} messages abandoned",
        q.abandoned()
    );
    assert!(q.abandoned() <= rounds, "at most one message per kill");
    assert!(sent > 0);
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

#[test]
fn anonymous_queue_is_shared_through_its_descriptor() {
    use std::os::fd::AsRawFd;
    let q = Queue::<u64>::create_anonymous(64).unwrap();
    assert!(q.array().name().is_none());
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
    assert!(matches!(
        ByteQueue::from_file(q.file().try_clone().unwrap()),
        Err(QueueError::NotAQueue { .. })
    ));
}
