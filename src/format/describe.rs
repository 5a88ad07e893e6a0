//! Reading a segment's description from its bytes: the one validation path used by
//! `open`, `inspect`, `ls` and `gc`, and the fuzz target.
//!
//! The bytes come through a `read_at(offset, buf)` callback (`pread` on a file, or a
//! slice in tests), each region is read exactly once into a private copy, and only
//! the copies are parsed and checked, with checked arithmetic against the file size
//! given by `fstat`. Nothing here maps memory, so a file that another process
//! truncates or rewrites while we read gives an error, never a signal.

use std::io;

use super::control::{validate, ControlError, ControlFields, CONTROL_HEAD_LEN};
use super::npy::{parse_header, parse_preamble, HeaderError, Layout, NPY_MAGIC};

/// What a segment file says about itself, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Description {
    /// The header's layout.
    pub layout: Layout,
    /// The control block, `None` for a plain `.npy` file.
    pub control: Option<ControlFields>,
}

impl Description {
    /// Bytes a mapping of this segment needs: through the control block, or through
    /// the data for a plain `.npy` file.
    pub fn mapped_len(&self) -> usize {
        if self.control.is_some() {
            self.layout.total_len()
        } else {
            self.layout.data_end()
        }
    }
}

/// Why a file's bytes do not describe a usable segment.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DescribeError {
    /// Reading failed (including a file that ended before a region it claims).
    #[error("reading failed: {0}")]
    Read(#[from] io::Error),
    /// Not an NPY file (too small, or bad magic).
    #[error("not an NPY file")]
    NotNpy,
    /// The header or control block says the segment is not complete.
    #[error("the segment is not published")]
    NotReady,
    /// The NPY header is malformed or overflows.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// The file is smaller than its header says.
    #[error("file is {actual} bytes but its header needs {needed}")]
    Truncated {
        /// Bytes the header implies.
        needed: u64,
        /// Bytes the file has.
        actual: u64,
    },
    /// The control block is malformed or disagrees with the header.
    #[error(transparent)]
    Control(#[from] ControlError),
}

/// Reads and validates a segment of `size` bytes through `read_at`.
pub(crate) fn describe(
    size: u64,
    mut read_at: impl FnMut(u64, &mut [u8]) -> io::Result<()>,
) -> Result<Description, DescribeError> {
    if size < 12 {
        return Err(DescribeError::NotNpy);
    }
    let mut pre = [0u8; 12];
    read_at(0, &mut pre)?;
    if pre[..8] == [0; 8] {
        // A creator of an older version publishes the magic last.
        return Err(DescribeError::NotReady);
    }
    if pre[..6] != NPY_MAGIC {
        return Err(DescribeError::NotNpy);
    }
    let (_, data_offset) = parse_preamble(&pre)?;
    let truncated = |needed: usize| DescribeError::Truncated {
        needed: needed as u64,
        actual: size,
    };
    if data_offset as u64 > size {
        return Err(truncated(data_offset));
    }
    // Only the window the dict lives in is read (a huge-page header pads further).
    let mut header = vec![0u8; super::npy::header_window(data_offset)];
    read_at(0, &mut header)?;
    let layout = parse_header(&header)?;
    if layout.data_end() as u64 > size {
        return Err(truncated(layout.data_end()));
    }
    let control = if size >= layout.total_len() as u64 {
        let mut head = [0u8; CONTROL_HEAD_LEN];
        read_at(layout.control_offset as u64, &mut head)?;
        match ControlFields::decode(&head)? {
            Some(fields) => {
                validate(&fields, &layout, &header)?;
                if fields.state != super::control::state::READY {
                    return Err(DescribeError::NotReady);
                }
                Some(fields)
            }
            None => None,
        }
    } else {
        None
    };
    Ok(Description { layout, control })
}

/// `describe` over bytes in memory (tests, fuzzing).
pub fn describe_bytes(bytes: &[u8]) -> Result<Description, DescribeError> {
    describe(bytes.len() as u64, |offset, buf| {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| bytes.get(start..end))
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    })
}
