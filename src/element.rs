//! Element types that can live in a segment ([`Element`]): numbers, [`Bool`],
//! `half::f16`, `Complex<f32>`/`Complex<f64>`, and records declared with
//! [`record!`](crate::record) (with [`Pad`] for padding, and fields of any
//! [`RecordMember`] type).
//!
//! ```
//! use shmarray::{element::Bool, ndarray::Ix1, num_complex::Complex, SharedArray};
//! # fn main() -> Result<(), shmarray::Error> {
//! let n = |s: &str| format!("doc-element-{s}-{}", std::process::id());
//! let mut mask = SharedArray::<Bool, Ix1>::create(&n("mask"), 4)?; // numpy bool
//! mask.view_mut()?[1] = Bool::TRUE;
//! let _fft = SharedArray::<Complex<f64>, Ix1>::create(&n("fft"), 8)?; // numpy complex128
//! assert_eq!(mask.view()?.iter().filter(|b| b.get()).count(), 1);
//! # Ok(()) }
//! ```

use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::{BitAnd, BitOr, BitXor, Not};

use num_complex::Complex;

use crate::format::dtype::{Dtype, FieldType};

/// A type that can be stored in a shared array.
///
/// Implemented for `i8`–`i64`, `u8`–`u64`, `f32`, `f64`, [`Bool`], `half::f16`
/// (feature `f16`), `num_complex::Complex<f32>` and `Complex<f64>`, and every
/// record declared with [`record!`](crate::record).
///
/// # Safety
/// `DTYPE` must describe `Self` exactly: `DTYPE.size() == size_of::<Self>()`, and the
/// NPY descriptor `DTYPE.descr()` must mean the same interpretation of the same
/// bytes on this platform (for a record: every field at its offset). (`Pod`
/// already guarantees every bit pattern is a valid value, so bytes written by
/// another process can never be an invalid `Self`.)
pub unsafe trait Element: bytemuck::Pod + Send + Sync + 'static {
    /// The element type as recorded in the NPY header.
    const DTYPE: Dtype;
}

macro_rules! element {
    ($($(#[$attr:meta])* $t:ty => $d:ident),* $(,)?) => {$(
        $(#[$attr])*
        // SAFETY: `$t` is a little-endian (see the cfg guard below) value of exactly
        // `Dtype::$d.size()` bytes with the meaning of its descriptor: a primitive
        // number, `Bool` (one byte, numpy's bool), or `Complex<f32/f64>`
        // (`#[repr(C)]` real then imaginary part, numpy's complex layout).
        unsafe impl Element for $t {
            const DTYPE: Dtype = Dtype::$d;
        }
        const _: () = assert!(std::mem::size_of::<$t>() == Dtype::$d.size());
    )*};
}

#[cfg(not(target_endian = "little"))]
compile_error!(
    "shmarray writes little-endian NPY descriptors; big-endian targets are not supported yet"
);

element! {
    i8 => I8, i16 => I16, i32 => I32, i64 => I64,
    u8 => U8, u16 => U16, u32 => U32, u64 => U64,
    f32 => F32, f64 => F64,
    Bool => Bool, Complex<f32> => C64, Complex<f64> => C128,
}

#[cfg(feature = "f16")]
element! {
    #[cfg_attr(docsrs, doc(cfg(feature = "f16")))]
    half::f16 => F16
}

/// numpy's `bool` (`|b1`) in shared memory: one byte, `0` is false and **any
/// other byte is true**.
///
/// Rust's `bool` may only hold 0 or 1, and another process can write any byte
/// into a segment, so a `bool` is never made from shared bytes: this type is the
/// element instead, and [`get`](Self::get) turns its byte into a `bool`. numpy
/// itself writes only 0 and 1; a byte written otherwise (a foreign program, a raw
/// byte view) reads as `true` here. Comparison and hashing go by the `bool` value,
/// so `Bool::from_byte(2) == Bool::TRUE`.
///
/// ```
/// use shmarray::element::Bool;
/// let mask = [Bool::TRUE, Bool::from(false), Bool::from_byte(7)];
/// assert_eq!(mask.map(Bool::get), [true, false, true]);
/// assert_eq!(Bool::from_byte(7), Bool::TRUE);
/// assert_eq!(!Bool::TRUE, Bool::FALSE);
/// ```
#[derive(Clone, Copy, Default)]
#[repr(transparent)]
pub struct Bool(u8);

// SAFETY: a transparent wrapper of one `u8`: no padding, every byte a valid value,
// zero is a valid value (false).
unsafe impl bytemuck::Zeroable for Bool {}
// SAFETY: as above; `Copy` and `'static`.
unsafe impl bytemuck::Pod for Bool {}

impl Bool {
    /// `true`, stored as 1.
    pub const TRUE: Bool = Bool(1);
    /// `false`, stored as 0.
    pub const FALSE: Bool = Bool(0);

    /// The value for `b` (stored as 1 or 0, as numpy stores it).
    #[inline]
    pub const fn new(b: bool) -> Bool {
        Bool(b as u8)
    }

    /// The value of a raw byte: any non-zero byte is `true`.
    #[inline]
    pub const fn from_byte(byte: u8) -> Bool {
        Bool(byte)
    }

    /// The `bool` this byte means: `false` for 0, `true` for anything else.
    #[inline]
    pub const fn get(self) -> bool {
        self.0 != 0
    }

    /// The stored byte, as it is.
    #[inline]
    pub const fn to_byte(self) -> u8 {
        self.0
    }
}

impl From<bool> for Bool {
    #[inline]
    fn from(b: bool) -> Bool {
        Bool::new(b)
    }
}

impl From<Bool> for bool {
    #[inline]
    fn from(b: Bool) -> bool {
        b.get()
    }
}

impl PartialEq for Bool {
    #[inline]
    fn eq(&self, other: &Bool) -> bool {
        self.get() == other.get()
    }
}

impl Eq for Bool {}

impl PartialEq<bool> for Bool {
    #[inline]
    fn eq(&self, other: &bool) -> bool {
        self.get() == *other
    }
}

impl Hash for Bool {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.get().hash(state);
    }
}

impl PartialOrd for Bool {
    fn partial_cmp(&self, other: &Bool) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Bool {
    fn cmp(&self, other: &Bool) -> std::cmp::Ordering {
        self.get().cmp(&other.get())
    }
}

impl fmt::Debug for Bool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.get(), f)
    }
}

