//! The NPY header: the first bytes of every segment, exactly as numpy writes them,
//! padded so that the data starts on a page boundary (base pages) or at a multiple
//! of 128 inside the first page (huge pages). Pure: builds and parses bytes.

use super::descr::{self, Descr};
use super::dtype::Dtype;
use super::{CONTROL_SIZE, PAGE};

/// Most dimensions a shape may have: numpy's limit (`NPY_MAXDIMS` is 64 since
/// numpy 2.0; readers refuse more).
pub(crate) const MAX_DIMS: usize = 64;

/// The six magic bytes every NPY file starts with.
pub(crate) const NPY_MAGIC: [u8; 6] = *b"\x93NUMPY";

/// Largest header we are willing to copy and parse (numpy itself refuses > 10 000 by default).
pub(crate) const MAX_HEADER_LEN: usize = 1 << 30;

/// Bytes of the header region that are read, parsed and checksummed: the preamble and
/// the dict must end within them. A longer header region (files that earlier versions
/// padded to a huge page) is padding beyond this window, never read: it costs nothing
/// to attach.
pub(crate) const DICT_WINDOW: usize = 4096;

/// Alignment of the data of a compact header ([`build_header_aligned`] with this
/// `align`): the largest alignment any kind's data needs (queues' ring header, maps'
/// shard heads), so the data keeps it inside a page-aligned mapping.
pub(crate) const COMPACT_ALIGN: usize = 128;

/// How many bytes of a header region of `data_offset` bytes are read and parsed.
pub(crate) fn header_window(data_offset: usize) -> usize {
    data_offset.min(DICT_WINDOW)
}

/// Why a header could not be built or parsed.
///
/// ```
/// use shmarray::format::{Descr, HeaderError};
/// // A descriptor as a header holds it, cut short:
/// let err = Descr::from_literal("[('x', '<f4'), ('y',").unwrap_err();
/// assert!(matches!(err, HeaderError::Syntax(_)), "{err}");
/// // Opening a segment whose header is bad is `Error::Corrupt` with
/// // `Corruption::Header(_)` (see `Corruption`).
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// The first bytes are not `\x93NUMPY`.
    #[error("not an NPY file (bad magic)")]
    NotNpy,
    /// Fewer bytes than the header needs.
    #[error("header truncated: need {needed} bytes, have {have}")]
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        have: usize,
    },
    /// NPY format version we cannot read.
    #[error("unsupported NPY format version {major}.{minor}")]
    UnsupportedVersion {
        /// Major version byte.
        major: u8,
        /// Minor version byte.
        minor: u8,
    },
    /// Header length field larger than the limit (1 MiB).
    #[error("header length {0} exceeds the limit")]
    HeaderTooLong(usize),
    /// The header dictionary is not the literal numpy writes.
    #[error("malformed header dictionary: {0}")]
    Syntax(String),
    /// More dimensions than numpy allows (64).
    #[error("{ndim} dimensions; at most {max} are allowed")]
    TooManyDimensions {
        /// Dimensions in the shape.
        ndim: usize,
        /// The limit.
        max: usize,
    },
    /// Shape product, byte size or offsets overflow.
    #[error("shape {shape:?} of {itemsize}-byte elements overflows the address space")]
    Overflow {
        /// Shape from the header.
        shape: Vec<usize>,
        /// Element size.
        itemsize: usize,
    },
}

/// The three fields of an NPY header dictionary.
///
/// ```
/// use shmarray::format::Descr;
/// use shmarray::{ndarray::{Ix2, Order}, Options, Segment, SharedArray};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let name = format!("doc-npy-header-{}", std::process::id());
/// let a: SharedArray<u16, Ix2> = Options::new().order(Order::ColumnMajor).create(&name, (2, 5))?;
/// let h = a.info()?.layout.header;
/// // What numpy reads: dtype '<u2', shape (2, 5), column-major.
/// assert_eq!(h.descr, Descr::Simple("<u2".into()));
/// assert_eq!((h.shape.as_slice(), h.fortran_order), (&[2, 5][..], true));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NpyHeader {
    /// The `descr` value: a type string (`<f8`) or a record's fields.
    pub descr: Descr,
    /// `fortran_order`: column-major data.
    pub fortran_order: bool,
    /// The array shape.
    pub shape: Vec<usize>,
}

