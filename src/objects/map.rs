//! `SharedMap<K, V>`: Python's `Manager().dict()` without the server (its string
//! key type, `FixedStr<N>`, is in `fixed_str.rs`).

use std::cell::UnsafeCell;
use std::fmt;
use std::fs::File;
use std::hash::Hash;
use std::marker::PhantomData;
use std::mem::size_of;
use std::ptr;
use std::sync::atomic::{compiler_fence, AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};

use bytemuck::{Pod, Zeroable};
use ndarray::Ix1;

use crate::array::SharedArray;
use crate::error::{Corruption, Error};
use crate::format::containers::{
    entry_state::{EMPTY, FULL, TOMBSTONE},
    hash_key, MapGeometry, KEY_OFFSET, MAP_REPAIRS_COUNTER, MAP_VERSION, SHARD_HEAD_FIXED,
};
use crate::format::control::{ControlError, ObjectKind};
use crate::format::objects::ParamsError;
use crate::segment::handle::sealed;
use crate::segment::{Create, KindSpec, Mapping, Open, Options, Segment, Source};
use crate::sync::{check_mutex_in_file, LockError, LockFailure, RawMutexGuard, RawRobustMutex};

mod bytes;
pub use bytes::BytesMap;

/// Why a map operation, create or open did not succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MapError {
    /// A new key did not fit: the map holds `capacity` entries, or the key's shard
    /// is full (see [`SharedMap`] on what `capacity` guarantees). Nothing changed.
    #[error("the map is full (capacity {capacity}, {len} entries)")]
    Full {
        /// The capacity the map was created with.
        capacity: usize,
        /// Entries in the map when the insert was refused.
        len: usize,
    },
    /// The capacity or key/value size is out of range (nothing was created).
    #[error(transparent)]
    Params(#[from] ParamsError),
    /// A shard's lock could not be taken (e.g. `Deadlock`: a closure passed to
    /// `update` called back into the map's same shard).
    #[error("map lock failed: {0}")]
    Lock(#[from] LockFailure),
    /// Creating or opening the segment failed: `NotFound`, `KindMismatch` (not a
    /// map), `TypeMismatch` (other key or value sizes), `Corrupt` (forged or damaged
    /// parameters), ...
    #[error(transparent)]
    Segment(#[from] Error),
}

/// A fixed-capacity hash map in one named segment, shared by any number of
/// processes: Python's `multiprocessing.Manager().dict()` without a server process
/// and without pickling. Every operation is a few hundred nanoseconds in the
/// calling process, under the lock of one shard.
///
/// ```
/// use shmarray::{containers::FixedStr, SharedMap};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let name = format!("doc-map-{}", std::process::id());
/// // process A creates (and owns: the name is removed when `prices` is dropped)
/// let prices = SharedMap::<FixedStr<16>, f64>::create(&name, 1000)?;
/// prices.insert(FixedStr::new("apple")?, 1.25)?;
/// // process B opens by name; key and value sizes are checked
/// let prices_b = SharedMap::<FixedStr<16>, f64>::open(&name)?;
/// prices_b.update(&FixedStr::new("apple")?, |p| *p *= 2.0)?;
/// assert_eq!(prices.get(&FixedStr::new("apple")?)?, Some(2.5));
/// assert_eq!(prices.remove(&FixedStr::new("pear")?)?, None);
/// assert_eq!((prices.len(), prices.capacity()), (1, 1000));
/// # Ok(()) }
/// ```
///
/// # Keys
/// `K` and `V` are [`Pod`]: plain bytes, no pointers. Keys are hashed and compared
/// **by their bytes** (`bytemuck::bytes_of`), never through `Hash`/`Eq` (std's
/// `Hash` output is not stable across Rust versions, and other languages must find
/// the same entries): use keys whose equality is byte equality (integers, byte
/// arrays, [`FixedStr`](crate::containers::FixedStr)). The hash function is fixed and documented in `FORMAT.md`
/// (8-byte chunks multiplied by the golden ratio, then murmur3's `fmix64`), seeded
/// with a random [`seed`](Self::seed) chosen at creation.
///
/// # Capacity
/// The table is split into shards (one per 1024 entries of capacity, rounded down
/// to a power of two, at most 64), each with its own lock, so processes working on
/// different keys rarely wait for each other. With **one shard (capacity < 2048)
/// `capacity` is exact**: the map holds `capacity` entries and inserting a new key
/// into a full map is `Err(Full)`. With more shards each shard holds at most
/// `ceil(capacity / shards) + 6·sqrt(that) + 16` entries: `capacity` well-hashed
/// keys fit (a shard overflows only if the keys' hashes are skewed six standard
/// deviations), `Full` comes when the key's shard is full, and the map never holds
/// more than [`max_len`](Self::max_len). Removing keys makes room again.
///
/// # Processes killed mid-operation
/// Safe under many processes at once, and a process killed at any instruction of
/// any operation leaves neither a torn entry nor a stuck lock: each shard's lock is
/// a robust mutex; every insert or remove has a single commit point (the entry's
/// state word, written last); an in-place value change first saves the old value
/// in the shard's undo record. The next process to lock the shard is told the
/// holder died, rolls back the undo record, recounts the shard, and goes on; the
/// user never sees it, except in [`repairs`](Self::repairs).
///
/// # Files from others
/// The layout (shards, slots, strides) is re-derived from the checksummed
/// parameters at open and the file refused unless it agrees: a forged file is
/// `Err(Segment(Corrupt))`, never a wild access. A peer writing garbage into the
/// table can lose or garble entries, but cannot make this process touch memory
/// outside the map.
///
/// # Threads
/// `Send + Sync`: threads may share one handle (every operation takes its
/// shard's lock).
pub struct SharedMap<K, V> {
    seg: SharedArray<u8, Ix1>,
    geo: MapGeometry,
    seed: u64,
    _kv: PhantomData<fn() -> (K, V)>,
}

/// A shard head, at a 128-aligned offset of the data area. The undo record's
/// saved value starts at `SHARD_HEAD_FIXED` (104): inside `undo_inline` for values
/// of up to 24 bytes (so an update touches one pair of cache lines of the head),
/// running on past the struct for larger ones (`head_stride` leaves room).
#[repr(C, align(128))]
struct ShardHead {
    mutex: RawRobustMutex,
    /// Full entries (exact whenever the lock is free).
    len: AtomicU64,
    /// Tombstones (exact whenever the lock is free).
    tombstones: AtomicU64,
    /// Repairs of this shard after a holder died.
    repairs: AtomicU64,
    /// 1 while an in-place value change is in progress.
    undo_valid: AtomicU32,
    _reserved: u32,
    /// The slot whose old value is saved.
    undo_slot: AtomicU64,
    /// The first 24 bytes of the saved value (written through raw pointers).
    undo_inline: UnsafeCell<[u8; 24]>,
}

const _: () = {
    use std::mem::{align_of, offset_of};
    assert!(size_of::<ShardHead>() == 128);
    assert!(align_of::<ShardHead>() == 128);
    assert!(offset_of!(ShardHead, len) == 64);
    assert!(offset_of!(ShardHead, tombstones) == 72);
    assert!(offset_of!(ShardHead, repairs) == 80);
    assert!(offset_of!(ShardHead, undo_valid) == 88);
    assert!(offset_of!(ShardHead, undo_slot) == 96);
    assert!(offset_of!(ShardHead, undo_inline) as u64 == SHARD_HEAD_FIXED);
};

/// What a probe found.
enum Probe {
    /// The key is in this slot.
    Found(u64),
    /// The key is absent; a new entry would go into this slot (`None`: no free
    /// slot on the whole probe path).
    Absent(Option<u64>),
}

/// A locked shard: its guard and head.
struct Locked<'a> {
    _guard: RawMutexGuard<'a>,
    head: &'a ShardHead,
    shard: u64,
}

impl<K: Pod + Eq + Hash, V: Pod> SharedMap<K, V> {
    /// Creates map `name` in `/dev/shm` (or `$SHMARRAY_DIR`) for `capacity` entries
    /// (`1..=2^32`; see the type's docs for what it guarantees). The creator owns
    /// it: the name is removed when this handle is dropped. [`Options::create`]
    /// creates with other options.
    pub fn create(name: &str, capacity: usize) -> Result<Self, MapError> {
        Options::new().create(name, capacity)
    }

    /// Opens map `name`, checking that its keys and values have the sizes of `K`
    /// and `V`; [`Options::open`] opens with other options. A map cannot be opened
    /// read-only (every operation takes a lock).
    ///
    /// ```
    /// use shmarray::{containers::MapError, Error, SharedMap};
    /// let name = format!("doc-map-open-{}", std::process::id());
    /// let _m = SharedMap::<u64, f64>::create(&name, 10)?;
    /// assert!(SharedMap::<u64, f64>::open(&name).is_ok());
    /// assert!(matches!(
    ///     SharedMap::<u32, f64>::open(&name),
    ///     Err(MapError::Segment(Error::TypeMismatch { .. }))
    /// ));
    /// # Ok::<(), MapError>(())
    /// ```
    pub fn open(name: &str) -> Result<Self, MapError> {
        Options::new().open(name)
    }

    /// Creates the segment of a map of `capacity` entries of `K` and `V` (named or
    /// anonymous) and attaches it.
    fn create_map(opts: &Options, name: Option<&str>, capacity: usize) -> Result<Self, MapError> {
        let geo = MapGeometry::new(
            size_of::<K>() as u64,
            size_of::<V>() as u64,
            capacity as u64,
        )?;
        let len = usize::try_from(geo.data_len).map_err(|_| ParamsError::TooLarge {
            capacity: geo.slots * geo.shards,
            stride: geo.stride,
            max: usize::MAX as u64,
        })?;
        let seed = random_seed();
        let kind = KindSpec {
            kind: ObjectKind::Map,
            version: MAP_VERSION,
            params: geo.to_params(seed),
        };
        let mut init_error = None;
        let seg =
            SharedArray::<u8, Ix1>::create_named_or_anonymous(opts, name, kind, &[len], |data| {
                let base: *mut u8 = data.as_mut_ptr();
                for s in 0..geo.shards {
                    // SAFETY: the data area is `data_len` zeroed bytes, private to this
                    // process, page aligned; each shard head lies at a 128-aligned
                    // offset inside it, and its mutex is its first 64 bytes.
                    let r = unsafe {
                        let head = base.add(geo.head_offset(s) as usize).cast::<ShardHead>();
                        RawRobustMutex::init_at(ptr::addr_of_mut!((*head).mutex))
                    };
                    if let Err(e) = r {
                        init_error = Some(e.into_failure());
                        return;
                    }
                }
            })?;
        if let Some(e) = init_error {
            return Err(MapError::Lock(e));
        }
        Self::attach(seg)
    }

    fn attach(seg: SharedArray<u8, Ix1>) -> Result<Self, MapError> {
        let label = seg.name().unwrap_or("<anonymous>").to_string();
        let corrupt = |e: ControlError| Error::corrupt(&label, e);
        let c = seg.control().ok_or_else(|| Error::NoControlBlock {
            name: label.clone(),
            what: "the map's parameters",
        })?;
        let geo = MapGeometry::from_control(&c).map_err(corrupt)?;
        if seg.len() as u64 != geo.data_len {
            return Err(corrupt(ControlError::Mismatch("data length")).into());
        }
        if !(seg.data_ptr() as usize).is_multiple_of(128) {
            return Err(Error::corrupt(
                &label,
                Corruption::Misaligned {
                    offset: seg.data_ptr() as usize % 128,
                    align: 128,
                },
            )
            .into());
        }
        if !seg.is_writable() {
            return Err(Error::ReadOnly { name: label }.into());
        }
        // A `BytesMap` takes the sizes the parameters give.
        let untyped = std::any::TypeId::of::<(K, V)>()
            == std::any::TypeId::of::<(bytes::Untyped, bytes::Untyped)>();
        if !untyped
            && (geo.key_size, geo.value_size) != (size_of::<K>() as u64, size_of::<V>() as u64)
        {
            return Err(Error::TypeMismatch {
                name: label,
                expected: format!(
                    "a map with {}-byte keys and {}-byte values",
                    size_of::<K>(),
                    size_of::<V>()
                ),
                found: format!(
                    "a map with {}-byte keys and {}-byte values",
                    geo.key_size, geo.value_size
                ),
            }
            .into());
        }
        // Every shard's mutex is checked before glibc ever sees it (with `pread`;
        // the mapping is not touched): bytes that are not a mutex this library
        // made could abort in the C library or never be unlocked.
        for s in 0..geo.shards {
            let at = seg.data_file_offset() + geo.head_offset(s);
            if let Err(bad) = check_mutex_in_file(seg.file(), at) {
                return Err(match bad.failure(&label, at) {
                    LockFailure::Segment(e) => MapError::Segment(e),
                    other => MapError::Lock(other),
                });
            }
        }
        Ok(SharedMap {
            seed: MapGeometry::seed(&c),
            seg,
            geo,
            _kv: PhantomData,
        })
    }

    /// The undo record's saved value of shard `s`.
    #[inline]
    fn undo_value(&self, s: u64) -> *mut u8 {
        // SAFETY: `head_offset(s) + SHARD_HEAD_FIXED + value_size <= head_offset(s)
        // + head_stride`, inside the data area. Within the `ShardHead` these bytes
        // are its `undo_inline` cell, so writing them while `&ShardHead`s exist is
        // allowed.
        unsafe {
            self.seg
                .data_ptr()
                .add((self.geo.head_offset(s) + SHARD_HEAD_FIXED) as usize)
        }
    }

    #[inline]
    fn entry(&self, s: u64, slot: u64) -> *mut u8 {
        // SAFETY: `s < shards` and `slot < slots` (callers mask with `slots - 1`),
        // so the entry lies inside the data area (checked geometry).
        unsafe {
            self.seg
                .data_ptr()
                .add(self.geo.entry_offset(s, slot) as usize)
        }
    }

    #[inline]
    fn state(&self, e: *mut u8) -> &AtomicU32 {
        // SAFETY: `e` is an entry of the mapping (from `entry`): its first four
        // bytes are its state word, 4-aligned (entries start at multiples of 8 from
        // a 128-aligned base); an atomic may alias memory other processes change.
        unsafe { &*e.cast::<AtomicU32>() }
    }

    /// Locks shard `s`, repairing it first if the previous holder died.
    fn lock(&self, s: u64) -> Result<Locked<'_>, MapError> {
        let head = self.head(s);
        let guard = match head.mutex.lock() {
            Ok(g) => g,
            Err(LockError::OwnerDied(mut g)) => {
                self.repair(s);
                g.mark_consistent();
                g
            }
            Err(e) => return Err(MapError::Lock(e.into_failure())),
        };
        // The counts are exact whenever the lock is free, so counts out of range
        // were written by someone else (a stray write, a forged file): they are
        // never used as they are (an insert would be refused forever, `to_vec`
        // would size an allocation by them), but recounted.
        let (len, tombstones) = (
            head.len.load(Ordering::Relaxed),
            head.tombstones.load(Ordering::Relaxed),
        );
        if len > self.geo.shard_capacity || tombstones > self.geo.slots - len {
            self.recount(s);
        }
        Ok(Locked {
            _guard: guard,
            head,
            shard: s,
        })
    }

    /// Makes shard `s` consistent after its lock holder died (the lock is held):
    /// rolls back a half-done value change, turns unknown entry states into
    /// tombstones and recounts `len` and `tombstones`. Idempotent, so a repairer
    /// that dies too is repaired by the next one.
    #[cold]
    fn repair(&self, s: u64) {
        let head = self.head(s);
        if head.undo_valid.load(Ordering::Acquire) != 0 {
            let slot = head.undo_slot.load(Ordering::Relaxed);
            if slot < self.geo.slots {
                let e = self.entry(s, slot);
                // SAFETY: the saved value and the entry's value are `value_size`
                // bytes inside the mapping (checked geometry) and do not overlap;
                // we hold the shard lock.
                unsafe {
                    ptr::copy_nonoverlapping(
                        self.undo_value(s),
                        e.add(self.geo.value_offset as usize),
                        self.geo.value_size as usize,
                    )
                };
            }
            head.undo_valid.store(0, Ordering::Release);
        }
        self.recount(s);
    }

    /// Turns unknown entry states of shard `s` into tombstones and recounts its
    /// `len` and `tombstones` (the lock is held); counts a repair.
    #[cold]
    fn recount(&self, s: u64) {
        let head = self.head(s);
        let (mut full, mut tombstones) = (0, 0);
        for slot in 0..self.geo.slots {
            let state = self.state(self.entry(s, slot));
            match state.load(Ordering::Relaxed) {
                FULL => full += 1,
                EMPTY => {}
                TOMBSTONE => tombstones += 1,
                _ => {
                    state.store(TOMBSTONE, Ordering::Relaxed);
                    tombstones += 1;
                }
            }
        }
        head.len.store(full, Ordering::Relaxed);
        head.tombstones.store(tombstones, Ordering::Relaxed);
        head.repairs.fetch_add(1, Ordering::Relaxed);
        if let Ok(c) = self.seg.counter(MAP_REPAIRS_COUNTER) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[inline]
    fn hash(&self, key: &K) -> u64 {
        hash_key(self.seed, bytemuck::bytes_of(key))
    }

    /// Looks for `key` (hash `h`) in the locked shard.
    #[inline]
    fn find(&self, l: &Locked<'_>, h: u64, key: &[u8]) -> Probe {
        let mask = self.geo.slots - 1;
        let tag = (h >> 32) as u32;
        let mut slot = self.geo.home_slot(h);
        let mut free = None;
        for _ in 0..self.geo.slots {
            let e = self.entry(l.shard, slot);
            match self.state(e).load(Ordering::Relaxed) {
                FULL => {
                    // SAFETY: the entry's hash word (offset 4, 4-aligned) and key
                    // (`key.len()` bytes at 8) lie inside it; we hold the lock, so
                    // no process of this library writes them meanwhile.
                    let hit = unsafe {
                        ptr::read(e.add(4).cast::<u32>()) == tag
                            && std::slice::from_raw_parts(e.add(KEY_OFFSET as usize), key.len())
                                == key
                    };
                    if hit {
                        return Probe::Found(slot);
                    }
                }
                EMPTY => return Probe::Absent(free.or(Some(slot))),
                _ => {
                    free.get_or_insert(slot);
                }
            }
            slot = (slot + 1) & mask;
        }
        Probe::Absent(free)
    }

    #[inline]
    fn read_value(&self, s: u64, slot: u64) -> V {
        // SAFETY: the value lies inside the entry; `V: Pod`, so any bytes are a
        // valid `V`; unaligned read (entries are only 8-aligned).
        unsafe {
            ptr::read_unaligned(
                self.entry(s, slot)
                    .add(self.geo.value_offset as usize)
                    .cast::<V>(),
            )
        }
    }

    #[inline]
    fn read_key(&self, s: u64, slot: u64) -> K {
        // SAFETY: as for `read_value`, for the key at offset 8.
        unsafe { ptr::read_unaligned(self.entry(s, slot).add(KEY_OFFSET as usize).cast::<K>()) }
    }

    /// Replaces the value of a full entry: a value of 1, 2, 4 or 8 bytes with one
    /// atomic store (it cannot be torn, so it is its own commit point), a larger or
    /// odd-sized one through the undo record.
    #[inline]
    fn write_value_logged(&self, l: &Locked<'_>, slot: u64, value: &V) {
        let dst = self.entry(l.shard, slot);
        // SAFETY: the value lies inside the entry; entries start at multiples of 8
        // from a 128-aligned base and the value at a multiple of 8 inside them, so
        // it is aligned for any atomic of its size; atomics may alias memory other
        // processes change; we hold the shard lock.
        let val = unsafe { dst.add(self.geo.value_offset as usize) };
        let bytes = bytemuck::bytes_of(value);
        match *bytes {
            [a] => {
                // SAFETY: see above (1-byte aligned).
                let w = unsafe { &*val.cast::<AtomicU8>() };
                w.store(a, Ordering::Release);
            }
            [a, b] => {
                // SAFETY: see above (2-byte aligned).
                let w = unsafe { &*val.cast::<AtomicU16>() };
                w.store(u16::from_ne_bytes([a, b]), Ordering::Release);
            }
            [a, b, c, d] => {
                // SAFETY: see above (4-byte aligned).
                let w = unsafe { &*val.cast::<AtomicU32>() };
                w.store(u32::from_ne_bytes([a, b, c, d]), Ordering::Release);
            }
            [a, b, c, d, e, f, g, h] => {
                // SAFETY: see above (8-byte aligned).
                let w = unsafe { &*val.cast::<AtomicU64>() };
                w.store(
                    u64::from_ne_bytes([a, b, c, d, e, f, g, h]),
                    Ordering::Release,
                );
            }
            _ => self.write_value_undoable(l, slot, val, value),
        }
    }

    /// Replaces a value through the shard's undo record.
    fn write_value_undoable(&self, l: &Locked<'_>, slot: u64, val: *mut u8, value: &V) {
        // SAFETY: the saved value and the entry's value are `size_of::<V>()` bytes
        // inside the mapping and do not overlap; we hold the shard lock.
        unsafe {
            ptr::copy_nonoverlapping(val, self.undo_value(l.shard), size_of::<V>());
            l.head.undo_slot.store(slot, Ordering::Relaxed);
            l.head.undo_valid.store(1, Ordering::Release);
            // The value is written only after the undo record is complete (a
            // process killed in between leaves an exact copy to roll back to).
            compiler_fence(Ordering::SeqCst);
            ptr::write_unaligned(val.cast::<V>(), *value);
        }
        l.head.undo_valid.store(0, Ordering::Release);
    }

    /// Fills a free slot; the state word, written last, is the commit point.
    #[inline]
    fn fill(&self, l: &Locked<'_>, slot: u64, h: u64, key: &K, value: &V) {
        let e = self.entry(l.shard, slot);
        let state = self.state(e);
        let was_tombstone = state.load(Ordering::Relaxed) != EMPTY;
        // SAFETY: hash, key and value lie inside the entry; the entry is not full,
        // so no reader looks at them; we hold the shard lock.
        unsafe {
            ptr::write(e.add(4).cast::<u32>(), (h >> 32) as u32);
            ptr::write_unaligned(e.add(KEY_OFFSET as usize).cast::<K>(), *key);
            ptr::write_unaligned(e.add(self.geo.value_offset as usize).cast::<V>(), *value);
        }
        state.store(FULL, Ordering::Release);
        let head = l.head;
        head.len
            .store(head.len.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        if was_tombstone {
            let t = head.tombstones.load(Ordering::Relaxed);
            head.tombstones
                .store(t.saturating_sub(1), Ordering::Relaxed);
        }
    }

    #[cold]
    fn full(&self) -> MapError {
        MapError::Full {
            capacity: self.capacity(),
            len: self.len(),
        }
    }

    /// Inserts `value` under `key`; returns the value it replaces, if any.
    /// `Err(Full)` if `key` is new and its shard (or a one-shard map) is full.
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>, MapError> {
        let h = self.hash(&key);
        let l = self.lock(self.geo.shard_of(h))?;
        match self.find(&l, h, bytemuck::bytes_of(&key)) {
            Probe::Found(slot) => {
                let old = self.read_value(l.shard, slot);
                self.write_value_logged(&l, slot, &value);
                Ok(Some(old))
            }
            Probe::Absent(Some(slot))
                if l.head.len.load(Ordering::Relaxed) < self.geo.shard_capacity =>
            {
                self.fill(&l, slot, h, &key, &value);
                Ok(None)
            }
            Probe::Absent(_) => {
                drop(l);
                Err(self.full())
            }
        }
    }

    /// The value under `key`, if any.
    pub fn get(&self, key: &K) -> Result<Option<V>, MapError> {
        let h = self.hash(key);
        let l = self.lock(self.geo.shard_of(h))?;
        Ok(match self.find(&l, h, bytemuck::bytes_of(key)) {
            Probe::Found(slot) => Some(self.read_value(l.shard, slot)),
            Probe::Absent(_) => None,
        })
    }

    /// Whether `key` is in the map.
    pub fn contains_key(&self, key: &K) -> Result<bool, MapError> {
        let h = self.hash(key);
        let l = self.lock(self.geo.shard_of(h))?;
        Ok(matches!(
            self.find(&l, h, bytemuck::bytes_of(key)),
            Probe::Found(_)
        ))
    }

    /// Removes `key`; returns its value, if it was there.
    pub fn remove(&self, key: &K) -> Result<Option<V>, MapError> {
        let h = self.hash(key);
        let l = self.lock(self.geo.shard_of(h))?;
        let Probe::Found(slot) = self.find(&l, h, bytemuck::bytes_of(key)) else {
            return Ok(None);
        };
        let old = self.read_value(l.shard, slot);
        let mask = self.geo.slots - 1;
        // The commit point.
        self.state(self.entry(l.shard, slot))
            .store(TOMBSTONE, Ordering::Release);
        let head = l.head;
        head.len.store(
            head.len.load(Ordering::Relaxed).saturating_sub(1),
            Ordering::Relaxed,
        );
        let mut tombstones = head.tombstones.load(Ordering::Relaxed).saturating_add(1);
        // A tombstone followed by an empty slot ends every probe path through it,
        // so it can become empty; walk back along the run. Each step is one
        // store that leaves the table valid.
        if self
            .state(self.entry(l.shard, (slot + 1) & mask))
            .load(Ordering::Relaxed)
            == EMPTY
        {
            let mut s = slot;
            for _ in 0..self.geo.slots {
                let st = self.state(self.entry(l.shard, s));
                if st.load(Ordering::Relaxed) != TOMBSTONE {
                    break;
                }
                st.store(EMPTY, Ordering::Release);
                tombstones = tombstones.saturating_sub(1);
                s = s.wrapping_sub(1) & mask;
            }
        }
        head.tombstones.store(tombstones, Ordering::Relaxed);
        Ok(Some(old))
    }

    /// Changes the value under `key` in place, under the shard's lock: `f` gets a
    /// copy, and the result is stored as one undoable write (if `f` panics, the
    /// map is unchanged). Returns whether `key` was there. `f` must not use this
    /// map (a call to the same shard fails with `Lock(Deadlock)`).
    pub fn update(&self, key: &K, f: impl FnOnce(&mut V)) -> Result<bool, MapError> {
        let h = self.hash(key);
        let l = self.lock(self.geo.shard_of(h))?;
        match self.find(&l, h, bytemuck::bytes_of(key)) {
            Probe::Found(slot) => {
                let mut v = self.read_value(l.shard, slot);
                f(&mut v);
                self.write_value_logged(&l, slot, &v);
                Ok(true)
            }
            Probe::Absent(_) => Ok(false),
        }
    }

    /// Applies `f` to the value under `key`, or to `default` if `key` is absent
    /// (inserting it), atomically; returns the value stored. Python's
    /// `d[k] = f(d.get(k, default))` in one step (counters: `upsert(k, 0, |n| *n += 1)`).
    pub fn upsert(&self, key: K, default: V, f: impl FnOnce(&mut V)) -> Result<V, MapError> {
        let h = self.hash(&key);
        let l = self.lock(self.geo.shard_of(h))?;
        match self.find(&l, h, bytemuck::bytes_of(&key)) {
            Probe::Found(slot) => {
                let mut v = self.read_value(l.shard, slot);
                f(&mut v);
                self.write_value_logged(&l, slot, &v);
                Ok(v)
            }
            Probe::Absent(Some(slot))
                if l.head.len.load(Ordering::Relaxed) < self.geo.shard_capacity =>
            {
                let mut v = default;
                f(&mut v);
                self.fill(&l, slot, h, &key, &v);
                Ok(v)
            }
            Probe::Absent(_) => {
                drop(l);
                Err(self.full())
            }
        }
    }

    /// The entries, as a snapshot: each shard is copied under its lock (shard by
    /// shard, so with concurrent writers the whole is not one instant). Unordered.
    pub fn to_vec(&self) -> Result<Vec<(K, V)>, MapError> {
        let mut v = Vec::new();
        for s in 0..self.geo.shards {
            let l = self.lock(s)?;
            // Under the lock `len` is at most the shard's capacity (`lock` recounts
            // otherwise): never more than the entries the mapping holds.
            v.reserve(
                l.head
                    .len
                    .load(Ordering::Relaxed)
                    .min(self.geo.shard_capacity) as usize,
            );
            for slot in 0..self.geo.slots {
                if self.state(self.entry(s, slot)).load(Ordering::Relaxed) == FULL {
                    v.push((self.read_key(s, slot), self.read_value(s, slot)));
                }
            }
            drop(l);
        }
        Ok(v)
    }

    /// Iterates over a snapshot of the entries (see [`to_vec`](Self::to_vec)).
    pub fn iter(&self) -> Result<std::vec::IntoIter<(K, V)>, MapError> {
        Ok(self.to_vec()?.into_iter())
    }

    /// Removes every entry (shard by shard, each under its lock).
    pub fn clear(&self) -> Result<(), MapError> {
        for s in 0..self.geo.shards {
            let l = self.lock(s)?;
            // First every full entry becomes a tombstone (each a valid remove);
            // with no full entry left, any state of the others is valid.
            for slot in 0..self.geo.slots {
                let st = self.state(self.entry(s, slot));
                if st.load(Ordering::Relaxed) == FULL {
                    st.store(TOMBSTONE, Ordering::Release);
                }
            }
            l.head.len.store(0, Ordering::Relaxed);
            for slot in 0..self.geo.slots {
                self.state(self.entry(s, slot))
                    .store(EMPTY, Ordering::Release);
            }
            l.head.tombstones.store(0, Ordering::Relaxed);
        }
        Ok(())
    }
}

impl<K, V> SharedMap<K, V> {
    /// Number of entries: the sum of the shards' counts, read without locks (exact
    /// when nobody is changing the map). Never more than [`max_len`](Self::max_len):
    /// a shard's count beyond its capacity (written by someone else) counts as a
    /// full shard until the next lock of that shard recounts it.
    pub fn len(&self) -> usize {
        (0..self.geo.shards)
            .map(|s| {
                self.head(s)
                    .len
                    .load(Ordering::Relaxed)
                    .min(self.geo.shard_capacity)
            })
            .fold(0u64, u64::saturating_add) as usize
    }

    #[inline]
    fn head(&self, s: u64) -> &ShardHead {
        // SAFETY: `s < shards` (callers); the head lies inside the data area
        // (geometry checked at attach), 128-aligned (base checked at attach), and
        // all its shared fields are atomics or the mutex (interior mutability), so
        // a shared reference is fine for as long as the mapping (`self`) lives.
        unsafe {
            &*self
                .seg
                .data_ptr()
                .add(self.geo.head_offset(s) as usize)
                .cast::<ShardHead>()
        }
    }

    /// Whether the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The capacity the map was created with (see the type's docs).
    pub fn capacity(&self) -> usize {
        self.geo.capacity as usize
    }

    /// The most entries the map can ever hold (all shards full); equal to
    /// `capacity` for a one-shard map.
    pub fn max_len(&self) -> usize {
        self.geo.max_len() as usize
    }

    /// Number of shards (each with its own lock).
    pub fn shards(&self) -> usize {
        self.geo.shards as usize
    }

    /// The seed of the key hash (see `FORMAT.md`), for finding entries elsewhere.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// How many times a shard was repaired after a process died holding its lock.
    pub fn repairs(&self) -> u64 {
        self.seg
            .counter(MAP_REPAIRS_COUNTER)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

impl<K, V> sealed::Sealed for SharedMap<K, V> {
    fn mapping(&self) -> &Mapping {
        self.seg.mapping()
    }
    fn mapping_mut(&mut self) -> &mut Mapping {
        self.seg.mapping_mut()
    }
}

impl<K, V> Segment for SharedMap<K, V> {
    type Error = MapError;
}

impl<K: Pod + Eq + Hash, V: Pod> Create<usize> for SharedMap<K, V> {
    fn create_segment(
        opts: &Options,
        name: Option<&str>,
        capacity: usize,
    ) -> Result<Self, MapError> {
        Self::create_map(opts, name, capacity)
    }
}

impl<K: Pod + Eq + Hash, V: Pod> Open for SharedMap<K, V> {
    fn open_segment(opts: &Options, name: &str) -> Result<Self, MapError> {
        Self::attach(SharedArray::open_kind(
            opts,
            Source::Named(name),
            ObjectKind::Map,
        )?)
    }

    fn open_file(opts: &Options, file: File) -> Result<Self, MapError> {
        Self::attach(SharedArray::open_kind(
            opts,
            Source::File(file),
            ObjectKind::Map,
        )?)
    }
}

impl<K, V> fmt::Debug for SharedMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMap")
            .field("name", &self.name())
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .field("shards", &self.shards())
            .finish()
    }
}

/// A seed for a new map's hash: std's per-process random keys, mixed with the
/// time and pid (no syscall of ours).
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish()
}
