//! The segment format, as pure code: it builds and parses bytes, makes no syscalls
//! and never touches shared memory except to initialise a block nobody else can see
//! yet. `FORMAT.md` at the repository root is the same specification in prose.
//!
//! ```text
//! offset 0                   data_offset                   control_offset (page aligned)
//! | NPY preamble + dict ...  | data (data_len bytes) | pad | control block (4096 bytes) |
//! ```
//!
//! The public items are what a header and a control block say: element types
//! ([`Dtype`]) and descriptors ([`Descr`]), the parsed header ([`NpyHeader`],
//! [`Layout`]), the control block ([`ControlFields`], [`ObjectKind`]), and what can
//! be wrong with them ([`HeaderError`], [`ControlError`], [`ParamsError`],
//! [`Corruption`]).
//!
//! ```
//! use shmarray::format::{Descr, Dtype};
//! let d = Descr::from_literal("[('x', '<f4'), ('n', '<u2')]")?;
//! assert_eq!(d.itemsize(), Some(6));
//! assert_eq!(Dtype::F64.descr().to_string(), "<f8");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Internal layout:
//! - `npy`: the NPY header (numpy's own format), padded to a page (base pages) or
//!   to a multiple of 128 inside the first page (huge pages).
//! - `control`: the control block: object kind, creator, checksum, shared state.
//! - `objects`: the data layouts of queues and barriers, with checked arithmetic.
//! - `containers`: the data layouts of maps and vecs, and the map's key hash.
//! - `describe`: reading a whole description from a file, each region once.
//! - `dtype`: element types and their NPY descriptors.
//! - `descr`: NPY descriptors as headers hold them (type strings, records).

/// Page size assumed by the format. The control block starts on a multiple of it, and
/// so does the data of a segment on base pages.
pub(crate) const PAGE: usize = 4096;

/// Size of the control block region appended after the data (one page).
pub(crate) const CONTROL_SIZE: usize = PAGE;

pub(crate) mod containers;
pub(crate) mod control;
mod corruption;
pub(crate) mod descr;
pub(crate) mod describe;
pub(crate) mod dtype;
pub(crate) mod npy;
pub(crate) mod objects;
#[cfg(test)]
mod proptests;

pub use control::{ControlError, ControlFields, ObjectKind};
pub use corruption::Corruption;
pub use descr::{Descr, DescrField};
pub use dtype::{Dtype, FieldType, RecordDescr, RecordField, UnknownDtype, MAX_FIELD_DIMS};
pub use npy::{HeaderError, Layout, NpyHeader};
pub use objects::ParamsError;
