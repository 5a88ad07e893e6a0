//! Writing a segment's array out as a plain `.npy` file (`shmarray export`).

use std::io::Write;

use super::inspect::read_description;
use super::open::describe_error;
use super::{check_name, Namespace};
use crate::error::{Error, Result};
use crate::format::npy::build_plain_header;
use crate::sys::fs;

/// Writes segment `name` of `ns` to `out` as a plain `.npy` file: the header numpy
/// would write (64-byte aligned, no page padding) followed by the data, without the
/// control block, so any NPY reader accepts it (the segment file itself carries
/// trailing bytes that numpy ignores but stricter readers refuse). Reads with
/// `pread`, never through a mapping. Returns the number of bytes written.
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
