//! The pool's driver threads: one per worker process. A driver starts its own
//! worker (so the worker's parent-death signal is tied to a thread that lives as
//! long as the pool), takes jobs from the shared queue, sends them, waits for the
//! result, and replaces its worker when it dies.

use std::collections::VecDeque;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::job::{lock, Job};
use crate::process::wait_until;
use crate::process::{ForkServer, Lost, TaskError, Worker};
use crate::sync::Wait;
use crate::sys::process as sys;

/// How a pool gets its workers.
#[derive(Debug)]
pub(crate) enum Launch {
    /// Each driver spawns its worker itself.
    Spawn,
    /// The fork server forks them.
    Server(Arc<ForkServer>),
}

/// How many workers may die holding a job before beginning it before the job fails
/// with [`TaskError::NotStarted`] (each is replaced; this only bounds a loop where
/// something kills every new worker at once).
const MAX_LOST_DELIVERIES: u32 = 5;

/// What one driver is doing, as far as a sweep needs to know.
#[derive(Debug, Clone, Copy)]
struct DriverState {
    /// Between taking a job and asking for the next one (a worker that is starting
    /// has nothing cached; a busy one sweeps when its job is done).
    busy: bool,
    /// The last sweep epoch this driver's worker answered.
    swept: u64,
    /// The driver has ended.
    gone: bool,
}

#[derive(Debug)]
pub(crate) struct Queue {
    pub(crate) jobs: VecDeque<Arc<Job>>,
    pub(crate) closed: bool,
    /// Sweeps asked for so far (see [`Shared::sweep`]).
    sweep_epoch: u64,
    drivers: Vec<DriverState>,
}

/// What a driver does next.
pub(crate) enum Work {
    Job(Arc<Job>),
    /// Have the worker drop cached mappings of removed segments, then report
    /// this epoch done.
    Sweep(u64),
    Stop,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) queue: Mutex<Queue>,
    /// Wakes drivers: a job, a sweep, or the end.
    pub(crate) ready: Condvar,
    /// Wakes a sweeper: a driver finished a sweep, took a job, or ended.
    swept: Condvar,
    pub(crate) launch: Launch,
    /// Current worker pid of each driver (0 while it has none).
    pub(crate) pids: Mutex<Vec<u32>>,
}

