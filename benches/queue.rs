//! Queue throughput and latency across processes, against a pipe and in-process
//! channels.
//!
//! - `spsc`: u64 items, one producer process → one consumer process, batched
//!   (`put_slice` 256 / `get_into` 512) and one at a time; the same through a pipe.
//! - `mpmc_2x2`: two producer processes → two consumer processes, batched.
//! - `in_process`: std `mpsc` and crossbeam channels between two threads (reference).
//! - `ping_pong`: round trip of one item to another process and back.
//!
//! Children are this binary re-executed with `SHMARRAY_QBENCH_CHILD`.
//! Run: `cargo bench --bench queue`.
//!
//! Instruction counts (load-independent, for before/after comparisons of the fast
//! path): `SHMARRAY_QBENCH_CHILD=ops:N:K` runs N rounds of K one-at-a-time puts then
//! K gets in one process (`ops1` does the same with `put_slice`/`get_into` of K
//! items); run it under `valgrind --tool=callgrind` for two N and divide the
//! difference of the totals by the difference of the item counts.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use shmarray::{Event, Queue};

const CHILD_ENV: &str = "SHMARRAY_QBENCH_CHILD";
const BATCH: usize = 256;

fn child(spec: &str) {
    let a: Vec<&str> = spec.split(':').collect();
    match a.as_slice() {
        ["consume", q, ready, n, batched] => {
            let q = Queue::<u64>::open(q).unwrap();
            let n: u64 = n.parse().unwrap();
            Event::open(ready).unwrap().set();
            let mut got = 0u64;
            let mut buf = vec![0u64; 512];
            while got < n {
                let r = if *batched == "1" {
                    q.get_into(&mut buf).map(|k| k as u64)
                } else {
                    q.get().map(|_| 1)
                };
                match r {
                    Ok(k) => got += k,
                    Err(shmarray::QueueError::Closed) => break,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        ["produce", q, go, n] => {
            let q = Queue::<u64>::open(q).unwrap();
            let n: usize = n.parse().unwrap();
            let items: Vec<u64> = (0..BATCH as u64).collect();
            Event::open(go)
                .unwrap()
                .wait_timeout(Duration::from_secs(60))
                .unwrap();
            let mut sent = 0;
            while sent < n {
                let k = BATCH.min(n - sent);
                q.put_slice(&items[..k]).unwrap();
                sent += k;
            }
        }
        ["echo", a, b] => {
            let (inq, outq) = (
                Queue::<u64>::open(a).unwrap(),
                Queue::<u64>::open(b).unwrap(),
            );
            while let Ok(v) = inq.get() {
                if v == u64::MAX {
                    break;
                }
                outq.put(v).unwrap();
            }
        }
        ["pipe_consume", n] => {
            let n: usize = n.parse().unwrap();
            let mut stdin = std::io::stdin().lock();
            let mut buf = vec![0u8; BATCH * 8];
            let mut got = 0;
            while got < n * 8 {
                let k = stdin.read(&mut buf).unwrap();
                assert!(k > 0);
                got += k;
            }
        }
        ["ops", n, k] => {
            let (n, k): (u64, u64) = (n.parse().unwrap(), k.parse().unwrap());
            let q = Queue::<u64>::create_anonymous(4096).unwrap();
            let mut sum = 0u64;
            for i in 0..n {
                for j in 0..k {
                    q.put(i ^ j).unwrap();
                }
                for _ in 0..k {
                    sum = sum.wrapping_add(q.get().unwrap());
                }
            }
            std::hint::black_box(sum);
        }
        ["ops1", n, k] => {
            let (n, k): (u64, usize) = (n.parse().unwrap(), k.parse().unwrap());
            let q = Queue::<u64>::create_anonymous(4096).unwrap();
            let items: Vec<u64> = (0..k as u64).collect();
            let mut buf = vec![0u64; k];
            for _ in 0..n {
                q.put_slice(&items).unwrap();
                let mut got = 0;
                while got < k {
                    got += q.get_into(&mut buf[got..]).unwrap();
                }
            }
            std::hint::black_box(&buf);
        }
        _ => std::process::exit(2),
    }
}

fn spawn(role: String, stdin: Stdio) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, role)
        .stdin(stdin)
        .spawn()
        .unwrap()
}

fn names(tag: &str) -> (String, String) {
    let pid = std::process::id();
    (
        format!("shmarray-bench-q{tag}-{pid}"),
        format!("shmarray-bench-e{tag}-{pid}"),
    )
}

fn spsc(c: &mut Criterion) {
    let mut g = c.benchmark_group("spsc_u64");
    g.sample_size(10);
    g.throughput(Throughput::Elements(1));
    for batched in [true, false] {
        let label = if batched {
            "queue_batched"
        } else {
            "queue_one_at_a_time"
        };
        g.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let (qn, en) = names("s");
                let q = Queue::<u64>::create(&qn, 4096).unwrap();
                let ready = Event::create(&en).unwrap();
                let mut child = spawn(
                    format!("consume:{qn}:{en}:{iters}:{}", batched as u8),
                    Stdio::null(),
                );
                ready.wait_timeout(Duration::from_secs(60)).unwrap();
                let items: Vec<u64> = (0..BATCH as u64).collect();
                let t = Instant::now();
                let mut sent = 0u64;
                while sent < iters {
                    if batched {
                        let k = (BATCH as u64).min(iters - sent) as usize;
                        q.put_slice(&items[..k]).unwrap();
                        sent += k as u64;
                    } else {
                        q.put(sent).unwrap();
                        sent += 1;
                    }
                }
                assert!(child.wait().unwrap().success());
                t.elapsed()
            })
        });
    }
    g.bench_function("pipe_batched", |b| {
        b.iter_custom(|iters| {
            let mut child = spawn(format!("pipe_consume:{iters}"), Stdio::piped());
            let mut stdin = child.stdin.take().unwrap();
            let items: Vec<u64> = (0..BATCH as u64).collect();
            let bytes: &[u8] = bytemuck::cast_slice(&items);
            std::thread::sleep(Duration::from_millis(5)); // let it start
            let t = Instant::now();
            let mut sent = 0u64;
            while sent < iters {
                let k = (BATCH as u64).min(iters - sent) as usize;
                stdin.write_all(&bytes[..k * 8]).unwrap();
                sent += k as u64;
            }
            drop(stdin);
            assert!(child.wait().unwrap().success());
            t.elapsed()
        })
    });
    g.finish();
}

