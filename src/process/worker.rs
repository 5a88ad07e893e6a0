//! The worker side: [`init`] (entry of a spawned worker), the entry of a forked
//! one, and the loop that answers the handshake and runs tasks.

use std::collections::HashSet;
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use super::error::MessageFailure;
use super::lane::{LaneMem, Receiver, RESULT_FAILED};
use super::task::{image, panic_message, resolve};
use super::wire::{encode, Channel, FromWorker, ToWorker};
use crate::sync::Wait;
use crate::sys::process as sys;

/// Environment variable that marks a spawned worker; its value is
/// `<socket fd>:<parent pid>`.
pub const WORKER_ENV: &str = "SHMARRAY_WORKER";

/// How often an idle worker wakes to drop cached mappings of removed segments.
const IDLE_WAKE: Duration = Duration::from_millis(250);

/// Call first thing in `main`. In a process started as a spawned worker this runs
/// the worker loop and exits; in any other process it returns immediately.
///
/// A worker takes its channel from the descriptor named in [`WORKER_ENV`] (not from
/// standard input, which stays what it was), makes it close-on-exec, and removes
/// the variable, so that processes its tasks start neither inherit the channel nor
/// take themselves for workers. It asks to be SIGKILLed when its parent dies, and
/// exits at once if the parent is already gone.
pub fn init() {
    let Some(value) = std::env::var_os(WORKER_ENV) else {
        return;
    };
    // A worker is single-threaded at this point (init runs first in main), so
    // changing the environment races with nothing.
    std::env::remove_var(WORKER_ENV);
    let parsed = value
        .to_str()
        .and_then(|v| v.split_once(':'))
        .and_then(|(fd, ppid)| Some((fd.parse::<i32>().ok()?, ppid.parse::<u32>().ok()?)));
    let Some((fd, parent)) = parsed else {
        eprintln!("shmarray worker: malformed {WORKER_ENV}={value:?}");
        std::process::exit(70);
    };
    if !sys::die_with_parent(parent) {
        std::process::exit(0); // the parent is already gone
    }
    // SAFETY: the spawner passed this descriptor for the worker's channel and set
    // WORKER_ENV to name it; init runs first in main, once (the variable is gone
    // now), so nothing else in this process owns the descriptor.
    let stream = match unsafe { sys::adopt_socket(fd) } {
        Ok(s) => s,
        Err(e) => {
            eprintln!("shmarray worker: descriptor {fd}: {e}");
            std::process::exit(70);
        }
    };
    std::process::exit(serve(stream));
}

/// Entry of a forked worker (its own process group is made by the forker): dies
/// with `parent`, then serves.
pub(crate) fn run_forked(stream: UnixStream, parent: u32) -> i32 {
    sys::new_process_group();
    if !sys::die_with_parent(parent) {
        return 0;
    }
    serve(stream)
}

/// A task that ran at least this long has its result reported at once, even if
/// the pool asked to be woken later (the wake-up costs little against it).
const URGENT: Duration = Duration::from_micros(50);

/// The worker loop: the lane, the handshake, then tasks (from the lane, or over
/// the socket when too large for it) until `Exit` or end of input.
fn serve(stream: UnixStream) -> i32 {
    // The parent's first byte carries the lane (or no descriptor, if it could not
    // make one: then it counts every task we were sent as begun).
    let mut lane = match sys::recv_fd(&stream) {
        Ok(Some((_, fd))) => fd
            .and_then(|fd| LaneMem::adopt(fd).ok())
            .map(|m| Receiver::new(std::sync::Arc::new(m))),
        Ok(None) | Err(_) => return 0, // parent gone
    };
    let mut chan = match Channel::new(stream, Some(IDLE_WAKE)) {
        Ok(c) => c,
        Err(_) => return 70,
    };
    let mut checked = Checked::default();
    let mut idle = || {
        super::cache::release_stale_mappings();
        true
    };
    loop {
        if let Some(l) = lane.as_mut() {
            if let Err(code) = run_lane(l, &mut chan, &mut checked) {
                return code;
            }
        }
        let msg: ToWorker = match chan.recv(Wait::Forever, &mut idle) {
            Ok(m) => m,
            Err(_) => return 0, // parent gone or closed: exit quietly
        };
        if let Some(l) = &lane {
            l.awake();
        }
        let reply = match msg {
            ToWorker::Hello { image: theirs } => {
                let ours = image();
                if !ours.same_code(&theirs) {
                    let _ = chan.send(
                        &FromWorker::Refused {
                            worker: ours.clone(),
                        },
                        &mut || true,
                    );
                    return 71;
                }
                FromWorker::Ready {
                    pid: std::process::id(),
                    lane: lane.is_some(),
                }
            }
            ToWorker::Task {
                id,
                tramp,
                func,
                payload,
            } => {
                // From here on, if this process dies, the task counts as begun.
                if let Some(l) = &lane {
                    l.mem().mark(id);
                }
                FromWorker::Done {
                    id,
                    outcome: run_task(&mut checked, tramp, func, &payload),
                }
            }
            ToWorker::Sweep => {
                super::cache::release_stale_mappings();
                FromWorker::Swept
            }
            ToWorker::Wake => continue,
            ToWorker::Exit => return 0,
        };
        if chan.send(&reply, &mut || true).is_err() {
            return 0;
        }
    }
}

