//! The lane between the pool and one worker: a memfd both map (sealed against
//! shrinking and growing, created by the parent and passed with `SCM_RIGHTS` before
//! the handshake), holding
//! - the **started word**: the id of the task the worker began last, stored
//!   *before* it calls anything. Once the worker is known to be dead, the pool
//!   reads it: a task with that id (or below, without a result) may have run and
//!   fails with `WorkerDied`; a task with a higher id never began and runs
//!   elsewhere. The parent reads it only after the worker's death (end of file or
//!   its exit seen), so the worker's last store is visible: the kernel's exit and
//!   the parent's observation of it order the two.
//! - a **task ring** (pool → worker) of records the pool can take back as long as
//!   the worker has not taken them (`revoke`: a cancel, work stealing, a closing
//!   pool), so several tasks can wait in a worker's lane without being held
//!   hostage by the one it runs;
//! - a **result ring** (worker → pool);
//! - a **sleeping flag** for each side: a side that finds nothing to do sets its
//!   flag, looks once more, then blocks reading the socket; the other side, after
//!   publishing, clears a set flag and writes a wake-up message to the socket. So
//!   while both are busy no system call is made per task, and the socket keeps
//!   telling each side at once when the other died.
//!
//! Payloads too large for a ring (over a quarter of it) travel over the socket as
//! before.
//!
//! ## Task records
//! A record starts on a [`REC`]-byte boundary with a [`TaskHead`] (state, length,
//! kind, the function's offsets) followed by the payload, and never wraps: a
//! record that does not fit before the end of the ring is preceded by a *pad*
//! record covering the rest. Each record (pads too) has an id, unique and growing
//! within a lane. Its state word goes
//!
//! | state | meaning | next |
//! |---|---|---|
//! | `READY(id)` | published (Release after the head and payload) | worker takes it: CAS → `TAKEN(id)`; pool revokes it: CAS → `FREE` |
//! | `TAKEN(id)` | the worker owns it; it copies the payload, then moves `task_tail` past it | the pool rewrites it once `task_tail` passed it |
//! | `FREE` | revoked (or never written) | the pool writes a new record there |
//!
//! Both CASes name the id, and ids never repeat, so a stale read never takes or
//! revokes a newer record. The pool revokes from the newest record back and stops
//! at the first one the worker took: the worker takes in order, so the revoked
//! records are a suffix, and the pool rewinds its head to the first of them. The
//! worker reads a state word only below `task_head` (published by the pool), where
//! every record boundary it can reach holds a state word written in this lap.
//!
//! ## Result records
//! A [`ResultHead`] (id, length, flags, how long the task ran) and the outcome's
//! bytes, published by moving `result_head` (Release); the pool consumes them and
//! moves `result_tail`. A pad (id `u64::MAX`) covers the end of the ring when a
//! record does not fit there.
//!
//! ## Memory ordering
//! Payloads and heads are written before the Release store that publishes them
//! (state word, `result_head`) and read after the Acquire load that sees it. The
//! sleeping handshake is Dekker's: the sleeper stores its flag, issues a SeqCst
//! fence and looks at the ring again; the publisher stores its index, issues a
//! SeqCst fence and then reads the flag. One of the two sees the other's store.
//!
//! ## Hostile peers
//! Task code runs in the worker and can scribble on the lane. Nothing read from
//! the lane decides an address outside it: offsets are reduced modulo the ring,
//! lengths are checked to fit the ring from their offset, and the pool treats a
//! record that does not fit as a garbled message (the worker is killed). Scribbles
//! can only mislead the pool about that worker's own tasks.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{fence, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use memmap2::{MmapOptions, MmapRaw};

use crate::sys::fs;

/// Bytes of the task ring (a power of two).
pub(crate) const TASK_CAP: u64 = 128 << 10;
/// Bytes of the result ring (a power of two).
pub(crate) const RESULT_CAP: u64 = 128 << 10;
/// Record granularity and header size of both rings.
pub(crate) const REC: u64 = 32;
/// Bytes of the control block at the start of the file.
const CONTROL: u64 = 4096;
/// Length of the whole lane file.
const LEN: u64 = CONTROL + TASK_CAP + RESULT_CAP;
/// Largest payload a ring carries (larger ones go over the socket).
pub(crate) const TASK_MAX: usize = (TASK_CAP / 4 - REC) as usize;
/// Largest outcome the result ring carries.
pub(crate) const RESULT_MAX: usize = (RESULT_CAP / 4 - REC) as usize;

const FREE: u64 = 0;
const fn ready(id: u64) -> u64 {
    id << 2 | 1
}
const fn taken(id: u64) -> u64 {
    id << 2 | 2
}
const KIND_TASK: u32 = 0;
const KIND_PAD: u32 = 1;
const RESULT_PAD: u64 = u64::MAX;
/// Result flag: the bytes are an encoded `MessageFailure`, not the outcome.
pub(crate) const RESULT_FAILED: u32 = 1;

