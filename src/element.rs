//! Element types that can live in a segment.

use crate::format::dtype::Dtype;

/// A numeric type that can be stored in a shared array.
///
/// # Safety
/// `DTYPE` must describe `Self` exactly: `DTYPE.size() == size_of::<Self>()`, and the
/// NPY descriptor `DTYPE.descr()` must mean the same numeric interpretation of the
/// same bytes on this platform. (`Pod` already guarantees every bit pattern is a
/// valid value, so bytes written by another process can never be an invalid `Self`.)
pub unsafe trait Element: bytemuck::Pod + Send + Sync + 'static {
    /// The element type as recorded in the NPY header.
    const DTYPE: Dtype;
}

macro_rules! element {
    ($($t:ty => $d:ident),* $(,)?) => {$(
        // SAFETY: `$t` is a primitive little-endian (see the cfg guard below) number of
        // exactly `Dtype::$d.size()` bytes with the numeric meaning of its descriptor.
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
}
