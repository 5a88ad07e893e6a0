//! `FixedStr<N>`: a string of at most `N` bytes stored inline, the key (or value)
//! type of shared maps for names.

use std::fmt;

use bytemuck::{Pod, Zeroable};

/// A string of at most `N` bytes stored inline, zero-padded: a map key (or
/// value) for names. Compared and hashed by its bytes.
///
/// ```
/// use shmarray::containers::FixedStr;
/// let k = FixedStr::<8>::new("apple").unwrap();
/// assert_eq!(k.as_str(), "apple");
/// assert_eq!(k.to_string(), "apple");
/// assert!(FixedStr::<4>::new("apple").is_err()); // 5 bytes do not fit in 4
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct FixedStr<const N: usize>([u8; N]);

// SAFETY: `FixedStr` is a transparent wrapper of a byte array: every bit pattern
// (including all zeros) is valid, no padding, no pointers, `Copy + 'static`.
unsafe impl<const N: usize> Zeroable for FixedStr<N> {}
// SAFETY: as above.
unsafe impl<const N: usize> Pod for FixedStr<N> {}

/// Why a string does not fit a [`FixedStr`].
///
/// ```
/// use shmarray::containers::{FixedStr, FixedStrError};
/// assert_eq!(FixedStr::<4>::new("apple"), Err(FixedStrError::TooLong { len: 5, max: 4 }));
/// assert_eq!(FixedStr::<8>::new("a\0b"), Err(FixedStrError::Nul { position: 1 }));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FixedStrError {
    /// Longer than the capacity.
    #[error("string of {len} bytes exceeds the {max}-byte capacity")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The capacity `N`.
        max: usize,
    },
    /// Contains a NUL byte (NUL marks the end of a shorter string).
    #[error("string contains a NUL byte at {position}")]
    Nul {
        /// Byte position of the first NUL.
        position: usize,
    },
}

impl<const N: usize> FixedStr<N> {
    /// `s`, zero-padded to `N` bytes; an error if it is longer than `N` bytes or
    /// contains NUL.
    pub fn new(s: &str) -> Result<Self, FixedStrError> {
        if s.len() > N {
            return Err(FixedStrError::TooLong {
                len: s.len(),
                max: N,
            });
        }
        if let Some(position) = s.bytes().position(|b| b == 0) {
            return Err(FixedStrError::Nul { position });
        }
        let mut b = [0u8; N];
        b[..s.len()].copy_from_slice(s.as_bytes());
        Ok(FixedStr(b))
    }

    /// The bytes up to the first NUL.
    pub fn as_bytes(&self) -> &[u8] {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(N);
        &self.0[..end]
    }

    /// The string. Bytes that another process wrote may not be UTF-8: then this is
    /// the longest valid prefix.
    pub fn as_str(&self) -> &str {
        let b = self.as_bytes();
        match std::str::from_utf8(b) {
            Ok(s) => s,
            Err(e) => std::str::from_utf8(&b[..e.valid_up_to()]).unwrap_or_default(),
        }
    }

    /// All `N` bytes, padding included.
    pub fn to_bytes(self) -> [u8; N] {
        self.0
    }
}

impl<const N: usize> Default for FixedStr<N> {
    fn default() -> Self {
        FixedStr([0; N])
    }
}

impl<const N: usize> TryFrom<&str> for FixedStr<N> {
    type Error = FixedStrError;
    fn try_from(s: &str) -> Result<Self, FixedStrError> {
        FixedStr::new(s)
    }
}

impl<const N: usize> fmt::Display for FixedStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> fmt::Debug for FixedStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FixedStr({:?})", self.as_str())
    }
}
