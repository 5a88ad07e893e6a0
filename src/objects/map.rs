//! `SharedMap<K, V>`: Python's `Manager().dict()` without the server (its string
//! key type, `FixedStr<N>`, is in `fixed_str.rs`).

use std::cell::UnsafeCell;
use std::fmt;
use std::fs::File;
use std::hash::Hash;
use std::marker::PhantomData;
use std::mem::size_of;
use std::ptr;
use std::sync::atomic::{compiler_fence, fence, AtomicU32, AtomicU64, Ordering};

use bytemuck::{Pod, Zeroable};
use ndarray::Ix1;

use crate::array::SharedArray;
use crate::error::Error;
use crate::format::containers::{
    entry_state::{self, BUSY, EMPTY, FULL, TOMBSTONE},
    hash_key, MapGeometry, MAP_REPAIRS_COUNTER, MAP_VERSION, SHARD_HEAD_FIXED,
};
use crate::format::control::{ControlError, ObjectKind};
use crate::format::objects::ParamsError;
use crate::format::Corruption;
use crate::segment::handle::sealed;
use crate::segment::{Create, KindSpec, Mapping, Open, Options, Segment, Source};
use crate::sync::{check_mutex_in_file, LockError, LockFailure, RawMutexGuard, RawRobustMutex};
use crate::sys::atomic::{cas16, cas16_supported, prefetch_for_write};

mod bytes;
pub use bytes::BytesMap;

