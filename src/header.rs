//! The on-disk format: an NPY header followed by the data and a control block.
//!
//! This module is pure: it builds and parses bytes, makes no syscalls and never
//! touches shared memory directly. The segment layer copies header bytes out of
//! the mapping once and hands the copy to [`parse_preamble`] / [`parse_header`],
//! so a peer that rewrites the header while we look at it cannot make us read
//! two different values (no double fetch).
//!
//! ```text
//! offset 0                 data_offset (page aligned)   control_offset (page aligned)
//! | NPY preamble + dict ... | data (nbytes)  | pad       | ControlBlock (CONTROL_SIZE) |
//! ```
//!
//! A file that ends at `data_offset + nbytes` (a plain `.npy` written by numpy) is
//! also accepted by the parser; it simply has no control block.

use std::fmt;

/// Page size assumed by the format. Data and the control block start on multiples of it.
pub const PAGE: usize = 4096;

/// The six magic bytes every NPY file starts with.
pub const NPY_MAGIC: [u8; 6] = *b"\x93NUMPY";

/// Largest header we are willing to copy and parse (numpy itself refuses > 10 000 by default).
pub const MAX_HEADER_LEN: usize = 1 << 20;

/// Magic at the start of our control block.
pub const CONTROL_MAGIC: [u8; 8] = *b"SHMARRCB";

/// Version of the control block layout. Bumped on any incompatible change.
pub const LAYOUT_VERSION: u32 = 1;

/// Size of the control block region appended after the data (one page).
pub const CONTROL_SIZE: usize = PAGE;

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
pub const ALL_DTYPES: [Dtype; 10] = [
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

    /// Parses a Rust-style name (`f64`) or a numpy name (`float64`, `int32`, `uint8`).
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

/// Why a header could not be built or parsed.
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
    /// Header length field larger than [`MAX_HEADER_LEN`].
    #[error("header length {0} exceeds the limit")]
    HeaderTooLong(usize),
    /// The header dictionary is not the literal numpy writes.
    #[error("malformed header dictionary: {0}")]
    Syntax(String),
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NpyHeader {
    /// The `descr` string, e.g. `<f8`.
    pub descr: String,
    /// `fortran_order`: column-major data.
    pub fortran_order: bool,
    /// The array shape.
    pub shape: Vec<usize>,
}

/// Where everything lives in a segment, derived from its header with checked arithmetic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// NPY major version of the header.
    pub npy_version: u8,
    /// Parsed header fields.
    pub header: NpyHeader,
    /// Element type, when the descriptor is one we support.
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
pub fn round_up_page(n: usize) -> Option<usize> {
    n.checked_add(PAGE - 1).map(|v| v / PAGE * PAGE)
}

fn compute_layout(
    npy_version: u8,
    header: NpyHeader,
    data_offset: usize,
) -> Result<Layout, HeaderError> {
    let dtype = Dtype::from_descr(&header.descr);
    let itemsize = dtype
        .map(Dtype::size)
        .or_else(|| descr_itemsize(&header.descr));
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

/// Element size of a simple descriptor we do not map to a Rust type (e.g. `>f8`, `<c16`).
fn descr_itemsize(descr: &str) -> Option<usize> {
    let digits = descr.get(2..)?;
    if !matches!(descr.as_bytes().first(), Some(b'<' | b'>' | b'|' | b'=')) {
        return None;
    }
    digits.parse::<usize>().ok().filter(|&n| n > 0 && n <= 64)
}

/// Renders the header dictionary exactly the way numpy does.
fn render_dict(descr: &str, fortran_order: bool, shape: &[usize]) -> String {
    let dims = match shape {
        [] => "()".to_string(),
        [d] => format!("({d},)"),
        _ => {
            let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            format!("({})", parts.join(", "))
        }
    };
    let order = if fortran_order { "True" } else { "False" };
    format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {dims}, }}")
}

