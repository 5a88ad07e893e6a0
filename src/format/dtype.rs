//! Element types a segment can hold and their NPY type descriptors.
//!
//! [`Dtype`] names an element type known at compile time: a number, [`Bool`](crate::element::Bool),
//! or a record declared with [`record!`](crate::record) (whose static description
//! is a [`RecordDescr`]). [`Descr`](super::descr::Descr) is the other side: the
//! descriptor a header holds, parsed, whatever it is.

use std::fmt;
use std::str::FromStr;

use super::descr::{Descr, DescrField};

/// Element types a segment can hold, with their NPY type descriptors.
///
/// ```
/// use shmarray::{element::Element, format::Dtype};
/// assert_eq!(<f64 as Element>::DTYPE, Dtype::F64);
/// assert_eq!((Dtype::F64.size(), Dtype::F64.type_str()), (8, Some("<f8")));
/// assert_eq!(Dtype::from_name("float32"), Some(Dtype::F32));
/// assert_eq!(Dtype::from_descr("<c16"), Some(Dtype::C128));
/// assert_eq!(Dtype::from_descr(">f8"), None); // big-endian: not an element type here
/// ```
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
    /// [`Bool`](crate::element::Bool) (one byte: 0 is false, anything else true), NPY `|b1`,
    /// numpy `bool`.
    Bool,
    /// `half::f16` (feature `f16`), NPY `<f2`, numpy `float16`.
    F16,
    /// `num_complex::Complex<f32>` (`Complex32`), NPY `<c8`, numpy `complex64`.
    C64,
    /// `num_complex::Complex<f64>` (`Complex64`), NPY `<c16`, numpy `complex128`.
    C128,
    /// A record declared with [`record!`](crate::record): a numpy structured dtype.
    Record(&'static RecordDescr),
}

/// Every element type that is not a record.
pub(crate) const ALL_DTYPES: [Dtype; 14] = [
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
    Dtype::Bool,
    Dtype::F16,
    Dtype::C64,
    Dtype::C128,
];

/// The control block's dtype code of every record (the header holds its fields).
pub(crate) const RECORD_CODE: u32 = 20;

impl Dtype {
    /// The [`code`](Self::code) of every record (a queue of records records it in
    /// its parameters too, with a fingerprint of the fields).
    pub const RECORD_CODE: u32 = RECORD_CODE;

    /// Size of one element in bytes.
    pub const fn size(self) -> usize {
        match self {
            Dtype::I8 | Dtype::U8 | Dtype::Bool => 1,
            Dtype::I16 | Dtype::U16 | Dtype::F16 => 2,
            Dtype::I32 | Dtype::U32 | Dtype::F32 => 4,
            Dtype::I64 | Dtype::U64 | Dtype::F64 | Dtype::C64 => 8,
            Dtype::C128 => 16,
            Dtype::Record(r) => r.size,
        }
    }

