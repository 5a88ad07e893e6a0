//! NPY type descriptors as a header holds them: a type string (`'<f8'`) or a
//! structured dtype's list of fields (`[('x', '<f4'), ('', '|V4'), ('m', '<f8')]`).
//! Pure: parses and renders Python literals.
//!
//! numpy writes a structured dtype's descriptor as `dtype.descr`: one tuple per
//! field in offset order, `(name, descr)` or `(name, descr, shape)` for an array
//! field, where `descr` is a type string or (a nested record) a list; the gaps
//! between fields and after the last one are written as padding fields
//! `('', '|Vn')`. Offsets are not written: a field starts where the previous one
//! ends. That is the form for aligned (`align=True`) and packed dtypes alike (an
//! aligned dtype's padding is explicit), in numpy 1.x and 2.x; numpy reads it back
//! with `numpy.lib.format.descr_to_dtype`.

use std::fmt::{self, Write as _};
use std::str::FromStr;

use super::control::fnv1a64;
use super::dtype::{Dtype, RECORD_CODE};
use super::npy::{HeaderError, Parser};

/// Deepest nesting of records in records a descriptor may have.
const MAX_DEPTH: usize = 8;

/// Largest element size (bytes) a descriptor may give.
const MAX_ITEMSIZE: usize = 1 << 30;

/// An NPY type descriptor, as parsed from a header (the `descr` value).
///
/// ```
/// use shmarray::format::{Descr, Dtype};
/// let simple = Descr::Simple("<i4".into());
/// assert_eq!((simple.itemsize(), simple.dtype()), (Some(4), Some(Dtype::I32)));
/// let unknown = Descr::Simple("<U10".into()); // numpy strings: no element type
/// assert!(!unknown.is_supported());
/// assert!(!simple.is_record() && simple.fields().is_empty());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Descr {
    /// A type string: `<f8`, `|b1`, `<c16`, or one no element type matches
    /// (`>f8`, `<U10`, `|V8`).
    Simple(String),
    /// A structured dtype (a record): its fields in order, padding included.
    Record(Vec<DescrField>),
}

/// One entry of a structured dtype's descriptor.
///
/// ```
/// use shmarray::format::{Descr, DescrField};
/// let d = Descr::from_literal("[('id', '<u4'), ('', '|V4'), ('pos', '<f8', (3,))]")?;
/// let f: &[DescrField] = d.fields();
/// assert_eq!((f[0].name.as_str(), f[0].itemsize()), ("id", Some(4)));
/// assert!(f[1].is_padding());
/// assert_eq!((f[2].shape.as_slice(), f[2].itemsize()), (&[3][..], Some(24)));
/// assert_eq!(d.itemsize(), Some(32));
/// # Ok::<(), shmarray::format::HeaderError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DescrField {
    /// The field's name; empty for padding.
    pub name: String,
    /// Its type.
    pub descr: Descr,
    /// Its array shape (empty: one element).
    pub shape: Vec<usize>,
}

impl DescrField {
    /// Whether this entry is padding: no name, a `|Vn` type, no shape.
    pub fn is_padding(&self) -> bool {
        self.name.is_empty()
            && self.shape.is_empty()
            && matches!(&self.descr, Descr::Simple(s) if s.starts_with("|V"))
    }

    /// Bytes the field occupies (`None` if its type's size is unknown).
    pub fn itemsize(&self) -> Option<usize> {
        self.shape
            .iter()
            .try_fold(self.descr.itemsize()?, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= MAX_ITEMSIZE)
    }
}