impl fmt::Display for Bool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.get(), f)
    }
}

impl Not for Bool {
    type Output = Bool;
    fn not(self) -> Bool {
        Bool::new(!self.get())
    }
}

macro_rules! bool_op {
    ($($tr:ident $f:ident $op:tt),*) => {$(
        impl $tr for Bool {
            type Output = Bool;
            fn $f(self, rhs: Bool) -> Bool {
                Bool::new(self.get() $op rhs.get())
            }
        }
    )*};
}
bool_op!(BitAnd bitand &, BitOr bitor |, BitXor bitxor ^);

/// `N` bytes of padding in a [`record!`](crate::record): numpy's `('', '|VN')`.
///
/// A record may not have implicit padding (its bytes would be uninitialised, and a
/// record must be `Pod`); where `#[repr(C)]` would insert some, declare it as a
/// field of this type. numpy's `align=True` structured dtypes are exactly such
/// records. Padding compares equal whatever its bytes (it is not data), and is
/// created zeroed by [`Default`].
///
/// ```
/// shmarray::record! {
///     /// numpy: np.dtype([('id', 'u1'), ('v', '<f8')], align=True)
///     pub struct Sample { pub id: u8, pub _pad: shmarray::element::Pad<7>, pub v: f64 }
/// }
/// ```
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct Pad<const N: usize>([u8; N]);

// SAFETY: a transparent wrapper of `[u8; N]`: no padding, every byte pattern valid.
unsafe impl<const N: usize> bytemuck::Zeroable for Pad<N> {}
// SAFETY: as above; `Copy` and `'static`.
unsafe impl<const N: usize> bytemuck::Pod for Pad<N> {}

impl<const N: usize> Default for Pad<N> {
    fn default() -> Self {
        Pad([0; N])
    }
}

impl<const N: usize> PartialEq for Pad<N> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<const N: usize> Eq for Pad<N> {}

impl<const N: usize> Hash for Pad<N> {
    fn hash<H: Hasher>(&self, _: &mut H) {}
}