    /// Short Rust-style name (`f64`, `u8`, `bool`, `c128`, ...), also accepted by
    /// [`Dtype::from_name`]; a record's struct name. Complex types are named by their
    /// total bits, as numpy does: `c64` is `Complex<f32>`.
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
            Dtype::Bool => "bool",
            Dtype::F16 => "f16",
            Dtype::C64 => "c64",
            Dtype::C128 => "c128",
            Dtype::Record(r) => r.name,
        }
    }

    /// numpy's name of the type (`float64`, `uint8`, `bool`, `complex128`); `None`
    /// for a record.
    pub const fn numpy_name(self) -> Option<&'static str> {
        Some(match self {
            Dtype::I8 => "int8",
            Dtype::I16 => "int16",
            Dtype::I32 => "int32",
            Dtype::I64 => "int64",
            Dtype::U8 => "uint8",
            Dtype::U16 => "uint16",
            Dtype::U32 => "uint32",
            Dtype::U64 => "uint64",
            Dtype::F32 => "float32",
            Dtype::F64 => "float64",
            Dtype::Bool => "bool",
            Dtype::F16 => "float16",
            Dtype::C64 => "complex64",
            Dtype::C128 => "complex128",
            Dtype::Record(_) => return None,
        })
    }

    /// The NPY type string of a type that is not a record, in native
    /// (little-endian) byte order: `<f8`, `|b1`, `<c16`. `None` for a record (its
    /// descriptor is a list: see [`descr`](Self::descr)).
    pub const fn type_str(self) -> Option<&'static str> {
        Some(match self {
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
            Dtype::Bool => "|b1",
            Dtype::F16 => "<f2",
            Dtype::C64 => "<c8",
            Dtype::C128 => "<c16",
            Dtype::Record(_) => return None,
        })
    }

    /// The NPY descriptor: a type string such as `<f8`, or a record's list of
    /// fields (`[('x', '<f4'), ('y', '<f4'), ('mass', '<f8')]`, padding as
    /// `('', '|V4')`), as numpy writes it in a header.
    pub fn descr(self) -> Descr {
        match self {
            Dtype::Record(r) => r.descr(),
            other => Descr::Simple(other.type_str().unwrap_or("|V0").to_string()),
        }
    }

    /// The record's description, if this is a record.
    pub const fn record(self) -> Option<&'static RecordDescr> {
        match self {
            Dtype::Record(r) => Some(r),
            _ => None,
        }
    }

    /// Parses an NPY type string. Accepts `<` and `=` (and `|` for one-byte types)
    /// as little-endian; returns `None` for anything else (big-endian, records,
    /// strings, ...).
    pub fn from_descr(descr: &str) -> Option<Dtype> {
        let b = descr.as_bytes();
        if b.len() < 3 {
            return None;
        }
        let order = b[0];
        let rest = &descr[1..];
        ALL_DTYPES.into_iter().find(|d| {
            let want = &d.type_str().unwrap_or("")[1..];
            rest == want
                && match order {
                    b'<' | b'=' => true,
                    b'|' => d.size() == 1,
                    _ => false,
                }
        })
    }

    /// Parses a Rust-style name (`f64`, `bool`, `c128`), a numpy name (`float64`,
    /// `int32`, `complex64`, `bool`, `?`), an NPY type string (`<f8`) or a numpy type
    /// code without byte order (`f8`, `f2`, `c16`, `b1`; but `i8` and `u8` are the
    /// Rust types, not numpy's `int64`/`uint64`). Records are declared with
    /// [`record!`](crate::record), not named. [`FromStr`] does the same with a
    /// typed error.
    pub fn from_name(name: &str) -> Option<Dtype> {
        let n = name.trim().to_ascii_lowercase();
        let alias = match n.as_str() {
            "?" | "bool_" | "b1" => Some(Dtype::Bool),
            "half" => Some(Dtype::F16),
            "cfloat" | "cdouble" | "complex" => Some(Dtype::C128),
            "csingle" => Some(Dtype::C64),
            _ => None,
        };
        alias
            .or_else(|| {
                ALL_DTYPES.into_iter().find(|d| {
                    n == d.name()
                        || Some(n.as_str()) == d.numpy_name()
                        || Some(*d) == Dtype::from_descr(&n)
                })
            })
            .or_else(|| Dtype::from_descr(&format!("<{n}")))
    }

    /// The element type a stored [`code`](Self::code) names (a queue's item type is
    /// recorded this way in its control block parameters). `None` for the record
    /// code: a record's fields are in its header, not in a code.
    pub fn from_code(code: u32) -> Option<Dtype> {
        dtype_from_code(code)
    }

    /// Stable numeric code stored in the control block (every record shares one
    /// code; its fields are in the header).
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
            Dtype::Bool => 11,
            Dtype::F16 => 12,
            Dtype::C64 => 13,
            Dtype::C128 => 14,
            Dtype::Record(_) => RECORD_CODE,
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A string that names no supported element type (see [`Dtype::from_name`]).
///
/// ```
/// use shmarray::format::{Dtype, UnknownDtype};
/// assert_eq!("float32".parse::<Dtype>(), Ok(Dtype::F32)); // numpy's name
/// assert_eq!("<f8".parse::<Dtype>(), Ok(Dtype::F64)); // an NPY descriptor
/// assert_eq!("f128".parse::<Dtype>(), Err(UnknownDtype("f128".into())));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown element type {0:?} (expected one of i8, i16, i32, i64, u8, u16, u32, u64, f16, f32, f64, bool, c64, c128, their numpy names or NPY descriptors)")]
pub struct UnknownDtype(pub String);

impl FromStr for Dtype {
    type Err = UnknownDtype;

    fn from_str(s: &str) -> Result<Dtype, UnknownDtype> {
        Dtype::from_name(s).ok_or_else(|| UnknownDtype(s.to_string()))
    }
}