fn mpmc(c: &mut Criterion) {
    let mut g = c.benchmark_group("mpmc_2x2_u64");
    g.sample_size(10);
    g.throughput(Throughput::Elements(1));
    g.bench_function("queue_batched", |b| {
        b.iter_custom(|iters| {
            let per = iters.div_ceil(2).max(1);
            let (qn, en) = names("m");
            let q = Queue::<u64>::create(&qn, 4096).unwrap();
            let go = Event::create(&en).unwrap();
            let ready_names: Vec<String> = (0..2).map(|i| format!("{en}-r{i}")).collect();
            let readies: Vec<Event> = ready_names
                .iter()
                .map(|n| Event::create(n).unwrap())
                .collect();
            // Producers send `per` each; consumers run until the queue is closed.
            let mut consumers: Vec<Child> = ready_names
                .iter()
                .map(|r| spawn(format!("consume:{qn}:{r}:{}:1", u64::MAX), Stdio::null()))
                .collect();
            for r in &readies {
                r.wait_timeout(Duration::from_secs(60)).unwrap();
            }
            let mut producers: Vec<Child> = (0..2)
                .map(|_| spawn(format!("produce:{qn}:{en}:{per}"), Stdio::null()))
                .collect();
            std::thread::sleep(Duration::from_millis(20)); // producers attach and wait for go
            let t = Instant::now();
            go.set();
            for k in &mut producers {
                assert!(k.wait().unwrap().success());
            }
            q.close();
            for k in &mut consumers {
                assert!(k.wait().unwrap().success());
            }
            t.elapsed()
        })
    });
    g.finish();
}

fn in_process(c: &mut Criterion) {
    let mut g = c.benchmark_group("in_process_u64");
    g.sample_size(10);
    g.throughput(Throughput::Elements(1));
    g.bench_function("std_mpsc_sync_channel", |b| {
        b.iter_custom(|iters| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<u64>(4096);
            let t = Instant::now();
            let h = std::thread::spawn(move || {
                for _ in 0..iters {
                    rx.recv().unwrap();
                }
            });
            for i in 0..iters {
                tx.send(i).unwrap();
            }
            h.join().unwrap();
            t.elapsed()
        })
    });
    g.bench_function("crossbeam_bounded", |b| {
        b.iter_custom(|iters| {
            let (tx, rx) = crossbeam_channel::bounded::<u64>(4096);
            let t = Instant::now();
            let h = std::thread::spawn(move || {
                for _ in 0..iters {
                    rx.recv().unwrap();
                }
            });
            for i in 0..iters {
                tx.send(i).unwrap();
            }
            h.join().unwrap();
            t.elapsed()
        })
    });
    g.finish();
}

fn ping_pong(c: &mut Criterion) {
    let mut g = c.benchmark_group("ping_pong");
    let (a, _) = names("pa");
    let (bq, _) = names("pb");
    let qa = Queue::<u64>::create(&a, 16).unwrap();
    let qb = Queue::<u64>::create(&bq, 16).unwrap();
    let mut child = spawn(format!("echo:{a}:{bq}"), Stdio::null());
    qa.put(1).unwrap();
    qb.get().unwrap(); // child is up
    g.bench_function("queue_round_trip", |b| {
        b.iter(|| {
            qa.put(7).unwrap();
            qb.get().unwrap()
        })
    });
    qa.put(u64::MAX).unwrap();
    assert!(child.wait().unwrap().success());
    g.finish();
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child(&spec);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    spsc(&mut c);
    mpmc(&mut c);
    in_process(&mut c);
    ping_pong(&mut c);
    c.final_summary();
}