/// Where everything lives in a segment, derived from its header with checked arithmetic.
///
/// ```
/// use shmarray::format::Dtype;
/// use shmarray::{ndarray::Ix2, Segment, SharedArray};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let name = format!("doc-layout-{}", std::process::id());
/// let a = SharedArray::<f64, Ix2>::create(&name, (10, 3))?;
/// let l = a.info()?.layout;
/// assert_eq!((l.dtype, l.itemsize, l.len, l.data_len), (Some(Dtype::F64), 8, 30, 240));
/// assert_eq!(l.data_offset % 4096, 0); // the data starts on a page
/// // Then the control block, on a page of its own after the data.
/// assert!(l.control_offset >= l.data_end() && l.control_offset % 4096 == 0);
/// assert_eq!(l.total_len() as u64, a.info()?.file_size);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// NPY major version of the header.
    pub npy_version: u8,
    /// Parsed header fields.
    pub header: NpyHeader,
    /// Element type, when the descriptor is a type string we support (`None` for
    /// records: see `header.descr`).
    pub dtype: Option<Dtype>,
    /// Element size from the descriptor (0 when unknown).
    pub itemsize: usize,
    /// Number of elements (product of the shape).
    pub len: usize,
    /// Offset of the first data byte.
    pub data_offset: usize,
    /// Length of the data in bytes.
    pub data_len: usize,
    /// Offset where a control block would start (page aligned end of data).
    pub control_offset: usize,
}

impl Layout {
    /// Offset of the end of the data.
    pub fn data_end(&self) -> usize {
        self.data_offset + self.data_len
    }

    /// Total size of a segment that carries a control block.
    pub fn total_len(&self) -> usize {
        self.control_offset + CONTROL_SIZE
    }
}

/// Rounds `n` up to a multiple of [`PAGE`], or `None` on overflow.
pub(crate) fn round_up_page(n: usize) -> Option<usize> {
    n.checked_add(PAGE - 1).map(|v| v / PAGE * PAGE)
}

fn compute_layout(
    npy_version: u8,
    header: NpyHeader,
    data_offset: usize,
) -> Result<Layout, HeaderError> {
    let dtype = header.descr.dtype();
    let itemsize = header.descr.itemsize();
    let overflow = || HeaderError::Overflow {
        shape: header.shape.clone(),
        itemsize: itemsize.unwrap_or(0),
    };
    let len = header
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(overflow)?;
    let itemsize = itemsize.unwrap_or(0);
    let data_len = len.checked_mul(itemsize).ok_or_else(overflow)?;
    // ndarray (and pointer offsets) need every byte offset to fit in isize.
    let data_end = data_offset
        .checked_add(data_len)
        .filter(|&e| e <= isize::MAX as usize / 2)
        .ok_or_else(overflow)?;
    let control_offset = round_up_page(data_end)
        .filter(|c| c.checked_add(CONTROL_SIZE).is_some())
        .ok_or_else(overflow)?;
    Ok(Layout {
        npy_version,
        header,
        dtype,
        itemsize,
        len,
        data_offset,
        data_len,
        control_offset,
    })
}

/// Renders the header dictionary exactly the way numpy does.
fn render_dict(descr: &Descr, fortran_order: bool, shape: &[usize]) -> String {
    let mut dims = String::new();
    descr::write_shape(&mut dims, shape);
    let order = if fortran_order { "True" } else { "False" };
    format!(
        "{{'descr': {}, 'fortran_order': {order}, 'shape': {dims}, }}",
        descr.literal()
    )
}