/// A group of words on its own pair of cache lines.
#[repr(C, align(128))]
struct Line<T>(T);

/// Written by the worker.
#[repr(C)]
struct WorkerWords {
    started: AtomicU64,
    task_tail: AtomicU64,
    result_head: AtomicU64,
    /// 1: the worker is (about to be) blocked on the socket.
    sleeping: AtomicU32,
}

/// Written by the pool.
#[repr(C)]
struct ParentWords {
    task_head: AtomicU64,
    /// The worker wakes a sleeping pool once it finished the task with this id.
    refill_at: AtomicU64,
    result_tail: AtomicU64,
    /// 1: the pool is (about to be) blocked on the socket.
    sleeping: AtomicU32,
}

#[repr(C)]
struct Control {
    worker: Line<WorkerWords>,
    parent: Line<ParentWords>,
}

#[repr(C)]
struct TaskHead {
    state: AtomicU64,
    len: AtomicU32,
    kind: AtomicU32,
    tramp: AtomicI64,
    func: AtomicI64,
}

#[repr(C)]
struct ResultHead {
    id: AtomicU64,
    len: AtomicU32,
    flags: AtomicU32,
    nanos: AtomicU64,
    _reserved: AtomicU64,
}

const _: () = {
    assert!(std::mem::size_of::<Control>() as u64 <= CONTROL);
    assert!(std::mem::size_of::<TaskHead>() as u64 == REC);
    assert!(std::mem::size_of::<ResultHead>() as u64 == REC);
    assert!(TASK_CAP.is_power_of_two() && RESULT_CAP.is_power_of_two());
    assert!(CONTROL.is_multiple_of(4096) && TASK_CAP.is_multiple_of(REC));
};

/// Rounds a record of `len` payload bytes up to whole [`REC`] units, header
/// included.
fn record_size(len: usize) -> u64 {
    (REC + len as u64).div_ceil(REC) * REC
}

/// One page-aligned page, for lanes on the heap (tests).
#[repr(C, align(4096))]
struct Page([u8; 4096]);

#[derive(Debug)]
enum Backing {
    File {
        file: File,
        _map: MmapRaw,
    },
    #[allow(dead_code)] // the heap keeps the memory alive
    Heap(Box<[Page]>),
}

impl std::fmt::Debug for Page {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Page")
    }
}

/// The memory of one lane: `LEN` bytes, page aligned, mapped shared (or on the
/// heap in tests).
#[derive(Debug)]
pub(crate) struct LaneMem {
    base: *mut u8,
    backing: Backing,
}

// SAFETY: the memory is only accessed through atomics and through byte copies at
// ranges the protocol (above) gives to one side at a time; `base` stays valid as
// long as `backing` lives, which it does as long as `self`.
unsafe impl Send for LaneMem {}
// SAFETY: as for Send: shared accesses are atomics or byte copies of ranges owned
// by one side under the protocol.
unsafe impl Sync for LaneMem {}

impl LaneMem {
    /// Parent side: a fresh lane (zeroed: nothing started, rings empty).
    pub(crate) fn new() -> io::Result<LaneMem> {
        let file = fs::memfd("shmarray-lane", false).map_err(io::Error::from)?;
        file.set_len(LEN)?;
        fs::seal_size(&file).map_err(io::Error::from)?;
        LaneMem::map(file)
    }

    /// Worker side: the lane the parent sent, checked to be long enough.
    pub(crate) fn adopt(fd: OwnedFd) -> io::Result<LaneMem> {
        let file = File::from(fd);
        if file.metadata()?.len() < LEN {
            return Err(io::Error::other("the lane is too short"));
        }
        LaneMem::map(file)
    }

    /// A lane on the heap (tests: both sides in one process).
    #[cfg(test)]
    pub(crate) fn heap() -> LaneMem {
        let pages: Box<[Page]> = (0..LEN / 4096).map(|_| Page([0; 4096])).collect();
        let base = pages.as_ptr() as *mut u8;
        LaneMem {
            base,
            backing: Backing::Heap(pages),
        }
    }

    fn map(file: File) -> io::Result<LaneMem> {
        let map = MmapOptions::new().len(LEN as usize).map_raw(&file)?;
        Ok(LaneMem {
            base: map.as_mut_ptr(),
            backing: Backing::File { file, _map: map },
        })
    }

    fn control(&self) -> &Control {
        // SAFETY: the lane is LEN bytes (a file at least that long, sealed by its
        // creator against shrinking, or heap pages), page aligned, so the control
        // block at offset 0 is in bounds and aligned; other processes write it
        // only through atomics; it lives as long as `&self`.
        unsafe { &*self.base.cast::<Control>() }
    }