/// Why a map operation, create or open did not succeed.
///
/// ```
/// use shmarray::{containers::MapError, Error, SharedMap};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let name = format!("doc-map-error-{}", std::process::id());
/// // One shard (capacity < 2048): the capacity is exact.
/// let m = SharedMap::<u64, u64>::create(&name, 2)?;
/// m.insert(1, 10)?;
/// m.insert(2, 20)?;
/// match m.insert(3, 30) {
///     Err(MapError::Full { capacity, len }) => assert_eq!((capacity, len), (2, 2)),
///     other => panic!("expected Full, got {other:?}"),
/// }
/// assert_eq!(m.insert(1, 11)?, Some(10)); // a key that is there needs no room
/// // Parameters out of range are refused before anything is created...
/// assert!(matches!(
///     SharedMap::<u64, u64>::create(&format!("{name}-empty"), 0),
///     Err(MapError::Params(_))
/// ));
/// // ...and what goes wrong with the segment itself is an `Error`.
/// assert!(matches!(
///     SharedMap::<u64, u64>::open(&format!("{name}-missing")),
///     Err(MapError::Segment(Error::NotFound { .. }))
/// ));
/// # Ok(()) }
/// ```
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
/// and without pickling. Every operation runs in the calling process, in tens to
/// hundreds of nanoseconds: reads ([`get`](Self::get),
/// [`contains_key`](Self::contains_key)) take no lock and write nothing shared,
/// and so does replacing the value of a key that is there when values are at
/// most 8 bytes ([`insert`](Self::insert)); everything else takes the lock of
/// one shard.
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
/// state word, written last); an in-place change of a value larger than 8 bytes
/// marks the entry busy and first saves the old value in the shard's undo record;
/// a value of at most 8 bytes is replaced with one atomic instruction. The next
/// process to lock the shard is told the holder died, rolls back the undo record,
/// recounts the shard, and goes on; the user never sees it, except in
/// [`repairs`](Self::repairs). Readers take no lock: every entry's state word
/// carries a generation that each change advances, and a read is kept only if the
/// entry's state word was the same before and after the key and value were copied
/// (else it starts over, and after a few tries takes the lock), so a read never
/// returns a torn value or another key's value, and a reader killed anywhere holds
/// nothing.
///
/// # Files from others
/// The layout (shards, slots, strides) is re-derived from the checksummed
/// parameters at open and the file refused unless it agrees: a forged file is
/// `Err(Segment(Corrupt))`, never a wild access. A peer writing garbage into the
/// table can lose or garble entries, but cannot make this process touch memory
/// outside the map.
///
/// # Threads
/// `Send + Sync`: threads may share one handle (the same rules as processes).
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
        Self::create_geo(opts, name, geo)
    }

    /// Creates map `name` of geometry `geo` (also `BytesMap`'s way in, with the
    /// sizes it was given: one layout for both).
    pub(super) fn create_geo(
        opts: &Options,
        name: Option<&str>,
        geo: MapGeometry,
    ) -> Result<Self, MapError> {
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

    /// Inserts `value` under `key`; returns the value it replaces, if any.
    /// `Err(Full)` if `key` is new and its shard (or a one-shard map) is full.
    ///
    /// Replacing the value of a key that is there takes no lock when values are
    /// at most 8 bytes (one 16-byte compare-and-swap of the entry).
    #[inline]
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>, MapError> {
        let mut old = V::zeroed();
        let replaced = self.raw_insert(
            bytemuck::bytes_of(&key),
            bytemuck::bytes_of(&value),
            bytemuck::bytes_of_mut(&mut old),
        )?;
        Ok(replaced.then_some(old))
    }

    /// The value under `key`, if any. Takes no lock (an optimistic read, validated
    /// by the entry's generation), unless writers keep changing the entry.
    #[inline]
    pub fn get(&self, key: &K) -> Result<Option<V>, MapError> {
        let mut v = V::zeroed();
        let found = self.raw_get(bytemuck::bytes_of(key), bytemuck::bytes_of_mut(&mut v))?;
        Ok(found.then_some(v))
    }

    /// Whether `key` is in the map (as [`get`](Self::get), without a lock).
    #[inline]
    pub fn contains_key(&self, key: &K) -> Result<bool, MapError> {
        let mut v = V::zeroed();
        self.raw_get(bytemuck::bytes_of(key), bytemuck::bytes_of_mut(&mut v))
    }

    /// Removes `key`; returns its value, if it was there.
    pub fn remove(&self, key: &K) -> Result<Option<V>, MapError> {
        let mut old = V::zeroed();
        let found = self.raw_remove(bytemuck::bytes_of(key), bytemuck::bytes_of_mut(&mut old))?;
        Ok(found.then_some(old))
    }

    /// Changes the value under `key` in place, under the shard's lock: `f` gets a
    /// copy, and the result is stored as one undoable write (if `f` panics, the
    /// map is unchanged). Returns whether `key` was there. `f` must not use this
    /// map (an operation that needs the same shard's lock fails with
    /// `Lock(Deadlock)`).
    ///
    /// ```
    /// use shmarray::{containers::MapError, sync::LockFailure, SharedMap};
    /// let m = SharedMap::<u32, [f32; 4]>::create(&format!("doc-map-update-{}", std::process::id()), 10)?;
    /// m.insert(1, [0.0; 4])?;
    /// assert!(m.update(&1, |v| v[2] = 0.5)?);
    /// assert!(!m.update(&2, |_| unreachable!())?); // absent: `f` is not called
    /// assert_eq!(m.get(&1)?, Some([0.0, 0.0, 0.5, 0.0]));
    /// // `f` must not call back into the map: an error, not a hang.
    /// let mut inner = None;
    /// m.update(&1, |_| inner = Some(m.insert(1, [9.0; 4])))?;
    /// assert!(matches!(inner, Some(Err(MapError::Lock(LockFailure::Deadlock)))));
    /// # Ok::<(), MapError>(())
    /// ```
    pub fn update(&self, key: &K, f: impl FnOnce(&mut V)) -> Result<bool, MapError> {
        let mut v = V::zeroed();
        self.raw_update(
            bytemuck::bytes_of(key),
            bytemuck::bytes_of_mut(&mut v),
            |b| typed(b, f),
        )
    }

    /// Applies `f` to the value under `key`, or to `default` if `key` is absent
    /// (inserting it), atomically; returns the value stored. Python's
    /// `d[k] = f(d.get(k, default))` in one step (counters: `upsert(k, 0, |n| *n += 1)`).
    ///
    /// ```
    /// use shmarray::{containers::FixedStr, SharedMap};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let name = format!("doc-map-upsert-{}", std::process::id());
    /// let counts = SharedMap::<FixedStr<8>, u64>::create(&name, 100)?;
    /// // Every process counts into the same map; no count is lost.
    /// for word in "a rose is a rose".split(' ') {
    ///     counts.upsert(FixedStr::new(word)?, 0, |n| *n += 1)?;
    /// }
    /// let mut all: Vec<(String, u64)> =
    ///     counts.to_vec()?.into_iter().map(|(k, n)| (k.as_str().to_string(), n)).collect();
    /// all.sort();
    /// assert_eq!(all, [("a".into(), 2), ("is".into(), 1), ("rose".into(), 2)]);
    /// # Ok(()) }
    /// ```
    pub fn upsert(&self, key: K, default: V, f: impl FnOnce(&mut V)) -> Result<V, MapError> {
        let mut out = default;
        self.raw_upsert(
            bytemuck::bytes_of(&key),
            bytemuck::bytes_of_mut(&mut out),
            |b| typed(b, f),
        )?;
        Ok(out)
    }

    /// The entries, as a snapshot: each shard is copied under its lock (shard by
    /// shard, so with concurrent writers the whole is not one instant). Unordered.
    pub fn to_vec(&self) -> Result<Vec<(K, V)>, MapError> {
        self.raw_collect(|k, v| {
            (
                bytemuck::pod_read_unaligned(k),
                bytemuck::pod_read_unaligned(v),
            )
        })
    }

    /// Iterates over a snapshot of the entries (see [`to_vec`](Self::to_vec)).
    pub fn iter(&self) -> Result<std::vec::IntoIter<(K, V)>, MapError> {
        Ok(self.to_vec()?.into_iter())
    }

    /// Removes every entry (shard by shard, each under its lock).
    pub fn clear(&self) -> Result<(), MapError> {
        self.raw_clear()
    }
}