/// Builds the complete header region (`data_offset` bytes: preamble, dict, space
/// padding, `\n`) for a new segment, and its layout. Data starts on a page boundary.
/// NPY 1.0: the dict must end within the first 4 KiB, so its 16-bit length holds it.
pub fn build_header(
    dtype: Dtype,
    fortran_order: bool,
    shape: &[usize],
) -> Result<(Vec<u8>, Layout), HeaderError> {
    build_header_aligned(&dtype.descr(), fortran_order, shape, PAGE)
}

/// [`build_header`] with the data starting at the smallest multiple of `align` (a
/// power of two, at most a page) that holds the header. With [`COMPACT_ALIGN`] the
/// data starts inside the first page: numpy, which maps a file from the data offset
/// rounded down to a page, then maps it from offset 0, which a hugetlbfs file accepts
/// (and at which the kernel aligns the mapping of a THP file to a huge page), and
/// the header stays far below numpy's default `max_header_size`.
pub(crate) fn build_header_aligned(
    descr: &Descr,
    fortran_order: bool,
    shape: &[usize],
    align: usize,
) -> Result<(Vec<u8>, Layout), HeaderError> {
    debug_assert!(align.is_power_of_two() && align <= PAGE);
    // Readers (this parser, numpy) refuse more: never build what cannot be opened.
    if shape.len() > MAX_DIMS {
        return Err(HeaderError::TooManyDimensions {
            ndim: shape.len(),
            max: MAX_DIMS,
        });
    }
    let dict = render_dict(descr, fortran_order, shape);
    let align = align.clamp(1, PAGE);
    // The dict must end within the window readers parse; padded to `align <= PAGE`,
    // the header is then at most a page long, which NPY 1.0's u16 length holds.
    let needed = 10 + dict.len() + 1;
    if needed > DICT_WINDOW {
        return Err(HeaderError::HeaderTooLong(needed));
    }
    let data_offset = needed.div_ceil(align) * align;
    let header_len = data_offset - 10;
    let mut bytes = Vec::with_capacity(data_offset);
    bytes.extend_from_slice(&NPY_MAGIC);
    bytes.extend_from_slice(&[1, 0]);
    bytes.extend_from_slice(&(header_len as u16).to_le_bytes());
    bytes.extend_from_slice(dict.as_bytes());
    bytes.resize(data_offset - 1, b' ');
    bytes.push(b'\n');
    let header = NpyHeader {
        descr: descr.clone(),
        fortran_order,
        shape: shape.to_vec(),
    };
    let layout = compute_layout(1, header, data_offset)?;
    Ok((bytes, layout))
}

/// Builds the header numpy itself would write for `header` (format 1.0, or 2.0 when
/// the dict needs it), padded to a multiple of 64 bytes: with the data appended it is
/// a plain `.npy` file any NPY reader accepts (`shmarray export`).
pub(crate) fn build_plain_header(header: &NpyHeader) -> Result<Vec<u8>, HeaderError> {
    let dict = render_dict(&header.descr, header.fortran_order, &header.shape);
    let pad_to = |preamble: usize| (preamble + dict.len() + 1).div_ceil(64) * 64;
    let (version, total) = if pad_to(10) - 10 <= u16::MAX as usize {
        (1u8, pad_to(10))
    } else {
        (2u8, pad_to(12))
    };
    let mut bytes = Vec::with_capacity(total);
    bytes.extend_from_slice(&NPY_MAGIC);
    bytes.extend_from_slice(&[version, 0]);
    if version == 1 {
        bytes.extend_from_slice(&((total - 10) as u16).to_le_bytes());
    } else {
        let len = u32::try_from(total - 12).map_err(|_| HeaderError::HeaderTooLong(total))?;
        bytes.extend_from_slice(&len.to_le_bytes());
    }
    bytes.extend_from_slice(dict.as_bytes());
    bytes.resize(total - 1, b' ');
    bytes.push(b'\n');
    Ok(bytes)
}