/// Builds the complete header region (`data_offset` bytes: preamble, dict, space
/// padding, `\n`) for a new segment, and its layout. Data starts on a page boundary.
/// Uses NPY 1.0 when the header fits its 16-bit length field, else 2.0.
pub fn build_header(
    dtype: Dtype,
    fortran_order: bool,
    shape: &[usize],
) -> Result<(Vec<u8>, Layout), HeaderError> {
    let dict = render_dict(dtype.descr(), fortran_order, shape);
    let (version, preamble) = {
        let v1_total = round_up_page(10 + dict.len() + 1).unwrap_or(usize::MAX);
        if v1_total - 10 <= u16::MAX as usize {
            (1u8, 10usize)
        } else {
            (2u8, 12usize)
        }
    };
    let data_offset = round_up_page(preamble + dict.len() + 1).ok_or(HeaderError::Overflow {
        shape: shape.to_vec(),
        itemsize: dtype.size(),
    })?;
    let header_len = data_offset - preamble;
    let mut bytes = Vec::with_capacity(data_offset);
    bytes.extend_from_slice(&NPY_MAGIC);
    bytes.push(version);
    bytes.push(0);
    if version == 1 {
        bytes.extend_from_slice(&(header_len as u16).to_le_bytes());
    } else {
        let len32 =
            u32::try_from(header_len).map_err(|_| HeaderError::HeaderTooLong(header_len))?;
        bytes.extend_from_slice(&len32.to_le_bytes());
    }
    bytes.extend_from_slice(dict.as_bytes());
    bytes.resize(data_offset - 1, b' ');
    bytes.push(b'\n');
    let header = NpyHeader {
        descr: dtype.descr().to_string(),
        fortran_order,
        shape: shape.to_vec(),
    };
    let layout = compute_layout(version, header, data_offset)?;
    Ok((bytes, layout))
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

/// Parses a complete header region (a private copy of the first `data_offset` bytes).
pub fn parse_header(bytes: &[u8]) -> Result<Layout, HeaderError> {
    let (major, data_offset) = parse_preamble(bytes)?;
    if bytes.len() < data_offset {
        return Err(HeaderError::Truncated {
            needed: data_offset,
            have: bytes.len(),
        });
    }
    let preamble = if major == 1 { 10 } else { 12 };
    let text = std::str::from_utf8(&bytes[preamble..data_offset])
        .map_err(|_| HeaderError::Syntax("header is not ASCII/UTF-8".into()))?;
    let header = parse_dict(text)?;
    compute_layout(major, header, data_offset)
}

/// A tiny parser for the Python literal numpy writes: a dict with exactly the keys
/// `descr` (str), `fortran_order` (bool) and `shape` (tuple of ints).
fn parse_dict(text: &str) -> Result<NpyHeader, HeaderError> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
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
            "descr" if descr.is_none() => descr = Some(p.string()?),
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

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\n' | b'\t' | b'\r') {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, c: u8) -> Result<(), HeaderError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(HeaderError::Syntax(format!(
                "expected '{}' at byte {}",
                c as char, self.i
            )))
        }
    }
    fn string(&mut self) -> Result<String, HeaderError> {
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
        let out = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
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
    fn tuple(&mut self) -> Result<Vec<usize>, HeaderError> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        loop {
            self.ws();
            if self.eat(b')') {
                break;
            }
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
            // Python 2 era files may carry a long suffix.
            self.eat(b'L');
            dims.push(d);
            if dims.len() > 64 {
                return Err(HeaderError::Syntax("more than 64 dimensions".into()));
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
}

/// FNV-1a 64-bit hash; used as the header checksum stored in the control block.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The immutable fields of a control block, as a plain copy (no atomics).
///
/// Byte layout (little endian) at the start of the control block; see
/// `segment::ControlBlock` for the live `#[repr(C)]` struct this mirrors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ControlFields {
    /// Must equal [`CONTROL_MAGIC`].
    pub magic: [u8; 8],
    /// Must equal [`LAYOUT_VERSION`].
    pub layout_version: u32,
    /// Publication state (see `segment` for the state table).
    pub state: u32,
    /// Pid of the creating process.
    pub creator_pid: u32,
    /// Flags (`FLAG_PERSISTENT`, ...).
    pub flags: u32,
    /// Start time of the creator (clock ticks since boot, `/proc/<pid>/stat` field 22).
    pub creator_start_time: u64,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// Copy of the layout's data offset.
    pub data_offset: u64,
    /// Copy of the layout's data length.
    pub data_len: u64,
    /// [`fnv1a64`] of the header region `[0, data_offset)`.
    pub header_checksum: u64,
    /// [`Dtype::code`] of the element type.
    pub dtype_code: u32,
    /// Number of dimensions.
    pub ndim: u32,
}

/// Why a control block does not match its header.
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
    /// Checksum or offsets disagree with the header.
    #[error("control block does not match the header: {0}")]
    Mismatch(&'static str),
}

/// Checks a control block copy against the header it belongs to.
pub fn validate_control(
    fields: &ControlFields,
    layout: &Layout,
    header_bytes: &[u8],
) -> Result<(), ControlError> {
    if fields.layout_version != LAYOUT_VERSION {
        return Err(ControlError::Version {
            expected: LAYOUT_VERSION,
            found: fields.layout_version,
        });
    }
    if fields.data_offset != layout.data_offset as u64 || fields.data_len != layout.data_len as u64
    {
        return Err(ControlError::Mismatch("data offset/length"));
    }
    if fields.ndim as usize != layout.header.shape.len() {
        return Err(ControlError::Mismatch("number of dimensions"));
    }
    if layout.dtype.map(Dtype::code) != Some(fields.dtype_code) {
        return Err(ControlError::Mismatch("element type"));
    }
    if fnv1a64(&header_bytes[..layout.data_offset]) != fields.header_checksum {
        return Err(ControlError::Mismatch("header checksum"));
    }
    Ok(())
}

/// Publication state of a segment (`ControlBlock::state`).
///
/// | state      | meaning                                   | set by              |
/// |------------|-------------------------------------------|---------------------|
/// | `BUILDING` | file reserved, header/data being written  | creator, at start   |
/// | `READY`    | fully initialised, safe to attach         | creator, `Release`  |
///
/// The NPY magic (first 8 bytes) is stored *after* `READY`, also with `Release`, so
/// numpy sees "not an npy file" until the segment is complete.
pub mod state {
    /// Being built; openers get `NotReady`.
    pub const BUILDING: u32 = 0;
    /// Published.
    pub const READY: u32 = 1;
}

/// Control block flag: the segment outlives its creator (not unlinked on drop,
/// never collected by `shmarray gc`).
pub const FLAG_PERSISTENT: u32 = 1;

/// Control block flag: the creator initialised the robust mutex in `lock`. Without
/// it (a platform without robust mutexes), locking reports `Unsupported` instead of
/// using a zeroed, non-robust mutex.
pub const FLAG_LOCK_READY: u32 = 2;

/// Storage for the segment's robust lock, interpreted by the `sync` layer.
#[repr(C, align(64))]
pub struct LockSlot(pub [u8; 128]);

/// Storage for further synchronisation state (rwlock, event, barrier), interpreted
/// by the `sync` layer.
#[repr(C, align(64))]
pub struct AuxSlot(pub [u8; 768]);

/// A cache-padded counter (128 bytes: two cache lines, like crossbeam's `CachePadded`
/// on x86_64, which prefetches line pairs).
#[repr(C, align(128))]
pub struct CounterSlot {
    /// The counter.
    pub value: std::sync::atomic::AtomicU64,
}

/// Number of general-purpose atomic counters in a control block.
pub const COUNTERS: usize = 8;

/// The control block that follows the data, at `Layout::control_offset`.
///
/// Lives in shared memory: `#[repr(C)]`, offsets only, no pointers. The fields
/// from `magic` to `ndim` are written before publication and never change after
/// (except `flags`); `state`, the lock, aux and counters are shared mutable state.
#[repr(C, align(128))]
pub struct ControlBlock {
    /// [`CONTROL_MAGIC`].
    pub magic: [u8; 8],
    /// [`LAYOUT_VERSION`].
    pub layout_version: u32,
    /// See [`state`].
    pub state: std::sync::atomic::AtomicU32,
    /// Creator pid.
    pub creator_pid: u32,
    /// [`FLAG_PERSISTENT`], ...
    pub flags: std::sync::atomic::AtomicU32,
    /// Creator start time (clock ticks since boot).
    pub creator_start_time: u64,
    /// Creation time, ms since the Unix epoch.
    pub created_unix_ms: u64,
    /// Data offset (copy of the header's).
    pub data_offset: u64,
    /// Data length in bytes.
    pub data_len: u64,
    /// [`fnv1a64`] of the header region.
    pub header_checksum: u64,
    /// [`Dtype::code`].
    pub dtype_code: u32,
    /// Number of dimensions.
    pub ndim: u32,
    _reserved0: [u8; 56],
    /// The array's lock.
    pub lock: LockSlot,
    /// Further sync state.
    pub aux: AuxSlot,
    /// General-purpose atomic counters.
    pub counters: [CounterSlot; COUNTERS],
    _reserved1: [u8; 2048],
}

const _: () = {
    assert!(std::mem::size_of::<ControlBlock>() == CONTROL_SIZE);
    assert!(std::mem::align_of::<ControlBlock>() <= PAGE);
    assert!(std::mem::offset_of!(ControlBlock, state) == 12);
    assert!(std::mem::offset_of!(ControlBlock, ndim) == 68);
    assert!(std::mem::offset_of!(ControlBlock, lock) == 128);
    assert!(std::mem::offset_of!(ControlBlock, aux) == 256);
    assert!(std::mem::offset_of!(ControlBlock, counters) == 1024);
};

impl ControlBlock {
    /// Copies the immutable fields once (plus current `state` and `flags`).
    pub fn fields(&self) -> ControlFields {
        use std::sync::atomic::Ordering;
        ControlFields {
            magic: self.magic,
            layout_version: self.layout_version,
            state: self.state.load(Ordering::Acquire),
            creator_pid: self.creator_pid,
            flags: self.flags.load(Ordering::Relaxed),
            creator_start_time: self.creator_start_time,
            created_unix_ms: self.created_unix_ms,
            data_offset: self.data_offset,
            data_len: self.data_len,
            header_checksum: self.header_checksum,
            dtype_code: self.dtype_code,
            ndim: self.ndim,
        }
    }

    /// Writes a fresh control block in state `BUILDING` at `ptr`.
    ///
    /// # Safety
    /// - `ptr` is valid for writes of `size_of::<ControlBlock>()` bytes, aligned, and
    ///   zero-filled (fresh `fallocate`d memory).
    /// - No other process can see the memory yet (the segment is unpublished).
    pub unsafe fn init_at(ptr: *mut ControlBlock, f: &ControlFields) {
        // SAFETY: the caller guarantees `ptr` is valid, aligned, zeroed and private;
        // all-zero bytes are a valid ControlBlock (atomics and byte arrays), so the
        // field writes below go to initialised memory.
        unsafe {
            let cb = &mut *ptr;
            cb.magic = f.magic;
            cb.layout_version = f.layout_version;
            *cb.state.get_mut() = state::BUILDING;
            cb.creator_pid = f.creator_pid;
            *cb.flags.get_mut() = f.flags;
            cb.creator_start_time = f.creator_start_time;
            cb.created_unix_ms = f.created_unix_ms;
            cb.data_offset = f.data_offset;
            cb.data_len = f.data_len;
            cb.header_checksum = f.header_checksum;
            cb.dtype_code = f.dtype_code;
            cb.ndim = f.ndim;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn dict_is_rendered_like_numpy() {
        assert_eq!(
            render_dict("<f8", false, &[3]),
            "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }"
        );
        assert_eq!(
            render_dict("|u1", true, &[2, 3]),
            "{'descr': '|u1', 'fortran_order': True, 'shape': (2, 3), }"
        );
        assert_eq!(
            render_dict("<i4", false, &[]),
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
    }
}
