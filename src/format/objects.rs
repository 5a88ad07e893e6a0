//! The data layouts of the kinds that are not plain arrays: where a queue's member
//! table, ring and slots lie, and which parameters a barrier or queue may have.
//! Pure, checked arithmetic: a capacity or item size from a caller or a file never
//! reaches an address computation unchecked.

use super::control::{ControlError, ControlFields, ObjectKind, PARAMS};

/// Most processes (handles) that can be members of one queue or barrier at a time.
pub(crate) const MAX_MEMBERS: usize = 64;

/// Bytes of one member table entry.
pub(crate) const MEMBER_ENTRY_BYTES: usize = 32;

/// Bytes of a member table.
pub(crate) const MEMBER_TABLE_BYTES: usize = MAX_MEMBERS * MEMBER_ENTRY_BYTES;

/// Bytes of a queue's ring header: nine cache-padded control words and one
/// 64-byte claim record per member.
pub(crate) const RING_HEADER_BYTES: usize = 9 * 128 + MAX_MEMBERS * 64;

/// Bytes of the head of every queue slot (sequence stamp and length).
pub(crate) const SLOT_HEAD_BYTES: usize = 16;

/// Smallest queue capacity: with one slot, "published for position p" and "free
/// for position p+1" would be the same stamp.
pub(crate) const MIN_CAPACITY: u64 = 2;

/// Largest queue capacity.
pub(crate) const MAX_CAPACITY: u64 = 1 << 32;

/// Largest queue item or message, in bytes.
pub(crate) const MAX_ITEM_BYTES: u64 = 1 << 30;

/// Largest data area of any segment (keeps every offset far inside `isize`).
pub(crate) const MAX_DATA_BYTES: u64 = 1 << 46;

/// Version of the queue data layout (`kind_version`). 4: `get_waiters` and
/// `put_waiters` are 64-bit masks of members (they were 32-bit counts), and the
/// futex words are bumped only when a waiter is registered.
pub(crate) const QUEUE_VERSION: u32 = 4;

/// Version of the barrier data layout (`kind_version`).
pub(crate) const BARRIER_VERSION: u32 = 2;

/// Most parties a barrier can have (one member slot each).
pub(crate) const MAX_PARTIES: u64 = MAX_MEMBERS as u64;

/// Bytes of a barrier's state (counters and one arrival word per member).
pub(crate) const BARRIER_STATE_BYTES: usize = 64 + 4 * MAX_MEMBERS;

/// A barrier's data area: its member table, then its state.
pub(crate) const BARRIER_DATA_BYTES: usize = MEMBER_TABLE_BYTES + BARRIER_STATE_BYTES;

/// Where everything of a queue lies inside its data area.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueGeometry {
    /// Bytes of payload per slot (item size or maximum message size).
    pub item_size: u64,
    /// Number of slots.
    pub capacity: u64,
    /// Bytes per slot: head plus payload, rounded up to 16.
    pub stride: u64,
    /// Offset of the ring header (after the member table).
    pub ring_offset: u64,
    /// Offset of the first slot.
    pub slots_offset: u64,
    /// Total bytes of the data area.
    pub data_len: u64,
}

/// Why queue or barrier parameters are refused.
///
/// ```
/// use shmarray::{format::ParamsError, queue::QueueError, Queue};
/// let name = format!("doc-params-error-{}", std::process::id());
/// match Queue::<u64>::create(&name, (1 << 32) + 1) {
///     Err(QueueError::Params(ParamsError::Capacity { capacity, max, .. })) => {
///         assert_eq!((capacity, max), ((1 << 32) + 1, 1 << 32))
///     }
///     other => panic!("expected a capacity error, got {other:?}"),
/// }
/// // Nothing was created: the name is free.
/// assert_eq!(Queue::<u64>::create(&name, 1)?.capacity(), 2); // (small ones round up)
/// # Ok::<(), QueueError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParamsError {
    /// The capacity is outside `MIN_CAPACITY..=MAX_CAPACITY`.
    #[error("capacity {capacity} is outside {min}..={max}")]
    Capacity {
        /// The capacity asked for or found.
        capacity: u64,
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
    },
    /// The item size is 0 or above `MAX_ITEM_BYTES`.
    #[error("item size {size} is outside 1..={max} bytes")]
    ItemSize {
        /// The size asked for or found.
        size: u64,
        /// Largest allowed.
        max: u64,
    },
    /// The whole data area would exceed `MAX_DATA_BYTES`.
    #[error("{capacity} slots of {stride} bytes exceed the {max}-byte limit")]
    TooLarge {
        /// Slots.
        capacity: u64,
        /// Bytes per slot.
        stride: u64,
        /// The limit.
        max: u64,
    },
    /// A barrier's party count is outside `1..=MAX_PARTIES`.
    #[error("{parties} parties is outside 1..={max}")]
    Parties {
        /// The count asked for or found.
        parties: u64,
        /// Largest allowed.
        max: u64,
    },
}

