//! A plain `.npy` writer (format 1.0, C order) for gathered arrays.

use std::io::Write;
use std::path::Path;

use ndarray::{ArrayView, Dimension};

use super::MpiError;
use crate::element::Element;

/// Writes `array` to `path` as a plain `.npy` file (format 1.0, C order, no control
/// block: every reader accepts it), replacing the file if it exists.
pub fn write_npy<T: Element, D: Dimension>(
    path: impl AsRef<Path>,
    array: ArrayView<'_, T, D>,
) -> Result<(), MpiError> {
    let path = path.as_ref();
    let io = |source| MpiError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    out.write_all(&header(&T::DTYPE.descr().literal(), array.shape()))
        .map_err(io)?;
    match array.as_slice() {
        Some(data) => out.write_all(bytemuck::cast_slice(data)).map_err(io)?,
        None => {
            for x in array.iter() {
                out.write_all(bytemuck::bytes_of(x)).map_err(io)?;
            }
        }
    }
    out.flush().map_err(io)
}

/// The NPY 1.0 preamble and header dict for a C-order array, padded with spaces to
/// a multiple of 64 bytes and ended with a newline. `descr` is the descriptor's
/// Python literal (`'<f8'`, or a record's list).
fn header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims = match shape {
        [n] => format!("({n},)"),
        _ => {
            let parts: Vec<String> = shape.iter().map(usize::to_string).collect();
            format!("({})", parts.join(", "))
        }
    };
    let mut dict = format!("{{'descr': {descr}, 'fortran_order': False, 'shape': {dims}, }}");
    let unpadded = 10 + dict.len() + 1;
    dict.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    dict.push('\n');
    let mut h = b"\x93NUMPY\x01\x00".to_vec();
    h.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    h.extend_from_slice(dict.as_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::header;

    #[test]
    fn header_is_aligned_and_parses() {
        for shape in [&[][..], &[3][..], &[512, 512][..], &[2, 3, 4][..]] {
            let h = header("'<f8'", shape);
            assert_eq!(h.len() % 64, 0);
            assert_eq!(*h.last().unwrap(), b'\n');
            let parsed =
                crate::format::npy::parse_header(&h).expect("the crate's parser accepts it");
            assert_eq!(parsed.header.shape, shape);
            assert_eq!(parsed.header.descr.to_string(), "<f8");
        }
    }
}