/// Runs a typed closure on a value's bytes (`V: Pod`, so any bytes are a `V`).
#[inline]
fn typed<V: Pod>(bytes: &mut [u8], f: impl FnOnce(&mut V)) {
    let mut v: V = bytemuck::pod_read_unaligned(bytes);
    f(&mut v);
    bytes.copy_from_slice(bytemuck::bytes_of(&v));
}

/// How many times an optimistic read or lock-free replace starts over after the
/// entry changed under it before it takes the shard's lock instead.
const OPTIMISTIC_TRIES: u32 = 4;

/// What a probe without the lock saw.
enum Seen {
    /// The key is in `slot`, whose state word was `state` before and after its
    /// value was copied out.
    Found { slot: u64, state: u32 },
    /// The key was absent at the moment the probe met an empty slot (or went
    /// around the whole table).
    Absent,
    /// The entry changed while it was read, or a larger value is being replaced:
    /// start over (or take the lock).
    Retry,
}

/// The byte-level operations behind the typed ones: keys are `key_size` bytes and
/// values `value_size` bytes (checked; a wrong length is `TypeMismatch`).
///
/// # Memory ordering
/// Entries are read without the lock and written under it (inserts of new keys,
/// removes, in-place changes), except that an inline value of a full entry may be
/// replaced without the lock by a 16-byte compare-and-swap of state, hash and value
/// together (`cas16`). The state word carries a generation, advanced by every
/// change to or from empty or tombstone (fill, remove, clear) and by every rewrite
/// of a larger value (busy, then full with the next generation); marking an entry
/// busy keeps it. So a state word that is the same before and after a copy of the
/// key and value (Acquire load, copy, Acquire fence, load) proves the entry held
/// that key and value all along (a seqlock per entry); with inline values the same
/// generation is enough, as the value is one atomic word. Writers publish a new entry with a
/// Release store of its state after its hash, key and value; they leave the full
/// state with an atomic swap (a full barrier), after which no lock-free replace can
/// succeed, so the value read after the swap is the last one. Keys and values are
/// copied with relaxed 8-byte atomic loads and stores (every field is padded to 8).
/// The 16-byte swap overlaps the 4-byte state and 8-byte value atomics: on x86-64
/// a locked instruction and an aligned load or store of bytes inside one cache line
/// are atomic with respect to each other whatever their sizes, which is what the
/// protocol relies on (Rust's memory model does not describe mixed-size atomics,
/// as it does not describe the other processes sharing the mapping).
impl<K, V> SharedMap<K, V> {
    /// `TypeMismatch` unless `key` and `value` have the map's sizes.
    #[inline]
    fn check_sizes(&self, key: usize, value: usize) -> Result<(), MapError> {
        if key as u64 == self.geo.key_size && value as u64 == self.geo.value_size {
            Ok(())
        } else {
            Err(self.size_mismatch(key, value))
        }
    }

    #[cold]
    fn size_mismatch(&self, key: usize, value: usize) -> MapError {
        MapError::Segment(Error::TypeMismatch {
            name: self.seg.name().unwrap_or("<anonymous>").to_string(),
            expected: format!(
                "{}-byte keys and {}-byte values",
                self.geo.key_size, self.geo.value_size
            ),
            found: format!("{key}-byte keys and {value}-byte values"),
        })
    }