impl<const N: usize> fmt::Debug for Pad<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pad<{N}>")
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A type that can be a field of a [`record!`](crate::record): any [`Element`]
/// (numbers, [`Bool`], complex, `f16`, other records), arrays of them
/// (`[f32; 3]`, `[[f64; 2]; 2]`: numpy subarray fields), and [`Pad`]. Sealed.
///
/// ```
/// use shmarray::element::{Bool, Pad, RecordMember};
/// use shmarray::format::{Dtype, FieldType};
/// assert_eq!(<f64 as RecordMember>::TYPE, FieldType::scalar(Dtype::F64));
/// assert_eq!(<[Bool; 4] as RecordMember>::TYPE.shape(), &[4]); // numpy: ('flags', '?', (4,))
/// assert_eq!(<Pad<3> as RecordMember>::TYPE, FieldType::padding(3));
/// ```
pub trait RecordMember: sealed::Sealed + bytemuck::Pod {
    /// The field's NPY type.
    const TYPE: FieldType;
}

impl<T: Element> sealed::Sealed for T {}
impl<T: Element> RecordMember for T {
    const TYPE: FieldType = FieldType::scalar(T::DTYPE);
}

impl<T: RecordMember, const N: usize> sealed::Sealed for [T; N] {}
impl<T: RecordMember, const N: usize> RecordMember for [T; N]
where
    [T; N]: bytemuck::Pod,
{
    const TYPE: FieldType = T::TYPE.array(N);
}

impl<const N: usize> sealed::Sealed for Pad<N> {}
impl<const N: usize> RecordMember for Pad<N> {
    const TYPE: FieldType = FieldType::padding(N);
}

