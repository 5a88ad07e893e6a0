//! Idle workers let go of removed segments at once.
//!
//! A worker keeps the arrays its tasks attached mapped (the attach cache in
//! `process`), and a mapping keeps a removed file's memory allocated. Workers drop
//! such entries before every new attach and when they wake idle (every 250 ms), but
//! a program that drops an array and creates the next one at once would still find
//! the old one's memory taken (on a small tmpfs: `NoSpace`). So when this process
//! removes a segment whose location it handed to workers (an [`ArrayHandle`] or a
//! kernel's parts), every pool of this process has its *idle* workers sweep their
//! caches and waits for them (at most [`BOUND`]) before the removal returns; a busy
//! worker sweeps as soon as its current job is done.
//!
//! [`ArrayHandle`]: super::ArrayHandle

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::driver::Shared;
use crate::process::lock;

/// Longest a removal waits for idle workers to sweep.
const BOUND: Duration = Duration::from_secs(1);

/// File ids remembered at most; past that, every removal sweeps.
const MAX_IDS: usize = 4096;

#[derive(Default)]
struct HandedOut {
    ids: HashSet<(u64, u64)>,
    /// More than `MAX_IDS` were handed out: every removal counts.
    overflowed: bool,
}

/// Files whose location went to workers of this process's pools.
static HANDED_OUT: Mutex<Option<HandedOut>> = Mutex::new(None);

/// This process's pools (by pid: a forked child inherits the list, not the
/// pools' threads).
static POOLS: Mutex<Vec<(u32, Weak<Shared>)>> = Mutex::new(Vec::new());

/// A pool of this process, to be swept on removals.
pub(crate) fn register(pool: &Arc<Shared>) {
    let me = std::process::id();
    let mut pools = lock(&POOLS);
    pools.retain(|(pid, p)| *pid == me && p.strong_count() > 0);
    pools.push((me, Arc::downgrade(pool)));
}

/// The location of file `id` is going to workers.
pub(crate) fn handed_out(id: (u64, u64)) {
    let mut h = lock(&HANDED_OUT);
    let h = h.get_or_insert_with(|| {
        crate::segment::on_removed(removed);
        HandedOut::default()
    });
    if h.ids.len() >= MAX_IDS && !h.ids.contains(&id) {
        h.ids.clear();
        h.overflowed = true;
    }
    if !h.overflowed {
        h.ids.insert(id);
    }
}

/// This process removed the name of file `id` (called by the segment layer).
fn removed(id: (u64, u64)) {
    let ours = lock(&HANDED_OUT)
        .as_mut()
        .is_some_and(|h| h.overflowed || h.ids.remove(&id));
    if !ours {
        return;
    }
    let me = std::process::id();
    let pools: Vec<Arc<Shared>> = lock(&POOLS)
        .iter()
        .filter(|(pid, _)| *pid == me)
        .filter_map(|(_, p)| p.upgrade())
        .collect();
    for p in pools {
        p.sweep(BOUND);
    }
}