    /// Looks `key` up; on success its value is in `out`.
    #[inline]
    pub(crate) fn raw_get(&self, key: &[u8], out: &mut [u8]) -> Result<bool, MapError> {
        self.check_sizes(key.len(), out.len())?;
        let h = hash_key(self.seed, key);
        let s = self.geo.shard_of(h);
        for _ in 0..OPTIMISTIC_TRIES {
            match self.probe_unlocked(s, h, key, out) {
                Seen::Found { .. } => return Ok(true),
                Seen::Absent => return Ok(false),
                Seen::Retry => std::hint::spin_loop(),
            }
        }
        self.get_locked(s, h, key, out)
    }

    /// `raw_get` under the shard's lock (after the entry kept changing).
    #[cold]
    fn get_locked(&self, s: u64, h: u64, key: &[u8], out: &mut [u8]) -> Result<bool, MapError> {
        let l = self.lock(s)?;
        Ok(match self.find(&l, h, key) {
            Probe::Found(slot) => {
                self.load_value(self.entry(s, slot), out);
                true
            }
            Probe::Absent(_) => false,
        })
    }

    /// Inserts or replaces; if replaced, the old value is in `old`.
    #[inline]
    pub(crate) fn raw_insert(
        &self,
        key: &[u8],
        value: &[u8],
        old: &mut [u8],
    ) -> Result<bool, MapError> {
        self.check_sizes(key.len(), value.len())?;
        self.check_sizes(key.len(), old.len())?;
        let h = hash_key(self.seed, key);
        let s = self.geo.shard_of(h);
        if self.geo.inline_value
            && cas16_supported()
            && self.replace_unlocked(s, h, key, value, old)
        {
            return Ok(true);
        }
        let l = self.lock(s)?;
        match self.find(&l, h, key) {
            Probe::Found(slot) => {
                self.replace_locked(&l, slot, value, old);
                Ok(true)
            }
            Probe::Absent(Some(slot))
                if l.head.len.load(Ordering::Relaxed) < self.geo.shard_capacity =>
            {
                self.fill(&l, slot, h, key, value);
                Ok(false)
            }
            Probe::Absent(_) => {
                drop(l);
                Err(self.full())
            }
        }
    }

    /// Removes `key`; if it was there, its value is in `old`.
    pub(crate) fn raw_remove(&self, key: &[u8], old: &mut [u8]) -> Result<bool, MapError> {
        self.check_sizes(key.len(), old.len())?;
        let h = hash_key(self.seed, key);
        let l = self.lock(self.geo.shard_of(h))?;
        let Probe::Found(slot) = self.find(&l, h, key) else {
            return Ok(false);
        };
        let e = self.entry(l.shard, slot);
        let state = self.state(e);
        // The commit point: a swap, so that no lock-free replace succeeds after it
        // and the value read next is the last one.
        let st = state.load(Ordering::Relaxed);
        state.swap(entry_state::next(st, TOMBSTONE), Ordering::SeqCst);
        self.load_value(e, old);
        let head = l.head;
        head.len.store(
            head.len.load(Ordering::Relaxed).saturating_sub(1),
            Ordering::Relaxed,
        );
        let mut tombstones = head.tombstones.load(Ordering::Relaxed).saturating_add(1);
        // A tombstone followed by an empty slot ends every probe path through it,
        // so it can become empty; walk back along the run. Each step is one
        // store that leaves the table valid.
        let mask = self.geo.slots - 1;
        let after = self.state(self.entry(l.shard, (slot + 1) & mask));
        if entry_state::kind(after.load(Ordering::Relaxed)) == EMPTY {
            let mut s = slot;
            for _ in 0..self.geo.slots {
                let st = self.state(self.entry(l.shard, s));
                let now = st.load(Ordering::Relaxed);
                if entry_state::kind(now) != TOMBSTONE {
                    break;
                }
                st.store(entry_state::next(now, EMPTY), Ordering::Release);
                tombstones = tombstones.saturating_sub(1);
                s = s.wrapping_sub(1) & mask;
            }
        }
        head.tombstones.store(tombstones, Ordering::Relaxed);
        Ok(true)
    }

    /// Changes the value under `key` in place with `f` (see `SharedMap::update`),
    /// on a copy in `buf`, which is left holding the value stored.
    pub(crate) fn raw_update(
        &self,
        key: &[u8],
        buf: &mut [u8],
        f: impl FnOnce(&mut [u8]),
    ) -> Result<bool, MapError> {
        self.check_sizes(key.len(), buf.len())?;
        let h = hash_key(self.seed, key);
        let l = self.lock(self.geo.shard_of(h))?;
        match self.find(&l, h, key) {
            Probe::Found(slot) => {
                self.change_locked(&l, slot, buf, f);
                Ok(true)
            }
            Probe::Absent(_) => Ok(false),
        }
    }