/// Size of a type string numpy can write: `<f8`, `|S10`, `<U10` (4 bytes a
/// character), `|V16`, `<M8[ns]`. `None` for object arrays and anything else.
fn simple_itemsize(s: &str) -> Option<usize> {
    if let Some(d) = Dtype::from_descr(s) {
        return Some(d.size());
    }
    let b = s.as_bytes();
    if b.len() < 3 || !matches!(b[0], b'<' | b'>' | b'|' | b'=') {
        return None;
    }
    let kind = b[1];
    let mut digits = &s[2..];
    if matches!(kind, b'M' | b'm') {
        if let Some(i) = digits.find('[') {
            if !digits.ends_with(']') {
                return None;
            }
            digits = &digits[..i];
        }
    } else if !matches!(
        kind,
        b'b' | b'i' | b'u' | b'f' | b'c' | b'S' | b'a' | b'U' | b'V'
    ) {
        return None;
    }
    if !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let n: usize = digits.parse().ok().filter(|&n| n > 0)?;
    let per = if kind == b'U' { 4 } else { 1 };
    n.checked_mul(per).filter(|&n| n <= MAX_ITEMSIZE)
}

impl Descr {
    /// Size of one element in bytes (`None` when a type's size is unknown, e.g. an
    /// object array).
    pub fn itemsize(&self) -> Option<usize> {
        match self {
            Descr::Simple(s) => simple_itemsize(s),
            Descr::Record(fields) => fields
                .iter()
                .try_fold(0usize, |acc, f| acc.checked_add(f.itemsize()?))
                .filter(|&n| n <= MAX_ITEMSIZE),
        }
    }

    /// The element type of a type string this library maps (`<f8` is `F64`);
    /// `None` for records and unknown types.
    pub fn dtype(&self) -> Option<Dtype> {
        match self {
            Descr::Simple(s) => Dtype::from_descr(s),
            Descr::Record(_) => None,
        }
    }

    /// Whether this is a structured dtype.
    pub fn is_record(&self) -> bool {
        matches!(self, Descr::Record(_))
    }

    /// The fields of a record, padding included (empty for a type string).
    pub fn fields(&self) -> &[DescrField] {
        match self {
            Descr::Simple(_) => &[],
            Descr::Record(f) => f,
        }
    }

    /// The named fields of a record with their byte offsets, in order (padding
    /// skipped; stops at a field whose size is unknown).
    pub fn named_fields(&self) -> Vec<(usize, &DescrField)> {
        let mut out = Vec::new();
        let mut offset = 0usize;
        for f in self.fields() {
            if !f.is_padding() {
                out.push((offset, f));
            }
            match f.itemsize().and_then(|n| offset.checked_add(n)) {
                Some(o) => offset = o,
                None => break,
            }
        }
        out
    }

    /// Whether a segment of it can be created: every type in it is an element type
    /// of this library (or padding), its size is known, and its literal parses back
    /// to itself (so names are non-empty, unique, printable ASCII without
    /// backslashes, and hold at most one kind of quote: a header can say exactly
    /// this and nothing else).
    pub fn is_supported(&self) -> bool {
        self.types_supported()
            && self.itemsize().is_some_and(|n| n > 0)
            && Descr::from_literal(&self.literal()).as_ref() == Ok(self)
    }

    fn types_supported(&self) -> bool {
        match self {
            Descr::Simple(s) => Dtype::from_descr(s).is_some(),
            Descr::Record(fields) => fields
                .iter()
                .all(|f| f.is_padding() || f.descr.types_supported()),
        }
    }

    /// The control block's dtype code for a header with this descriptor: the
    /// element type's code, [the record code](Dtype::code) for any record, `None`
    /// for a type no element type matches.
    pub fn code(&self) -> Option<u32> {
        match self {
            Descr::Simple(s) => Dtype::from_descr(s).map(Dtype::code),
            Descr::Record(_) => Some(RECORD_CODE),
        }
    }