    /// The task record head at ring offset `off` (any value: reduced here).
    fn task_head(&self, off: u64) -> &TaskHead {
        let off = (off % TASK_CAP) / REC * REC;
        // SAFETY: `off` is a multiple of REC below TASK_CAP, so the head lies
        // inside the task ring, aligned (the ring starts on a page); shared words
        // are atomics; the memory lives as long as `&self`.
        unsafe { &*self.base.add((CONTROL + off) as usize).cast::<TaskHead>() }
    }

    fn result_head(&self, off: u64) -> &ResultHead {
        let off = (off % RESULT_CAP) / REC * REC;
        // SAFETY: as `task_head`, inside the result ring.
        unsafe {
            &*self
                .base
                .add((CONTROL + TASK_CAP + off) as usize)
                .cast::<ResultHead>()
        }
    }

    /// Pointer to `len` bytes at `off` of a ring starting at `start` of `cap`
    /// bytes, `None` unless they fit before the ring's end.
    fn bytes(&self, start: u64, cap: u64, off: u64, len: u64) -> Option<*mut u8> {
        let off = off % cap;
        if len > cap - off {
            return None;
        }
        // SAFETY: `off + len <= cap`, and the ring `[start, start + cap)` lies
        // inside the LEN bytes of the lane.
        Some(unsafe { self.base.add((start + off) as usize) })
    }

    /// Copies `src` into the task ring at `off` (checked to fit).
    fn write_task_bytes(&self, off: u64, src: &[u8]) {
        if let Some(p) = self.bytes(CONTROL, TASK_CAP, off, src.len() as u64) {
            // SAFETY: `p` points at `src.len()` bytes inside the ring, which the
            // protocol gives to the writer now (not published yet).
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), p, src.len()) }
        }
    }

    fn write_result_bytes(&self, off: u64, src: &[u8]) {
        if let Some(p) = self.bytes(CONTROL + TASK_CAP, RESULT_CAP, off, src.len() as u64) {
            // SAFETY: as in `write_task_bytes`, in the result ring.
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), p, src.len()) }
        }
    }

    /// The `len` bytes at `off` of a ring (`None` if they do not fit), to be
    /// read by the side the protocol gives them to now (published to it, not
    /// yet released).
    fn bytes_at(&self, start: u64, cap: u64, off: u64, len: u64) -> Option<&[u8]> {
        let p = self.bytes(start, cap, off, len)?;
        // SAFETY: `p` points at `len` bytes inside the ring; the other side does
        // not write them until the reader releases them (moves its tail), which
        // it does only after it is done with this slice.
        Some(unsafe { std::slice::from_raw_parts(p, len as usize) })
    }

    /// The started word (see the module docs).
    pub(crate) fn started(&self) -> u64 {
        self.control().worker.0.started.load(Ordering::SeqCst)
    }

    /// Worker: records that task `id` begins now.
    pub(crate) fn mark(&self, id: u64) {
        self.control().worker.0.started.store(id, Ordering::SeqCst);
    }

    /// Parent: whether the (dead) worker began task `id` (ids only grow, so a
    /// later one also means this one began).
    pub(crate) fn began(&self, id: u64) -> bool {
        self.started() >= id
    }
}

impl LaneMem {
    /// The descriptor to send to the worker (`None` for a heap lane).
    pub(crate) fn fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.backing {
            Backing::File { file, .. } => Some(file.as_fd()),
            Backing::Heap(_) => None,
        }
    }
}

/// A task the pool published, as the worker took it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Taken {
    pub(crate) id: u64,
    pub(crate) tramp: isize,
    pub(crate) func: isize,
}

/// An encoded outcome: small ones inline, so that the thread that reads it from
/// the lane and the thread that decodes it do not hand an allocation between
/// them (freeing another thread's allocation is malloc's slow path).
#[derive(Clone)]
pub(crate) enum Bytes {
    Inline { len: u8, buf: [u8; Bytes::INLINE] },
    Heap(Vec<u8>),
}

impl Bytes {
    const INLINE: usize = 46;

    pub(crate) fn copy_from(src: &[u8]) -> Bytes {
        if src.len() <= Bytes::INLINE {
            let mut buf = [0; Bytes::INLINE];
            buf[..src.len()].copy_from_slice(src);
            Bytes::Inline {
                len: src.len() as u8,
                buf,
            }
        } else {
            Bytes::Heap(src.to_vec())
        }
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Bytes {
        Bytes::Heap(v)
    }
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Inline { len, buf } => &buf[..(*len as usize).min(Bytes::INLINE)],
            Bytes::Heap(v) => v,
        }
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bytes({})", self.len())
    }
}

/// A result as the pool read it.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) id: u64,
    pub(crate) flags: u32,
    pub(crate) nanos: u64,
    pub(crate) bytes: Bytes,
}