/// Reads the fixed preamble (first 10 or 12 bytes). Returns `(major, data_offset)`:
/// how many bytes the caller must copy before calling [`parse_header`].
pub fn parse_preamble(bytes: &[u8]) -> Result<(u8, usize), HeaderError> {
    if bytes.len() < 8 {
        return Err(HeaderError::Truncated {
            needed: 8,
            have: bytes.len(),
        });
    }
    if bytes[..6] != NPY_MAGIC {
        return Err(HeaderError::NotNpy);
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (preamble, header_len) = match (major, minor) {
        (1, 0) => {
            let b = bytes.get(8..10).ok_or(HeaderError::Truncated {
                needed: 10,
                have: bytes.len(),
            })?;
            (10usize, u16::from_le_bytes([b[0], b[1]]) as usize)
        }
        (2 | 3, 0) => {
            let b = bytes.get(8..12).ok_or(HeaderError::Truncated {
                needed: 12,
                have: bytes.len(),
            })?;
            (
                12usize,
                u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize,
            )
        }
        _ => return Err(HeaderError::UnsupportedVersion { major, minor }),
    };
    if header_len > MAX_HEADER_LEN {
        return Err(HeaderError::HeaderTooLong(header_len));
    }
    Ok((major, preamble + header_len))
}

/// Parses a header region (a private copy of its first bytes).
///
/// Only the first 4 KiB (or the whole region, if shorter) are looked at: the dict
/// must end within them, followed by whitespace; bytes beyond (padding of a
/// huge-page header) are not read.
pub fn parse_header(bytes: &[u8]) -> Result<Layout, HeaderError> {
    let (major, data_offset) = parse_preamble(bytes)?;
    let window = header_window(data_offset);
    if bytes.len() < window {
        return Err(HeaderError::Truncated {
            needed: window,
            have: bytes.len(),
        });
    }
    let preamble = if major == 1 { 10 } else { 12 };
    let text = std::str::from_utf8(&bytes[preamble..window])
        .map_err(|_| HeaderError::Syntax("header is not ASCII/UTF-8".into()))?;
    let header = parse_dict(text)?;
    compute_layout(major, header, data_offset)
}

/// A tiny parser for the Python literal numpy writes: a dict with exactly the keys
/// `descr` (str), `fortran_order` (bool) and `shape` (tuple of ints).
fn parse_dict(text: &str) -> Result<NpyHeader, HeaderError> {
    let mut p = Parser::new(text);
    p.ws();
    p.expect(b'{')?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    loop {
        p.ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        p.ws();
        p.expect(b':')?;
        p.ws();
        match key.as_str() {
            "descr" if descr.is_none() => descr = Some(descr::parse_value(&mut p)?),
            "fortran_order" if fortran.is_none() => fortran = Some(p.boolean()?),
            "shape" if shape.is_none() => shape = Some(p.tuple()?),
            other => return Err(HeaderError::Syntax(format!("unexpected key '{other}'"))),
        }
        p.ws();
        if !p.eat(b',') {
            p.ws();
            p.expect(b'}')?;
            break;
        }
    }
    p.ws();
    if p.i != p.s.len() {
        return Err(HeaderError::Syntax(
            "trailing characters after the dict".into(),
        ));
    }
    match (descr, fortran, shape) {
        (Some(descr), Some(fortran_order), Some(shape)) => Ok(NpyHeader {
            descr,
            fortran_order,
            shape,
        }),
        _ => Err(HeaderError::Syntax(
            "missing one of 'descr', 'fortran_order', 'shape'".into(),
        )),
    }
}

/// A cursor over the Python literal of a header dict (also used for descriptors).
pub(super) struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    pub(super) fn new(text: &'a str) -> Parser<'a> {
        Parser {
            s: text.as_bytes(),
            i: 0,
        }
    }
    pub(super) fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    pub(super) fn pos(&self) -> usize {
        self.i
    }
    pub(super) fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }
    pub(super) fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\n' | b'\t' | b'\r') {
            self.i += 1;
        }
    }
    pub(super) fn eat(&mut self, c: u8) -> bool {
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    pub(super) fn expect(&mut self, c: u8) -> Result<(), HeaderError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(HeaderError::Syntax(format!(
                "expected '{}' at byte {}",
                c as char, self.i
            )))
        }
    }
    pub(super) fn string(&mut self) -> Result<String, HeaderError> {
        let quote = match self.s.get(self.i) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => {
                return Err(HeaderError::Syntax(format!(
                    "expected a string at byte {}",
                    self.i
                )))
            }
        };
        self.i += 1;
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i] != quote {
            if self.s[self.i] == b'\\' {
                return Err(HeaderError::Syntax("escapes are not supported".into()));
            }
            self.i += 1;
        }
        if self.i >= self.s.len() {
            return Err(HeaderError::Syntax("unterminated string".into()));
        }
        let bytes = &self.s[start..self.i];
        if bytes.iter().any(|b| !(0x20..0x7f).contains(b)) {
            return Err(HeaderError::Syntax(
                "strings may only hold printable ASCII".into(),
            ));
        }
        let out = String::from_utf8_lossy(bytes).into_owned();
        self.i += 1;
        Ok(out)
    }
    fn boolean(&mut self) -> Result<bool, HeaderError> {
        let rest = &self.s[self.i..];
        if rest.starts_with(b"True") {
            self.i += 4;
            Ok(true)
        } else if rest.starts_with(b"False") {
            self.i += 5;
            Ok(false)
        } else {
            Err(HeaderError::Syntax("expected True or False".into()))
        }
    }
    pub(super) fn tuple(&mut self) -> Result<Vec<usize>, HeaderError> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        loop {
            self.ws();
            if self.eat(b')') {
                break;
            }
            let d = self.integer()?;
            dims.push(d);
            if dims.len() > MAX_DIMS {
                return Err(HeaderError::Syntax(format!(
                    "more than {MAX_DIMS} dimensions"
                )));
            }
            self.ws();
            if !self.eat(b',') {
                self.ws();
                self.expect(b')')?;
                break;
            }
        }
        Ok(dims)
    }
    /// A non-negative integer (Python 2 era files may carry a long suffix `L`).
    pub(super) fn integer(&mut self) -> Result<usize, HeaderError> {
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
            self.i += 1;
        }
        if start == self.i {
            return Err(HeaderError::Syntax(format!(
                "expected a dimension at byte {}",
                self.i
            )));
        }
        let digits = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
        let d = digits
            .parse::<usize>()
            .map_err(|_| HeaderError::Syntax(format!("dimension {digits} too large")))?;
        self.eat(b'L');
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_headers_parse_and_align_to_64() {
        for shape in [vec![], vec![3], vec![2, 3, 4]] {
            let h = NpyHeader {
                descr: Descr::Simple("<f8".into()),
                fortran_order: false,
                shape,
            };
            let bytes = build_plain_header(&h).unwrap();
            assert_eq!(bytes.len() % 64, 0);
            assert_eq!(parse_header(&bytes).unwrap().header, h);
        }
    }

    #[test]
    fn control_characters_in_strings_are_refused() {
        let dict = "{'descr': '<f8\x1b[2J', 'fortran_order': False, 'shape': (2,), }";
        let mut bytes = NPY_MAGIC.to_vec();
        bytes.extend_from_slice(&[1, 0]);
        bytes.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        bytes.extend_from_slice(dict.as_bytes());
        assert!(matches!(parse_header(&bytes), Err(HeaderError::Syntax(_))));
    }

    #[test]
    fn build_then_parse_roundtrips() {
        for (dtype, fortran, shape) in [
            (Dtype::F64, false, vec![4096, 4096]),
            (Dtype::U8, true, vec![3]),
            (Dtype::I32, false, vec![]),
            (Dtype::F32, false, vec![0, 5]),
        ] {
            let (bytes, layout) = build_header(dtype, fortran, &shape).unwrap();
            assert_eq!(bytes.len(), layout.data_offset);
            assert_eq!(layout.data_offset % PAGE, 0);
            assert_eq!(*bytes.last().unwrap(), b'\n');
            let parsed = parse_header(&bytes).unwrap();
            assert_eq!(parsed, layout);
            assert_eq!(parsed.dtype, Some(dtype));
            assert_eq!(parsed.header.shape, shape);
        }
    }

    #[test]
    fn compact_headers_end_inside_the_first_page_below_numpys_limit() {
        // The longest dict a reader accepts: 64 dimensions of 20 digits each.
        let mut longest = vec![usize::MAX; 64];
        longest[0] = 0;
        for (shape, want) in [(vec![1000, 1000], 128), (vec![], 128), (longest, 1536)] {
            let (bytes, layout) =
                build_header_aligned(&Dtype::F64.descr(), false, &shape, COMPACT_ALIGN).unwrap();
            assert_eq!(layout.data_offset, want);
            assert_eq!(bytes.len(), want);
            // NPY 1.0, and numpy's `max_header_size` (10 000) counts the dict's bytes.
            assert_eq!(bytes[6..8], [1, 0]);
            assert_eq!(parse_header(&bytes).unwrap(), layout);
        }
    }

    #[test]
    fn dict_is_rendered_like_numpy() {
        assert_eq!(
            render_dict(&Descr::Simple("<f8".into()), false, &[3]),
            "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }"
        );
        assert_eq!(
            render_dict(&Descr::Simple("|u1".into()), true, &[2, 3]),
            "{'descr': '|u1', 'fortran_order': True, 'shape': (2, 3), }"
        );
        assert_eq!(
            render_dict(&Descr::Simple("<i4".into()), false, &[]),
            "{'descr': '<i4', 'fortran_order': False, 'shape': (), }"
        );
    }

    #[test]
    fn parses_numpy_written_header() {
        // What numpy 1.x/2.x writes for np.save(f, np.zeros((2, 3))).
        let dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }";
        let mut bytes = NPY_MAGIC.to_vec();
        bytes.extend_from_slice(&[1, 0]);
        let header_len = 128 - 10;
        bytes.extend_from_slice(&(header_len as u16).to_le_bytes());
        bytes.extend_from_slice(dict.as_bytes());
        bytes.resize(127, b' ');
        bytes.push(b'\n');
        let layout = parse_header(&bytes).unwrap();
        assert_eq!(layout.data_offset, 128);
        assert_eq!(layout.len, 6);
        assert_eq!(layout.data_len, 48);
        assert_eq!(layout.dtype, Some(Dtype::F64));
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(
            parse_header(b"PK\x03\x04xxxxxxxxxx"),
            Err(HeaderError::NotNpy)
        );
        assert!(matches!(
            parse_header(b"\x93NUMPY\x09\x00\x10\x00"),
            Err(HeaderError::UnsupportedVersion { major: 9, .. })
        ));
        assert!(matches!(
            parse_header(b"\x93NUMPY\x01\x00\xff\x00{"),
            Err(HeaderError::Truncated { .. })
        ));
        let huge = format!(
            "{{'descr': '<f8', 'fortran_order': False, 'shape': ({}, {}), }}",
            u64::MAX / 2,
            4
        );
        let mut bytes = NPY_MAGIC.to_vec();
        bytes.extend_from_slice(&[1, 0]);
        bytes.extend_from_slice(&(huge.len() as u16).to_le_bytes());
        bytes.extend_from_slice(huge.as_bytes());
        assert!(matches!(
            parse_header(&bytes),
            Err(HeaderError::Overflow { .. })
        ));
    }
}
