//! Plain `.npy` files: a segment's array written out (`shmarray export`), and any
//! array view written out (`write_npy`, which the `mpi` module's gather uses). Both
//! write the header numpy itself would write, built in one place
//! (`format::npy::build_plain_header`).

use std::io::{self, Write};

use ndarray::{ArrayView, Dimension};

use super::inspect::read_description;
use super::open::describe_error;
use super::{check_name, Namespace};
use crate::element::Element;
use crate::error::{Error, Result};
use crate::format::npy::{build_plain_header, NpyHeader};
use crate::sys::fs;

/// Writes `array` to `out` as a plain `.npy` file (format 1.0, or 2.0 for a header
/// that needs it; C order, no control block: every NPY reader accepts it).
/// Returns the number of bytes written. Needs no segment: any `ndarray` view of
/// an [`Element`] type, e.g. a gathered result.
///
/// ```
/// use shmarray::{admin::write_npy, ndarray::array};
/// let mut npy = Vec::new();
/// let n = write_npy(&mut npy, array![[1u16, 2], [3, 4]].view())?;
/// assert_eq!(n as usize, npy.len());
/// assert_eq!(&npy[..6], b"\x93NUMPY");
/// assert!(std::str::from_utf8(&npy[10..]).unwrap().starts_with("{'descr': '<u2', 'fortran_order': False, 'shape': (2, 2), }"));
/// assert_eq!(&npy[npy.len() - 8..], &[1, 0, 2, 0, 3, 0, 4, 0]);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn write_npy<T: Element, D: Dimension>(
    out: &mut impl Write,
    array: ArrayView<'_, T, D>,
) -> io::Result<u64> {
    let header = NpyHeader {
        descr: T::DTYPE.descr(),
        fortran_order: false,
        shape: array.shape().to_vec(),
    };
    let header =
        build_plain_header(&header).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    out.write_all(&header)?;
    match array.as_slice() {
        // C-order contiguous: the elements' bytes as they are.
        Some(data) => out.write_all(bytemuck::cast_slice(data))?,
        None => {
            for x in array.iter() {
                out.write_all(bytemuck::bytes_of(x))?;
            }
        }
    }
    Ok((header.len() + std::mem::size_of::<T>() * array.len()) as u64)
}

/// Writes segment `name` of `ns` to `out` as a plain `.npy` file: the header numpy
/// would write (64-byte aligned, no page padding) followed by the data, without the
/// control block, so any NPY reader accepts it (the segment file itself carries
/// trailing bytes that numpy ignores but stricter readers refuse). Reads with
/// `pread`, never through a mapping. Returns the number of bytes written.
///
/// ```
/// use shmarray::{admin::export_npy, ndarray::Ix1, Namespace, SharedArray};
/// # fn main() -> Result<(), shmarray::Error> {
/// let name = format!("doc-export-{}", std::process::id());
/// let mut a = SharedArray::<f64, Ix1>::create(&name, 4)?;
/// a.view_mut()?.fill(0.5);
/// let mut npy = Vec::new();
/// let n = export_npy(&Namespace::default_dir()?, &name, &mut npy)?;
/// assert_eq!((n as usize, &npy[..6]), (npy.len(), &b"\x93NUMPY"[..]));
/// assert_eq!(&npy[npy.len() - 8..], &0.5f64.to_le_bytes()); // no control block after the data
/// # Ok(()) }
/// ```
pub fn export_npy(ns: &Namespace, name: &str, out: &mut impl Write) -> Result<u64> {
    let bare = check_name(name)?;
    let (_, file, _, desc) = read_description(ns, bare.as_ref())?;
    let header = build_plain_header(&desc.layout.header).map_err(|e| Error::corrupt(bare, e))?;
    let io = |e: std::io::Error| Error::io("write", bare, e);
    out.write_all(&header).map_err(io)?;
    let mut buf = vec![0u8; (1 << 20).min(desc.layout.data_len.max(1))];
    let mut done = 0usize;
    while done < desc.layout.data_len {
        let n = buf.len().min(desc.layout.data_len - done);
        fs::read_exact_at(
            &file,
            &mut buf[..n],
            (desc.layout.data_offset + done) as u64,
        )
        .map_err(|e| describe_error(bare, e.into()))?;
        out.write_all(&buf[..n]).map_err(io)?;
        done += n;
    }
    Ok((header.len() + done) as u64)
}
