//! The worker side: [`init`] (entry of a spawned worker), the entry of a forked
//! one, and the loop that answers the handshake and runs tasks.

use std::collections::HashSet;
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use super::error::MessageFailure;
use super::started::StartedPage;
use super::task::{image, panic_message, resolve};
use super::wire::{Channel, FromWorker, ToWorker};
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

/// The worker loop: the started page, the handshake, then tasks until `Exit` or
/// end of input.
fn serve(stream: UnixStream) -> i32 {
    // The parent's first byte carries the started page (or no descriptor, if it
    // could not make one: then it counts every task we were sent as begun).
    let started = match sys::recv_fd(&stream) {
        Ok(Some((_, fd))) => fd.and_then(|fd| StartedPage::adopt(fd).ok()),
        Ok(None) | Err(_) => return 0, // parent gone
    };
    let mut chan = match Channel::new(stream, Some(IDLE_WAKE)) {
        Ok(c) => c,
        Err(_) => return 70,
    };
    // (trampoline, function) offset pairs already checked in this process.
    let mut checked: HashSet<(isize, isize)> = HashSet::new();
    let mut idle = || {
        super::cache::release_stale_mappings();
        true
    };
    loop {
        let msg: ToWorker = match chan.recv(Wait::Forever, &mut idle) {
            Ok(m) => m,
            Err(_) => return 0, // parent gone or closed: exit quietly
        };
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
                }
            }
            ToWorker::Task {
                id,
                tramp,
                func,
                payload,
            } => {
                // From here on, if this process dies, the task counts as begun.
                if let Some(p) = &started {
                    p.mark(id);
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
            ToWorker::Exit => return 0,
        };
        if chan.send(&reply, &mut || true).is_err() {
            return 0;
        }
    }
}

fn run_task(
    checked: &mut HashSet<(isize, isize)>,
    tramp: isize,
    func: isize,
    payload: &[u8],
) -> Result<Vec<u8>, MessageFailure> {
    let (t, f) = resolve(tramp, func, checked.contains(&(tramp, func)))?;
    checked.insert((tramp, func));
    // SAFETY: `resolve` checked that both addresses lie in this crate's object,
    // which the handshake showed to be the same file at the same offset as in the
    // parent, and the parent sent the offsets of a `TaskFn`, whose trampoline is
    // the one monomorphised for the function's exact type.
    catch_unwind(AssertUnwindSafe(|| unsafe { t(f, payload) }))
        .unwrap_or_else(|p| Err(MessageFailure::Panicked(panic_message(p))))
}