    /// The same type in one canonical spelling: known type strings as this library
    /// writes them (`=f8` is `<f8`, `<u1` is `|u1`), runs of padding merged into
    /// one `('', '|Vn')`. Two descriptors with equal canonical forms have the same
    /// field names, types, shapes, offsets and size, in the same order.
    pub fn canonical(&self) -> Descr {
        match self {
            Descr::Simple(s) => Descr::Simple(
                Dtype::from_descr(s)
                    .and_then(Dtype::type_str)
                    .map_or_else(|| s.clone(), str::to_string),
            ),
            Descr::Record(fields) => {
                let mut out = Vec::with_capacity(fields.len());
                let mut pad = Some(0usize);
                let flush = |out: &mut Vec<DescrField>, pad: &mut Option<usize>| {
                    match *pad {
                        Some(0) => {}
                        Some(n) => out.push(DescrField {
                            name: String::new(),
                            descr: Descr::Simple(format!("|V{n}")),
                            shape: Vec::new(),
                        }),
                        // Padding of unknown size: keep a marker that equals nothing
                        // a writer produces.
                        None => out.push(DescrField {
                            name: String::new(),
                            descr: Descr::Simple("|V?".into()),
                            shape: Vec::new(),
                        }),
                    }
                    *pad = Some(0);
                };
                for f in fields {
                    if f.is_padding() {
                        pad = pad.and_then(|p| p.checked_add(f.itemsize()?));
                        continue;
                    }
                    flush(&mut out, &mut pad);
                    out.push(DescrField {
                        name: f.name.clone(),
                        descr: f.descr.canonical(),
                        shape: f.shape.clone(),
                    });
                }
                flush(&mut out, &mut pad);
                Descr::Record(out)
            }
        }
    }

    /// Whether a header with this descriptor holds elements of `dtype`: the same
    /// type, or for a record the same field names, types, shapes and offsets in the
    /// same order, and the same size (however the padding is spelled).
    pub fn matches(&self, dtype: Dtype) -> bool {
        match (self, dtype) {
            (Descr::Simple(s), d) => Dtype::from_descr(s) == Some(d),
            (Descr::Record(_), Dtype::Record(r)) => self.canonical() == r.descr().canonical(),
            (Descr::Record(_), _) => false,
        }
    }

    /// A 64-bit fingerprint of the canonical form (FNV-1a of its literal): a queue
    /// of records records it in its parameters, as its header holds only bytes.
    pub fn fingerprint(&self) -> u64 {
        fnv1a64(&[self.canonical().literal().as_bytes()])
    }

    /// The Python literal numpy writes in a header: `'<f8'` (quoted), or the list
    /// of fields.
    pub fn literal(&self) -> String {
        let mut s = String::new();
        self.write_literal(&mut s);
        s
    }

    fn write_literal(&self, out: &mut String) {
        match self {
            Descr::Simple(s) => write_str_literal(out, s),
            Descr::Record(fields) => {
                out.push('[');
                for (i, f) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push('(');
                    write_str_literal(out, &f.name);
                    out.push_str(", ");
                    f.descr.write_literal(out);
                    if !f.shape.is_empty() {
                        out.push_str(", ");
                        write_shape(out, &f.shape);
                    }
                    out.push(')');
                }
                out.push(']');
            }
        }
    }

    /// Parses a descriptor literal: a quoted type string (`'<f8'`) or a list of
    /// fields, as numpy writes it (and as `repr(dtype.descr)` prints it).
    pub fn from_literal(text: &str) -> Result<Descr, HeaderError> {
        let mut p = Parser::new(text);
        p.ws();
        let d = parse_value(&mut p)?;
        p.ws();
        if !p.at_end() {
            return Err(HeaderError::Syntax(
                "trailing characters after the descriptor".into(),
            ));
        }
        Ok(d)
    }
}

/// A Python string literal of printable ASCII (the parser refuses escapes, so a
/// string holding a `'` is written with `"`, as Python's `repr` does).
fn write_str_literal(out: &mut String, s: &str) {
    let q = if s.contains('\'') { '"' } else { '\'' };
    out.push(q);
    out.push_str(s);
    out.push(q);
}

/// A Python tuple: `(3,)`, `(2, 3)`.
pub(crate) fn write_shape(out: &mut String, shape: &[usize]) {
    match shape {
        [] => out.push_str("()"),
        [d] => {
            let _ = write!(out, "({d},)");
        }
        _ => {
            out.push('(');
            for (i, d) in shape.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{d}");
            }
            out.push(')');
        }
    }
}

