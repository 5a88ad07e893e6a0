//! `BytesMap`: a [`SharedMap`] whose key and value sizes are chosen at run time
//! (keys and values are byte slices), for bindings that learn the types from their
//! caller (Python's dtypes).
//!
//! It is the same segment kind as `SharedMap`, with the same layout (map layout
//! version 2), hash and crash protocol: a map made by
//! `SharedMap<FixedStr<16>, f64>` opens here with 16-byte keys and 8-byte values,
//! and the other way round. Every operation below is one call of the byte-level
//! core (`SharedMap::raw_*`) that the typed operations are thin wrappers of, so
//! the two are one protocol by construction: the same entry states and
//! generations, busy entries and undo record, lock-free reads validated by the
//! generation, and lock-free replaces of values of at most 8 bytes. The tests
//! check that both see the same entries, and that the readers of either never
//! see a torn or foreign value while the other writes.

use super::*;

/// The element type of the inner handle of a [`BytesMap`]: never stored, read or
/// compared as a value. `SharedMap::attach` skips its key/value size check for it
/// (the sizes come from the segment's parameters).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub(super) struct Untyped(u8);

// SAFETY: a transparent wrapper of `u8`: any bit pattern is valid, no padding, no
// pointers, `Copy + 'static`.
unsafe impl Zeroable for Untyped {}
// SAFETY: as above.
unsafe impl Pod for Untyped {}

/// A shared hash map with keys and values of sizes chosen at run time: the
/// byte-level twin of [`SharedMap`] (same segment kind, layout and guarantees;
/// see there for capacity, crash safety and files from others). Keys are compared
/// and hashed by their bytes, so a key written here as the 8 little-endian bytes
/// of a `u64` is the same key as that `u64` in a `SharedMap<u64, V>`.
///
/// ```
/// use shmarray::{containers::{BytesMap, FixedStr}, SharedMap};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let name = format!("doc-bytes-map-{}", std::process::id());
/// let prices = SharedMap::<FixedStr<16>, f64>::create(&name, 100)?;
/// prices.insert(FixedStr::new("apple")?, 1.25)?;
/// let raw = BytesMap::open(&name)?; // sizes from the segment: 16 and 8
/// assert_eq!((raw.key_size(), raw.value_size()), (16, 8));
/// let key = FixedStr::<16>::new("apple")?.to_bytes();
/// assert_eq!(raw.get(&key)?, Some(1.25f64.to_ne_bytes().to_vec()));
/// # Ok(()) }
/// ```
pub struct BytesMap {
    inner: SharedMap<Untyped, Untyped>,
}

/// A map whose keys or values have the wrong length for this map.
fn wrong_size(map: &SharedMap<Untyped, Untyped>, what: &str, want: u64, got: usize) -> MapError {
    MapError::Segment(Error::TypeMismatch {
        name: map.name().unwrap_or("<anonymous>").to_string(),
        expected: format!("a {want}-byte {what}"),
        found: format!("{got} bytes"),
    })
}

impl BytesMap {
    /// Creates map `name` for `capacity` entries with keys of `key_size` and values
    /// of `value_size` bytes (each at most 65 536). The creator owns it: the name
    /// is removed when this handle is dropped. [`Options::create`] creates with
    /// other options (its argument is `(key_size, value_size, capacity)`).
    pub fn create(
        name: &str,
        key_size: usize,
        value_size: usize,
        capacity: usize,
    ) -> Result<Self, MapError> {
        Options::new().create(name, (key_size, value_size, capacity))
    }

    /// Opens map `name` (any key and value sizes; see [`key_size`](Self::key_size));
    /// [`Options::open`] opens with other options.
    pub fn open(name: &str) -> Result<Self, MapError> {
        Options::new().open(name)
    }

    /// Bytes of a key.
    pub fn key_size(&self) -> usize {
        self.inner.geo.key_size as usize
    }

    /// Bytes of a value.
    pub fn value_size(&self) -> usize {
        self.inner.geo.value_size as usize
    }

    /// The entries as numpy sees them: a structured dtype of the data area's
    /// entries (state word with its generation, hash tag, and the key and value
    /// bytes at their offsets: with values of at most 8 bytes the value comes
    /// first, at 8), see `FORMAT.md`.
    pub fn entry_dtype(&self) -> String {
        self.inner.geo.numpy_dtype()
    }

    fn check_key(&self, key: &[u8]) -> Result<(), MapError> {
        if key.len() as u64 == self.inner.geo.key_size {
            Ok(())
        } else {
            Err(wrong_size(
                &self.inner,
                "key",
                self.inner.geo.key_size,
                key.len(),
            ))
        }
    }

    fn check_value(&self, value: &[u8]) -> Result<(), MapError> {
        if value.len() as u64 == self.inner.geo.value_size {
            Ok(())
        } else {
            Err(wrong_size(
                &self.inner,
                "value",
                self.inner.geo.value_size,
                value.len(),
            ))
        }
    }