/// The pool's end of a lane.
#[derive(Debug)]
pub(crate) struct Sender {
    mem: Arc<LaneMem>,
    /// Next write position in the task ring (absolute; the offset is modulo).
    head: u64,
    /// Records published and perhaps not taken yet, oldest first: (id, position).
    records: std::collections::VecDeque<(u64, u64)>,
    next_id: u64,
    result_tail: u64,
}

impl Sender {
    pub(crate) fn new(mem: Arc<LaneMem>) -> Sender {
        Sender {
            mem,
            head: 0,
            records: std::collections::VecDeque::new(),
            next_id: 1,
            result_tail: 0,
        }
    }

    pub(crate) fn mem(&self) -> &Arc<LaneMem> {
        &self.mem
    }

    /// A fresh id for a task sent over the socket (ids grow across both paths).
    pub(crate) fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Where the worker has copied up to; `None` if the word makes no sense
    /// (scribbled: then the ring counts as full and nothing is forgotten).
    fn task_tail(&self) -> Option<u64> {
        let t = self
            .mem
            .control()
            .worker
            .0
            .task_tail
            .load(Ordering::Acquire);
        (t <= self.head && self.head - t <= TASK_CAP).then_some(t)
    }

    /// Bytes of the ring the worker has not released.
    fn used(&self) -> u64 {
        self.task_tail().map_or(TASK_CAP, |t| self.head - t)
    }

    /// Forgets records the worker has taken and copied.
    fn trim(&mut self) {
        let Some(tail) = self.task_tail() else {
            return;
        };
        while self.records.front().is_some_and(|&(_, pos)| pos < tail) {
            self.records.pop_front();
        }
    }

    /// Room needed for a record of `len` payload bytes at the head: (pad, size).
    fn need(&self, len: usize) -> (u64, u64) {
        let size = record_size(len);
        let off = self.head % TASK_CAP;
        let pad = if TASK_CAP - off < size {
            TASK_CAP - off
        } else {
            0
        };
        (pad, size)
    }

    /// Whether a task of `len` payload bytes fits in the ring now.
    pub(crate) fn has_room(&self, len: usize) -> bool {
        if len > TASK_MAX {
            return false;
        }
        let (pad, size) = self.need(len);
        self.used() + pad + size <= TASK_CAP
    }

    /// Writes a task record (not published until [`publish`](Self::publish));
    /// its id, or `None` if the ring has no room for it now.
    pub(crate) fn push(&mut self, tramp: isize, func: isize, payload: &[u8]) -> Option<u64> {
        if !self.has_room(payload.len()) {
            return None;
        }
        let (pad, size) = self.need(payload.len());
        if pad > 0 {
            let id = self.next_id();
            let h = self.mem.task_head(self.head);
            h.len.store((pad - REC) as u32, Ordering::Relaxed);
            h.kind.store(KIND_PAD, Ordering::Relaxed);
            h.state.store(ready(id), Ordering::Release);
            self.records.push_back((id, self.head));
            self.head += pad;
        }
        let id = self.next_id();
        let h = self.mem.task_head(self.head);
        h.len.store(payload.len() as u32, Ordering::Relaxed);
        h.kind.store(KIND_TASK, Ordering::Relaxed);
        h.tramp.store(tramp as i64, Ordering::Relaxed);
        h.func.store(func as i64, Ordering::Relaxed);
        self.mem.write_task_bytes(self.head + REC, payload);
        h.state.store(ready(id), Ordering::Release);
        self.records.push_back((id, self.head));
        self.head += size;
        Some(id)
    }

    /// Publishes what was pushed; `true` if the worker sleeps and must be woken
    /// (its flag is cleared: exactly one waker sends the wake-up).
    pub(crate) fn publish(&mut self) -> bool {
        self.trim();
        let c = self.mem.control();
        c.parent.0.task_head.store(self.head, Ordering::Release);
        fence(Ordering::SeqCst);
        c.worker.0.sleeping.load(Ordering::Relaxed) != 0
            && c.worker.0.sleeping.swap(0, Ordering::SeqCst) != 0
    }

    /// Takes back every record the worker has not taken; their task ids, oldest
    /// first. Published at once (the caller need not wake anybody).
    pub(crate) fn revoke(&mut self) -> Vec<u64> {
        self.trim();
        let mut back = Vec::new();
        while let Some(&(id, pos)) = self.records.back() {
            let h = self.mem.task_head(pos);
            if h.state
                .compare_exchange(ready(id), FREE, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                break; // taken: so is everything before it
            }
            self.records.pop_back();
            self.head = pos;
            if h.kind.load(Ordering::Relaxed) == KIND_TASK {
                back.push(id);
            }
        }
        back.reverse();
        self.mem
            .control()
            .parent
            .0
            .task_head
            .store(self.head, Ordering::Release);
        back
    }

    /// The worker should wake a sleeping pool once it finished task `id`.
    pub(crate) fn set_refill_at(&self, id: u64) {
        self.mem
            .control()
            .parent
            .0
            .refill_at
            .store(id, Ordering::Relaxed);
    }