    /// Applies `f` to the value under `key`, or to `value` (the default) if `key`
    /// is absent, inserting it; the value stored is left in `value`.
    pub(crate) fn raw_upsert(
        &self,
        key: &[u8],
        value: &mut [u8],
        f: impl FnOnce(&mut [u8]),
    ) -> Result<(), MapError> {
        self.check_sizes(key.len(), value.len())?;
        let h = hash_key(self.seed, key);
        let l = self.lock(self.geo.shard_of(h))?;
        match self.find(&l, h, key) {
            Probe::Found(slot) => {
                self.change_locked(&l, slot, value, f);
                Ok(())
            }
            Probe::Absent(Some(slot))
                if l.head.len.load(Ordering::Relaxed) < self.geo.shard_capacity =>
            {
                f(value);
                self.fill(&l, slot, h, key, value);
                Ok(())
            }
            Probe::Absent(_) => {
                drop(l);
                Err(self.full())
            }
        }
    }

    /// `each(key, value)` of every entry, shard by shard under its lock.
    pub(crate) fn raw_collect<T>(
        &self,
        mut each: impl FnMut(&[u8], &[u8]) -> T,
    ) -> Result<Vec<T>, MapError> {
        let mut all = Vec::new();
        let mut k = vec![0u8; self.geo.key_size as usize];
        let mut v = vec![0u8; self.geo.value_size as usize];
        for s in 0..self.geo.shards {
            let l = self.lock(s)?;
            // Under the lock `len` is at most the shard's capacity (`lock` recounts
            // otherwise): never more than the entries the mapping holds.
            all.reserve(
                l.head
                    .len
                    .load(Ordering::Relaxed)
                    .min(self.geo.shard_capacity) as usize,
            );
            for slot in 0..self.geo.slots {
                let e = self.entry(s, slot);
                if self.settled_kind(e) == FULL {
                    // SAFETY: the key field lies inside the entry, padded to 8.
                    unsafe { load_words(e.add(self.geo.key_offset as usize), &mut k) };
                    self.load_value(e, &mut v);
                    all.push(each(&k, &v));
                }
            }
            drop(l);
        }
        Ok(all)
    }