/// The dtype a stored code names (see [`Dtype::code`]); `None` for records.
pub(crate) fn dtype_from_code(code: u32) -> Option<Dtype> {
    ALL_DTYPES.into_iter().find(|d| d.code() == code)
}

/// Most dimensions of a record field's array (`[[f32; 3]; 3]` has two).
pub const MAX_FIELD_DIMS: usize = 8;

/// The type of one field of a record: an element type (possibly an array of them,
/// `[f32; 3]` is `<f4` of shape `(3,)`) or padding ([`Pad`](crate::element::Pad)).
/// [`RecordMember::TYPE`](crate::element::RecordMember::TYPE) gives it for a Rust type.
///
/// ```
/// use shmarray::{element::{Pad, RecordMember}, format::{Dtype, FieldType}};
/// let t = <[[f32; 3]; 2] as RecordMember>::TYPE;
/// assert_eq!(t, FieldType::scalar(Dtype::F32).array(3).array(2));
/// assert_eq!((t.element(), t.shape(), t.size()), (Some(Dtype::F32), &[2, 3][..], 24));
/// assert!(<Pad<4> as RecordMember>::TYPE.is_padding());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FieldType {
    elem: Option<Dtype>,
    dims: [usize; MAX_FIELD_DIMS],
    ndim: usize,
    size: usize,
}

impl FieldType {
    /// One element of `dtype`.
    pub const fn scalar(dtype: Dtype) -> FieldType {
        FieldType {
            elem: Some(dtype),
            dims: [0; MAX_FIELD_DIMS],
            ndim: 0,
            size: dtype.size(),
        }
    }

    /// `size` bytes of padding (numpy `('', '|V<size>')`).
    pub const fn padding(size: usize) -> FieldType {
        FieldType {
            elem: None,
            dims: [0; MAX_FIELD_DIMS],
            ndim: 0,
            size,
        }
    }

    /// An array of `n` of `self` (`[T; n]`): the new dimension comes first.
    ///
    /// # Panics
    /// (At compile time, where used in a constant.) For padding, for more than
    /// [`MAX_FIELD_DIMS`] dimensions, or when the size overflows.
    pub const fn array(self, n: usize) -> FieldType {
        assert!(
            self.elem.is_some(),
            "an array of padding is not a record field: use one Pad<N>"
        );
        assert!(
            self.ndim < MAX_FIELD_DIMS,
            "record field arrays have at most 8 dimensions"
        );
        let mut dims = [0; MAX_FIELD_DIMS];
        dims[0] = n;
        let mut i = 0;
        while i < self.ndim {
            dims[i + 1] = self.dims[i];
            i += 1;
        }
        let size = match self.size.checked_mul(n) {
            Some(s) => s,
            None => panic!("record field array too large"),
        };
        FieldType {
            elem: self.elem,
            dims,
            ndim: self.ndim + 1,
            size,
        }
    }

    /// Bytes the field occupies.
    pub const fn size(&self) -> usize {
        self.size
    }

    /// The element type (`None`: padding).
    pub const fn element(&self) -> Option<Dtype> {
        self.elem
    }

    /// Whether this is padding.
    pub const fn is_padding(&self) -> bool {
        self.elem.is_none()
    }

    /// The array shape (empty for one element).
    pub fn shape(&self) -> &[usize] {
        &self.dims[..self.ndim]
    }
}

/// One field of a [`RecordDescr`]: its name, byte offset and type.
///
/// ```
/// use shmarray::format::{Dtype, FieldType, RecordField};
/// let f = RecordField::new("r#type", 8, FieldType::scalar(Dtype::U16));
/// assert_eq!((f.name(), f.offset(), f.field_type().size()), ("type", 8, 2));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RecordField {
    name: &'static str,
    offset: usize,
    ty: FieldType,
}

impl RecordField {
    /// A field `name` at byte `offset` of type `ty` (padding fields' names are
    /// ignored). A raw identifier's `r#` is not part of the name (`r#type` is the
    /// numpy field `type`).
    pub const fn new(name: &'static str, offset: usize, ty: FieldType) -> RecordField {
        let b = name.as_bytes();
        let name = if b.len() > 2 && b[0] == b'r' && b[1] == b'#' {
            match std::str::from_utf8(b.split_at(2).1) {
                Ok(s) => s,
                Err(_) => name,
            }
        } else {
            name
        };
        RecordField { name, offset, ty }
    }