impl fmt::Display for Descr {
    /// A type string as it is (`<f8`); a record as its list literal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Descr::Simple(s) => f.write_str(s),
            Descr::Record(_) => f.write_str(&self.literal()),
        }
    }
}

impl FromStr for Descr {
    type Err = HeaderError;

    /// [`Descr::from_literal`], and a bare type string (`<f8`) as well.
    fn from_str(s: &str) -> Result<Descr, HeaderError> {
        let t = s.trim();
        if !t.is_empty() && !t.starts_with(['\'', '"', '[']) {
            return Descr::from_literal(&format!("'{t}'"));
        }
        Descr::from_literal(t)
    }
}

/// Parses a descriptor value: a string or a list of fields.
pub(super) fn parse_value(p: &mut Parser<'_>) -> Result<Descr, HeaderError> {
    parse_at(p, 0)
}

fn parse_at(p: &mut Parser<'_>, depth: usize) -> Result<Descr, HeaderError> {
    match p.peek() {
        Some(b'[') => parse_fields(p, depth),
        Some(b'\'' | b'"') => Ok(Descr::Simple(p.string()?)),
        _ => Err(HeaderError::Syntax(format!(
            "expected a type string or a list of fields at byte {}",
            p.pos()
        ))),
    }
}

fn parse_fields(p: &mut Parser<'_>, depth: usize) -> Result<Descr, HeaderError> {
    if depth >= MAX_DEPTH {
        return Err(HeaderError::Syntax(format!(
            "records nested deeper than {MAX_DEPTH} levels"
        )));
    }
    p.expect(b'[')?;
    let mut fields: Vec<DescrField> = Vec::new();
    loop {
        p.ws();
        if p.eat(b']') {
            break;
        }
        p.expect(b'(')?;
        p.ws();
        if p.peek() == Some(b'(') {
            return Err(HeaderError::Syntax(
                "field titles ((title, name) pairs) are not supported".into(),
            ));
        }
        let name = p.string()?;
        p.ws();
        p.expect(b',')?;
        p.ws();
        let descr = parse_at(p, depth + 1)?;
        p.ws();
        let mut shape = Vec::new();
        if p.eat(b',') {
            p.ws();
            match p.peek() {
                Some(b'(') => shape = p.tuple()?,
                Some(c) if c.is_ascii_digit() => shape = vec![p.integer()?],
                _ => {}
            }
            p.ws();
            p.eat(b',');
            p.ws();
        }
        p.expect(b')')?;
        let field = DescrField { name, descr, shape };
        if !field.is_padding() {
            if field.name.is_empty() {
                return Err(HeaderError::Syntax(
                    "a field without a name that is not padding".into(),
                ));
            }
            if fields.iter().any(|f| f.name == field.name) {
                return Err(HeaderError::Syntax(format!(
                    "two fields named {:?}",
                    field.name
                )));
            }
        }
        fields.push(field);
        p.ws();
        if !p.eat(b',') {
            p.ws();
            p.expect(b']')?;
            break;
        }
    }
    if fields.iter().all(DescrField::is_padding) {
        return Err(HeaderError::Syntax("a record without fields".into()));
    }
    Ok(Descr::Record(fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> Descr {
        Descr::from_literal(s).unwrap()
    }

    #[test]
    fn parses_what_numpy_writes() {
        // numpy 1.26 / 2.x, np.dtype([('x','<f4'),('y','<f4'),('mass','<f8')], align=True).descr
        let d = lit("[('x', '<f4'), ('y', '<f4'), ('mass', '<f8')]");
        assert_eq!(d.itemsize(), Some(16));
        assert!(d.is_supported());
        // ... and with a gap: [('a','u1'),('b','<f8')], align=True
        let d = lit("[('a', '|u1'), ('', '|V7'), ('b', '<f8')]");
        assert_eq!(d.itemsize(), Some(16));
        let named: Vec<_> = d
            .named_fields()
            .iter()
            .map(|(o, f)| (*o, f.name.clone()))
            .collect();
        assert_eq!(named, [(0, "a".to_string()), (8, "b".to_string())]);
        // Arrays, nested records, double quotes, trailing commas.
        let d = lit("[(\"it's\", '<f4', (3,)), ('m', '<f8', (2, 2)), ('p', [('u', '|u1'), ('v', '|i1')], 4),]");
        assert_eq!(d.itemsize(), Some(12 + 32 + 8));
        assert_eq!(d.fields()[2].shape, [4]);
        assert_eq!(Descr::from_literal(&d.literal()).unwrap(), d);
        assert_eq!(lit("'<U10'").itemsize(), Some(40));
        assert_eq!(lit("'<M8[ns]'").itemsize(), Some(8));
        assert_eq!(lit("'|O'").itemsize(), None);
        assert!(!lit("[('s', '<U3')]").is_supported());
        // Names a header cannot say exactly: refused, never injected.
        for name in ["a'), ('b\", '<f4", "", "x\ny", "it's \"q\"", "back\\slash"] {
            let d = Descr::Record(vec![DescrField {
                name: name.into(),
                descr: Descr::Simple("<f4".into()),
                shape: vec![],
            }]);
            assert!(!d.is_supported(), "{name:?}");
        }
        let twice = Descr::Record(vec![
            DescrField {
                name: "a".into(),
                descr: Descr::Simple("<f4".into()),
                shape: vec![],
            },
            DescrField {
                name: "a".into(),
                descr: Descr::Simple("<f4".into()),
                shape: vec![],
            },
        ]);
        assert!(!twice.is_supported());
        // One kind of quote is said exactly, with the other around it.
        let quoted = Descr::Record(vec![DescrField {
            name: "a', '<f4'), ('b".into(),
            descr: Descr::Simple("<f4".into()),
            shape: vec![],
        }]);
        assert!(quoted.is_supported());
        assert_eq!(
            Descr::from_literal(&quoted.literal())
                .unwrap()
                .fields()
                .len(),
            1
        );
        assert_eq!("<f8".parse::<Descr>().unwrap(), Descr::Simple("<f8".into()));
    }

    #[test]
    fn refuses_malformed_descriptors() {
        for bad in [
            "[]",
            "[('', '|V4')]",
            "[('', '<f4')]",
            "[('a', '<f4'), ('a', '<f4')]",
            "[(('title', 'a'), '<f4')]",
            "[('a', '<f4'",
            "[('a')]",
            "[('a', 4)]",
            "[('a', '<f4', (3,) 4)]",
            "('a', '<f4')",
            "[('a\\'', '<f4')]",
            "'<f8' x",
            "[[[[[[[[[[('a', '<f4')]]]]]]]]]]",
        ] {
            assert!(Descr::from_literal(bad).is_err(), "{bad}");
        }
        let mut deep = "'<f4'".to_string();
        for _ in 0..9 {
            deep = format!("[('a', {deep})]");
        }
        assert!(Descr::from_literal(&deep).is_err());
    }

    #[test]
    fn canonical_forms_compare_layouts() {
        let a = lit("[('x', '=f4'), ('', '|V2'), ('', '|V2'), ('y', '<u1')]");
        let b = lit("[('x', '<f4'), ('', '|V4'), ('y', '|u1')]");
        assert_eq!(a.canonical(), b.canonical());
        assert_eq!(a.fingerprint(), b.fingerprint());
        let moved = lit("[('x', '<f4'), ('', '|V3'), ('y', '|u1'), ('', '|V1')]");
        assert_ne!(moved.canonical(), b.canonical());
        let renamed = lit("[('x', '<f4'), ('', '|V4'), ('z', '|u1')]");
        assert_ne!(renamed.fingerprint(), b.fingerprint());
        let retyped = lit("[('x', '<i4'), ('', '|V4'), ('y', '|u1')]");
        assert_ne!(retyped.canonical(), b.canonical());
        let reordered = lit("[('', '|V4'), ('x', '<f4'), ('y', '|u1')]");
        assert_ne!(reordered.canonical(), b.canonical());
    }
}
