//! The pool's driver threads: one per worker process. A driver starts its own
//! worker (so the worker's parent-death signal is tied to a thread that lives as
//! long as the pool), keeps the worker's lane filled with jobs from the shared
//! queue, completes jobs from the results it reads back, and replaces its worker
//! when it dies.
//!
//! Several jobs wait in a worker's lane at once (a shared-memory ring, see
//! `process::lane`), so a worker goes from one short task to the next without a
//! round trip, and driver and worker wake each other (one message on the socket)
//! only when the other sleeps: a driver asks to be woken once half of what it
//! sent is done, or at once after a long task, or when the lane ran dry. How many
//! jobs a lane holds follows how long tasks take (about [`LANE_TIME`] of work,
//! at most [`MAX_WINDOW`] jobs, one while tasks are long), and a driver takes at
//! most its share of the queue, so work spreads over the workers; jobs stuck
//! behind a long task are taken back by an idle driver (`lanes`).

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::job::{lock, Job, Latch, Start};
use super::lanes::{Lane, Sent, STEAL_AFTER};
use crate::process::lane::{self, Bytes, Outcome, RESULT_FAILED, TASK_MAX};
use crate::process::wait_until;
use crate::process::{decode, ForkServer, FromWorker, Lost, MessageFailure, TaskError, Worker};
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

/// Most jobs in one worker's lane.
pub(crate) const MAX_WINDOW: usize = 1024;

/// About how much work (by the tasks' average run time) a lane holds: short
/// enough that jobs behind a task wait little, long enough that a driver wakes
/// rarely while tasks are short.
pub(crate) const LANE_TIME: Duration = Duration::from_micros(200);

/// How long a busy driver blocks on its worker's socket before it looks at its
/// lane again (jobs taken back from it, the pool closing).
const WAKE: Duration = Duration::from_millis(50);

/// What one driver is doing, as far as a sweep needs to know.
#[derive(Debug, Clone, Copy)]
struct DriverState {
    /// Between taking a job and asking for the next one (a worker that is starting
    /// has nothing cached; a busy one sweeps when its lane is empty).
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
    /// Drivers blocked on `ready` (waking nobody costs a system call).
    idle: usize,
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
    /// Each driver's lane.
    pub(crate) lanes: Vec<Arc<Lane>>,
    /// Workers get a shared-memory lane (else: one job at a time over the
    /// socket, the path taken when a lane cannot be made).
    with_lanes: bool,
}