    /// The field's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// Its byte offset in the record.
    pub const fn offset(&self) -> usize {
        self.offset
    }

    /// Its type.
    pub const fn field_type(&self) -> FieldType {
        self.ty
    }
}

/// The static description of a record type (what [`record!`](crate::record)
/// declares): a numpy structured dtype with fixed field names, types and offsets.
///
/// ```
/// use shmarray::{element::Element, format::Descr, record};
/// record! {
///     #[derive(Debug, Default)]
///     pub struct Particle { pub x: f32, pub y: f32, pub mass: f64 }
/// }
/// let r = Particle::DTYPE.record().expect("a record type");
/// assert_eq!((r.size(), r.align()), (16, 8));
/// let fields: Vec<_> = r.fields().iter().map(|f| (f.name(), f.offset())).collect();
/// assert_eq!(fields, [("x", 0), ("y", 4), ("mass", 8)]);
/// // What the header says, and numpy reads:
/// assert_eq!(r.descr(), Descr::from_literal("[('x', '<f4'), ('y', '<f4'), ('mass', '<f8')]")?);
/// # Ok::<(), shmarray::format::HeaderError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RecordDescr {
    name: &'static str,
    size: usize,
    align: usize,
    fields: &'static [RecordField],
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

const fn printable(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] < 0x20 || b[i] >= 0x7f || matches!(b[i], b'\\' | b'\'' | b'"') {
            return false;
        }
        i += 1;
    }
    true
}

impl RecordDescr {
    /// A record type `name` of `size` bytes aligned to `align`, with `fields` in
    /// order of their offsets. [`record!`](crate::record) calls this; the checks
    /// run at compile time there.
    ///
    /// # Panics
    /// If fields overlap, are out of order or reach past `size`; if a named field
    /// has an empty, duplicate or non-printable-ASCII name; if there is no named
    /// field.
    pub const fn new(
        name: &'static str,
        size: usize,
        align: usize,
        fields: &'static [RecordField],
    ) -> RecordDescr {
        let mut end = 0;
        let mut named = 0;
        let mut i = 0;
        while i < fields.len() {
            let f = &fields[i];
            assert!(f.offset >= end, "record fields overlap or are out of order");
            end = match f.offset.checked_add(f.ty.size) {
                Some(e) => e,
                None => panic!("record field offset overflows"),
            };
            assert!(end <= size, "a record field reaches past the record's size");
            if !f.ty.is_padding() {
                named += 1;
                assert!(!f.name.is_empty(), "a record field needs a name");
                assert!(
                    printable(f.name),
                    "record field names are printable ASCII without backslashes or quotes"
                );
                let mut j = 0;
                while j < i {
                    assert!(
                        fields[j].ty.is_padding() || !str_eq(fields[j].name, f.name),
                        "two record fields have the same name"
                    );
                    j += 1;
                }
            }
            i += 1;
        }
        assert!(named > 0, "a record needs at least one field");
        RecordDescr {
            name,
            size,
            align,
            fields,
        }
    }

    /// The Rust type's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// Size of one record in bytes.
    pub const fn size(&self) -> usize {
        self.size
    }

    /// Alignment of the Rust type.
    pub const fn align(&self) -> usize {
        self.align
    }

