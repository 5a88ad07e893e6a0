//! Worker processes and the pool, with real processes (spawn and fork).
//!
//! `harness = false`: spawned workers re-execute this binary, so `main` calls
//! `shmarray::init()` first, exactly as a user's program does. Every test
//! runs in its own thread (so spawning happens from a multithreaded parent), under a
//! watchdog that fails the run if anything hangs.
//!
//! Fork is only allowed from a single-threaded process, so the fork tests run in a
//! child process (this binary re-executed with a *role*, see `ROLE_ENV`) whose main
//! thread is its only thread; the parent supervises it with a timeout. The same
//! mechanism provides a parent that is SIGKILLed while its pool's workers run.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use ndarray::{ArrayView2, ArrayViewMut2, Axis, Ix2};
use shmarray::SharedArray;
use shmarray::{
    pool::{as_completed, ArrayHandle, Partition, Pool, StartMethod, TaskError},
    Process,
};

fn square(x: u64) -> u64 {
    x * x
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn my_pid(_: ()) -> u32 {
    std::process::id()
}

/// Sleeps `ms`, then says which process ran it.
fn slow_pid(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

fn panics_on_13(x: u64) -> u64 {
    assert!(x != 13, "thirteen is unlucky");
    x
}

fn dies_on_7(x: u64) -> u64 {
    if x == 7 {
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL).unwrap();
    }
    x
}

fn exits_3(_: ()) -> u64 {
    std::process::exit(3)
}

fn slow_identity(x: u64) -> u64 {
    std::thread::sleep(Duration::from_micros(300));
    x
}

/// Creates `dir/x` exclusively (a second run of the same input would find it and
/// panic), then sleeps a little: a task whose runs can be counted.
fn runs_once((dir, x): (String, u64)) -> u64 {
    if let Err(e) = std::fs::File::create_new(format!("{dir}/{x}")) {
        panic!("input {x} ran twice: {e}");
    }
    std::thread::sleep(Duration::from_micros(300));
    x
}

fn double_rows(mut rows: ArrayViewMut2<'_, f64>) {
    rows *= 2.0;
}

fn add_one(mut rows: ArrayViewMut2<'_, f64>) {
    rows += 1.0;
}

/// Tries to reach its own array again while holding a part of it: by name.
fn sneaky(mut rows: ArrayViewMut2<'_, f64>) {
    let name = std::env::var(SNEAKY_ENV).unwrap();
    let mark = match SharedArray::<f64, Ix2>::open(&name) {
        // Refused: the kernel's handle claimed the array in this process.
        Err(shmarray::Error::InUse { .. }) => 7.0,
        // A second handle would have let it lock() and alias the part it writes.
        Ok(_) => -1.0,
        Err(_) => -2.0,
    };
    rows.fill(mark);
}

const SNEAKY_ENV: &str = "SHMARRAY_POOL_SNEAKY";

/// Code inside a kernel cannot get a second view of the array it is writing: the
/// worker's handle takes its part through the claiming `view_mut`, so another
/// handle of the same array in that process is refused.
fn a_kernel_cannot_reach_its_own_array_again() {
    let name = unique("sneaky");
    let mut a = SharedArray::<f64, Ix2>::create(&name, (64, 8)).unwrap();
    std::env::set_var(SNEAKY_ENV, &name);
    let pool = Pool::new(2).unwrap();
    pool.for_each_chunk(&a, Axis(0), sneaky).unwrap();
    assert!(a.view().unwrap().iter().all(|&x| x == 7.0));
}

fn part_sum(rows: ArrayView2<'_, f64>) -> f64 {
    rows.sum()
}

fn handle_row_sum((h, row): (ArrayHandle<f64, Ix2>, usize)) -> f64 {
    h.with(|a| a.lock().map(|g| g.row(row).sum()).unwrap())
        .unwrap()
}

/// `None` if the handle's array could be used; else a description of the error
/// (`replaced:<name>` for `SegmentReplaced`).
fn handle_probe(h: ArrayHandle<f64, Ix2>) -> Option<String> {
    match h.with(|a| a.shape().to_vec()) {
        Ok(_) => None,
        Err(TaskError::SegmentReplaced { name }) => Some(format!("replaced:{name}")),
        Err(e) => Some(e.to_string()),
    }
}

/// Starts `sleep 30` (std::process::Command), writes its pid to `pid_file`, and
/// sleeps "forever".
#[allow(clippy::zombie_processes)] // never waited: it dies with the worker's group
fn starts_sleep(pid_file: String) -> u64 {
    let child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    std::fs::write(&pid_file, child.id().to_string()).unwrap();
    std::thread::sleep(Duration::from_secs(600));
    0
}

/// Forks a child that keeps the worker's socket open (fork does not close
/// close-on-exec descriptors) and leaves the worker's process group, so killing the
/// group does not reach it; writes the child's pid to `pid_file` and sleeps.
fn forks_escapes_and_keeps_socket(pid_file: String) -> u64 {
    // SAFETY: a spawned worker is single-threaded; the child only sleeps and _exits.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            let _ =
                nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0));
            std::thread::sleep(Duration::from_secs(30));
            // SAFETY: ends the forked child without running the worker's destructors.
            unsafe { libc::_exit(0) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            std::fs::write(&pid_file, child.as_raw().to_string()).unwrap();
            std::thread::sleep(Duration::from_secs(600));
            0
        }
    }
}

fn handle_type_check(h: ArrayHandle<f32, Ix2>) -> String {
    h.with(|_| ())
        .map(|()| "ok".to_string())
        .unwrap_or_else(|e| e.to_string())
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The state letter and parent pid of `pid` (`/proc/<pid>/stat`), if it exists.
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut f = stat[stat.rfind(')')? + 1..].split_ascii_whitespace();
    let state = f.next()?.chars().next()?;
    Some((state, f.next()?.parse().ok()?))
}

/// Whether `pid` has ended (gone, or a zombie nobody reaped yet).
fn has_ended(pid: u32) -> bool {
    !matches!(proc_stat(pid), Some((state, _)) if state != 'Z' && state != 'X')
}