impl Shared {
    pub(crate) fn new(n: usize, launch: Launch) -> Shared {
        let starting = DriverState {
            busy: true,
            swept: 0,
            gone: false,
        };
        Shared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                closed: false,
                sweep_epoch: 0,
                drivers: vec![starting; n],
            }),
            ready: Condvar::new(),
            swept: Condvar::new(),
            launch,
            pids: Mutex::new(vec![0; n]),
        }
    }

    /// Driver `slot`'s next work: a sweep it owes first, then a job, then `Stop`
    /// once the queue is closed and empty.
    fn next_work(&self, slot: usize) -> Work {
        let mut q = lock(&self.queue);
        q.drivers[slot].busy = false;
        self.swept.notify_all();
        loop {
            if q.drivers[slot].swept < q.sweep_epoch {
                return Work::Sweep(q.sweep_epoch);
            }
            if let Some(j) = q.jobs.pop_front() {
                q.drivers[slot].busy = true;
                return Work::Job(j);
            }
            if q.closed {
                // Its worker is shutting down, which lets go of everything.
                q.drivers[slot].gone = true;
                return Work::Stop;
            }
            q = self
                .ready
                .wait(q)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    fn sweep_done(&self, slot: usize, epoch: u64) {
        let mut q = lock(&self.queue);
        q.drivers[slot].swept = q.drivers[slot].swept.max(epoch);
        drop(q);
        self.swept.notify_all();
    }

    fn driver_gone(&self, slot: usize) {
        lock(&self.queue).drivers[slot].gone = true;
        self.swept.notify_all();
    }

    /// Has every *idle* worker drop its cached mappings of segments that were
    /// removed or replaced, and waits (at most `bound`) until they have; a busy
    /// worker does so as soon as its current job is done (not waited for).
    pub(crate) fn sweep(&self, bound: Duration) {
        let deadline = Wait::timeout(bound);
        let mut q = lock(&self.queue);
        q.sweep_epoch += 1;
        let epoch = q.sweep_epoch;
        self.ready.notify_all();
        let settled = |q: &Queue| {
            q.drivers
                .iter()
                .all(|d| d.swept >= epoch || d.busy || d.gone)
        };
        let _ = wait_until(&self.swept, q, deadline, settled);
    }

    /// Puts a job whose worker died before beginning it back at the head of the
    /// queue, or fails it: `PoolClosed` if the pool is closing, `NotStarted` after
    /// too many such deaths.
    fn requeue(&self, job: Arc<Job>, payload: Vec<u8>) {
        let Some(lost) = job.requeue(payload) else {
            return; // cancelled: completed
        };
        if lost > MAX_LOST_DELIVERIES {
            job.complete(Err(TaskError::NotStarted {
                task: job.base,
                workers: lost,
            }));
            return;
        }
        let mut q = lock(&self.queue);
        if q.closed {
            drop(q);
            job.complete(Err(TaskError::PoolClosed));
            return;
        }
        q.jobs.push_front(job);
        drop(q);
        self.ready.notify_one();
    }

    /// Closes the queue and fails every queued job with `PoolClosed`.
    pub(crate) fn close(&self) {
        let jobs: Vec<_> = {
            let mut q = lock(&self.queue);
            q.closed = true;
            q.jobs.drain(..).collect()
        };
        for j in jobs {
            j.complete(Err(TaskError::PoolClosed));
        }
        self.ready.notify_all();
    }

    /// SIGKILLs every current worker's process group.
    pub(crate) fn kill_workers(&self) {
        for &pid in lock(&self.pids).iter().filter(|&&p| p != 0) {
            sys::kill_group(pid);
        }
    }

    fn start_worker(&self) -> Result<Worker, TaskError> {
        match &self.launch {
            Launch::Spawn => Worker::spawn(),
            Launch::Server(s) => Worker::from_server(s),
        }
    }

    /// Starts a worker, retrying a few times (a fork/exec can fail transiently;
    /// refusals that will not change are not retried).
    fn start_worker_retrying(&self) -> Result<Worker, TaskError> {
        let mut attempt = 0;
        loop {
            match self.start_worker() {
                Ok(w) => return Ok(w),
                Err(e @ (TaskError::Io(_) | TaskError::StartFailed { .. })) if attempt < 2 => {
                    drop(e);
                    std::thread::sleep(Duration::from_millis(10 << attempt));
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The thread that drives one worker process. Reports whether its first worker
/// started on `started`.
pub(crate) fn drive(shared: Arc<Shared>, slot: usize, started: Sender<Result<(), TaskError>>) {
    let set_pid = |pid: u32| lock(&shared.pids)[slot] = pid;
    let mut worker = match shared.start_worker_retrying() {
        Ok(w) => {
            set_pid(w.pid);
            let _ = started.send(Ok(()));
            Some(w)
        }
        Err(e) => {
            let _ = started.send(Err(e));
            shared.driver_gone(slot);
            return;
        }
    };
    drop(started);
    let mut next_id = 0u64;
    loop {
        let job = match shared.next_work(slot) {
            Work::Job(job) => job,
            Work::Sweep(epoch) => {
                if let Some(mut w) = worker.take() {
                    if w.sweep().is_ok() {
                        worker = Some(w);
                    } else {
                        set_pid(0); // dead: reaped now, replaced before the next job
                    }
                }
                shared.sweep_done(slot, epoch);
                continue;
            }
            Work::Stop => break,
        };
        if !job.is_pending() {
            continue; // cancelled while queued
        }
        // A worker seen dead while idle is replaced before it is handed a job (one
        // that dies after this check is caught by its started page, below).
        if let Some(w) = worker.take() {
            if w.is_running() {
                worker = Some(w);
            } else {
                set_pid(0); // before reaping: `Pool::drop` may signal listed pids
                drop(w); // reaps it and kills what is left of its group
            }
        }
        let w = match worker {
            Some(ref mut w) => w,
            None => match shared.start_worker_retrying() {
                Ok(w) => {
                    set_pid(w.pid);
                    worker.insert(w)
                }
                Err(e) => {
                    job.complete(Err(e));
                    continue;
                }
            },
        };
        if !job.start(w.pid) {
            continue; // cancelled meanwhile
        }
        next_id += 1;
        let payload = job.take_payload();
        let sent = w.send_task(next_id, job.task, &payload);
        let outcome = match sent.and_then(|()| w.recv(Wait::Forever)) {
            Ok((_, Ok(bytes))) => Ok(bytes),
            Ok((_, Err(failure))) => Err(failure.into_error(job.base)),
            Err(Lost::Garbled(m)) => {
                job.ending();
                set_pid(0);
                w.kill();
                w.death(job.base);
                worker = None;
                Err(TaskError::Protocol(m))
            }
            Err(Lost::Closed | Lost::Timeout) => {
                job.ending();
                set_pid(0);
                let died = w.death(job.base); // reaped: it stores nothing more
                let began = w.began(next_id);
                worker = None; // replaced before the next job
                if !began {
                    // It died before it called anything: the task runs elsewhere.
                    shared.requeue(job, payload);
                    continue;
                }
                Err(died)
            }
        };
        job.complete(outcome);
    }
    if let Some(mut w) = worker {
        set_pid(0);
        w.shutdown(Duration::from_secs(2));
    }
    shared.driver_gone(slot);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::TaskFn;

    fn ident(x: u64) -> u64 {
        x
    }

    fn job() -> Arc<Job> {
        let task = TaskFn::unary(ident).offsets().unwrap();
        Job::new(3, task, vec![1, 2, 3], None)
    }

    /// A job whose worker died before beginning it goes back to the head of the
    /// queue with its payload, until too many workers died so; a closed pool fails
    /// it instead, and a cancelled one is reported cancelled.
    #[test]
    fn requeue_until_too_many_workers_died() {
        let shared = Shared::new(1, Launch::Spawn);
        let j = job();
        for lost in 1..=MAX_LOST_DELIVERIES {
            assert!(j.start(42));
            let payload = j.take_payload();
            j.ending();
            shared.requeue(j.clone(), payload);
            let mut q = lock(&shared.queue);
            let back = q.jobs.pop_front().expect("requeued");
            assert!(Arc::ptr_eq(&back, &j), "after {lost} lost deliveries");
            drop(q);
            assert!(j.is_pending() && !j.is_done());
        }
        assert!(j.start(42));
        let payload = j.take_payload();
        assert_eq!(payload, vec![1, 2, 3], "the payload came back every time");
        shared.requeue(j.clone(), payload);
        assert!(lock(&shared.queue).jobs.is_empty());
        match j.wait(None) {
            Err(TaskError::NotStarted { task: 3, workers }) => {
                assert_eq!(workers, MAX_LOST_DELIVERIES + 1)
            }
            other => panic!("expected NotStarted, got {other:?}"),
        }

        let j = job();
        assert!(j.start(42));
        let payload = j.take_payload();
        shared.close();
        shared.requeue(j.clone(), payload);
        assert!(matches!(j.wait(None), Err(TaskError::PoolClosed)));

        let j = job();
        assert!(j.start(42));
        let payload = j.take_payload();
        j.ending();
        assert!(j.cancel());
        shared.requeue(j.clone(), payload);
        assert!(matches!(
            j.wait(None),
            Err(TaskError::Cancelled { task: 3 })
        ));
    }
}