impl Shared {
    pub(crate) fn new(n: usize, launch: Launch, with_lanes: bool) -> Arc<Shared> {
        let starting = DriverState {
            busy: true,
            swept: 0,
            gone: false,
        };
        Arc::new_cyclic(|me| Shared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                closed: false,
                sweep_epoch: 0,
                drivers: vec![starting; n],
                idle: 0,
            }),
            ready: Condvar::new(),
            swept: Condvar::new(),
            launch,
            pids: Mutex::new(vec![0; n]),
            lanes: (0..n).map(|_| Arc::new(Lane::new(me.clone()))).collect(),
            with_lanes,
        })
    }

    /// Queues jobs at the tail; `Err` (nothing queued) if the pool is closed.
    pub(crate) fn enqueue(&self, jobs: &[Arc<Job>]) -> Result<(), TaskError> {
        let mut q = lock(&self.queue);
        if q.closed {
            return Err(TaskError::PoolClosed);
        }
        q.jobs.extend(jobs.iter().cloned());
        let wake = q.idle > 0;
        drop(q);
        if wake {
            if jobs.len() == 1 {
                self.ready.notify_one();
            } else {
                self.ready.notify_all();
            }
        }
        Ok(())
    }

    /// Driver `slot`'s next work: a sweep it owes first, then a job, then `Stop`
    /// once the queue is closed and empty. While it waits and another lane holds
    /// jobs behind a task, it looks every [`STEAL_AFTER`] for jobs to take back.
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
            let others_busy = self
                .lanes
                .iter()
                .enumerate()
                .any(|(i, l)| i != slot && l.depth() >= 2);
            q.idle += 1;
            q = if others_busy {
                self.ready
                    .wait_timeout(q, STEAL_AFTER)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0
            } else {
                self.ready
                    .wait(q)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
            };
            q.idle -= 1;
            if others_busy && q.jobs.is_empty() && !q.closed {
                drop(q);
                for (i, l) in self.lanes.iter().enumerate() {
                    if i != slot {
                        l.steal();
                    }
                }
                q = lock(&self.queue);
            }
        }
    }

    /// Wakes the drivers waiting in [`next_work`](Self::next_work), so that
    /// they look at the lanes again (jobs now wait behind a task in one).
    pub(crate) fn wake_idle(&self) {
        let wake = lock(&self.queue).idle > 0;
        if wake {
            self.ready.notify_all();
        }
    }

    /// Up to `room` more jobs for driver `slot`, but no more than its share of
    /// the queue (so that the other workers get theirs).
    fn take_jobs(&self, room: usize) -> Vec<Arc<Job>> {
        if room == 0 {
            return Vec::new();
        }
        let mut q = lock(&self.queue);
        let share = q.jobs.len().div_ceil(self.lanes.len().max(1));
        let n = room.min(share);
        q.jobs.drain(..n).collect()
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
    /// worker does so as soon as its lane is empty (not waited for).
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

    /// Puts jobs that did not begin back at the head of the queue, in their
    /// order, or fails them: `PoolClosed` if the pool is closing, `NotStarted`
    /// after too many workers died holding one (`lost`: their worker died, as
    /// opposed to being taken back from a live worker's lane).
    pub(crate) fn put_back(&self, jobs: impl Iterator<Item = Arc<Job>>, lost: bool) {
        let mut back = Vec::new();
        for job in jobs {
            let Some(n) = job.requeue(lost) else {
                continue; // cancelled: completed
            };
            if lost && n > MAX_LOST_DELIVERIES {
                job.complete(Err(TaskError::NotStarted {
                    task: job.base,
                    workers: n,
                }));
                continue;
            }
            back.push(job);
        }
        if back.is_empty() {
            return;
        }
        let mut q = lock(&self.queue);
        if q.closed {
            drop(q);
            for job in back {
                job.complete(Err(TaskError::PoolClosed));
            }
            return;
        }
        for job in back.into_iter().rev() {
            q.jobs.push_front(job);
        }
        let wake = q.idle > 0;
        drop(q);
        if wake {
            self.ready.notify_all();
        }
    }

    /// Puts jobs a driver took but did not send back at the head of the queue.
    fn unpop(&self, jobs: Vec<Arc<Job>>) {
        if jobs.is_empty() {
            return;
        }
        let mut q = lock(&self.queue);
        for job in jobs.into_iter().rev() {
            q.jobs.push_front(job);
        }
        let wake = q.idle > 0;
        drop(q);
        if wake {
            self.ready.notify_all();
        }
    }

    /// Closes the queue and fails every queued job with `PoolClosed`, and the
    /// jobs waiting in lanes that no worker took yet.
    pub(crate) fn close(&self) {
        let jobs: Vec<_> = {
            let mut q = lock(&self.queue);
            q.closed = true;
            q.jobs.drain(..).collect()
        };
        for j in jobs {
            j.complete(Err(TaskError::PoolClosed));
        }
        for l in &self.lanes {
            l.close();
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
            Launch::Spawn => Worker::spawn(self.with_lanes),
            Launch::Server(s) => Worker::from_server(s, self.with_lanes),
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

/// One driver thread's state.
struct Driver {
    shared: Arc<Shared>,
    slot: usize,
    lane: Arc<Lane>,
    worker: Option<Worker>,
    /// Most jobs to keep in the lane now.
    window: usize,
    /// Average run time of recent tasks (ns), once one finished.
    average: Option<f64>,
    outcomes: Vec<Outcome>,
}

/// The outcome of a finished task as its job records it.
fn outcome_of(o: Outcome, base: usize) -> Result<Bytes, TaskError> {
    if o.flags & RESULT_FAILED == 0 {
        return Ok(o.bytes);
    }
    match decode::<MessageFailure>(&o.bytes) {
        Ok(f) => Err(f.into_error(base)),
        Err(m) => Err(TaskError::Protocol(m)),
    }
}

impl Driver {
    fn set_pid(&self, pid: u32) {
        lock(&self.shared.pids)[self.slot] = pid;
    }

    /// Starts a worker and opens its lane.
    fn start_worker(&mut self) -> Result<(), TaskError> {
        let w = self.shared.start_worker_retrying()?;
        self.set_pid(w.pid);
        let mut st = lock(&self.lane.state);
        st.sender = w.lane().map(|m| lane::Sender::new(m.clone()));
        st.pid = w.pid;
        st.live = true;
        drop(st);
        self.worker = Some(w);
        Ok(())
    }

    /// Learns from a finished task how long tasks take, and sizes the lane.
    fn learn(&mut self, nanos: u64) {
        let avg = match self.average {
            None => nanos as f64,
            Some(a) => a + (nanos as f64 - a) / 8.0,
        };
        self.average = Some(avg);
        let fit = LANE_TIME.as_nanos() as f64 / avg.max(1.0);
        self.window = (fit as usize).clamp(1, MAX_WINDOW);
    }

    /// Puts jobs in the lane up to the window: `first` (just taken from the
    /// queue), then more from the queue. A job too large for the ring goes over
    /// the socket, alone.
    fn fill(&mut self, first: Option<Arc<Job>>) {
        let Some(w) = self.worker.as_mut() else {
            self.shared.unpop(first.into_iter().collect());
            return;
        };
        let mut st = lock(&self.lane.state);
        let mut jobs: VecDeque<Arc<Job>> = first.into_iter().collect();
        if st.sent.front().is_some_and(|s| s.socket) {
            drop(st);
            self.shared.unpop(jobs.into());
            return;
        }
        let room = self.window.saturating_sub(st.sent.len() + jobs.len());
        jobs.extend(self.shared.take_jobs(room));
        let mut pushed = false;
        let mut unsent = Vec::new();
        while let Some(job) = jobs.pop_front() {
            let (tramp, func) = job.task.get();
            let lane_state = &mut *st;
            // The ring if it fits; else the socket, alone in the lane.
            let started = job.start_with(&self.lane, |p| match lane_state.sender.as_mut() {
                Some(s) if p.len() <= TASK_MAX => s.push(tramp, func, p).map(|id| (id, false)),
                _ if lane_state.sent.is_empty() => {
                    let id = lane_state.next_id();
                    // A worker gone by now shows when the driver next reads.
                    let _ = w.send_task(id, job.task, p);
                    Some((id, true))
                }
                _ => None,
            });
            match started {
                Start::Sent((id, socket)) => {
                    st.sent.push_back(Sent { id, job, socket });
                    if socket {
                        unsent.extend(jobs.drain(..));
                        break;
                    }
                    pushed = true;
                }
                Start::Cancelled => {} // and completed
                Start::Refused => {
                    unsent.push(job);
                    unsent.extend(jobs.drain(..));
                    break;
                }
            }
        }
        let wake = pushed && st.sender.as_mut().is_some_and(|s| s.publish());
        self.lane.set_depth(&st);
        drop(st);
        // Jobs not sent go back as they were (not begun anywhere: no count).
        self.shared.unpop(unsent);
        if wake {
            let _ = w.wake();
        }
    }

    /// Reads the results the worker published and completes their jobs. `false`
    /// if the lane held garbage (the worker was then killed and replaced).
    fn collect(&mut self) -> bool {
        let mut st = lock(&self.lane.state);
        let Some(sender) = st.sender.as_mut() else {
            return true;
        };
        let wake = match sender.drain(&mut self.outcomes) {
            Ok(wake) => wake,
            Err(m) => {
                drop(st);
                self.died(Some(m));
                return false;
            }
        };
        if self.outcomes.is_empty() {
            return true;
        }
        let mut done = Vec::with_capacity(self.outcomes.len());
        for o in self.outcomes.drain(..) {
            if let Some(i) = st.sent.iter().position(|s| s.id == o.id) {
                if let Some(s) = st.sent.remove(i) {
                    done.push((s.job, o));
                }
            }
        }
        self.lane.set_depth(&st);
        drop(st);
        if wake {
            if let Some(w) = self.worker.as_mut() {
                let _ = w.wake();
            }
        }
        let mut finished = Vec::with_capacity(done.len());
        for (job, o) in done {
            self.learn(o.nanos);
            let counted = job.finish(outcome_of(o, job.base)).is_some();
            finished.push((job, counted));
        }
        // A run of jobs of one batch is counted down at once (the count is shared
        // with the other drivers: one atomic operation instead of one per job).
        let mut run: Option<(&Arc<Latch>, usize)> = None;
        for (job, counted) in &finished {
            let Some(b) = job.batch().filter(|_| *counted) else {
                continue;
            };
            match &mut run {
                Some((r, n)) if Arc::ptr_eq(r, b) => *n += 1,
                _ => {
                    if let Some((r, n)) = run.take() {
                        r.count_down(n);
                    }
                    run = Some((b, 1));
                }
            }
        }
        if let Some((r, n)) = run {
            r.count_down(n);
        }
        true
    }

    /// Completes a job whose result came over the socket.
    fn finish(&mut self, id: u64, outcome: Result<Vec<u8>, MessageFailure>) {
        let mut st = lock(&self.lane.state);
        let Some(i) = st.sent.iter().position(|s| s.id == id) else {
            return;
        };
        let Some(s) = st.sent.remove(i) else { return };
        self.lane.set_depth(&st);
        drop(st);
        let base = s.job.base;
        s.job
            .complete(outcome.map(Bytes::from).map_err(|f| f.into_error(base)));
    }

    /// Keeps the lane filled and completes jobs until it is empty (or the worker
    /// died).
    fn pump(&mut self) {
        loop {
            if !self.collect() {
                return;
            }
            if lock(&self.lane.state).sent.is_empty() {
                return;
            }
            self.fill(None);
            let asleep = {
                let st = lock(&self.lane.state);
                if st.sent.is_empty() {
                    return; // taken back meanwhile
                }
                match &st.sender {
                    Some(s) => {
                        // Wake me once half of the lane is done.
                        let mid = st.sent[st.sent.len() / 2].id;
                        s.set_refill_at(mid);
                        s.sleep()
                    }
                    None => true,
                }
            };
            if !asleep {
                continue;
            }
            let Some(w) = self.worker.as_mut() else {
                return;
            };
            let got = w.recv_any(Wait::timeout(WAKE));
            if let Some(s) = &lock(&self.lane.state).sender {
                s.awake();
            }
            match got {
                Ok(FromWorker::Wake) | Err(Lost::Timeout) => {}
                Ok(FromWorker::Done { id, outcome }) => self.finish(id, outcome),
                Ok(other) => {
                    self.died(Some(format!("unexpected message {other:?}")));
                    return;
                }
                Err(Lost::Closed) => {
                    self.died(None);
                    return;
                }
                Err(Lost::Garbled(m)) => {
                    self.died(Some(m));
                    return;
                }
            }
        }
    }

    /// The worker died (or sent garbage: `garbled`, then it is killed): reaps it,
    /// completes the jobs it finished, fails the one it began (`WorkerDied`, or
    /// `Protocol` for garbage), and puts the ones it never began back in the
    /// queue for another worker.
    fn died(&mut self, garbled: Option<String>) {
        let Some(mut w) = self.worker.take() else {
            return;
        };
        // From here on nobody may signal its pid (it is about to be reaped).
        lock(&self.lane.state).live = false;
        self.set_pid(0);
        if garbled.is_some() {
            w.kill();
        }
        let died = w.death(0);
        let mut st = lock(&self.lane.state);
        let mut outcomes = Vec::new();
        if let Some(s) = st.sender.as_mut() {
            let _ = s.drain(&mut outcomes);
        }
        let sent: Vec<Sent> = st.sent.drain(..).collect();
        st.sender = None;
        self.lane.set_depth(&st);
        drop(st);
        let mut results: HashMap<u64, Outcome> = outcomes.into_iter().map(|o| (o.id, o)).collect();
        let mut back = Vec::new();
        for s in sent {
            let base = s.job.base;
            if let Some(o) = results.remove(&s.id) {
                s.job.complete(outcome_of(o, base));
            } else if w.began(s.id) {
                let e = match &garbled {
                    Some(m) => TaskError::Protocol(m.clone()),
                    None => died.clone_for(base),
                };
                s.job.complete(Err(e));
            } else {
                back.push(s.job);
            }
        }
        drop(w);
        // It died before it called anything for these: they run elsewhere.
        self.shared.put_back(back.into_iter(), true);
    }

    /// Replaces an idle worker seen dead before it is handed jobs (one that dies
    /// later is caught by its lane's started word).
    fn check_idle_worker(&mut self) {
        if self.worker.as_ref().is_some_and(|w| !w.is_running()) {
            self.died(None);
        }
    }

    fn sweep(&mut self, epoch: u64) {
        if let Some(w) = self.worker.as_mut() {
            if w.sweep().is_err() {
                self.died(None); // dead: reaped now, replaced before the next job
            }
        }
        self.shared.sweep_done(self.slot, epoch);
    }
}

/// The thread that drives one worker process. Reports whether its first worker
/// started on `started`.
pub(crate) fn drive(shared: Arc<Shared>, slot: usize, started: Sender<Result<(), TaskError>>) {
    let lane = shared.lanes[slot].clone();
    let mut d = Driver {
        shared,
        slot,
        lane,
        worker: None,
        window: 1,
        average: None,
        outcomes: Vec::new(),
    };
    match d.start_worker() {
        Ok(()) => {
            let _ = started.send(Ok(()));
        }
        Err(e) => {
            let _ = started.send(Err(e));
            d.shared.driver_gone(slot);
            return;
        }
    }
    drop(started);
    loop {
        let job = match d.shared.next_work(slot) {
            Work::Job(job) => job,
            Work::Sweep(epoch) => {
                d.sweep(epoch);
                continue;
            }
            Work::Stop => break,
        };
        if !job.is_pending() {
            continue; // cancelled while queued
        }
        d.check_idle_worker();
        if d.worker.is_none() {
            if let Err(e) = d.start_worker() {
                job.complete(Err(e));
                continue;
            }
        }
        d.fill(Some(job));
        d.pump();
    }
    if let Some(mut w) = d.worker.take() {
        lock(&d.lane.state).live = false;
        d.set_pid(0);
        w.shutdown(Duration::from_secs(2));
    }
    d.shared.driver_gone(slot);
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

    /// Jobs that start to wait behind a long task in one lane are taken back by a
    /// driver that was already asleep when they got there. The idle driver
    /// (slot 1) looks at the lanes while lane 0 is empty and sleeps with no
    /// timeout; then lane 0's driver takes two jobs from the queue into its lane
    /// (as `fill` does: no new job in the queue, so nobody is woken by one), and
    /// its worker never takes them. The sleeper must wake, take them back and
    /// get the first. (The pool's flake: `tasks_children_never_hold_the_pool_hostage`
    /// waited forever for a task queued behind a task that sleeps, whenever the
    /// other driver had looked at that lane just before it was filled.)
    #[test]
    fn jobs_queued_behind_a_task_after_an_idle_driver_looked_are_taken_back() {
        let shared = Shared::new(2, Launch::Spawn, true);
        let lane = shared.lanes[0].clone();
        lock(&lane.state).sender = Some(lane::Sender::new(Arc::new(
            crate::process::lane::LaneMem::heap(),
        )));
        let (tx, rx) = std::sync::mpsc::channel();
        let thief = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                let _ = tx.send(match shared.next_work(1) {
                    Work::Job(j) => Some(j),
                    Work::Sweep(_) | Work::Stop => None,
                });
            })
        };
        // The thief sleeps (it found lane 0 empty: no timeout).
        while lock(&shared.queue).idle == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(20));
        let (a, b) = (job(), job());
        {
            let mut st = lock(&lane.state);
            for j in [&a, &b] {
                let (tramp, func) = j.task.get();
                let sender = st.sender.as_mut().unwrap();
                let started = j.start_with(&lane, |p| sender.push(tramp, func, p));
                let Start::Sent(id) = started else {
                    panic!("not sent")
                };
                st.sent.push_back(Sent {
                    id,
                    job: j.clone(),
                    socket: false,
                });
            }
            st.sender.as_mut().unwrap().publish();
            lane.set_depth(&st);
        }
        let got = rx.recv_timeout(Duration::from_secs(10));
        let second_queued = lock(&shared.queue)
            .jobs
            .front()
            .is_some_and(|j| Arc::ptr_eq(j, &b));
        shared.close(); // lets a thief that never woke end (the test then fails)
        thief.join().unwrap();
        let got = got
            .expect("the idle driver slept on while jobs waited in the other lane")
            .expect("a job, not a sweep or the end");
        assert!(Arc::ptr_eq(&got, &a), "the first job, in order");
        assert!(second_queued, "the second is back at the head of the queue");
        assert_eq!(lane.depth(), 0, "both were taken back");
    }

    /// A job whose worker died before beginning it goes back to the head of the
    /// queue with its payload, until too many workers died so; one taken back
    /// from a live worker's lane is not counted; a closed pool fails it instead,
    /// and a cancelled one is reported cancelled.
    #[test]
    fn requeue_until_too_many_workers_died() {
        let shared = Shared::new(1, Launch::Spawn, true);
        let lane = shared.lanes[0].clone();
        let j = job();
        let send_and_lose = |lost: bool| {
            assert!(j.start(&lane));
            shared.put_back(std::iter::once(j.clone()), lost);
            let mut q = lock(&shared.queue);
            let back = q.jobs.pop_front().expect("requeued");
            assert!(Arc::ptr_eq(&back, &j));
            assert!(q.jobs.is_empty(), "queued once");
            drop(q);
            assert!(j.is_pending() && !j.is_done());
        };
        for _ in 1..=MAX_LOST_DELIVERIES {
            send_and_lose(true);
            send_and_lose(false); // taken back from a live lane: not counted
        }
        assert!(j.start(&lane));
        assert_eq!(
            j.with_payload(<[u8]>::to_vec),
            vec![1, 2, 3],
            "the payload stays"
        );
        shared.put_back(std::iter::once(j.clone()), true);
        assert!(lock(&shared.queue).jobs.is_empty());
        match j.wait(None) {
            Err(TaskError::NotStarted { task: 3, workers }) => {
                assert_eq!(workers, MAX_LOST_DELIVERIES + 1)
            }
            other => panic!("expected NotStarted, got {other:?}"),
        }

        // Several at once keep their order at the head of the queue.
        let (a, b) = (job(), job());
        for x in [&a, &b] {
            assert!(x.start(&lane));
        }
        shared.put_back([a.clone(), b.clone()].into_iter(), true);
        {
            let q = lock(&shared.queue);
            assert!(Arc::ptr_eq(&q.jobs[0], &a) && Arc::ptr_eq(&q.jobs[1], &b));
        }
        lock(&shared.queue).jobs.clear();

        let j = job();
        assert!(j.start(&lane));
        shared.close();
        shared.put_back(std::iter::once(j.clone()), true);
        assert!(matches!(j.wait(None), Err(TaskError::PoolClosed)));

        let j = job();
        assert!(j.start(&lane));
        assert!(j.cancel()); // not in the lane's list: nothing to take back or kill
        shared.put_back(std::iter::once(j.clone()), true);
        assert!(matches!(
            j.wait(None),
            Err(TaskError::Cancelled { task: 3 })
        ));
    }
}