impl QueueGeometry {
    /// The layout of a queue of `capacity` slots of `item_size` payload bytes.
    pub fn new(item_size: u64, capacity: u64) -> Result<QueueGeometry, ParamsError> {
        if !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
            return Err(ParamsError::Capacity {
                capacity,
                min: MIN_CAPACITY,
                max: MAX_CAPACITY,
            });
        }
        if !(1..=MAX_ITEM_BYTES).contains(&item_size) {
            return Err(ParamsError::ItemSize {
                size: item_size,
                max: MAX_ITEM_BYTES,
            });
        }
        // item_size <= 2^30, so these cannot overflow; the product is checked.
        let stride = (SLOT_HEAD_BYTES as u64 + item_size).div_ceil(16) * 16;
        let ring_offset = MEMBER_TABLE_BYTES as u64;
        let slots_offset = ring_offset + RING_HEADER_BYTES as u64;
        let too_large = ParamsError::TooLarge {
            capacity,
            stride,
            max: MAX_DATA_BYTES,
        };
        let data_len = stride
            .checked_mul(capacity)
            .and_then(|s| s.checked_add(slots_offset))
            .filter(|&n| n <= MAX_DATA_BYTES)
            .ok_or(too_large)?;
        Ok(QueueGeometry {
            item_size,
            capacity,
            stride,
            ring_offset,
            slots_offset,
            data_len,
        })
    }

    /// The parameters recorded in the control block.
    pub fn to_params(&self, element: u32) -> [u64; PARAMS] {
        [
            self.item_size,
            self.capacity,
            self.stride,
            u64::from(element),
            0,
            0,
            0,
            0,
        ]
    }

    /// Re-derives the layout from a control block copy and checks that every
    /// recorded number agrees with it: the item size and capacity are in range, the
    /// stride is the derived one, and the data area is exactly as long as the
    /// geometry needs.
    pub fn from_control(c: &ControlFields) -> Result<QueueGeometry, ControlError> {
        let params = |problem: String| ControlError::Params {
            kind: c.kind,
            problem,
        };
        if !matches!(c.kind, ObjectKind::Queue | ObjectKind::ByteQueue) {
            return Err(ControlError::Mismatch("not a queue"));
        }
        if c.kind_version != QUEUE_VERSION {
            return Err(params(format!(
                "queue layout version {} (this library reads {QUEUE_VERSION})",
                c.kind_version
            )));
        }
        let g = QueueGeometry::new(c.params[0], c.params[1]).map_err(|e| params(e.to_string()))?;
        if g.stride != c.params[2] {
            return Err(params(format!(
                "stride {} (expected {})",
                c.params[2], g.stride
            )));
        }
        if g.data_len != c.data_len {
            return Err(params(format!(
                "data length {} (the geometry needs {})",
                c.data_len, g.data_len
            )));
        }
        Ok(g)
    }

    /// Offset of slot `index` (`< capacity`) inside the data area.
    pub fn slot_offset(&self, index: u64) -> u64 {
        debug_assert!(index < self.capacity);
        self.slots_offset + index * self.stride
    }
}

/// Checks a barrier's party count.
pub(crate) fn check_parties(parties: u64) -> Result<u32, ParamsError> {
    if (1..=MAX_PARTIES).contains(&parties) {
        Ok(parties as u32)
    } else {
        Err(ParamsError::Parties {
            parties,
            max: MAX_PARTIES,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_is_checked_and_consistent() {
        let g = QueueGeometry::new(8, 1024).unwrap();
        assert_eq!(g.stride, 32);
        assert_eq!(g.data_len, g.slots_offset + 32 * 1024);
        assert_eq!(g.slot_offset(1023) + g.stride, g.data_len);
        for (item, cap) in [
            (8, 0),
            (8, 1),
            (8, (1 << 59) + 2),
            (8, u64::MAX),
            (0, 16),
            (u64::from(u32::MAX), 16),
            (u64::MAX, 2),
            (1 << 30, 1 << 20),
        ] {
            assert!(QueueGeometry::new(item, cap).is_err(), "{item} x {cap}");
        }
        assert!(QueueGeometry::new(8, 3).is_ok());
        assert!(QueueGeometry::new(1 << 30, 2).is_ok());
    }

    #[test]
    fn parties() {
        assert!(check_parties(0).is_err());
        assert_eq!(check_parties(64), Ok(64));
        assert!(check_parties(65).is_err());
        assert!(check_parties(u64::MAX).is_err());
    }
}
