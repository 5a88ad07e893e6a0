//! The pool's driver threads: one per worker process. A driver starts its own
//! worker (so the worker's parent-death signal is tied to a thread that lives as
//! long as the pool), takes jobs from the shared queue, sends them, waits for the
//! result, and replaces its worker when it dies.

use std::collections::VecDeque;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::job::{lock, Job};
use crate::process::{ForkServer, Lost, TaskError, Worker};
use crate::sys::process as sys;

/// How a pool gets its workers.
#[derive(Debug)]
pub(crate) enum Launch {
    /// Each driver spawns its worker itself.
    Spawn,
    /// The fork server forks them.
    Server(Arc<ForkServer>),
}

#[derive(Debug)]
pub(crate) struct Queue {
    pub(crate) jobs: VecDeque<Arc<Job>>,
    pub(crate) closed: bool,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) queue: Mutex<Queue>,
    pub(crate) ready: Condvar,
    pub(crate) launch: Launch,
    /// Current worker pid of each driver (0 while it has none).
    pub(crate) pids: Mutex<Vec<u32>>,
}

impl Shared {
    pub(crate) fn new(n: usize, launch: Launch) -> Shared {
        Shared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
            launch,
            pids: Mutex::new(vec![0; n]),
        }
    }

    fn next_job(&self) -> Option<Arc<Job>> {
        let mut q = lock(&self.queue);
        loop {
            if let Some(j) = q.jobs.pop_front() {
                return Some(j);
            }
            if q.closed {
                return None;
            }
            q = self
                .ready
                .wait(q)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
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
            return;
        }
    };
    drop(started);
    let mut next_id = 0u64;
    while let Some(job) = shared.next_job() {
        if !job.is_pending() {
            continue; // cancelled while queued
        }
        // A worker that died while idle is replaced before it is handed a job.
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
        let sent = w.send_task(next_id, job.task, job.take_payload());
        let outcome = match sent.and_then(|()| w.recv(None)) {
            Ok((_, Ok(bytes))) => Ok(bytes),
            Ok((_, Err(failure))) => Err(failure.into_error(job.base)),
            Err(lost) => {
                job.ending();
                set_pid(0);
                let err = match lost {
                    Lost::Garbled(m) => {
                        w.kill();
                        w.death(job.base);
                        TaskError::Protocol(m)
                    }
                    Lost::Closed | Lost::Timeout => w.death(job.base),
                };
                worker = None; // replaced before the next job
                Err(err)
            }
        };
        job.complete(outcome);
    }
    if let Some(mut w) = worker {
        set_pid(0);
        w.shutdown(Duration::from_secs(2));
    }
}
