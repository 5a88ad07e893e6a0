//! The control block: one page after the data that turns a `.npy` file into a
//! segment. It says what object the segment is (its kind and the kind's
//! parameters), who made it and when, and holds the state processes share: the
//! publication state, flags, the robust lock, further sync state and counters.
//!
//! Byte layout (little endian), offsets from the start of the block:
//!
//! | offset | bytes | field | written |
//! |---|---|---|---|
//! | 0 | 8 | magic `SHMARRCB` | before publication |
//! | 8 | 4 | layout version (3) | before publication |
//! | 12 | 4 | object kind ([`ObjectKind::code`]) | before publication |
//! | 16 | 4 | kind version | before publication |
//! | 20 | 4 | dtype code ([`Dtype::code`]) | before publication |
//! | 24 | 4 | ndim | before publication |
//! | 28 | 4 | creator pid (in the creator's pid namespace; informational) | before publication |
//! | 32 | 8 | creator start time (clock ticks since boot; informational) | before publication |
//! | 40 | 8 | creator pid namespace inode (0: unknown; informational) | before publication |
//! | 48 | 8 | creation time, ms since the Unix epoch | before publication |
//! | 56 | 8 | data offset | before publication |
//! | 64 | 8 | data length | before publication |
//! | 72 | 64 | eight kind parameters (`u64`) | before publication |
//! | 136 | 8 | FNV-1a 64 of the header window (first 4 KiB of the header region) followed by bytes 0..136 | before publication |
//! | 144 | 4 | state (atomic): 1 = ready | before publication |
//! | 148 | 4 | flags (atomic): 1 = persistent, 2 = lock initialised | any time |
//! | 256 | 128 | the robust mutex (`pthread_mutex_t`, process-shared) | by lockers |
//! | 384 | 64 | read-write lock state: writer word, registered-readers mask | by lockers |
//! | 448 | 320 | reserved (zero) | |
//! | 768 | 64 × 8 | scratch `u64` words of the kind (a vec's undo element) | by lockers |
//! | 1280 | 8 × 128 | eight cache-padded `u64` counters | by users |
//! | 2304 | 56 × 32 | reader table of the read-write lock (one entry per reading handle) | by lockers |
//!
//! Readers copy bytes 0..152 once (`pread`) and validate the copy; nothing that the
//! checksum covers is ever read from shared memory again.

use std::cell::UnsafeCell;
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::dtype::{dtype_from_code, Dtype};
use super::npy::Layout;
use super::{CONTROL_SIZE, PAGE};

/// Magic at the start of the control block.
pub(crate) const CONTROL_MAGIC: [u8; 8] = *b"SHMARRCB";

/// Version of the control block layout. Bumped on any incompatible change.
pub(crate) const LAYOUT_VERSION: u32 = 3;

/// Bytes at the start of the control block that are written once, before
/// publication, and covered by the checksum.
pub(crate) const IMMUTABLE_LEN: usize = 136;

/// Bytes a reader copies: the immutable part, the checksum, state and flags.
pub(crate) const CONTROL_HEAD_LEN: usize = 152;

/// Number of kind parameters.
pub(crate) const PARAMS: usize = 8;

/// Number of general-purpose atomic counters in a control block.
pub(crate) const COUNTERS: usize = 8;

/// Flag bits (`flags` word).
pub(crate) mod flags {
    /// The segment outlives its creating handle and `shmarray gc` leaves it alone.
    pub(crate) const PERSISTENT: u32 = 1;
    /// The creator initialised the robust mutex. Without it (a platform without
    /// robust mutexes) locking reports `Unsupported` instead of using zeroed bytes.
    pub(crate) const LOCK_READY: u32 = 2;
}

/// Publication states (`state` word; 0 means not published). Segments appear under
/// their name only when complete, so a reader meets anything but `READY` only in a
/// forged or damaged file.
pub(crate) mod state {
    /// Complete.
    pub(crate) const READY: u32 = 1;
}