    /// Reads every published result into `out`; then `Ok(true)` if the worker
    /// sleeps (it may wait for room) and must be woken. `Err`: a record that
    /// cannot be one (the worker is to be killed).
    pub(crate) fn drain(&mut self, out: &mut Vec<Outcome>) -> Result<bool, String> {
        let c = self.mem.control();
        let head = c.worker.0.result_head.load(Ordering::Acquire);
        if head == self.result_tail {
            return Ok(false);
        }
        if head < self.result_tail || head - self.result_tail > RESULT_CAP {
            return Err(format!(
                "result ring head {head} against tail {}",
                self.result_tail
            ));
        }
        while self.result_tail < head {
            let h = self.mem.result_head(self.result_tail);
            let off = self.result_tail % RESULT_CAP;
            let id = h.id.load(Ordering::Relaxed);
            if id == RESULT_PAD {
                self.result_tail += RESULT_CAP - off;
                continue;
            }
            let len = h.len.load(Ordering::Relaxed) as usize;
            let size = if len <= RESULT_MAX {
                record_size(len)
            } else {
                u64::MAX
            };
            if size > RESULT_CAP - off || size > head - self.result_tail {
                return Err(format!("result record of {len} bytes at {off}"));
            }
            let bytes = self
                .mem
                .bytes_at(CONTROL + TASK_CAP, RESULT_CAP, off + REC, len as u64)
                .map_or(Bytes::Heap(Vec::new()), Bytes::copy_from);
            out.push(Outcome {
                id,
                flags: h.flags.load(Ordering::Relaxed),
                nanos: h.nanos.load(Ordering::Relaxed),
                bytes,
            });
            self.result_tail += size;
        }
        c.parent
            .0
            .result_tail
            .store(self.result_tail, Ordering::Release);
        fence(Ordering::SeqCst);
        Ok(c.worker.0.sleeping.load(Ordering::Relaxed) != 0
            && c.worker.0.sleeping.swap(0, Ordering::SeqCst) != 0)
    }

    /// Whether results wait to be drained.
    pub(crate) fn has_results(&self) -> bool {
        self.mem
            .control()
            .worker
            .0
            .result_head
            .load(Ordering::Acquire)
            != self.result_tail
    }

