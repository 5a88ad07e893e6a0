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
//! `SHMARRAY_QBENCH_BATCHES=1` prints the fastest, 10th-percentile and median of
//! many short timed batches (ping-pong, one item per call) instead: on a loaded
//! machine a batch that ran undisturbed shows what the code costs.
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
                    Err(shmarray::queue::QueueError::Closed) => break,
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

/// Per-batch averages of `batches` timed batches: (min, 10th percentile, median).
fn spread(mut per: Vec<f64>) -> (f64, f64, f64) {
    per.sort_by(f64::total_cmp);
    (per[0], per[per.len() / 10], per[per.len() / 2])
}

/// `SHMARRAY_QBENCH_BATCHES=1`: instead of criterion, time many short batches and
/// print the fastest, the 10th percentile and the median batch. On a machine whose
/// other load preempts these processes, criterion's means mostly measure the
/// preemptions; a batch that ran undisturbed shows what the code itself costs.
fn batches() {
    let (a, _) = names("ba");
    let (bq, _) = names("bb");
    let qa = Queue::<u64>::create(&a, 16).unwrap();
    let qb = Queue::<u64>::create(&bq, 16).unwrap();
    let mut child = spawn(format!("echo:{a}:{bq}"), Stdio::null());
    qa.put(1).unwrap();
    qb.get().unwrap();
    const TRIPS: u32 = 1000;
    let per: Vec<f64> = (0..2000)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..TRIPS {
                qa.put(7).unwrap();
                qb.get().unwrap();
            }
            t.elapsed().as_nanos() as f64 / f64::from(TRIPS)
        })
        .collect();
    qa.put(u64::MAX).unwrap();
    assert!(child.wait().unwrap().success());
    let (min, p10, med) = spread(per);
    println!(
        "ping_pong round trip, 2000 batches of {TRIPS}: fastest {min:.0} ns, a tenth at or below {p10:.0} ns, median {med:.0} ns"
    );

    // One item per call, 1 producer -> 1 consumer process; batches much longer
    // than the ring (4096), so a batch cannot ride on a ring emptied before it.
    const ITEMS: u64 = 65536;
    const ROUNDS: u64 = 300;
    let (qn, en) = names("bs");
    let q = Queue::<u64>::create(&qn, 4096).unwrap();
    let ready = Event::create(&en).unwrap();
    let mut child = spawn(
        format!("consume:{qn}:{en}:{}:0", ITEMS * ROUNDS),
        Stdio::null(),
    );
    ready.wait_timeout(Duration::from_secs(60)).unwrap();
    let per: Vec<f64> = (0..ROUNDS)
        .map(|r| {
            let t = Instant::now();
            for i in 0..ITEMS {
                q.put(r * ITEMS + i).unwrap();
            }
            ITEMS as f64 / t.elapsed().as_secs_f64() / 1e6
        })
        .map(|mps| -mps)
        .collect();
    assert!(child.wait().unwrap().success());
    let (max, p90, med) = spread(per);
    println!(
        "spsc one item per call, {ROUNDS} batches of {ITEMS}: fastest {:.1} M items/s, a tenth at or above {:.1}, median {:.1}",
        -max, -p90, -med
    );
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child(&spec);
        return;
    }
    if std::env::var_os("SHMARRAY_QBENCH_BATCHES").is_some() {
        batches();
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    spsc(&mut c);
    mpmc(&mut c);
    in_process(&mut c);
    ping_pong(&mut c);
    c.final_summary();
}