    /// The fields, padding included, in order.
    pub const fn fields(&self) -> &'static [RecordField] {
        self.fields
    }

    /// The NPY descriptor numpy writes for this record: named fields, and
    /// `('', '|Vn')` for padding (declared, between fields or at the end).
    pub fn descr(&self) -> Descr {
        let mut out = Vec::with_capacity(self.fields.len());
        let mut end = 0;
        let pad = |n: usize| DescrField {
            name: String::new(),
            descr: Descr::Simple(format!("|V{n}")),
            shape: Vec::new(),
        };
        for f in self.fields {
            if f.offset > end {
                out.push(pad(f.offset - end));
            }
            end = f.offset + f.ty.size;
            match f.ty.elem {
                None if f.ty.size > 0 => out.push(pad(f.ty.size)),
                None => {}
                Some(d) => out.push(DescrField {
                    name: f.name.to_string(),
                    descr: d.descr(),
                    shape: f.ty.shape().to_vec(),
                }),
            }
        }
        if self.size > end {
            out.push(pad(self.size - end));
        }
        Descr::Record(out)
    }
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
        assert_eq!(Dtype::from_descr("|b1"), Some(Dtype::Bool));
        assert_eq!(Dtype::from_descr("<f2"), Some(Dtype::F16));
        assert_eq!(Dtype::from_descr("<c8"), Some(Dtype::C64));
        assert_eq!(Dtype::from_descr("<c16"), Some(Dtype::C128));
        assert_eq!(Dtype::from_descr(">c16"), None);
        assert_eq!(Dtype::from_descr("|c16"), None);
        assert_eq!(Dtype::from_name("float32"), Some(Dtype::F32));
        assert_eq!(Dtype::from_name("i64"), Some(Dtype::I64));
        assert_eq!(Dtype::from_name("i8"), Some(Dtype::I8));
        assert_eq!(Dtype::from_name("f8"), Some(Dtype::F64));
        assert_eq!(Dtype::from_name("c16"), Some(Dtype::C128));
        assert_eq!(Dtype::from_name("c8"), Some(Dtype::C64));
        assert_eq!(Dtype::from_name("complex64"), Some(Dtype::C64));
        assert_eq!(Dtype::from_name("c128"), Some(Dtype::C128));
        assert_eq!(Dtype::from_name("?"), Some(Dtype::Bool));
        assert_eq!(Dtype::from_name("bool"), Some(Dtype::Bool));
        assert_eq!(Dtype::from_name("float16"), Some(Dtype::F16));
        assert_eq!(Dtype::from_name("f2"), Some(Dtype::F16));
        assert_eq!(Dtype::from_name("complex"), Some(Dtype::C128));
        assert_eq!(Dtype::from_name("quaternion"), None);
        assert_eq!(Dtype::from_name("U10"), None);
        assert_eq!("uint16".parse::<Dtype>(), Ok(Dtype::U16));
        assert!("object".parse::<Dtype>().is_err());
        for d in ALL_DTYPES {
            assert_eq!(dtype_from_code(d.code()), Some(d));
            assert_eq!(Dtype::from_name(d.name()), Some(d));
            assert_eq!(Dtype::from_name(d.numpy_name().unwrap()), Some(d));
            assert_eq!(Dtype::from_descr(d.type_str().unwrap()), Some(d));
            assert_ne!(d.code(), RECORD_CODE);
        }
        assert_eq!(dtype_from_code(RECORD_CODE), None);
    }

    static FIELDS: [RecordField; 3] = [
        RecordField::new("a", 0, FieldType::scalar(Dtype::U8)),
        RecordField::new("", 1, FieldType::padding(3)),
        RecordField::new("b", 4, FieldType::scalar(Dtype::F32).array(2).array(3)),
    ];
    static REC: RecordDescr = RecordDescr::new("Rec", 32, 4, &FIELDS);

    #[test]
    fn record_descr_lists_fields_and_padding() {
        let d = Dtype::Record(&REC);
        assert_eq!(d.size(), 32);
        assert_eq!(d.name(), "Rec");
        assert_eq!(d.code(), RECORD_CODE);
        assert_eq!(FIELDS[2].field_type().shape(), &[3, 2]);
        assert_eq!(FIELDS[2].field_type().size(), 24);
        assert_eq!(
            d.descr().to_string(),
            "[('a', '|u1'), ('', '|V3'), ('b', '<f4', (3, 2)), ('', '|V4')]"
        );
        assert_eq!(d.descr().itemsize(), Some(32));
    }

    #[test]
    #[should_panic(expected = "overlap")]
    fn overlapping_fields_are_refused() {
        static F: [RecordField; 2] = [
            RecordField::new("a", 0, FieldType::scalar(Dtype::U32)),
            RecordField::new("b", 2, FieldType::scalar(Dtype::U32)),
        ];
        let _ = RecordDescr::new("R", 8, 4, &F);
    }

    #[test]
    #[should_panic(expected = "same name")]
    fn duplicate_names_are_refused() {
        static F: [RecordField; 2] = [
            RecordField::new("a", 0, FieldType::scalar(Dtype::U32)),
            RecordField::new("a", 4, FieldType::scalar(Dtype::U32)),
        ];
        let _ = RecordDescr::new("R", 8, 4, &F);
    }
}