/// What object a segment holds. Recorded in the control block, so no object poses
/// as another: a queue is never opened as an array, and `shmarray ls` reads the
/// kind from here.
///
/// ```
/// use shmarray::{format::ObjectKind, ndarray::Ix1, Error, Queue, Segment, SharedArray};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let name = format!("doc-object-kind-{}", std::process::id());
/// let q = Queue::<u64>::create(&name, 8)?;
/// assert_eq!(q.control().map(|c| c.kind), Some(ObjectKind::Queue));
/// // The queue's slots are bytes of an array, but it does not open as one.
/// match SharedArray::<u8, Ix1>::open(&name) {
///     Err(Error::KindMismatch { expected, found, .. }) => {
///         assert_eq!((expected, found), (ObjectKind::Array, ObjectKind::Queue))
///     }
///     other => panic!("expected KindMismatch, got {other:?}"),
/// }
/// assert_eq!(ObjectKind::from_code(ObjectKind::Queue.code()), Some(ObjectKind::Queue));
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ObjectKind {
    /// A `SharedArray<T, D>` (also every plain `.npy` file).
    Array,
    /// A `SharedValue<T>`: a 0-d array used under its lock.
    Value,
    /// A `SharedAtomicU32/U64/I64`: a 0-d array accessed atomically.
    Atomic,
    /// An `Event`: a 0-d `u32` futex word.
    Event,
    /// A `Barrier`: its state and member table as bytes.
    Barrier,
    /// A `Queue<T>`: member table, ring and slots as bytes.
    Queue,
    /// A `ByteQueue`: as a queue, with byte messages.
    ByteQueue,
    /// A `SharedMap<K, V>`: shards of a hash table as bytes.
    Map,
    /// A `SharedVec<T>`: a 1-d array of `T` whose length is in the control block.
    Vec,
}

impl ObjectKind {
    /// Every kind this version knows.
    pub(crate) const ALL: [ObjectKind; 9] = [
        ObjectKind::Array,
        ObjectKind::Value,
        ObjectKind::Atomic,
        ObjectKind::Event,
        ObjectKind::Barrier,
        ObjectKind::Queue,
        ObjectKind::ByteQueue,
        ObjectKind::Map,
        ObjectKind::Vec,
    ];

    /// The code stored in the control block.
    pub const fn code(self) -> u32 {
        match self {
            ObjectKind::Array => 1,
            ObjectKind::Value => 2,
            ObjectKind::Atomic => 3,
            ObjectKind::Event => 4,
            ObjectKind::Barrier => 5,
            ObjectKind::Queue => 6,
            ObjectKind::ByteQueue => 7,
            ObjectKind::Map => 8,
            ObjectKind::Vec => 9,
        }
    }

    /// The kind a stored code names.
    pub fn from_code(code: u32) -> Option<ObjectKind> {
        ObjectKind::ALL.into_iter().find(|k| k.code() == code)
    }