    /// The pool is about to block on the socket: sets its flag, then looks once
    /// more. `false`: results arrived meanwhile (the flag is cleared again; don't
    /// block).
    pub(crate) fn sleep(&self) -> bool {
        let p = &self.mem.control().parent.0;
        p.sleeping.store(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.has_results() {
            p.sleeping.store(0, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// The pool is awake (whoever woke it).
    pub(crate) fn awake(&self) {
        self.mem
            .control()
            .parent
            .0
            .sleeping
            .store(0, Ordering::Relaxed);
    }
}

/// The worker's end of a lane.
#[derive(Debug)]
pub(crate) struct Receiver {
    mem: Arc<LaneMem>,
    tail: u64,
    /// Id of the last record taken (a stale state word names an older one).
    last: u64,
    result_head: u64,
    /// The payload of the task taken last.
    payload: Vec<u8>,
}

impl Receiver {
    pub(crate) fn new(mem: Arc<LaneMem>) -> Receiver {
        Receiver {
            mem,
            tail: 0,
            last: 0,
            result_head: 0,
            payload: Vec::new(),
        }
    }

    pub(crate) fn mem(&self) -> &LaneMem {
        &self.mem
    }

    /// Whether a task (or pad) is published and not taken, without taking it.
    pub(crate) fn has_task(&self) -> bool {
        let head = self
            .mem
            .control()
            .parent
            .0
            .task_head
            .load(Ordering::Acquire);
        if self.tail >= head {
            return false;
        }
        let s = self.mem.task_head(self.tail).state.load(Ordering::Acquire);
        s & 3 == 1 && s >> 2 > self.last
    }

    /// Takes the next published task: its id and function, its payload in
    /// [`payload`](Self::payload). `Ok(None)`: nothing published. `Err`: a record
    /// that cannot be one.
    pub(crate) fn take(&mut self) -> Result<Option<Taken>, String> {
        loop {
            let head = self
                .mem
                .control()
                .parent
                .0
                .task_head
                .load(Ordering::Acquire);
            if self.tail >= head {
                return Ok(None);
            }
            let h = self.mem.task_head(self.tail);
            let s = h.state.load(Ordering::Acquire);
            if s & 3 != 1 || s >> 2 <= self.last {
                return Ok(None); // revoked, not rewritten yet
            }
            let id = s >> 2;
            if h.state
                .compare_exchange(s, taken(id), Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                continue; // revoked (perhaps rewritten) meanwhile
            }
            self.last = id;
            let off = self.tail % TASK_CAP;
            let len = h.len.load(Ordering::Relaxed) as u64;
            let size = REC + len;
            if size > TASK_CAP - off {
                return Err(format!("task record of {len} bytes at {off}"));
            }
            let size = size.div_ceil(REC) * REC;
            if h.kind.load(Ordering::Relaxed) == KIND_PAD {
                self.release(size);
                continue;
            }
            let (tramp, func) = (
                h.tramp.load(Ordering::Relaxed) as isize,
                h.func.load(Ordering::Relaxed) as isize,
            );
            self.payload.clear();
            if let Some(b) = self.mem.bytes_at(CONTROL, TASK_CAP, off + REC, len) {
                self.payload.extend_from_slice(b);
            }
            self.release(size);
            return Ok(Some(Taken { id, tramp, func }));
        }
    }

    /// Moves past a record whose bytes are no longer needed.
    fn release(&mut self, size: u64) {
        self.tail += size;
        self.mem
            .control()
            .worker
            .0
            .task_tail
            .store(self.tail, Ordering::Release);
    }

    /// The payload of the task taken last.
    pub(crate) fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Whether an outcome of `len` bytes goes through the ring (else the socket).
    pub(crate) fn fits(len: usize) -> bool {
        len <= RESULT_MAX
    }

    /// Publishes task `id`'s outcome; `false` if the ring has no room now (the
    /// caller waits for the pool to drain it). `bytes` must [`fit`](Self::fits).
    pub(crate) fn push(&mut self, id: u64, flags: u32, nanos: u64, bytes: &[u8]) -> bool {
        let size = record_size(bytes.len());
        let off = self.result_head % RESULT_CAP;
        let pad = if RESULT_CAP - off < size {
            RESULT_CAP - off
        } else {
            0
        };
        let tail = self
            .mem
            .control()
            .parent
            .0
            .result_tail
            .load(Ordering::Acquire);
        let used = self.result_head.saturating_sub(tail);
        if used + pad + size > RESULT_CAP {
            return false;
        }
        if pad > 0 {
            self.mem
                .result_head(self.result_head)
                .id
                .store(RESULT_PAD, Ordering::Relaxed);
            self.result_head += pad;
        }
        let h = self.mem.result_head(self.result_head);
        h.id.store(id, Ordering::Relaxed);
        h.len.store(bytes.len() as u32, Ordering::Relaxed);
        h.flags.store(flags, Ordering::Relaxed);
        h.nanos.store(nanos, Ordering::Relaxed);
        self.mem.write_result_bytes(self.result_head + REC, bytes);
        self.result_head += size;
        self.mem
            .control()
            .worker
            .0
            .result_head
            .store(self.result_head, Ordering::Release);
        true
    }

    /// After publishing the outcome of task `id`: whether to wake the pool (it
    /// sleeps, and `urgent`, or `id` is the one it asked to be woken at). Clears
    /// its flag when it says yes.
    pub(crate) fn wake_parent(&self, id: u64, urgent: bool) -> bool {
        let p = &self.mem.control().parent.0;
        fence(Ordering::SeqCst);
        p.sleeping.load(Ordering::Relaxed) != 0
            && (urgent || id >= p.refill_at.load(Ordering::Relaxed))
            && p.sleeping.swap(0, Ordering::SeqCst) != 0
    }

    /// The worker is about to block on the socket until `ready` holds (a task
    /// was published, room was made): sets its flag, then looks once more.
    /// `false`: `ready` holds already (the flag is cleared; don't block).
    pub(crate) fn sleep(&self, ready: impl Fn(&Receiver) -> bool) -> bool {
        let w = &self.mem.control().worker.0;
        w.sleeping.store(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if ready(self) {
            w.sleeping.store(0, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// The worker is awake.
    pub(crate) fn awake(&self) {
        self.mem
            .control()
            .worker
            .0
            .sleeping
            .store(0, Ordering::Relaxed);
    }

    /// Whether the result ring has room for `len` bytes now.
    pub(crate) fn room_for(&self, len: usize) -> bool {
        let tail = self
            .mem
            .control()
            .parent
            .0
            .result_tail
            .load(Ordering::Acquire);
        let used = self.result_head.saturating_sub(tail);
        let off = self.result_head % RESULT_CAP;
        let size = record_size(len);
        let pad = if RESULT_CAP - off < size {
            RESULT_CAP - off
        } else {
            0
        };
        used + pad + size <= RESULT_CAP
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn pair() -> (Sender, Receiver) {
        let mem = Arc::new(LaneMem::heap());
        (Sender::new(mem.clone()), Receiver::new(mem))
    }

    fn payload(i: u64, len: usize) -> Vec<u8> {
        let mut p = i.to_le_bytes().to_vec();
        p.resize(len.max(8), (i % 251) as u8);
        p
    }

    #[test]
    fn a_mark_is_seen_through_the_other_mapping() {
        let parent = LaneMem::new().unwrap();
        let Backing::File { file, .. } = &parent.backing else {
            panic!("a memfd lane")
        };
        let dup = file.try_clone().unwrap();
        let worker = LaneMem::adopt(OwnedFd::from(dup)).unwrap();
        assert!(!parent.began(1));
        worker.mark(3);
        assert!(parent.began(3) && parent.began(2) && !parent.began(4));
        // Sealed: nobody can shrink it under a mapping.
        assert!(file.set_len(0).is_err());
        let short = fs::memfd("short", false).unwrap();
        short.set_len(LEN - 1).unwrap();
        assert!(LaneMem::adopt(OwnedFd::from(short)).is_err());
    }

    /// Tasks of every size up to the limit cross in order, with their function
    /// offsets, over many laps of the ring (pads where a record does not fit).
    #[test]
    fn tasks_cross_in_order_over_many_laps() {
        let (mut tx, mut rx) = pair();
        let sizes = [0usize, 1, 7, 8, 31, 32, 33, 500, 4096, 9000, TASK_MAX];
        let mut sent: std::collections::VecDeque<(u64, Vec<u8>)> = Default::default();
        let mut last = 0;
        for i in 0..2000u64 {
            let len = sizes[i as usize % sizes.len()];
            let p = payload(i, len);
            let id = loop {
                if let Some(id) = tx.push(i as isize, -(i as isize), &p) {
                    break id;
                }
                // Full: the worker takes one.
                tx.publish();
                let t = rx.take().unwrap().expect("a task is published");
                let (want_id, want) = sent.pop_front().unwrap();
                assert_eq!(t.id, want_id);
                assert_eq!(rx.payload(), &want[..]);
            };
            assert!(id > last, "ids grow");
            last = id;
            sent.push_back((id, p));
        }
        tx.publish();
        while let Some((id, want)) = sent.pop_front() {
            let t = rx.take().unwrap().unwrap();
            assert_eq!(t.id, id);
            assert_eq!((t.tramp, t.func), (t.tramp, -t.tramp));
            assert_eq!(rx.payload(), &want[..]);
        }
        assert!(rx.take().unwrap().is_none());
        assert!(!tx.has_room(TASK_MAX + 1));
        assert!(tx.push(0, 0, &vec![0; TASK_MAX + 1]).is_none());
    }

    /// Only records the worker has not taken come back, newest last; what is
    /// pushed after a revoke is taken next, with higher ids.
    #[test]
    fn revoke_takes_back_what_the_worker_has_not_taken() {
        let (mut tx, mut rx) = pair();
        let ids: Vec<u64> = (0..5)
            .map(|i| tx.push(1, 2, &payload(i, 8)).unwrap())
            .collect();
        tx.publish();
        assert_eq!(rx.take().unwrap().unwrap().id, ids[0]);
        assert_eq!(rx.take().unwrap().unwrap().id, ids[1]);
        assert_eq!(tx.revoke(), ids[2..].to_vec());
        assert!(!rx.has_task());
        assert!(rx.take().unwrap().is_none());
        assert_eq!(tx.revoke(), Vec::<u64>::new());
        let again = tx.push(1, 2, &payload(9, 8)).unwrap();
        assert!(again > ids[4]);
        tx.publish();
        let t = rx.take().unwrap().unwrap();
        assert_eq!(t.id, again);
        assert_eq!(rx.payload(), &payload(9, 8)[..]);
    }

    /// A worker thread takes while the pool thread pushes and revokes at random:
    /// every task is taken exactly once or revoked (and pushed again), never both,
    /// never twice.
    #[test]
    fn concurrent_take_and_revoke_lose_and_repeat_nothing() {
        const N: u64 = 20_000;
        let (mut tx, mut rx) = pair();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let worker = std::thread::spawn(move || {
            let mut got = Vec::new();
            loop {
                match rx.take().unwrap() {
                    Some(_) => got.push(u64::from_le_bytes(rx.payload()[..8].try_into().unwrap())),
                    None if stop2.load(Ordering::SeqCst) && !rx.has_task() => break,
                    None => std::hint::spin_loop(),
                }
            }
            got
        });
        let mut todo: std::collections::VecDeque<u64> = (0..N).collect();
        let mut in_ring: std::collections::HashMap<u64, u64> = Default::default();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut revoked = 0;
        while let Some(i) = todo.pop_front() {
            match tx.push(0, 0, &payload(i, 8 + (i % 40) as usize)) {
                Some(id) => {
                    in_ring.insert(id, i);
                }
                None => {
                    todo.push_front(i);
                    std::thread::yield_now();
                }
            }
            tx.publish();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            if seed.is_multiple_of(16) {
                for id in tx.revoke() {
                    todo.push_back(in_ring.remove(&id).expect("a revoked id was pushed"));
                    revoked += 1;
                }
            }
        }
        stop.store(true, Ordering::SeqCst);
        let got = worker.join().unwrap();
        assert_eq!(got.len() as u64, N, "each taken once ({revoked} revokes)");
        let set: HashSet<u64> = got.iter().copied().collect();
        assert_eq!(set.len() as u64, N);
        assert!(revoked > 0, "the race was exercised");
    }

    /// Results cross in order; a full ring refuses the next one until the pool
    /// drains, and room made wakes a sleeping worker.
    #[test]
    fn results_cross_and_a_full_ring_waits_for_the_pool() {
        let (mut tx, mut rx) = pair();
        let mut out = Vec::new();
        let mut next = 0u64;
        let mut seen = 0u64;
        for round in 0..20 {
            loop {
                let len = [3usize, 40, 1000, RESULT_MAX][next as usize % 4];
                if !rx.room_for(len) {
                    assert!(!rx.push(next, 0, 0, &payload(next, len)));
                    break;
                }
                assert!(rx.push(
                    next,
                    RESULT_FAILED * (next % 2) as u32,
                    next * 10,
                    &payload(next, len)
                ));
                next += 1;
            }
            // The worker sleeps until there is room; draining says to wake it.
            let len = [3usize, 40, 1000, RESULT_MAX][next as usize % 4];
            assert!(
                rx.sleep(|r| r.room_for(len)),
                "round {round}: full, so it sleeps"
            );
            assert!(
                tx.drain(&mut out).unwrap(),
                "the sleeping worker is to be woken"
            );
            for o in out.drain(..) {
                assert_eq!(o.id, seen);
                assert_eq!(o.nanos, seen * 10);
                assert_eq!(o.flags, RESULT_FAILED * (seen % 2) as u32);
                let len = [3usize, 40, 1000, RESULT_MAX][seen as usize % 4];
                assert_eq!(&o.bytes[..], &payload(seen, len)[..]);
                seen += 1;
            }
            assert!(rx.room_for(len));
        }
        assert_eq!(seen, next);
    }

    /// Each side sleeps only when it looked again after setting its flag, and the
    /// other side wakes it exactly once.
    #[test]
    fn the_sleeping_handshake() {
        let (mut tx, mut rx) = pair();
        assert!(rx.sleep(Receiver::has_task), "nothing to do");
        tx.push(0, 0, b"x").unwrap();
        assert!(tx.publish(), "the worker sleeps: wake it");
        assert!(!tx.publish(), "once");
        rx.awake();
        rx.take().unwrap().unwrap();
        tx.push(0, 0, b"y").unwrap();
        tx.publish();
        assert!(!rx.sleep(Receiver::has_task), "a task came: don't sleep");

        // The pool sleeps unless results wait; the worker wakes it at the task
        // it asked for, or at once when `urgent`.
        assert!(tx.sleep());
        tx.set_refill_at(5);
        assert!(rx.push(4, 0, 0, b"r"));
        assert!(!rx.wake_parent(4, false), "not yet");
        assert!(rx.push(5, 0, 0, b"r"));
        assert!(rx.wake_parent(5, false));
        assert!(!rx.wake_parent(5, true), "once");
        assert!(!tx.sleep(), "results wait: don't sleep");
        let mut out = Vec::new();
        tx.drain(&mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert!(tx.sleep());
        assert!(rx.push(6, 0, 0, b"r"));
        assert!(rx.wake_parent(6, true), "urgent");
    }

    /// Task code in the worker can scribble on the lane: the pool never reads or
    /// writes outside it, and says what it found instead of panicking.
    #[test]
    fn scribbled_words_never_reach_outside_the_lane() {
        let (mut tx, mut rx) = pair();
        let mem = tx.mem().clone();
        let c = mem.control();
        // A task tail beyond the head: the ring counts as full.
        tx.push(0, 0, b"a").unwrap();
        tx.publish();
        c.worker.0.task_tail.store(u64::MAX, Ordering::SeqCst);
        assert!(tx.push(0, 0, b"b").is_none());
        assert!(tx.revoke().len() <= 1);
        c.worker.0.task_tail.store(0, Ordering::SeqCst);
        // A result head far ahead, or behind: refused.
        c.worker
            .0
            .result_head
            .store(RESULT_CAP * 7, Ordering::SeqCst);
        assert!(tx.drain(&mut Vec::new()).is_err());
        c.worker.0.result_head.store(0, Ordering::SeqCst);
        // A record whose length runs past the ring's end: refused.
        assert!(rx.push(1, 0, 0, b"ok"));
        mem.result_head(0).len.store(u32::MAX, Ordering::SeqCst);
        assert!(tx.drain(&mut Vec::new()).is_err());
        // The worker's side: a task record longer than the ring is an error.
        let (mut tx, mut rx) = pair();
        tx.push(0, 0, b"a").unwrap();
        tx.publish();
        tx.mem().task_head(0).len.store(u32::MAX, Ordering::SeqCst);
        assert!(rx.take().is_err());
    }
}