/// Waits up to `bound` for every pid in `pids` to end.
fn all_end_within(pids: &[u32], bound: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < bound {
        if pids.iter().all(|&p| has_ended(p)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Drops `pool`, failing if that takes `bound` or longer.
fn drop_within(pool: Pool, bound: Duration) {
    let t = Instant::now();
    drop(pool);
    assert!(t.elapsed() < bound, "drop took {:?}", t.elapsed());
}

/// A file named per test that is removed on drop; `pid()` waits for a pid in it.
struct PidFile(String);

impl PidFile {
    fn new(tag: &str) -> PidFile {
        PidFile(format!("/tmp/{}.pid", unique(tag)))
    }

    fn pid(&self, within: Duration) -> u32 {
        let t = Instant::now();
        loop {
            if let Some(pid) = std::fs::read_to_string(&self.0)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                return pid;
            }
            assert!(
                t.elapsed() < within,
                "no pid in {} after {within:?}",
                self.0
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A directory named per test, removed with its contents on drop.
struct TempDir(String);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let d = TempDir(format!("/tmp/{}", unique(tag)));
        std::fs::create_dir(&d.0).unwrap();
        d
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Kills `pid` on drop if it still runs (cleanup even when an assertion fails).
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if !has_ended(self.0) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.0 as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "shmarray-test-{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

// ------------------------------------------------------------------ processes

fn process_join_pid_and_errors(method: StartMethod) {
    let p = Process::start_with(method, square, 12).unwrap();
    assert!(p.pid() != std::process::id());
    assert_eq!(p.join().unwrap(), 144);

    let p = Process::start_with(method, my_pid, ()).unwrap();
    let pid = p.pid();
    assert_eq!(p.join().unwrap(), pid);

    match Process::start_with(method, panics_on_13, 13)
        .unwrap()
        .join()
    {
        Err(TaskError::Panicked { message, .. }) => {
            assert!(message.contains("unlucky"), "{message}")
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
    match Process::start_with(method, exits_3, ()).unwrap().join() {
        Err(TaskError::WorkerDied {
            code: Some(3),
            signal: None,
            ..
        }) => {}
        other => panic!("expected exit code 3, got {other:?}"),
    }
    let mut p = Process::start_with(method, sleep_ms, 10_000).unwrap();
    assert!(p.is_alive());
    p.kill();
    let pid = p.pid();
    match p.join() {
        Err(TaskError::WorkerDied {
            signal: Some(9),
            pid: dead,
            ..
        }) => assert_eq!(dead, pid),
        other => panic!("expected SIGKILL, got {other:?}"),
    }
    let p = Process::start_with(method, sleep_ms, 10_000).unwrap();
    p.terminate();
    assert!(matches!(
        p.join(),
        Err(TaskError::WorkerDied {
            signal: Some(15),
            ..
        })
    ));
    let p = Process::start_with(method, sleep_ms, 10_000).unwrap();
    let pid = p.pid();
    assert!(matches!(
        p.join_timeout(Duration::from_millis(100)),
        Err(TaskError::Timeout(_))
    ));
    assert!(!pid_alive(pid), "a timed-out process is killed and reaped");
}

/// A process whose task ends it at once is started, and `join` says how it ended:
/// `start_with` sends the task and then `Exit`, and the worker may be gone before
/// the second send (the fork suite's flake: `start_with(Fork)` failed with
/// `WorkerDied` right after a joined task, once in a loaded run). Many rounds,
/// to give the race room (fewer for spawn, whose start is an exec).
fn process_ending_at_once_is_started_then_joined(method: StartMethod, rounds: usize) {
    for round in 0..rounds {
        let p = Process::start_with(method, exits_3, ())
            .unwrap_or_else(|e| panic!("{method:?} round {round}: start_with failed: {e}"));
        match p.join() {
            Err(TaskError::WorkerDied { code: Some(3), .. }) => {}
            other => panic!("{method:?} round {round}: expected exit code 3, got {other:?}"),
        }
    }
}

fn process_spawn() {
    process_join_pid_and_errors(StartMethod::Spawn);
    process_ending_at_once_is_started_then_joined(StartMethod::Spawn, 50);
}

// ------------------------------------------------------------------ pool

fn map_matches_serial_in_order() {
    let pool = Pool::new(2).unwrap();
    let want: Vec<u64> = (0..1000).map(square).collect();
    assert_eq!(pool.map(square, 0..1000).unwrap(), want);
    for cs in [1, 7, 1000, 5000] {
        assert_eq!(
            pool.map_chunked(square, (0..1000).collect(), cs).unwrap(),
            want
        );
    }
    assert_eq!(
        pool.map(square, Vec::<u64>::new()).unwrap(),
        Vec::<u64>::new()
    );
    assert_eq!(
        pool.starmap(add, (0..100).map(|i| (i, 2 * i))).unwrap(),
        (0..100).map(|i| 3 * i).collect::<Vec<_>>()
    );
}

fn imap_is_lazy_ordered_and_unordered_covers_all() {
    let pool = Pool::new(2).unwrap();
    // An endless input: only a bounded window is ever submitted.
    let first: Vec<u64> = pool
        .imap(square, 0u64.., 10)
        .take(100)
        .map(|(_, r)| r.unwrap())
        .collect();
    assert_eq!(first, (0..100).map(square).collect::<Vec<_>>());
    let ordered: Vec<usize> = pool
        .imap(slow_identity, 0..200u64, 3)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(ordered, (0..200).collect::<Vec<_>>());
    let mut seen: Vec<(usize, u64)> = pool
        .imap_unordered(slow_identity, 0..200u64, 3)
        .map(|(i, r)| (i, r.unwrap()))
        .collect();
    seen.sort();
    assert_eq!(seen, (0..200).map(|i| (i, i as u64)).collect::<Vec<_>>());
}

fn map_async_get_timeout_and_ready() {
    let pool = Pool::new(2).unwrap();
    let r = pool.map_async(sleep_ms, vec![300, 300], 1).unwrap();
    assert!(!r.ready());
    assert!(matches!(
        r.get_timeout(Duration::from_millis(20)),
        Err(TaskError::Timeout(_))
    ));
    assert_eq!(
        r.get_timeout(Duration::from_secs(20)).unwrap(),
        vec![300, 300]
    );
    assert!(r.ready());
}

fn submit_as_completed_timeout_cancel() {
    let pool = Pool::new(2).unwrap();
    let futs: Vec<_> = [800u64, 50, 300]
        .iter()
        .map(|&ms| pool.submit(sleep_ms, ms).unwrap())
        .collect();
    let order: Vec<(usize, u64)> = as_completed(&futs).map(|(i, r)| (i, r.unwrap())).collect();
    assert_eq!(order.len(), 3);
    assert_eq!(
        order[0],
        (1, 50),
        "the 50 ms task finishes first: {order:?}"
    );
    let set: HashSet<usize> = order.iter().map(|(i, _)| *i).collect();
    assert_eq!(set.len(), 3);

    let slow = pool.submit(sleep_ms, 5_000).unwrap();
    assert!(matches!(
        slow.result_timeout(Duration::from_millis(50)),
        Err(TaskError::Timeout(_))
    ));
    let pids_before = pool.worker_pids();
    let t = Instant::now();
    assert!(slow.cancel(), "a running task can be cancelled");
    assert!(matches!(
        slow.result_timeout(Duration::from_secs(10)),
        Err(TaskError::Cancelled { .. })
    ));
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "cancel kills the worker instead of waiting"
    );
    // Queued tasks are cancelled without running; the pool still works after.
    let blockers: Vec<_> = (0..2)
        .map(|_| pool.submit(sleep_ms, 300).unwrap())
        .collect();
    let queued = pool.submit(square, 5).unwrap();
    assert!(queued.cancel());
    assert!(matches!(queued.result(), Err(TaskError::Cancelled { .. })));
    for b in blockers {
        assert_eq!(b.result().unwrap(), 300);
    }
    assert_eq!(pool.submit(square, 9).unwrap().result().unwrap(), 81);
    let pids_after = pool.worker_pids();
    assert!(
        pids_before.iter().any(|p| !pids_after.contains(p)),
        "the cancelled task's worker was replaced"
    );
}

fn panic_and_worker_death_are_reported_per_task() {
    let pool = Pool::new(2).unwrap();
    let results: Vec<_> = pool.imap(panics_on_13, 0..20u64, 1).collect();
    for (i, r) in &results {
        match (i, r) {
            (13, Err(TaskError::Panicked { task: 13, message })) => {
                assert!(message.contains("unlucky"))
            }
            (13, other) => panic!("task 13: {other:?}"),
            (i, Ok(v)) => assert_eq!(*v, *i as u64),
            (i, Err(e)) => panic!("task {i}: {e}"),
        }
    }
    // map reports the first failure, naming the task.
    assert!(matches!(
        pool.map(panics_on_13, 0..20u64),
        Err(TaskError::Panicked { task: 13, .. })
    ));

    let results: Vec<_> = pool.imap(dies_on_7, 0..20u64, 1).collect();
    assert_eq!(results.len(), 20);
    for (i, r) in results {
        match (i, r) {
            (
                7,
                Err(TaskError::WorkerDied {
                    task: 7,
                    signal: Some(9),
                    ..
                }),
            ) => {}
            (7, other) => panic!("task 7: {other:?}"),
            (i, r) => assert_eq!(r.unwrap(), i as u64),
        }
    }
    assert_eq!(
        pool.map(square, 0..10).unwrap().len(),
        10,
        "usable after a death"
    );
}

/// Workers SIGKILLed at random moments: every input is reported exactly once,
/// and runs at most once (an input whose worker died before beginning it runs on
/// another worker; one whose worker died running it is `WorkerDied`, never rerun).
fn chaos_killing_random_workers_reports_every_task_once() {
    let runs = TempDir::new("runs");
    let pool = Pool::new(2).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killed = std::thread::scope(|s| {
        let stop2 = stop.clone();
        let pool_ref = &pool;
        let killer = s.spawn(move || {
            let mut killed = 0;
            let mut seed = 0x2545_f491_4f6c_dd1du64;
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(15));
                let pids = pool_ref.worker_pids();
                if pids.is_empty() {
                    continue;
                }
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let pid = pids[(seed as usize) % pids.len()];
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                killed += 1;
            }
            killed
        });
        let mut seen = vec![0u32; 2000];
        let (mut ok, mut died) = (0, 0);
        let inputs = (0..2000u64).map(|i| (runs.0.clone(), i));
        for (i, r) in pool.imap(runs_once, inputs, 5) {
            seen[i] += 1;
            match r {
                Ok(v) => {
                    assert_eq!(v, i as u64);
                    assert!(std::path::Path::new(&format!("{}/{i}", runs.0)).exists());
                    ok += 1
                }
                Err(TaskError::WorkerDied { task, .. }) => {
                    assert_eq!(task, i);
                    died += 1
                }
                Err(e) => panic!("task {i}: unexpected {e}"),
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let killed = killer.join().unwrap();
        // Let the last SIGKILL land: a worker that died idle is replaced before the
        // next task is handed to it.
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            seen.iter().all(|&n| n == 1),
            "every task reported exactly once"
        );
        assert_eq!(ok + died, 2000);
        eprintln!("    chaos: {killed} kills, {ok} results, {died} WorkerDied");
        killed
    });
    assert!(killed > 0, "the chaos thread killed workers");
    assert_eq!(
        pool.map(square, 0..100).unwrap().len(),
        100,
        "pool usable after chaos"
    );
}

/// Issue 18 item 7: a worker SIGKILLed while idle fails no task. `map` right after
/// the kill (no pause: the pool has not seen the death yet) runs every input, on a
/// live worker or the replacement; only a task that was running on a worker when it
/// died may be reported as `WorkerDied`. 50 rounds, 50 successes.
fn kill_idle_worker_then_map(method: StartMethod) {
    let pool = Pool::with_method(2, method).unwrap();
    let want: Vec<u64> = (0..10).map(square).collect();
    assert_eq!(pool.map(square, 0..10).unwrap(), want);
    let mut failed = Vec::new();
    let mut kills = 0;
    for round in 0..50 {
        let alive: Vec<u32> = pool
            .worker_pids()
            .into_iter()
            .filter(|&p| !has_ended(p))
            .collect();
        if let Some(&victim) = alive.get(round % alive.len().max(1)) {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(victim as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
            kills += 1;
        }
        match pool.map(square, 0..10) {
            Ok(v) => assert_eq!(v, want),
            Err(e) => failed.push(format!("round {round}: {e}")),
        }
    }
    assert!(kills >= 25, "only {kills} idle workers were killed");
    assert!(
        failed.is_empty(),
        "{method:?}: {} of 50 maps failed: {failed:?}",
        failed.len()
    );
}

fn killing_an_idle_worker_fails_no_task() {
    kill_idle_worker_then_map(StartMethod::Spawn);
}

/// The deterministic form: the only worker is stopped (SIGSTOP) before a task is
/// submitted, so the task reaches its socket but cannot begin; then it is killed.
/// The task runs on the replacement instead of failing with `WorkerDied`.
fn a_task_sent_to_a_worker_that_could_not_begin_it_runs_elsewhere() {
    let pool = Pool::new(1).unwrap();
    let w = pool.worker_pids()[0];
    let pid = nix::unistd::Pid::from_raw(w as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let f = pool.submit(my_pid, ()).unwrap();
    std::thread::sleep(Duration::from_millis(100)); // sent to the stopped worker
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    match f.result_timeout(Duration::from_secs(20)) {
        Ok(ran_on) => assert_ne!(ran_on, w, "it ran on the replacement"),
        Err(e) => panic!("the task never began on {w}, yet: {e}"),
    }
}

fn dropping_the_pool_reaps_every_worker() {
    let pids = {
        let pool = Pool::with_method(3, StartMethod::Spawn).unwrap();
        pool.map(square, 0..30).unwrap();
        pool.worker_pids()
    };
    assert_eq!(pids.len(), 3);
    for pid in pids {
        assert!(!pid_alive(pid), "worker {pid} left behind");
    }
}

fn dropping_a_pool_with_a_stuck_task_does_not_hang() {
    let pool = Pool::new(2).unwrap();
    let stuck = pool.submit(sleep_ms, 600_000).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let pids = pool.worker_pids();
    drop_within(pool, Duration::from_secs(10));
    assert!(matches!(stuck.result(), Err(TaskError::WorkerDied { .. })));
    for pid in pids {
        assert!(!pid_alive(pid), "worker {pid} left behind");
    }
}

// ------------------------------------------------------------------ several tasks per worker

/// Kills its worker for input 7; otherwise says which process ran it.
fn pid_unless_7(x: u64) -> u32 {
    dies_on_7(x);
    std::process::id()
}

/// Warms the pool up with short tasks, so that each worker's lane holds many.
fn warm_up(pool: &Pool) {
    for _ in 0..3 {
        pool.map_chunked(square, (0..2000).collect(), 1).unwrap();
    }
}

/// Several tasks wait in a worker's lane behind the one it runs. When the worker
/// dies, only the task it began fails (`WorkerDied`); the tasks behind it run on
/// the replacement, once. One worker, so every later task sat in the dead one's
/// lane or queue; for spawn and fork pools and without lanes.
fn a_worker_that_dies_fails_only_the_task_it_began(pool: Pool) {
    warm_up(&pool);
    for round in 0..5 {
        let before = pool.worker_pids()[0];
        let futs: Vec<_> = (0..40u64)
            .map(|x| pool.submit(pid_unless_7, x).unwrap())
            .collect();
        for (x, f) in futs.iter().enumerate() {
            match (x, f.result_timeout(Duration::from_secs(20))) {
                (7, Err(TaskError::WorkerDied { pid, .. })) => assert_eq!(pid, before),
                (7, other) => panic!("round {round}: task 7: {other:?}"),
                (x, Ok(pid)) if x < 7 => assert_eq!(pid, before, "round {round}: task {x}"),
                (x, Ok(pid)) => assert_ne!(
                    pid, before,
                    "round {round}: task {x} ran on the replacement"
                ),
                (x, Err(e)) => panic!("round {round}: task {x} failed: {e}"),
            }
        }
    }
}

fn a_dying_worker_fails_only_its_task() {
    a_worker_that_dies_fails_only_the_task_it_began(Pool::new(1).unwrap());
    a_worker_that_dies_fails_only_the_task_it_began(
        Pool::without_lanes(1, StartMethod::Spawn).unwrap(),
    );
}

/// Input 0 waits (up to 10 s) until every other input has left its mark, then
/// says whether they all did; the others leave their mark.
fn waits_for_the_others((dir, x, n): (String, u64, u64)) -> bool {
    if x > 0 {
        std::fs::write(format!("{dir}/{x}"), b"").unwrap();
        return true;
    }
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        if std::fs::read_dir(&dir).map_or(0, |d| d.count()) as u64 == n - 1 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

/// A task that blocks does not hold the tasks queued in its worker's lane
/// hostage: an idle worker's driver takes them back and runs them while it
/// blocks. (The first input blocks until all the others have run; half of them
/// are queued behind it in the same lane.)
fn tasks_behind_a_blocked_task_run_elsewhere() {
    let pool = Pool::new(2).unwrap();
    warm_up(&pool);
    for round in 0..3 {
        let dir = TempDir::new("hostage");
        let n = 60u64;
        let inputs: Vec<_> = (0..n).map(|x| (dir.0.clone(), x, n)).collect();
        let t = Instant::now();
        let out = pool.map_async(waits_for_the_others, inputs, 1).unwrap();
        let out = out.get_timeout(Duration::from_secs(30)).unwrap();
        assert!(
            out[0],
            "round {round}: tasks stayed stuck behind the blocked one ({:?})",
            t.elapsed()
        );
        assert!(out.iter().all(|&b| b));
    }
}

/// Writes this process's pid to `pid_file`, then sleeps until it is killed.
fn blocks_until_killed(pid_file: String) -> u64 {
    std::fs::write(&pid_file, std::process::id().to_string()).unwrap();
    std::thread::sleep(Duration::from_secs(600));
    0
}

/// Creates `dir/x` exclusively (a second run of the same input would find it and
/// panic) and says which process ran it.
fn pid_once((dir, x): (String, u64)) -> u32 {
    if let Err(e) = std::fs::File::create_new(format!("{dir}/{x}")) {
        panic!("input {x} ran twice: {e}");
    }
    std::process::id()
}

/// Issue 21.4, the lane case, killed from outside: the only worker is stopped
/// (SIGSTOP) while tasks are submitted, so the driver moves them all into its
/// lane (it refills every 50 ms at the latest); then it runs on, and is SIGKILLed
/// while it runs task k, which blocks. Only task k fails (`WorkerDied`, with that
/// pid); the tasks before it finished on that worker; the tasks that waited in
/// its lane behind k run once each, on the replacement, and succeed.
fn a_killed_worker_fails_only_its_task_and_its_lane_runs_elsewhere(method: StartMethod) {
    let pool = Pool::with_method(1, method).unwrap();
    warm_up(&pool);
    // A lane holds about 200 us of work by the recent tasks' run time; on a
    // loaded machine that may be only a few tasks: such a round still checks the
    // crash rules, but rounds are repeated until three had tasks behind k in the
    // lane (depth > 4: the three before k, k, and at least one behind).
    let mut lane_rounds = 0;
    for round in 0..12 {
        if lane_rounds == 3 {
            break;
        }
        pool.map_chunked(square, (0..2000).collect(), 1).unwrap();
        let w = pool.worker_pids()[0];
        let pid = nix::unistd::Pid::from_raw(w as i32);
        let dir = TempDir::new("lane-kill");
        let pid_file = PidFile::new("lane-kill");
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
        let _cont = ContinueOnDrop(w);
        let before: Vec<_> = (0..3u64)
            .map(|x| pool.submit(pid_once, (dir.0.clone(), x)).unwrap())
            .collect();
        let k = pool
            .submit(blocks_until_killed, pid_file.0.clone())
            .unwrap();
        let behind: Vec<_> = (3..60u64)
            .map(|x| pool.submit(pid_once, (dir.0.clone(), x)).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(300)); // the lane is filled
        if pool.lane_depths()[0] > 4 {
            lane_rounds += 1;
        }
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
        assert_eq!(pid_file.pid(Duration::from_secs(20)), w, "round {round}");
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        match k.result_timeout(Duration::from_secs(20)) {
            Err(TaskError::WorkerDied { pid, .. }) => assert_eq!(pid, w, "round {round}"),
            other => panic!("round {round}: the task it ran: {other:?}"),
        }
        for (x, f) in before.iter().enumerate() {
            match f.result_timeout(Duration::from_secs(20)) {
                Ok(ran_on) => assert_eq!(ran_on, w, "round {round}: task {x}"),
                Err(e) => panic!("round {round}: task {x} before the killed one: {e}"),
            }
        }
        for (x, f) in behind.iter().enumerate() {
            match f.result_timeout(Duration::from_secs(20)) {
                Ok(ran_on) => assert_ne!(ran_on, w, "round {round}: task {x} behind it"),
                Err(e) => panic!("round {round}: task {x} behind the killed one: {e}"),
            }
        }
        let replacement = pool.worker_pids()[0];
        assert_ne!(replacement, w, "round {round}: the worker was replaced");
    }
    assert!(
        lane_rounds > 0,
        "{method:?}: no round had tasks waiting in the lane behind the killed one"
    );
}

fn a_killed_workers_lane_runs_elsewhere() {
    a_killed_worker_fails_only_its_task_and_its_lane_runs_elsewhere(StartMethod::Spawn);
}

/// Writes `dir/x` and says which process ran it.
fn leaves_a_mark((dir, x): (String, u64)) -> u32 {
    std::fs::write(format!("{dir}/{x}"), b"").unwrap();
    std::process::id()
}

/// Cancelling a task that waits in a worker's lane (not begun) takes it back: it
/// never runs, and the worker is not killed, so the task it runs and the tasks
/// behind the cancelled one finish normally.
fn cancelling_a_task_waiting_in_a_lane_spares_its_worker() {
    let pool = Pool::new(1).unwrap();
    warm_up(&pool);
    let dir = TempDir::new("cancel-lane");
    let w = pool.worker_pids()[0];
    let pid = nix::unistd::Pid::from_raw(w as i32);
    // Stopped, the worker takes nothing: the driver moves the tasks into its lane.
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let _cont = ContinueOnDrop(w);
    let futs: Vec<_> = (0..6u64)
        .map(|x| pool.submit(leaves_a_mark, (dir.0.clone(), x)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    assert!(futs[3].cancel());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    for (x, f) in futs.iter().enumerate() {
        match (x, f.result_timeout(Duration::from_secs(20))) {
            (3, Err(TaskError::Cancelled { .. })) => {}
            (3, other) => panic!("the cancelled task: {other:?}"),
            (x, Ok(ran_on)) => assert_eq!(ran_on, w, "task {x}: the worker was not replaced"),
            (x, Err(e)) => panic!("task {x}: {e}"),
        }
    }
    assert!(
        !std::path::Path::new(&format!("{}/3", dir.0)).exists(),
        "the cancelled task ran"
    );
    assert_eq!(pool.worker_pids(), vec![w]);
}

/// Sends SIGCONT on drop (a stopped worker must not outlive a failed test).
struct ContinueOnDrop(u32);

impl Drop for ContinueOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0 as i32),
            nix::sys::signal::Signal::SIGCONT,
        );
    }
}

/// Returns `(input length, a byte string of out_len bytes of seed)`.
fn blob((input, out_len, seed): (Vec<u8>, usize, u8)) -> (usize, Vec<u8>) {
    assert!(input.iter().all(|&b| b == seed));
    (input.len(), vec![seed; out_len])
}

/// Inputs and outcomes too large for a lane's rings go over the socket, mixed
/// with small ones in the same map, in order; many outcomes just small enough
/// for the ring fill it, and the worker waits for the pool to drain it.
fn large_inputs_and_outcomes_cross_with_small_ones() {
    for pool in [
        Pool::new(2).unwrap(),
        Pool::without_lanes(2, StartMethod::Spawn).unwrap(),
    ] {
        // Around the rings' limit (32 KiB less a record head), and well over it.
        let sizes = [0usize, 10, 32_700, 32_800, 50_000];
        let inputs: Vec<(Vec<u8>, usize, u8)> = (0..25)
            .map(|i| {
                let seed = i as u8;
                let input = vec![seed; sizes[i % sizes.len()]];
                (input, sizes[(i / sizes.len()) % sizes.len()], seed)
            })
            .collect();
        let want: Vec<(usize, Vec<u8>)> = inputs
            .iter()
            .map(|(input, out, seed)| (input.len(), vec![*seed; *out]))
            .collect();
        for cs in [1, 5] {
            let got = pool.map_chunked(blob, inputs.clone(), cs).unwrap();
            assert!(got == want, "chunksize {cs}");
        }
        // Outcomes of ~30 KB: a few of them fill a 128 KiB result ring.
        let inputs: Vec<_> = (0..40).map(|i| (vec![], 30_000, i as u8)).collect();
        let got = pool.map_chunked(blob, inputs, 1).unwrap();
        assert!(got
            .iter()
            .enumerate()
            .all(|(i, (_, v))| v.len() == 30_000 && v[0] == i as u8));
    }
}

// ------------------------------------------------------------------ fork (in a single-threaded child)

fn fork_pool_works() {
    let pool = Pool::with_method(2, StartMethod::Fork).unwrap();
    assert_eq!(
        pool.map(square, 0..100).unwrap(),
        (0..100).map(square).collect::<Vec<_>>()
    );
    let results: Vec<_> = pool.imap(dies_on_7, 0..10u64, 1).collect();
    assert!(matches!(results[7].1, Err(TaskError::WorkerDied { .. })));
    assert_eq!(pool.map(square, 0..10).unwrap().len(), 10);
}

fn threads_of(pid: u32) -> Option<usize> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()
}

/// Every worker of a fork pool, first and replacement, is a child of the fork
/// server, which is our child and single-threaded; none is forked by this
/// (multithreaded, once the pool runs) process.
fn fork_workers_come_from_the_single_threaded_server() {
    let me = std::process::id();
    let pool = Pool::with_method(2, StartMethod::Fork).unwrap();
    let first = pool.worker_pids();
    assert_eq!(first.len(), 2);
    let server = proc_stat(first[0]).unwrap().1;
    assert_ne!(server, me, "workers are not forked by the pool's process");
    assert_eq!(
        proc_stat(server).unwrap().1,
        me,
        "the fork server is our child"
    );
    assert_eq!(
        threads_of(server),
        Some(1),
        "the fork server is single-threaded"
    );
    assert!(
        threads_of(me).unwrap() > 1,
        "the pool's process has threads"
    );
    for &w in &first {
        assert_eq!(proc_stat(w).unwrap().1, server);
    }
    // Replacement workers: one killed while idle, one killed mid-task.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first[0] as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(all_end_within(&[first[0]], Duration::from_secs(5)));
    assert_eq!(pool.map(square, 0..10).unwrap().len(), 10);
    let results: Vec<_> = pool.imap(dies_on_7, 0..10u64, 1).collect();
    assert!(matches!(results[7].1, Err(TaskError::WorkerDied { .. })));
    // A driver replaces its dead worker when it next takes a job, and under load
    // one driver may take every job of a map: so look at the workers that run
    // tasks (slow ones, to let both drivers take some) until a replacement shows
    // up, rather than at `worker_pids` (which lists a worker killed while idle
    // until its driver notices).
    let t = Instant::now();
    let ran = loop {
        let ran: HashSet<u32> = pool
            .map(slow_pid, [20u64; 4])
            .unwrap()
            .into_iter()
            .collect();
        if ran.iter().any(|p| !first.contains(p)) {
            break ran;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no worker was replaced"
        );
    };
    for &w in &ran {
        assert_eq!(
            proc_stat(w).unwrap().1,
            server,
            "worker {w} comes from the server"
        );
    }
    assert_eq!(threads_of(server), Some(1));
    drop(pool);
    assert!(
        all_end_within(&[server], Duration::from_secs(5)),
        "the server is reaped"
    );
}

/// The fork server reaps a dead worker at once, so its pid is free long before
/// the pool notices the death (for a worker that died idle: at the next job). The
/// pool must not signal that pid then: here an unrelated process that leads its
/// own group, as workers do, is given the pid (`ns_last_pid`, root only) before
/// the pool notices; it must survive the pool. (Setting `ns_last_pid` rewinds the
/// system's pid allocator by the few pids handed out since the worker started.)
fn a_dead_workers_reused_pid_is_not_signalled() {
    use std::os::unix::process::CommandExt;
    let pool = Pool::with_method(1, StartMethod::Fork).unwrap();
    let w = pool.worker_pids()[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(w as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let t = Instant::now();
    while proc_stat(w).is_some() {
        assert!(t.elapsed() < Duration::from_secs(5), "{w} not reaped");
        std::thread::sleep(Duration::from_millis(5));
    }
    if std::fs::write("/proc/sys/kernel/ns_last_pid", (w - 1).to_string()).is_err() {
        println!("    skipped: cannot set ns_last_pid here (needs root)");
        return;
    }
    let mut stranger = std::process::Command::new("sleep")
        .arg("30")
        .process_group(0)
        .spawn()
        .unwrap();
    let _k = KillOnDrop(stranger.id());
    let reused = stranger.id() == w;
    if reused {
        assert_eq!(pool.map(square, 0..4).unwrap(), vec![0, 1, 4, 9]);
        drop(pool);
    }
    let survived = stranger.try_wait().unwrap().is_none();
    let _ = stranger.kill();
    stranger.wait().unwrap();
    if !reused {
        println!("    skipped: pid {w} went to another process first");
        return;
    }
    assert!(
        survived,
        "the pool signalled pid {w}, which was no longer its worker"
    );
}

fn fork_is_refused_once_threads_exist() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let t = std::thread::spawn(move || {
        let _ = rx.recv();
    });
    match Process::start_with(StartMethod::Fork, square, 2) {
        Err(TaskError::NotSingleThreaded { threads: Some(n) }) if n >= 2 => {}
        other => panic!("expected NotSingleThreaded, got {other:?}"),
    }
    match Pool::with_method(1, StartMethod::Fork) {
        Err(TaskError::NotSingleThreaded { .. }) => {}
        other => panic!("expected NotSingleThreaded, got {other:?}"),
    }
    drop(tx);
    t.join().unwrap();
}

/// Runs in a child process whose main thread is its only thread (role
/// `fork-suite`).
fn role_fork_suite() {
    process_join_pid_and_errors(StartMethod::Fork);
    process_ending_at_once_is_started_then_joined(StartMethod::Fork, 200);
    fork_pool_works();
    kill_idle_worker_then_map(StartMethod::Fork);
    a_worker_that_dies_fails_only_the_task_it_began(
        Pool::with_method(1, StartMethod::Fork).unwrap(),
    );
    a_killed_worker_fails_only_its_task_and_its_lane_runs_elsewhere(StartMethod::Fork);
    fork_workers_come_from_the_single_threaded_server();
    a_dead_workers_reused_pid_is_not_signalled();
    fork_is_refused_once_threads_exist();
    println!("    fork suite: ok");
}

/// Starts this binary in `role`.
fn start_role(role: &str, stdout: std::process::Stdio) -> std::process::Child {
    std::process::Command::new("/proc/self/exe")
        .env(ROLE_ENV, role)
        .stdout(stdout)
        .spawn()
        .unwrap()
}

fn fork_method_suite() {
    let mut child = start_role("fork-suite", std::process::Stdio::inherit());
    let _kill = KillOnDrop(child.id());
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "fork suite hangs");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "fork suite failed: {status}");
}

// ------------------------------------------------------------------ children of tasks

/// A task's children never hold the pool hostage: cancel and drop finish within
/// their bounds whether the task's child stayed in the worker's process group (it is
/// killed with it) or left it while keeping the worker's socket open.
fn tasks_children_never_hold_the_pool_hostage() {
    let pool = Pool::new(2).unwrap();
    let pf = PidFile::new("sleep");
    let f = pool.submit(starts_sleep, pf.0.clone()).unwrap();
    let sleep_pid = pf.pid(Duration::from_secs(10));
    let _k1 = KillOnDrop(sleep_pid);
    let t = Instant::now();
    assert!(f.cancel());
    assert!(matches!(
        f.result_timeout(Duration::from_secs(5)),
        Err(TaskError::Cancelled { .. })
    ));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "cancel took {:?}",
        t.elapsed()
    );
    assert!(
        all_end_within(&[sleep_pid], Duration::from_secs(5)),
        "the task's `sleep` was killed with the worker's process group"
    );

    let pf = PidFile::new("fork");
    let f = pool
        .submit(forks_escapes_and_keeps_socket, pf.0.clone())
        .unwrap();
    let escaped = pf.pid(Duration::from_secs(10));
    let _k2 = KillOnDrop(escaped);
    let t = Instant::now();
    assert!(f.cancel());
    assert!(
        matches!(
            f.result_timeout(Duration::from_secs(5)),
            Err(TaskError::Cancelled { .. })
        ),
        "cancel completes although the task's child keeps the socket"
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "cancel took {:?}",
        t.elapsed()
    );
    assert_eq!(pool.submit(square, 9).unwrap().result().unwrap(), 81);

    // Drop with both kinds of stuck task running.
    let (pa, pb) = (PidFile::new("sleep"), PidFile::new("fork"));
    let fa = pool.submit(starts_sleep, pa.0.clone()).unwrap();
    let fb = pool
        .submit(forks_escapes_and_keeps_socket, pb.0.clone())
        .unwrap();
    let (sleep_pid, escaped) = (
        pa.pid(Duration::from_secs(10)),
        pb.pid(Duration::from_secs(10)),
    );
    let (_k3, _k4) = (KillOnDrop(sleep_pid), KillOnDrop(escaped));
    let workers = pool.worker_pids();
    drop_within(pool, Duration::from_secs(8));
    assert!(matches!(fa.result(), Err(TaskError::WorkerDied { .. })));
    assert!(matches!(fb.result(), Err(TaskError::WorkerDied { .. })));
    let mut gone = workers.clone();
    gone.push(sleep_pid);
    assert!(
        all_end_within(&gone, Duration::from_secs(5)),
        "no worker, and no process left in a worker's group: {gone:?}"
    );
}

/// Role `orphan-<method>`: a pool with one busy and one idle worker; prints the
/// pids that must die with this process, then waits to be killed.
fn role_orphan(method: StartMethod) {
    let pool = Pool::with_method(2, method).unwrap();
    let _busy = pool.submit(sleep_ms, 600_000).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut pids = pool.worker_pids();
    if method == StartMethod::Fork {
        pids.push(proc_stat(pids[0]).unwrap().1); // the fork server
    }
    let line: Vec<String> = pids.iter().map(u32::to_string).collect();
    println!("PIDS {}", line.join(" "));
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

/// A parent SIGKILLed while its pool's workers are busy or idle takes them along
/// (parent-death signal), for both start methods.
fn workers_die_with_a_killed_parent() {
    use std::io::BufRead;
    for (role, method) in [("orphan-spawn", "spawn"), ("orphan-fork", "fork")] {
        let mut child = start_role(role, std::process::Stdio::piped());
        let _kill = KillOnDrop(child.id());
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(out).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the child reports its workers");
        let pids: Vec<u32> = line
            .trim()
            .strip_prefix("PIDS ")
            .unwrap_or_else(|| panic!("{method}: unexpected line {line:?}"))
            .split(' ')
            .map(|p| p.parse().unwrap())
            .collect();
        let _guards: Vec<KillOnDrop> = pids.iter().map(|&p| KillOnDrop(p)).collect();
        assert!(pids.len() >= 2 && pids.iter().all(|&p| !has_ended(p)));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        child.wait().unwrap();
        assert!(
            all_end_within(&pids, Duration::from_secs(5)),
            "{method}: workers {pids:?} outlived their SIGKILLed parent"
        );
    }
}

// ------------------------------------------------------------------ attach cache

fn replaced_segments_are_reported_not_served_stale() {
    let name = unique("replace");
    let pool = Pool::new(1).unwrap();
    let a = SharedArray::<f64, Ix2>::create(&name, (4, 4)).unwrap();
    let h = ArrayHandle::of(&a).unwrap();
    let probe = |h: &ArrayHandle<f64, Ix2>| {
        pool.submit(handle_probe, h.clone())
            .unwrap()
            .result()
            .unwrap()
    };
    assert_eq!(probe(&h), None, "attached and cached in the worker");
    assert!(h.with(|_| ()).is_ok());
    drop(a);
    let b = SharedArray::<f64, Ix2>::create(&name, (4, 4)).unwrap();
    assert_eq!(
        probe(&h),
        Some(format!("replaced:{name}")),
        "the worker's cached mapping is not served"
    );
    match h.with(|_| ()) {
        Err(TaskError::SegmentReplaced { name: n }) => assert_eq!(n, name),
        other => panic!("expected SegmentReplaced, got {other:?}"),
    }
    assert_eq!(probe(&ArrayHandle::of(&b).unwrap()), None);
    drop(b);
    assert_eq!(probe(&h), Some(format!("replaced:{name}")), "removed");
}

/// Unmounts (lazily) and removes a test mount point on drop.
struct Mount(String);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// An 8 MiB tmpfs mounted for a test (root only): its namespace; unmounted on drop.
fn small_tmpfs() -> Option<(Mount, shmarray::Namespace)> {
    let dir = format!("/tmp/{}", unique("tmpfs"));
    std::fs::create_dir(&dir).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs", &dir])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        let _ = std::fs::remove_dir(&dir);
        println!("    skipped: cannot mount a tmpfs here (needs root)");
        return None;
    }
    let ns = shmarray::Namespace::at(&dir).unwrap();
    Some((Mount(dir), ns))
}

/// Workers release mappings of removed segments: kernels over a fresh 2 MiB array
/// per round on an 8 MiB tmpfs. Keeping every array mapped until the pool ends
/// fails with NoSpace at the fourth round.
fn kernels_over_fresh_arrays_fit_a_small_tmpfs() {
    let Some((_mount, ns)) = small_tmpfs() else {
        return;
    };
    let pool = Pool::new(2).unwrap();
    for round in 0..10 {
        let mut a = (shmarray::Options::new().namespace(ns.clone()))
            .create::<SharedArray<f64, Ix2>, _>(&format!("fresh-{round}"), (256, 1024))
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        pool.for_each_chunk(&a, Axis(0), add_one).unwrap();
        assert!(a.view().unwrap().iter().all(|&x| x == 1.0));
    }
}

/// Issue 18 item 7: *idle* workers let go of a removed segment at once, without
/// another task. The case: a 3 MiB array used by one part and dropped each
/// round on an 8 MiB tmpfs (two idle workers each keeping an old one was NoSpace
/// from round 2 on, whenever the part went to the other worker); and the case that
/// fails at round 1 without it: a 5 MiB array that both workers map, dropped, and
/// created again at once.
fn idle_workers_let_go_of_removed_segments() {
    let Some((_mount, ns)) = small_tmpfs() else {
        return;
    };
    let opts = shmarray::Options::new().namespace(ns);
    let pool = Pool::new(2).unwrap();
    for round in 0..10 {
        let mut a = opts
            .create::<SharedArray<f64, Ix2>, _>(&format!("one-{round}"), (384, 1024))
            .unwrap_or_else(|e| panic!("3 MiB, round {round}: {e}"));
        pool.for_each_chunk_with(&a, Axis(0), Partition::Parts(1), add_one)
            .unwrap();
        assert!(a.view().unwrap().iter().all(|&x| x == 1.0));
    }
    for round in 0..10 {
        let mut a = opts
            .create::<SharedArray<f64, Ix2>, _>(&format!("both-{round}"), (640, 1024))
            .unwrap_or_else(|e| panic!("5 MiB, round {round}: {e}"));
        pool.for_each_chunk(&a, Axis(0), add_one).unwrap();
        assert!(a.view().unwrap().iter().all(|&x| x == 1.0));
    }
}

fn kernels_run_in_place_on_disjoint_parts() {
    let name = unique("kernel");
    let mut a = SharedArray::<f64, Ix2>::create(&name, (1000, 37)).unwrap();
    let pool = Pool::new(2).unwrap();
    for partition in [
        Partition::PerWorker,
        Partition::Parts(7),
        Partition::Parts(5000),
    ] {
        a.lock().unwrap().fill(0.0);
        pool.for_each_chunk_with(&a, Axis(0), partition, add_one)
            .unwrap();
        assert!(
            a.view().unwrap().iter().all(|&x| x == 1.0),
            "every row exactly once ({partition:?})"
        );
        pool.for_each_chunk_with(&a, Axis(1), partition, add_one)
            .unwrap();
        assert!(
            a.view().unwrap().iter().all(|&x| x == 2.0),
            "axis 1 too ({partition:?})"
        );
    }
    {
        let mut g = a.lock().unwrap();
        for (i, x) in g.iter_mut().enumerate() {
            *x = i as f64;
        }
    }
    pool.for_each_chunk(&a, Axis(0), double_rows).unwrap();
    assert!(a
        .view()
        .unwrap()
        .iter()
        .enumerate()
        .all(|(i, &x)| x == 2.0 * i as f64));
    let sums = pool
        .map_chunks(&a, Axis(0), Partition::Parts(4), part_sum)
        .unwrap();
    assert_eq!(sums.len(), 4);
    assert_eq!(sums.iter().sum::<f64>(), a.view().unwrap().sum());
    // A second kernel reuses the workers' cached mapping; a re-created name is not.
    drop(a);
    let mut a2 = SharedArray::<f64, Ix2>::create(&name, (10, 3)).unwrap();
    pool.for_each_chunk(&a2, Axis(0), add_one).unwrap();
    assert!(a2.view().unwrap().iter().all(|&x| x == 1.0));
    let anon = SharedArray::<f64, Ix2>::create_anonymous((4, 4)).unwrap();
    assert!(matches!(
        pool.for_each_chunk(&anon, Axis(0), add_one),
        Err(TaskError::AnonymousArray)
    ));
    assert!(matches!(
        pool.for_each_chunk(&a2, Axis(2), add_one),
        Err(TaskError::AxisOutOfRange { axis: 2, ndim: 2 })
    ));
}

fn array_handles_travel_as_task_arguments() {
    let name = unique("handle");
    let a = SharedArray::<f64, Ix2>::create(&name, (64, 8)).unwrap();
    a.lock()
        .unwrap()
        .rows_mut()
        .into_iter()
        .enumerate()
        .for_each(|(i, mut r)| r.fill(i as f64));
    let h = ArrayHandle::of(&a).unwrap();
    let pool = Pool::new(2).unwrap();
    let sums = pool
        .map_chunked(handle_row_sum, (0..64).map(|r| (h.clone(), r)).collect(), 4)
        .unwrap();
    assert_eq!(sums, (0..64).map(|r| 8.0 * r as f64).collect::<Vec<_>>());
    // The worker checks the type against the segment header.
    let wrong: ArrayHandle<f32, Ix2> = serde_roundtrip(&h);
    let msg = pool
        .submit(handle_type_check, wrong)
        .unwrap()
        .result()
        .unwrap();
    assert!(msg.contains("holds"), "{msg}");
    let anon = SharedArray::<f64, Ix2>::create_anonymous((2, 2)).unwrap();
    assert!(matches!(
        ArrayHandle::of(&anon),
        Err(TaskError::AnonymousArray)
    ));
}

/// Re-types a handle through its wire form (what a confused caller could send).
fn serde_roundtrip<A: serde::Serialize, B: serde::de::DeserializeOwned>(a: &A) -> B {
    postcard::from_bytes(&postcard::to_stdvec(a).unwrap()).unwrap()
}

/// Environment variable that makes this binary play a child role instead of
/// running the tests.
const ROLE_ENV: &str = "SHMARRAY_POOL_TEST_ROLE";

fn main() {
    shmarray::init();
    if let Ok(role) = std::env::var(ROLE_ENV) {
        match role.as_str() {
            "fork-suite" => role_fork_suite(),
            "orphan-spawn" => role_orphan(StartMethod::Spawn),
            "orphan-fork" => role_orphan(StartMethod::Fork),
            other => {
                eprintln!("unknown role {other:?}");
                std::process::exit(2);
            }
        }
        std::process::exit(0);
    }

    let tests: &[(&str, fn())] = &[
        ("process_spawn", process_spawn),
        ("fork_method_suite", fork_method_suite),
        ("map_matches_serial_in_order", map_matches_serial_in_order),
        (
            "imap_is_lazy_ordered_and_unordered_covers_all",
            imap_is_lazy_ordered_and_unordered_covers_all,
        ),
        (
            "map_async_get_timeout_and_ready",
            map_async_get_timeout_and_ready,
        ),
        (
            "submit_as_completed_timeout_cancel",
            submit_as_completed_timeout_cancel,
        ),
        (
            "panic_and_worker_death_are_reported_per_task",
            panic_and_worker_death_are_reported_per_task,
        ),
        (
            "chaos_killing_random_workers_reports_every_task_once",
            chaos_killing_random_workers_reports_every_task_once,
        ),
        (
            "killing_an_idle_worker_fails_no_task",
            killing_an_idle_worker_fails_no_task,
        ),
        (
            "a_task_sent_to_a_worker_that_could_not_begin_it_runs_elsewhere",
            a_task_sent_to_a_worker_that_could_not_begin_it_runs_elsewhere,
        ),
        (
            "a_dying_worker_fails_only_its_task",
            a_dying_worker_fails_only_its_task,
        ),
        (
            "a_killed_workers_lane_runs_elsewhere",
            a_killed_workers_lane_runs_elsewhere,
        ),
        (
            "tasks_behind_a_blocked_task_run_elsewhere",
            tasks_behind_a_blocked_task_run_elsewhere,
        ),
        (
            "cancelling_a_task_waiting_in_a_lane_spares_its_worker",
            cancelling_a_task_waiting_in_a_lane_spares_its_worker,
        ),
        (
            "large_inputs_and_outcomes_cross_with_small_ones",
            large_inputs_and_outcomes_cross_with_small_ones,
        ),
        (
            "dropping_the_pool_reaps_every_worker",
            dropping_the_pool_reaps_every_worker,
        ),
        (
            "tasks_children_never_hold_the_pool_hostage",
            tasks_children_never_hold_the_pool_hostage,
        ),
        (
            "workers_die_with_a_killed_parent",
            workers_die_with_a_killed_parent,
        ),
        (
            "replaced_segments_are_reported_not_served_stale",
            replaced_segments_are_reported_not_served_stale,
        ),
        (
            "kernels_over_fresh_arrays_fit_a_small_tmpfs",
            kernels_over_fresh_arrays_fit_a_small_tmpfs,
        ),
        (
            "idle_workers_let_go_of_removed_segments",
            idle_workers_let_go_of_removed_segments,
        ),
        (
            "kernels_run_in_place_on_disjoint_parts",
            kernels_run_in_place_on_disjoint_parts,
        ),
        (
            "array_handles_travel_as_task_arguments",
            array_handles_travel_as_task_arguments,
        ),
        (
            "dropping_a_pool_with_a_stuck_task_does_not_hang",
            dropping_a_pool_with_a_stuck_task_does_not_hang,
        ),
        (
            "a_kernel_cannot_reach_its_own_array_again",
            a_kernel_cannot_reach_its_own_array_again,
        ),
    ];
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    // Watchdog: a hang fails the run instead of stalling CI.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(180));
        eprintln!("pool tests: watchdog fired after 180 s");
        std::process::exit(101);
    });
    println!("\nrunning {} tests", tests.len());
    let (mut passed, mut failed) = (0, 0);
    for (name, f) in tests {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let t = Instant::now();
        let f = *f;
        let ok = std::thread::spawn(f).join().is_ok();
        println!(
            "test {name} ... {} ({:.2?})",
            if ok { "ok" } else { "FAILED" },
            t.elapsed()
        );
        if ok {
            passed += 1
        } else {
            failed += 1
        }
    }
    let left: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(&format!("shmarray-test-{}-", std::process::id())))
                .collect()
        })
        .unwrap_or_default();
    if !left.is_empty() {
        println!("segments left behind: {left:?}");
        failed += 1;
    }
    println!("\n{passed} passed, {failed} failed");
    std::process::exit(if failed == 0 { 0 } else { 101 });
}