    /// Lower-case name, as `shmarray ls` prints it.
    pub const fn name(self) -> &'static str {
        match self {
            ObjectKind::Array => "array",
            ObjectKind::Value => "value",
            ObjectKind::Atomic => "atomic",
            ObjectKind::Event => "event",
            ObjectKind::Barrier => "barrier",
            ObjectKind::Queue => "queue",
            ObjectKind::ByteQueue => "bytequeue",
            ObjectKind::Map => "map",
            ObjectKind::Vec => "vec",
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a control block does not match its header or cannot be read; opening such
/// a segment is [`Error::Corrupt`](crate::Error::Corrupt) with
/// [`Corruption::Control`](crate::format::Corruption::Control).
///
/// ```
/// use std::os::unix::fs::FileExt;
/// use shmarray::format::{ControlError, ControlFields};
/// use shmarray::{atomic::SharedAtomicU64, Segment};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let name = format!("doc-control-error-{}", std::process::id());
/// let a = SharedAtomicU64::create(&name, 0)?;
/// let info = a.info()?;
/// let mut block = [0u8; 152];
/// a.file().read_exact_at(&mut block, info.layout.control_offset as u64)?;
/// assert_eq!(ControlFields::decode(&block)?, a.control());
/// // A forged object kind (bytes 12..16 of the block):
/// block[12..16].copy_from_slice(&99u32.to_le_bytes());
/// assert_eq!(ControlFields::decode(&block), Err(ControlError::UnknownKind(99)));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// Layout version newer (or older) than this library understands.
    #[error("control block layout version {found}, this library reads {expected}")]
    Version {
        /// What we read.
        expected: u32,
        /// What the segment says.
        found: u32,
    },
    /// An object kind this library does not know.
    #[error("unknown object kind {0}")]
    UnknownKind(u32),
    /// Checksum, offsets, dtype or parameters disagree with the header.
    #[error("control block does not match the header: {0}")]
    Mismatch(&'static str),
    /// The kind's parameters are out of range.
    #[error("bad {kind} parameters: {problem}")]
    Params {
        /// The object kind.
        kind: ObjectKind,
        /// What is wrong.
        problem: String,
    },
}

/// The control block's fields, as a plain copy.
///
/// ```
/// use shmarray::format::{Dtype, ObjectKind};
/// use shmarray::{ndarray::Ix2, Options, Segment, SharedArray};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let name = format!("doc-control-fields-{}", std::process::id());
/// let a: SharedArray<f32, Ix2> = Options::new().persistent(true).create(&name, (3, 4))?;
/// let c = a.control().expect("a segment of this crate has a control block");
/// assert_eq!((c.kind, c.dtype(), c.ndim), (ObjectKind::Array, Some(Dtype::F32), 2));
/// assert_eq!(c.creator_pid, std::process::id());
/// assert_eq!(c.data_len, 3 * 4 * 4);
/// assert!(c.is_persistent());
/// a.unlink()?; // persistent: remove the name by hand
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlFields {
    /// Layout version of the control block (3).
    pub layout_version: u32,
    /// What the segment holds.
    pub kind: ObjectKind,
    /// Version of the kind's own layout.
    pub kind_version: u32,
    /// [`Dtype::code`] of the header's element type.
    pub dtype_code: u32,
    /// Number of dimensions of the header's shape.
    pub ndim: u32,
    /// Creator pid, in the creator's pid namespace (informational).
    pub creator_pid: u32,
    /// Creator start time, clock ticks since boot (informational; 0 if unknown).
    pub creator_start_time: u64,
    /// Inode of the creator's pid namespace (0 if unknown): tells whether
    /// `creator_pid` means anything to a reader.
    pub creator_pid_ns: u64,
    /// Creation time, ms since the Unix epoch.
    pub created_unix_ms: u64,
    /// Copy of the header's data offset.
    pub data_offset: u64,
    /// Copy of the header's data length.
    pub data_len: u64,
    /// Kind parameters (e.g. a queue's item size and capacity).
    pub params: [u64; PARAMS],
    /// FNV-1a 64 of the header region and bytes 0..136.
    pub checksum: u64,
    /// Publication state (1: ready).
    pub state: u32,
    /// Flags when the copy was taken (bit 0: persistent, bit 1: lock initialised).
    pub flags: u32,
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl ControlFields {
    /// The immutable bytes 0..136 of the block.
    pub fn encode_immutable(&self) -> [u8; IMMUTABLE_LEN] {
        let mut b = [0u8; IMMUTABLE_LEN];
        put(&mut b, 0, &CONTROL_MAGIC);
        put(&mut b, 8, &self.layout_version.to_le_bytes());
        put(&mut b, 12, &self.kind.code().to_le_bytes());
        put(&mut b, 16, &self.kind_version.to_le_bytes());
        put(&mut b, 20, &self.dtype_code.to_le_bytes());
        put(&mut b, 24, &self.ndim.to_le_bytes());
        put(&mut b, 28, &self.creator_pid.to_le_bytes());
        put(&mut b, 32, &self.creator_start_time.to_le_bytes());
        put(&mut b, 40, &self.creator_pid_ns.to_le_bytes());
        put(&mut b, 48, &self.created_unix_ms.to_le_bytes());
        put(&mut b, 56, &self.data_offset.to_le_bytes());
        put(&mut b, 64, &self.data_len.to_le_bytes());
        for (i, p) in self.params.iter().enumerate() {
            put(&mut b, 72 + 8 * i, &p.to_le_bytes());
        }
        b
    }

    /// Decodes a copy of the block's first 152 bytes. `Ok(None)`:
    /// no control block magic (a plain `.npy` file with trailing bytes).
    pub fn decode(b: &[u8]) -> Result<Option<ControlFields>, ControlError> {
        if b.len() < CONTROL_HEAD_LEN || b[..8] != CONTROL_MAGIC {
            return Ok(None);
        }
        let layout_version = u32_at(b, 8);
        if layout_version != LAYOUT_VERSION {
            return Err(ControlError::Version {
                expected: LAYOUT_VERSION,
                found: layout_version,
            });
        }
        let kind_code = u32_at(b, 12);
        let kind = ObjectKind::from_code(kind_code).ok_or(ControlError::UnknownKind(kind_code))?;
        let mut params = [0u64; PARAMS];
        for (i, p) in params.iter_mut().enumerate() {
            *p = u64_at(b, 72 + 8 * i);
        }
        Ok(Some(ControlFields {
            layout_version,
            kind,
            kind_version: u32_at(b, 16),
            dtype_code: u32_at(b, 20),
            ndim: u32_at(b, 24),
            creator_pid: u32_at(b, 28),
            creator_start_time: u64_at(b, 32),
            creator_pid_ns: u64_at(b, 40),
            created_unix_ms: u64_at(b, 48),
            data_offset: u64_at(b, 56),
            data_len: u64_at(b, 64),
            params,
            checksum: u64_at(b, 136),
            state: u32_at(b, 144),
            flags: u32_at(b, 148),
        }))
    }

    /// The element type the block records.
    pub fn dtype(&self) -> Option<Dtype> {
        dtype_from_code(self.dtype_code)
    }

    /// Whether the segment is marked persistent.
    pub fn is_persistent(&self) -> bool {
        self.flags & flags::PERSISTENT != 0
    }
}

/// FNV-1a 64-bit hash.
pub(crate) fn fnv1a64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// The checksum of a header region and a control block's immutable bytes.
pub(crate) fn checksum(header: &[u8], fields: &ControlFields) -> u64 {
    fnv1a64(&[header, &fields.encode_immutable()])
}

/// Checks a control block copy against the header copy it belongs to.
pub(crate) fn validate(
    fields: &ControlFields,
    layout: &Layout,
    header: &[u8],
) -> Result<(), ControlError> {
    if fields.data_offset != layout.data_offset as u64 || fields.data_len != layout.data_len as u64
    {
        return Err(ControlError::Mismatch("data offset/length"));
    }
    if fields.ndim as usize != layout.header.shape.len() {
        return Err(ControlError::Mismatch("number of dimensions"));
    }
    if layout.header.descr.code() != Some(fields.dtype_code) {
        return Err(ControlError::Mismatch("element type"));
    }
    let window = super::npy::header_window(layout.data_offset);
    if header.len() < window || checksum(&header[..window], fields) != fields.checksum {
        return Err(ControlError::Mismatch("checksum"));
    }
    Ok(())
}

/// Storage for the segment's robust lock, interpreted by the sync layer.
#[repr(C, align(64))]
pub(crate) struct LockSlot(pub(crate) UnsafeCell<[u8; 128]>);

/// Storage for the read-write lock's state word and registered-readers mask,
/// interpreted by the sync layer.
#[repr(C, align(64))]
pub(crate) struct RwSlot(pub(crate) UnsafeCell<[u8; 64]>);

/// Number of entries of the read-write lock's reader table.
pub(crate) const READER_SLOTS: usize = 56;

/// Bytes of one reader table entry.
pub(crate) const READER_ENTRY_BYTES: usize = 32;

/// Offset of the robust mutex (the lock slot) in the control block.
pub(crate) const MUTEX_OFFSET: usize = 256;

/// Number of `u64` scratch words in the control block.
pub(crate) const SCRATCH_WORDS: usize = 64;

/// Offset of the scratch words in the control block.
pub(crate) const SCRATCH_OFFSET: usize = 768;

/// Offset of the read-write lock's header in the control block.
pub(crate) const RW_OFFSET: usize = 384;

/// Offset of the read-write lock's reader table in the control block.
pub(crate) const READERS_OFFSET: usize = 2304;

/// The read-write lock's state as bytes read from a file: `(writer word,
/// registered mask)` from the header, and for each entry of the table `(registered,
/// pid, holds)`. For inspection only (the lock itself uses the atomics in place).
pub(crate) fn parse_rw(header: &[u8; 16], table: &[u8]) -> (u32, u64, Vec<(u32, u32, u32)>) {
    let entries = table
        .chunks_exact(READER_ENTRY_BYTES)
        .take(READER_SLOTS)
        .map(|e| (u32_at(e, 0), u32_at(e, 4), u32_at(e, 16)))
        .collect();
    (u32_at(header, 0), u64_at(header, 8), entries)
}

/// Storage for the read-write lock's reader table, interpreted by the sync layer.
#[repr(C, align(64))]
pub(crate) struct ReaderSlots(pub(crate) UnsafeCell<[u8; READER_SLOTS * READER_ENTRY_BYTES]>);

/// A cache-padded counter (128 bytes: two cache lines, like crossbeam's
/// `CachePadded` on x86_64, which prefetches line pairs).
#[repr(C, align(128))]
pub(crate) struct CounterSlot {
    pub(crate) value: AtomicU64,
}

/// The live control block in shared memory (see the module docs for the layout).
/// `#[repr(C)]`, offsets only. The immutable prefix is written before publication
/// and afterwards only ever read by copying it out of the file; everything another
/// process or thread writes is an atomic or sits in an `UnsafeCell`.
#[repr(C, align(128))]
pub(crate) struct ControlBlock {
    immutable: [u8; IMMUTABLE_LEN],
    checksum: [u8; 8],
    pub(crate) state: AtomicU32,
    pub(crate) flags: AtomicU32,
    _reserved0: [u8; 104],
    pub(crate) lock: LockSlot,
    pub(crate) rw: RwSlot,
    _reserved1: [u8; 320],
    /// Scratch words of the object kind (a vec's undo record of elements over 8
    /// bytes), written under the segment's lock.
    pub(crate) scratch: [AtomicU64; SCRATCH_WORDS],
    pub(crate) counters: [CounterSlot; COUNTERS],
    pub(crate) readers: ReaderSlots,
}

const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(size_of::<ControlBlock>() == CONTROL_SIZE);
    assert!(align_of::<ControlBlock>() <= PAGE);
    assert!(offset_of!(ControlBlock, checksum) == IMMUTABLE_LEN);
    assert!(offset_of!(ControlBlock, state) == 144);
    assert!(offset_of!(ControlBlock, flags) == 148);
    assert!(offset_of!(ControlBlock, lock) == MUTEX_OFFSET);
    assert!(offset_of!(ControlBlock, rw) == RW_OFFSET);
    assert!(offset_of!(ControlBlock, scratch) == SCRATCH_OFFSET);
    assert!(offset_of!(ControlBlock, counters) == 1280);
    assert!(offset_of!(ControlBlock, readers) == READERS_OFFSET);
    assert!(size_of::<LockSlot>() == 128 && size_of::<CounterSlot>() == 128);
};

impl ControlBlock {
    /// Writes a control block at `ptr`: the immutable prefix and checksum of `fields`,
    /// state `READY` and `fields.flags`.
    ///
    /// # Safety
    /// - `ptr` is valid for writes of `CONTROL_SIZE` bytes, aligned to 128, and
    ///   zero-filled (fresh `fallocate`d memory).
    /// - No other process or thread can see the memory yet (the segment is not
    ///   published), so plain writes race with nobody.
    pub(crate) unsafe fn init(ptr: *mut ControlBlock, fields: &ControlFields) {
        let imm = fields.encode_immutable();
        // SAFETY: per the contract the block is valid, aligned and private; zero bytes
        // are a valid ControlBlock (byte arrays, atomics, UnsafeCells of bytes), so we
        // may form a unique reference and write its fields.
        unsafe {
            let cb = &mut *ptr;
            cb.immutable = imm;
            cb.checksum = fields.checksum.to_le_bytes();
            *cb.state.get_mut() = fields.state;
            *cb.flags.get_mut() = fields.flags;
        }
    }

    /// Sets flag bits (e.g. `PERSISTENT`) on a published block.
    pub(crate) fn set_flags(&self, bits: u32) {
        self.flags.fetch_or(bits, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::npy::build_header;

    fn fields(layout: &Layout, header: &[u8]) -> ControlFields {
        let mut f = ControlFields {
            layout_version: LAYOUT_VERSION,
            kind: ObjectKind::Queue,
            kind_version: 1,
            dtype_code: Dtype::U8.code(),
            ndim: 1,
            creator_pid: 42,
            creator_start_time: 7,
            creator_pid_ns: 4026531836,
            created_unix_ms: 1_700_000_000_000,
            data_offset: layout.data_offset as u64,
            data_len: layout.data_len as u64,
            params: [8, 16, 32, 0, 0, 0, 0, 0],
            checksum: 0,
            state: state::READY,
            flags: flags::LOCK_READY,
        };
        f.checksum = checksum(header, &f);
        f
    }

    fn image(f: &ControlFields) -> Vec<u8> {
        let mut b = vec![0u8; CONTROL_HEAD_LEN];
        b[..IMMUTABLE_LEN].copy_from_slice(&f.encode_immutable());
        b[136..144].copy_from_slice(&f.checksum.to_le_bytes());
        b[144..148].copy_from_slice(&f.state.to_le_bytes());
        b[148..152].copy_from_slice(&f.flags.to_le_bytes());
        b
    }

    #[test]
    fn encode_decode_validate_round_trip() {
        let (hdr, layout) = build_header(Dtype::U8, false, &[1000]).unwrap();
        let f = fields(&layout, &hdr);
        let bytes = image(&f);
        assert_eq!(ControlFields::decode(&bytes).unwrap(), Some(f));
        validate(&f, &layout, &hdr).unwrap();
    }

    #[test]
    fn every_immutable_byte_is_covered_by_the_checksum() {
        let (hdr, layout) = build_header(Dtype::U8, false, &[1000]).unwrap();
        let f = fields(&layout, &hdr);
        let bytes = image(&f);
        for i in 16..IMMUTABLE_LEN {
            let mut b = bytes.clone();
            b[i] ^= 1;
            if let Ok(Some(g)) = ControlFields::decode(&b) {
                assert!(validate(&g, &layout, &hdr).is_err(), "byte {i} not covered");
            }
        }
    }

    #[test]
    fn unknown_versions_and_kinds_are_errors_and_foreign_bytes_are_no_block() {
        let (hdr, layout) = build_header(Dtype::U8, false, &[10]).unwrap();
        let f = fields(&layout, &hdr);
        let mut b = image(&f);
        b[8] = 9;
        assert!(matches!(
            ControlFields::decode(&b),
            Err(ControlError::Version { found: 9, .. })
        ));
        let mut b = image(&f);
        b[12] = 99;
        assert_eq!(
            ControlFields::decode(&b),
            Err(ControlError::UnknownKind(99))
        );
        assert_eq!(ControlFields::decode(&[0u8; CONTROL_HEAD_LEN]), Ok(None));
        assert_eq!(ControlFields::decode(&image(&f)[..100]), Ok(None));
    }
}