/// Runs the tasks published in the lane until there are none; returns when the
/// worker is to sleep on its socket (its flag set). `Err`: exit with that code.
fn run_lane(lane: &mut Receiver, chan: &mut Channel, checked: &mut Checked) -> Result<(), i32> {
    // One clock read per task: a task's time runs from the end of the one before
    // (or from the wake-up), which adds only the lane's own few steps.
    let mut since = Instant::now();
    loop {
        let t = match lane.take() {
            Ok(Some(t)) => t,
            Ok(None) => {
                if lane.sleep(Receiver::has_task) {
                    return Ok(());
                }
                continue;
            }
            Err(_) => return Err(70), // the parent wrote nonsense
        };
        // From here on, if this process dies, the task counts as begun.
        lane.mem().mark(t.id);
        let outcome = run_task(checked, t.tramp, t.func, lane.payload());
        let now = Instant::now();
        let nanos = u64::try_from(now.duration_since(since).as_nanos()).unwrap_or(u64::MAX);
        since = now;
        let (failed, bytes) = match &outcome {
            Ok(b) if Receiver::fits(b.len()) => (0, None),
            Err(f) => match encode(f) {
                Ok(b) if Receiver::fits(b.len()) => (RESULT_FAILED, Some(b)),
                _ => (RESULT_FAILED, None),
            },
            Ok(_) => (0, None),
        };
        let bytes: &[u8] = match (&outcome, &bytes) {
            (_, Some(b)) => b,
            (Ok(b), None) if Receiver::fits(b.len()) => b,
            _ => {
                // Too large for the ring: over the socket (the parent reads it
                // while it waits for this lane).
                let done = FromWorker::Done { id: t.id, outcome };
                if chan.send(&done, &mut || true).is_err() {
                    return Err(0);
                }
                continue;
            }
        };
        while !lane.push(t.id, failed, nanos, bytes) {
            // The result ring is full: make sure the parent drains it, and sleep
            // until it made room.
            if lane.wake_parent(t.id, true) && chan.send(&FromWorker::Wake, &mut || true).is_err() {
                return Err(0);
            }
            let len = bytes.len();
            if lane.sleep(|l| l.room_for(len)) {
                match chan.recv::<ToWorker>(Wait::Forever, &mut || true) {
                    Ok(ToWorker::Wake) => {}
                    Ok(ToWorker::Exit) | Err(_) => return Err(0),
                    Ok(_) => return Err(70), // nothing else comes while tasks are out
                }
                lane.awake();
            }
        }
        let urgent = nanos >= URGENT.as_nanos() as u64 || !lane.has_task();
        if lane.wake_parent(t.id, urgent) && chan.send(&FromWorker::Wake, &mut || true).is_err() {
            return Err(0);
        }
    }
}

/// (trampoline, function) offset pairs already checked in this process; the
/// last one is compared first (a map runs one function many times).
#[derive(Default)]
struct Checked {
    pairs: HashSet<(isize, isize)>,
    last: Option<(isize, isize)>,
}

impl Checked {
    fn contains(&self, pair: (isize, isize)) -> bool {
        self.last == Some(pair) || self.pairs.contains(&pair)
    }

    fn insert(&mut self, pair: (isize, isize)) {
        if self.last != Some(pair) {
            self.pairs.insert(pair);
            self.last = Some(pair);
        }
    }
}

fn run_task(
    checked: &mut Checked,
    tramp: isize,
    func: isize,
    payload: &[u8],
) -> Result<Vec<u8>, MessageFailure> {
    let (t, f) = resolve(tramp, func, checked.contains((tramp, func)))?;
    checked.insert((tramp, func));
    // SAFETY: `resolve` checked that both addresses lie in this crate's object,
    // which the handshake showed to be the same file at the same offset as in the
    // parent, and the parent sent the offsets of a `TaskFn`, whose trampoline is
    // the one monomorphised for the function's exact type.
    catch_unwind(AssertUnwindSafe(|| unsafe { t(f, payload) }))
        .unwrap_or_else(|p| Err(MessageFailure::Panicked(panic_message(p))))
}