/// Declares a `#[repr(C)]` plain-old-data struct that is an [`Element`]: a numpy
/// structured dtype with the same field names, types and offsets.
///
/// ```
/// shmarray::record! {
///     #[derive(Debug, PartialEq, Default)]
///     pub struct Particle {
///         pub x: f32,
///         pub y: f32,
///         pub mass: f64,
///     }
/// }
/// use shmarray::{element::Element, SharedArray};
/// // numpy: np.dtype([('x', '<f4'), ('y', '<f4'), ('mass', '<f8')])
/// assert_eq!(
///     Particle::DTYPE.descr().to_string(),
///     "[('x', '<f4'), ('y', '<f4'), ('mass', '<f8')]"
/// );
/// # let name = format!("doc-record-{}", std::process::id());
/// let mut a = SharedArray::<Particle, _>::create(&name, 3)?;
/// a.view_mut()?[1] = Particle { x: 1.0, y: 2.0, mass: 3.0 };
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// The macro adds `#[repr(C)]` and `#[derive(Clone, Copy)]` (derive anything else
/// you need, but not those), implements `bytemuck::Pod` and [`Element`], and checks
/// at compile time that:
/// - every field is a [`RecordMember`]: a number, [`Bool`], `f16`, a complex, another
///   record, an array of those, or [`Pad`];
/// - the struct has no implicit padding: where `#[repr(C)]` would leave a gap
///   (`u8` followed by `f64`), declare a `Pad<N>` field for it (numpy's
///   `align=True` dtypes have exactly these gaps, written as `('', '|VN')`).
///
/// Opening a segment as a record type compares the header's fields with the
/// struct's: a different name, type, shape, offset, order or size is a
/// `TypeMismatch` (padding may be spelled differently). Generic structs are not
/// supported.
///
/// ```compile_fail
/// shmarray::record! {
///     struct Gappy { a: u8, b: f64 } // 7 bytes of implicit padding
/// }
/// ```
/// ```compile_fail
/// shmarray::record! {
///     struct HasRef { a: &'static u8 } // not plain old data
/// }
/// ```
#[macro_export]
macro_rules! record {
    (
        $(#[$attr:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$fattr:meta])* $fvis:vis $field:ident : $ty:ty ),+ $(,)?
        }
    ) => {
        $(#[$attr])*
        #[repr(C)]
        #[derive(Clone, Copy)]
        $vis struct $name {
            $( $(#[$fattr])* $fvis $field : $ty ),+
        }

        const _: () = {
            use $crate::__private::core::mem::{align_of, offset_of, size_of};
            $(
                assert!(
                    size_of::<$ty>() == <$ty as $crate::element::RecordMember>::TYPE.size(),
                    "a record field's size differs from its NPY type's",
                );
            )+
            assert!(
                0 $( + size_of::<$ty>() )+ == size_of::<$name>(),
                concat!(
                    "record `", stringify!($name), "` has implicit padding: declare \
                     each gap as a field of type shmarray::element::Pad<N>"
                ),
            );
            const FIELDS: &[$crate::format::RecordField] = &[$(
                $crate::format::RecordField::new(
                    stringify!($field),
                    offset_of!($name, $field),
                    <$ty as $crate::element::RecordMember>::TYPE,
                )
            ),+];
            const RECORD: $crate::format::RecordDescr = $crate::format::RecordDescr::new(
                stringify!($name),
                size_of::<$name>(),
                align_of::<$name>(),
                FIELDS,
            );
            // SAFETY: `#[repr(C)]`, every field is `Pod` (`RecordMember: Pod`), and
            // the sizes of the fields add up to the struct's size (asserted above),
            // so there is no padding: every byte is a field's byte.
            unsafe impl $crate::__private::bytemuck::Zeroable for $name {}
            // SAFETY: as above; the struct is `Copy` and has no references.
            unsafe impl $crate::__private::bytemuck::Pod for $name {}
            // SAFETY: `RECORD` lists every field with its `offset_of!` offset and the
            // NPY type its `RecordMember` impl gives (whose size equals the field's,
            // asserted above), and the struct's size.
            unsafe impl $crate::element::Element for $name {
                const DTYPE: $crate::format::Dtype = $crate::format::Dtype::Record(&RECORD);
            }
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::record! {
        #[derive(Debug, PartialEq, Default)]
        struct Inner { a: u16, b: [Bool; 2] }
    }

    crate::record! {
        /// Doc comments and attributes pass through.
        #[derive(Debug, PartialEq, Default)]
        pub(crate) struct Outer {
            pub(crate) id: u8,
            _pad: Pad<3>,
            inner: Inner,
            m: [[f32; 2]; 3],
            z: Complex<f64>,
        }
    }

    crate::record! {
        // A `#[repr(C)]` written out as well is harmless.
        #[repr(C)]
        struct Raw { r#type: u32, _p: Pad<4> }
    }

    #[test]
    fn records_describe_themselves_like_numpy() {
        assert_eq!(std::mem::size_of::<Outer>(), 1 + 3 + 4 + 24 + 16);
        assert_eq!(
            Outer::DTYPE.descr().to_string(),
            "[('id', '|u1'), ('', '|V3'), ('inner', [('a', '<u2'), ('b', '|b1', (2,))]), \
             ('m', '<f4', (3, 2)), ('z', '<c16')]"
        );
        assert_eq!(Outer::DTYPE.name(), "Outer");
        assert_eq!(Outer::DTYPE.size(), 48);
        let r = Outer::DTYPE.record().unwrap();
        assert_eq!(r.align(), 8);
        let offsets: Vec<_> = r.fields().iter().map(|f| (f.name(), f.offset())).collect();
        assert_eq!(
            offsets,
            [("id", 0), ("_pad", 1), ("inner", 4), ("m", 8), ("z", 32)]
        );
        assert!(Outer::DTYPE.descr().matches(Outer::DTYPE));
        assert!(!Inner::DTYPE.descr().matches(Outer::DTYPE));
        assert_eq!(Outer::default(), bytemuck::Zeroable::zeroed());
        assert_eq!(
            Raw::DTYPE.descr().to_string(),
            "[('type', '<u4'), ('', '|V4')]"
        );
    }

    #[test]
    fn bool_reads_any_nonzero_byte_as_true() {
        let bytes = [0u8, 1, 2, 255];
        let bools: &[Bool] = bytemuck::cast_slice(&bytes);
        assert_eq!(
            bools.iter().map(|b| b.get()).collect::<Vec<_>>(),
            [false, true, true, true]
        );
        assert_eq!(bools[2], bools[1]);
        assert_eq!(bools[3].to_byte(), 255);
        assert_eq!(Bool::from(true).to_byte(), 1);
        assert!(bool::from(Bool::TRUE & Bool::from_byte(9)));
        assert_eq!(Bool::TRUE ^ Bool::TRUE, false);
        assert_eq!(
            format!("{:?} {}", Bool::from_byte(3), Bool::FALSE),
            "true false"
        );
    }
}