    /// A zeroed buffer of one value.
    fn value_buf(&self) -> Vec<u8> {
        vec![0u8; self.value_size()]
    }

    /// Inserts `value` under `key`; returns the value it replaces, if any.
    /// `Err(Full)` as [`SharedMap::insert`]; `Err(Segment(TypeMismatch))` if a
    /// slice has the wrong length. Nothing changes on error. Replacing the value
    /// of a key that is there takes no lock when values are at most 8 bytes (as
    /// [`SharedMap::insert`]).
    pub fn insert(&self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, MapError> {
        self.check_key(key)?;
        self.check_value(value)?;
        let mut old = self.value_buf();
        let replaced = self.inner.raw_insert(key, value, &mut old)?;
        Ok(replaced.then_some(old))
    }

    /// The value under `key`, if any. Takes no lock (an optimistic read validated
    /// by the entry's generation, as [`SharedMap::get`]).
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MapError> {
        self.check_key(key)?;
        let mut v = self.value_buf();
        let found = self.inner.raw_get(key, &mut v)?;
        Ok(found.then_some(v))
    }

    /// Whether `key` is in the map (as [`get`](Self::get), without a lock).
    pub fn contains_key(&self, key: &[u8]) -> Result<bool, MapError> {
        self.check_key(key)?;
        let mut v = self.value_buf();
        self.inner.raw_get(key, &mut v)
    }

    /// Removes `key`; returns its value, if it was there.
    pub fn remove(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MapError> {
        self.check_key(key)?;
        let mut old = self.value_buf();
        let found = self.inner.raw_remove(key, &mut old)?;
        Ok(found.then_some(old))
    }

    /// Changes the value under `key` in place, under the shard's lock (see
    /// [`SharedMap::update`]): `f` gets a copy, and the result is stored as one
    /// undoable write (if `f` panics, the map is unchanged). Returns whether `key`
    /// was there.
    pub fn update(&self, key: &[u8], f: impl FnOnce(&mut [u8])) -> Result<bool, MapError> {
        self.check_key(key)?;
        let mut buf = self.value_buf();
        self.inner.raw_update(key, &mut buf, f)
    }

    /// Applies `f` to the value under `key`, or to `default` if `key` is absent
    /// (inserting it), atomically; returns the value stored (see
    /// [`SharedMap::upsert`]).
    pub fn upsert(
        &self,
        key: &[u8],
        default: &[u8],
        f: impl FnOnce(&mut [u8]),
    ) -> Result<Vec<u8>, MapError> {
        self.check_key(key)?;
        self.check_value(default)?;
        let mut v = default.to_vec();
        self.inner.raw_upsert(key, &mut v, f)?;
        Ok(v)
    }

    /// The entries as `(key, value)` byte vectors, a snapshot taken shard by shard
    /// (see [`SharedMap::to_vec`]). Unordered.
    #[allow(clippy::type_complexity)] // a pair of byte vectors, spelled out
    pub fn to_vec(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>, MapError> {
        self.inner.raw_collect(|k, v| (k.to_vec(), v.to_vec()))
    }

    /// Removes every entry (shard by shard, each under its lock).
    pub fn clear(&self) -> Result<(), MapError> {
        self.inner.raw_clear()
    }

    /// Number of entries (see [`SharedMap::len`]).
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// The capacity the map was created with.
    pub fn capacity(&self) -> usize {
        self.inner.capacity()
    }

    /// The most entries the map can ever hold.
    pub fn max_len(&self) -> usize {
        self.inner.max_len()
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.inner.shards()
    }

    /// The seed of the key hash.
    pub fn seed(&self) -> u64 {
        self.inner.seed()
    }

    /// How many times a shard was repaired after a process died holding its lock.
    pub fn repairs(&self) -> u64 {
        self.inner.repairs()
    }
}

impl sealed::Sealed for BytesMap {
    fn mapping(&self) -> &Mapping {
        self.inner.mapping()
    }
    fn mapping_mut(&mut self) -> &mut Mapping {
        self.inner.mapping_mut()
    }
}

impl Segment for BytesMap {
    type Error = MapError;
}

impl Create<(usize, usize, usize)> for BytesMap {
    fn create_segment(
        opts: &Options,
        name: Option<&str>,
        (key_size, value_size, capacity): (usize, usize, usize),
    ) -> Result<Self, MapError> {
        // The typed map's constructor with the sizes given: one layout for both.
        let geo = MapGeometry::new(key_size as u64, value_size as u64, capacity as u64)?;
        Ok(BytesMap {
            inner: SharedMap::create_geo(opts, name, geo)?,
        })
    }
}

impl Open for BytesMap {
    fn open_segment(opts: &Options, name: &str) -> Result<Self, MapError> {
        Ok(BytesMap {
            inner: Options::open(opts, name)?,
        })
    }

    fn open_file(opts: &Options, file: File) -> Result<Self, MapError> {
        Ok(BytesMap {
            inner: Options::from_file(opts, file)?,
        })
    }
}

impl fmt::Debug for BytesMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BytesMap")
            .field("name", &self.name())
            .field("key_size", &self.key_size())
            .field("value_size", &self.value_size())
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(tag: &str) -> String {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        format!(
            "shmarray-test-bytes-map-{}-{tag}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    #[test]
    fn typed_and_byte_handles_see_the_same_entries() {
        // One shard (capacity < 2048) and several; values of 8 bytes (atomic
        // store) and of 24 (the undo record).
        for capacity in [2047, 8192] {
            let n = name("typed");
            let typed = SharedMap::<u64, [u64; 3]>::create(&n, capacity).unwrap();
            let raw = BytesMap::open(&n).unwrap();
            assert_eq!((raw.key_size(), raw.value_size()), (8, 24));
            for k in 0..1000u64 {
                typed.insert(k, [k, k + 1, k + 2]).unwrap();
            }
            for k in 1000..2000u64 {
                let v: Vec<u8> = bytemuck::bytes_of(&[k, 0, 0]).to_vec();
                assert_eq!(raw.insert(&k.to_ne_bytes(), &v).unwrap(), None);
            }
            for k in (0..2000u64).step_by(3) {
                let got = raw.remove(&k.to_ne_bytes()).unwrap().unwrap();
                let want = if k < 1000 {
                    [k, k + 1, k + 2]
                } else {
                    [k, 0, 0]
                };
                assert_eq!(got, bytemuck::bytes_of(&want));
            }
            assert!(raw
                .update(&1u64.to_ne_bytes(), |v| v[..8]
                    .copy_from_slice(&7u64.to_ne_bytes()))
                .unwrap());
            assert_eq!(typed.get(&1).unwrap(), Some([7, 2, 3]));
            let up = raw
                .upsert(&5000u64.to_ne_bytes(), &[0; 24], |v| v[0] = 9)
                .unwrap();
            assert_eq!(up[0], 9);
            assert_eq!(typed.get(&5000).unwrap(), Some([9, 0, 0]));
            for k in 0..2000u64 {
                let t = typed.get(&k).unwrap();
                let r = raw.get(&k.to_ne_bytes()).unwrap();
                assert_eq!(t.map(|v| bytemuck::bytes_of(&v).to_vec()), r, "key {k}");
                assert_eq!(raw.contains_key(&k.to_ne_bytes()).unwrap(), k % 3 != 0);
            }
            assert_eq!(raw.len(), typed.len());
            let mut a: Vec<_> = raw.to_vec().unwrap();
            let mut b: Vec<_> = typed
                .to_vec()
                .unwrap()
                .into_iter()
                .map(|(k, v)| (k.to_ne_bytes().to_vec(), bytemuck::bytes_of(&v).to_vec()))
                .collect();
            a.sort();
            b.sort();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn sizes_are_checked_and_a_byte_map_opens_as_typed() {
        let n = name("sizes");
        let raw = BytesMap::create(&n, 5, 3, 10).unwrap();
        // Map layout 2: a value of at most 8 bytes at 8, the key after it at 16,
        // entries of 16-byte units.
        assert!(
            raw.entry_dtype()
                .ends_with("'offsets': [0, 4, 16, 8], 'itemsize': 32}"),
            "{}",
            raw.entry_dtype()
        );
        assert!(matches!(
            raw.insert(b"abcd", b"xyz"),
            Err(MapError::Segment(Error::TypeMismatch { .. }))
        ));
        assert!(matches!(
            raw.insert(b"abcde", b"xy"),
            Err(MapError::Segment(Error::TypeMismatch { .. }))
        ));
        assert!(matches!(
            raw.get(b""),
            Err(MapError::Segment(Error::TypeMismatch { .. }))
        ));
        assert_eq!(raw.insert(b"abcde", b"xyz").unwrap(), None);
        assert_eq!(raw.insert(b"abcde", b"uvw").unwrap(), Some(b"xyz".to_vec()));
        let typed = SharedMap::<[u8; 5], [u8; 3]>::open(&n).unwrap();
        assert_eq!(typed.get(b"abcde").unwrap(), Some(*b"uvw"));
        assert!(matches!(
            SharedMap::<[u8; 4], [u8; 3]>::open(&n),
            Err(MapError::Segment(Error::TypeMismatch { .. }))
        ));
        for i in 0..9u8 {
            raw.insert(&[i; 5], b"abc").unwrap();
        }
        assert!(matches!(
            raw.insert(&[99; 5], b"abc"),
            Err(MapError::Full { .. })
        ));
        raw.clear().unwrap();
        assert!(raw.is_empty() && typed.is_empty());
        assert!(matches!(
            BytesMap::create(&name("big"), 1 << 20, 1, 10),
            Err(MapError::Params(_))
        ));
    }
}