    /// Removes every entry (shard by shard, each under its lock).
    pub(crate) fn raw_clear(&self) -> Result<(), MapError> {
        for s in 0..self.geo.shards {
            let l = self.lock(s)?;
            // First every full entry becomes a tombstone (each a valid remove);
            // with no full entry left, any state of the others is valid.
            for slot in 0..self.geo.slots {
                let e = self.entry(s, slot);
                let st = self.state(e);
                if self.settled_kind(e) == FULL {
                    let now = st.load(Ordering::Relaxed);
                    st.swap(entry_state::next(now, TOMBSTONE), Ordering::SeqCst);
                }
            }
            l.head.len.store(0, Ordering::Relaxed);
            for slot in 0..self.geo.slots {
                let st = self.state(self.entry(s, slot));
                let now = st.load(Ordering::Relaxed);
                if entry_state::kind(now) != EMPTY {
                    st.store(entry_state::next(now, EMPTY), Ordering::Release);
                }
            }
            l.head.tombstones.store(0, Ordering::Relaxed);
        }
        Ok(())
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

    #[inline]
    fn hash_word(&self, e: *mut u8) -> &AtomicU32 {
        // SAFETY: as for `state`, for the word at offset 4.
        unsafe { &*e.add(4).cast::<AtomicU32>() }
    }

    /// The value word of an entry with an inline value.
    #[inline]
    fn value_word(&self, e: *mut u8) -> &AtomicU64 {
        debug_assert!(self.geo.inline_value);
        // SAFETY: as for `state`: with inline values the word at offset 8 is the
        // value, 8-aligned.
        unsafe { &*e.add(8).cast::<AtomicU64>() }
    }

    /// Copies an entry's value into `out` (`value_size` bytes).
    #[inline]
    fn load_value(&self, e: *mut u8, out: &mut [u8]) {
        if self.geo.inline_value {
            let w = self.value_word(e).load(Ordering::Relaxed).to_ne_bytes();
            out.copy_from_slice(&w[..out.len()]);
        } else {
            // SAFETY: the value field lies inside the entry, 8-aligned and padded to
            // 8; `out` is `value_size` bytes (checked by the callers).
            unsafe { load_words(e.add(self.geo.value_offset as usize), out) }
        }
    }

    /// Writes an entry's value (only under the lock, the entry not readable or
    /// inline).
    #[inline]
    fn store_value(&self, e: *mut u8, value: &[u8]) {
        if self.geo.inline_value {
            self.value_word(e)
                .store(inline_word(value), Ordering::Release);
        } else {
            // SAFETY: as in `load_value`.
            unsafe { store_words(e.add(self.geo.value_offset as usize), value) }
        }
    }

    /// Whether the key field of entry `e` holds `key`.
    #[inline]
    fn key_is(&self, e: *mut u8, key: &[u8]) -> bool {
        // SAFETY: the key field lies inside the entry, 8-aligned, padded to 8;
        // `key` is `key_size` bytes (checked by the callers).
        unsafe { words_equal(e.add(self.geo.key_offset as usize), key) }
    }

    /// Probes shard `s` for `key` without the lock, copying its value into `out`.
    #[inline]
    fn probe_unlocked(&self, s: u64, h: u64, key: &[u8], out: &mut [u8]) -> Seen {
        let mask = self.geo.slots - 1;
        let tag = (h >> 32) as u32;
        let mut slot = self.geo.home_slot(h);
        for _ in 0..self.geo.slots {
            let e = self.entry(s, slot);
            let state = self.state(e);
            let st = state.load(Ordering::Acquire);
            match entry_state::kind(st) {
                EMPTY => return Seen::Absent,
                TOMBSTONE => {}
                kind => {
                    if self.hash_word(e).load(Ordering::Relaxed) == tag && self.key_is(e, key) {
                        if kind == BUSY && !self.geo.inline_value {
                            return Seen::Retry;
                        }
                        self.load_value(e, out);
                        fence(Ordering::Acquire);
                        // An inline value is one atomic word: only a new generation
                        // (the key removed or replaced) spoils the copy, not the
                        // entry turning busy and back.
                        let spoiled = if self.geo.inline_value {
                            !entry_state::KIND
                        } else {
                            u32::MAX
                        };
                        if (state.load(Ordering::Relaxed) ^ st) & spoiled != 0 {
                            return Seen::Retry;
                        }
                        return Seen::Found { slot, state: st };
                    }
                }
            }
            slot = (slot + 1) & mask;
        }
        Seen::Absent
    }

    /// Replaces the inline value of `key` without the lock if `key` is there and
    /// not busy: true with the old value in `old`, false to take the lock (a new
    /// key, a busy entry, or an entry that kept changing).
    #[inline]
    fn replace_unlocked(&self, s: u64, h: u64, key: &[u8], value: &[u8], old: &mut [u8]) -> bool {
        let new = inline_word(value);
        let tag = u64::from((h >> 32) as u32) << 32;
        // The key is most likely in its home slot, which is about to be written.
        prefetch_for_write(self.entry(s, self.geo.home_slot(h)));
        for _ in 0..OPTIMISTIC_TRIES {
            match self.probe_unlocked(s, h, key, old) {
                Seen::Found { slot, state } if entry_state::kind(state) == FULL => {
                    let e = self.entry(s, slot);
                    let head = u64::from(state) | tag;
                    let mut expected = self.value_word(e).load(Ordering::Relaxed);
                    loop {
                        // SAFETY: inline entries are 16-byte units, 16-aligned
                        // (stride a multiple of 16 from a 128-aligned base), inside
                        // the mapping; the caller checked `cas16_supported`.
                        let seen = unsafe { cas16(e, [head, expected], [head, new]) };
                        if seen == [head, expected] {
                            old.copy_from_slice(&expected.to_ne_bytes()[..old.len()]);
                            return true;
                        }
                        if seen[0] != head {
                            break;
                        }
                        expected = seen[1];
                    }
                }
                Seen::Retry => {}
                _ => return false,
            }
            std::hint::spin_loop();
        }
        false
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
    /// rolls back a half-done value change, makes busy entries full again and
    /// recounts `len` and `tombstones`. Idempotent, so a repairer that dies too is
    /// repaired by the next one.
    #[cold]
    fn repair(&self, s: u64) {
        let head = self.head(s);
        if head.undo_valid.load(Ordering::Acquire) != 0 {
            let slot = head.undo_slot.load(Ordering::Relaxed);
            if slot < self.geo.slots && !self.geo.inline_value {
                let e = self.entry(s, slot);
                let n = self.geo.value_size as usize;
                let mut saved = vec![0u8; n];
                // SAFETY: the saved value is `value_size` bytes inside the mapping
                // (checked geometry), written and read only under the shard lock,
                // which we hold; `saved` is ours.
                unsafe { ptr::copy_nonoverlapping(self.undo_value(s), saved.as_mut_ptr(), n) };
                // SAFETY: as in `store_value`.
                unsafe { store_words(e.add(self.geo.value_offset as usize), &saved) };
            }
            head.undo_valid.store(0, Ordering::Release);
        }
        self.recount(s);
    }

    /// Makes busy entries of shard `s` full again and recounts its `len` and
    /// `tombstones` (the lock is held); counts a repair.
    #[cold]
    fn recount(&self, s: u64) {
        let head = self.head(s);
        let (mut full, mut tombstones) = (0, 0);
        for slot in 0..self.geo.slots {
            match self.settled_kind(self.entry(s, slot)) {
                FULL => full += 1,
                TOMBSTONE => tombstones += 1,
                _ => {}
            }
        }
        head.len.store(full, Ordering::Relaxed);
        head.tombstones.store(tombstones, Ordering::Relaxed);
        head.repairs.fetch_add(1, Ordering::Relaxed);
        if let Ok(c) = self.seg.counter(MAP_REPAIRS_COUNTER) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The kind of entry `e`, under the shard's lock. A busy entry there was left
    /// by a holder that died (or written by someone else): its value is whole (an
    /// inline value is one atomic word; a larger one was rolled back by `repair`
    /// or written completely), so it becomes full again, with a new generation.
    #[inline]
    fn settled_kind(&self, e: *mut u8) -> u32 {
        let state = self.state(e);
        let st = state.load(Ordering::Relaxed);
        match entry_state::kind(st) {
            BUSY => {
                state.store(entry_state::next(st, FULL), Ordering::Release);
                FULL
            }
            kind => kind,
        }
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
            match self.settled_kind(e) {
                FULL => {
                    if self.hash_word(e).load(Ordering::Relaxed) == tag && self.key_is(e, key) {
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

    /// Replaces the value of a full entry under the lock; the old one goes to
    /// `old`. An inline value: one atomic swap (which also orders it with lock-free
    /// replaces). A larger one: through the undo record, the entry busy meanwhile.
    #[inline]
    fn replace_locked(&self, l: &Locked<'_>, slot: u64, value: &[u8], old: &mut [u8]) {
        let e = self.entry(l.shard, slot);
        if self.geo.inline_value {
            let was = self
                .value_word(e)
                .swap(inline_word(value), Ordering::SeqCst);
            old.copy_from_slice(&was.to_ne_bytes()[..old.len()]);
        } else {
            let claim = self.claim(e);
            self.load_value(e, old);
            self.write_value_undoable(l, slot, value);
            claim.release(true);
        }
    }

    /// Changes the value of a full entry under the lock with `f` (on a copy in
    /// `buf`, which is left holding the value stored). The entry is busy meanwhile,
    /// so lock-free replaces wait for the lock; if `f` panics, nothing changed.
    fn change_locked(&self, l: &Locked<'_>, slot: u64, buf: &mut [u8], f: impl FnOnce(&mut [u8])) {
        let e = self.entry(l.shard, slot);
        let claim = self.claim(e);
        self.load_value(e, buf);
        f(buf);
        if self.geo.inline_value {
            self.store_value(e, buf);
            claim.release(false);
        } else {
            self.write_value_undoable(l, slot, buf);
            claim.release(true);
        }
    }

    /// Marks a full entry busy (a swap: a full barrier, so no lock-free replace
    /// succeeds after it); the returned claim makes it full again when released or
    /// dropped (on a panic).
    #[inline]
    fn claim(&self, e: *mut u8) -> Claim<'_> {
        let state = self.state(e);
        let st = state.load(Ordering::Relaxed);
        state.swap((st & !entry_state::KIND) | BUSY, Ordering::SeqCst);
        Claim { state, was: st }
    }

    /// Replaces a larger value through the shard's undo record (the entry is
    /// busy, so nobody reads it).
    fn write_value_undoable(&self, l: &Locked<'_>, slot: u64, value: &[u8]) {
        let e = self.entry(l.shard, slot);
        // SAFETY: the saved value and the entry's value are `value_size` (=
        // `value.len()`) bytes inside the mapping and do not overlap; we hold the
        // shard lock and the entry is busy, so nobody else writes either.
        unsafe {
            ptr::copy_nonoverlapping(
                e.add(self.geo.value_offset as usize),
                self.undo_value(l.shard),
                value.len(),
            )
        };
        l.head.undo_slot.store(slot, Ordering::Relaxed);
        l.head.undo_valid.store(1, Ordering::Release);
        // The value is written only after the undo record is complete (a process
        // killed in between leaves an exact copy to roll back to).
        compiler_fence(Ordering::SeqCst);
        self.store_value(e, value);
        compiler_fence(Ordering::SeqCst);
        l.head.undo_valid.store(0, Ordering::Release);
    }

    /// Fills a free slot; the state word, written last, is the commit point.
    #[inline]
    fn fill(&self, l: &Locked<'_>, slot: u64, h: u64, key: &[u8], value: &[u8]) {
        let e = self.entry(l.shard, slot);
        let state = self.state(e);
        let st = state.load(Ordering::Relaxed);
        let was_tombstone = entry_state::kind(st) != EMPTY;
        self.hash_word(e).store((h >> 32) as u32, Ordering::Relaxed);
        // SAFETY: the key field lies inside the entry, padded to 8; the entry is
        // not full, so no reader takes its bytes; we hold the shard lock.
        unsafe { store_words(e.add(self.geo.key_offset as usize), key) };
        self.store_value(e, value);
        state.store(entry_state::next(st, FULL), Ordering::Release);
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
}

/// A busy entry (see `SharedMap::claim`): full again when released or dropped.
struct Claim<'a> {
    state: &'a AtomicU32,
    was: u32,
}

impl Claim<'_> {
    /// Makes the entry full again; with a new generation if its (larger than
    /// inline) value was rewritten, so that readers that copied it meanwhile
    /// start over.
    #[inline]
    fn release(self, new_generation: bool) {
        let st = if new_generation {
            entry_state::next(self.was, FULL)
        } else {
            self.was
        };
        self.state.store(st, Ordering::Release);
        std::mem::forget(self);
    }
}

impl Drop for Claim<'_> {
    /// Only on a panic of the caller's closure, before anything was written.
    fn drop(&mut self) {
        self.state.store(self.was, Ordering::Release);
    }
}

/// An inline value (at most 8 bytes) as its word, zero-padded.
#[inline]
fn inline_word(value: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w[..value.len()].copy_from_slice(value);
    u64::from_ne_bytes(w)
}

/// Copies `out.len()` bytes from `src` with relaxed 8-byte atomic loads.
///
/// # Safety
/// `src` is 8-aligned and valid for reads of `out.len()` rounded up to a multiple
/// of 8 (a field padded to 8), for as long as the call lasts.
#[inline]
unsafe fn load_words(src: *const u8, out: &mut [u8]) {
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        // SAFETY: word `i` lies inside the padded field, 8-aligned (the contract);
        // an atomic may alias memory other processes change.
        let w = unsafe { &*src.add(i * 8).cast::<AtomicU64>() }.load(Ordering::Relaxed);
        chunk.copy_from_slice(&w.to_ne_bytes()[..chunk.len()]);
    }
}

/// Writes `bytes` to `dst` with relaxed 8-byte atomic stores, zero-padding the
/// last word.
///
/// # Safety
/// As [`load_words`], for writes.
#[inline]
unsafe fn store_words(dst: *mut u8, bytes: &[u8]) {
    for (i, chunk) in bytes.chunks(8).enumerate() {
        // SAFETY: as in `load_words`.
        unsafe { &*dst.add(i * 8).cast::<AtomicU64>() }
            .store(inline_word(chunk), Ordering::Relaxed);
    }
}

/// Whether the field at `src` starts with `bytes` (relaxed 8-byte atomic loads).
///
/// # Safety
/// As [`load_words`].
#[inline]
unsafe fn words_equal(src: *const u8, bytes: &[u8]) -> bool {
    bytes.chunks(8).enumerate().all(|(i, chunk)| {
        // SAFETY: as in `load_words`.
        let w = unsafe { &*src.add(i * 8).cast::<AtomicU64>() }.load(Ordering::Relaxed);
        w.to_ne_bytes()[..chunk.len()] == *chunk
    })
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
