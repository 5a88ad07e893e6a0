//! Element types a segment can hold and their NPY type descriptors.

use std::fmt;
use std::str::FromStr;

/// Element types a segment can hold, with their NPY type descriptors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dtype {
    /// `i8`, NPY `|i1`
    I8,
    /// `i16`, NPY `<i2`
    I16,
    /// `i32`, NPY `<i4`
    I32,
    /// `i64`, NPY `<i8`
    I64,
    /// `u8`, NPY `|u1`
    U8,
    /// `u16`, NPY `<u2`
    U16,
    /// `u32`, NPY `<u4`
    U32,
    /// `u64`, NPY `<u8`
    U64,
    /// `f32`, NPY `<f4`
    F32,
    /// `f64`, NPY `<f8`
    F64,
}

/// Every supported element type.
pub(crate) const ALL_DTYPES: [Dtype; 10] = [
    Dtype::I8,
    Dtype::I16,
    Dtype::I32,
    Dtype::I64,
    Dtype::U8,
    Dtype::U16,
    Dtype::U32,
    Dtype::U64,
    Dtype::F32,
    Dtype::F64,
];

impl Dtype {
    /// Size of one element in bytes.
    pub const fn size(self) -> usize {
        match self {
            Dtype::I8 | Dtype::U8 => 1,
            Dtype::I16 | Dtype::U16 => 2,
            Dtype::I32 | Dtype::U32 | Dtype::F32 => 4,
            Dtype::I64 | Dtype::U64 | Dtype::F64 => 8,
        }
    }

    /// Short Rust-style name (`f64`, `u8`, ...), also accepted by [`Dtype::from_name`].
    pub const fn name(self) -> &'static str {
        match self {
            Dtype::I8 => "i8",
            Dtype::I16 => "i16",
            Dtype::I32 => "i32",
            Dtype::I64 => "i64",
            Dtype::U8 => "u8",
            Dtype::U16 => "u16",
            Dtype::U32 => "u32",
            Dtype::U64 => "u64",
            Dtype::F32 => "f32",
            Dtype::F64 => "f64",
        }
    }

    /// The NPY descriptor in native (little-endian) byte order, e.g. `<f8`.
    pub const fn descr(self) -> &'static str {
        match self {
            Dtype::I8 => "|i1",
            Dtype::I16 => "<i2",
            Dtype::I32 => "<i4",
            Dtype::I64 => "<i8",
            Dtype::U8 => "|u1",
            Dtype::U16 => "<u2",
            Dtype::U32 => "<u4",
            Dtype::U64 => "<u8",
            Dtype::F32 => "<f4",
            Dtype::F64 => "<f8",
        }
    }

    /// Parses an NPY descriptor. Accepts `<` and `=` (and `|` for one-byte types)
    /// as little-endian; returns `None` for anything else (big-endian, structured, ...).
    pub fn from_descr(descr: &str) -> Option<Dtype> {
        let b = descr.as_bytes();
        if b.len() < 3 {
            return None;
        }
        let order = b[0];
        let rest = &descr[1..];
        ALL_DTYPES.into_iter().find(|d| {
            let want = &d.descr()[1..];
            rest == want
                && match order {
                    b'<' | b'=' => true,
                    b'|' => d.size() == 1,
                    _ => false,
                }
        })
    }

    /// Parses a Rust-style name (`f64`), a numpy name (`float64`, `int32`, `uint8`)
    /// or an NPY descriptor (`<f8`). [`FromStr`] does the same with a typed error.
    pub fn from_name(name: &str) -> Option<Dtype> {
        let n = name.trim().to_ascii_lowercase();
        ALL_DTYPES.into_iter().find(|d| {
            let numpy = match d {
                Dtype::F32 => "float32",
                Dtype::F64 => "float64",
                Dtype::I8 => "int8",
                Dtype::I16 => "int16",
                Dtype::I32 => "int32",
                Dtype::I64 => "int64",
                Dtype::U8 => "uint8",
                Dtype::U16 => "uint16",
                Dtype::U32 => "uint32",
                Dtype::U64 => "uint64",
            };
            n == d.name() || n == numpy || Some(*d) == Dtype::from_descr(&n)
        })
    }

    /// The element type a stored [`code`](Self::code) names (a queue's item type is
    /// recorded this way in its control block parameters).
    pub fn from_code(code: u32) -> Option<Dtype> {
        dtype_from_code(code)
    }

    /// Stable numeric code stored in the control block.
    pub const fn code(self) -> u32 {
        match self {
            Dtype::I8 => 1,
            Dtype::I16 => 2,
            Dtype::I32 => 3,
            Dtype::I64 => 4,
            Dtype::U8 => 5,
            Dtype::U16 => 6,
            Dtype::U32 => 7,
            Dtype::U64 => 8,
            Dtype::F32 => 9,
            Dtype::F64 => 10,
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A string that names no supported element type (see [`Dtype::from_name`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown element type {0:?} (expected one of i8, i16, i32, i64, u8, u16, u32, u64, f32, f64, their numpy names or NPY descriptors)")]
pub struct UnknownDtype(pub String);

impl FromStr for Dtype {
    type Err = UnknownDtype;

    fn from_str(s: &str) -> Result<Dtype, UnknownDtype> {
        Dtype::from_name(s).ok_or_else(|| UnknownDtype(s.to_string()))
    }
}

/// The dtype a stored code names (see [`Dtype::code`]).
pub(crate) fn dtype_from_code(code: u32) -> Option<Dtype> {
    ALL_DTYPES.into_iter().find(|d| d.code() == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descr_parsing() {
        assert_eq!(Dtype::from_descr("<f8"), Some(Dtype::F64));
        assert_eq!(Dtype::from_descr("|u1"), Some(Dtype::U8));
        assert_eq!(Dtype::from_descr("<u1"), Some(Dtype::U8));
        assert_eq!(Dtype::from_descr(">f8"), None);
        assert_eq!(Dtype::from_descr("|f8"), None);
        assert_eq!(Dtype::from_name("float32"), Some(Dtype::F32));
        assert_eq!(Dtype::from_name("i64"), Some(Dtype::I64));
        assert_eq!(Dtype::from_name("complex"), None);
        assert_eq!("uint16".parse::<Dtype>(), Ok(Dtype::U16));
        assert!("complex".parse::<Dtype>().is_err());
        for d in ALL_DTYPES {
            assert_eq!(dtype_from_code(d.code()), Some(d));
        }
    }
}
