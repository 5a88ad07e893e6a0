//! Segment names: checked before any syscall, and the crate's reserved temporary
//! names.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use crate::error::{Error, NameProblem};

/// Prefix of every temporary name this crate makes in a segment directory (files
/// being built, files being removed). User names may not start with it.
pub(crate) const RESERVED_PREFIX: &str = ".shmarray-";

/// Prefix of a file being built where unnamed files are unavailable.
pub(crate) const BUILD_PREFIX: &str = ".shmarray-build-";

/// Prefix of a name a remover gives a file just before it unlinks it.
pub(crate) const REMOVE_PREFIX: &str = ".shmarray-rm-";

/// Checks a segment name and returns it without its optional leading `/`.
///
/// Rules: non-empty, at most 255 bytes, no `/` after the optional leading one, no
/// NUL, not `.` or `..`, not starting with [`RESERVED_PREFIX`]. Pure: no syscall.
pub(crate) fn validate_name(name: &str) -> Result<&str, NameProblem> {
    let bare = validate_bytes(name.as_bytes())?;
    // The checks cut off one ASCII byte at most: still UTF-8.
    Ok(&name[name.len() - bare.len()..])
}

/// [`validate_name`] of any bytes (a name need not be UTF-8 to be a file's).
fn validate_bytes(name: &[u8]) -> Result<&[u8], NameProblem> {
    let bare = name.strip_prefix(b"/").unwrap_or(name);
    if bare.is_empty() {
        return Err(NameProblem::Empty);
    }
    if bare.len() > 255 {
        return Err(NameProblem::TooLong);
    }
    if bare.contains(&b'/') {
        return Err(NameProblem::Slash);
    }
    if bare.contains(&0) {
        return Err(NameProblem::Nul);
    }
    if bare == b"." || bare == b".." {
        return Err(NameProblem::Dots);
    }
    if bare.starts_with(RESERVED_PREFIX.as_bytes()) {
        return Err(NameProblem::Reserved);
    }
    Ok(bare)
}

/// [`check_name`] of an OS string: names of existing files (to inspect or remove)
/// may be any bytes a directory can hold, UTF-8 or not.
pub(crate) fn check_os_name(name: &OsStr) -> Result<&OsStr, Error> {
    validate_bytes(name.as_bytes())
        .map(OsStr::from_bytes)
        .map_err(|problem| Error::InvalidName {
            name: name.to_string_lossy().into_owned(),
            problem,
        })
}

/// [`validate_name`] as the crate's error.
pub(crate) fn check_name(name: &str) -> Result<&str, Error> {
    validate_name(name).map_err(|problem| Error::InvalidName {
        name: name.to_string(),
        problem,
    })
}

/// A fresh temporary name with `prefix`, unique in this process.
pub(crate) fn temp_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(validate_name("frames"), Ok("frames"));
        assert_eq!(validate_name("/frames"), Ok("frames"));
        assert_eq!(validate_name(""), Err(NameProblem::Empty));
        assert_eq!(validate_name("/"), Err(NameProblem::Empty));
        assert_eq!(validate_name("a/b"), Err(NameProblem::Slash));
        assert_eq!(validate_name("//a"), Err(NameProblem::Slash));
        assert_eq!(validate_name(".."), Err(NameProblem::Dots));
        assert_eq!(validate_name("."), Err(NameProblem::Dots));
        assert_eq!(validate_name("a\0b"), Err(NameProblem::Nul));
        assert_eq!(validate_name(&"x".repeat(256)), Err(NameProblem::TooLong));
        assert_eq!(validate_name(".shmarray-x"), Err(NameProblem::Reserved));
        assert!(validate_name(".shmarray").is_ok());
        assert!(validate_name(&"x".repeat(255)).is_ok());
        assert_ne!(temp_name(BUILD_PREFIX), temp_name(BUILD_PREFIX));
        assert!(temp_name(REMOVE_PREFIX).starts_with(RESERVED_PREFIX));
        // Names of existing files need not be UTF-8.
        let odd = OsStr::from_bytes(b"/bad\xff");
        assert_eq!(check_os_name(odd).unwrap().as_bytes(), b"bad\xff");
        assert!(check_os_name(OsStr::from_bytes(b"a/\xff")).is_err());
        assert!(check_os_name(OsStr::new(".shmarray-rm-1")).is_err());
    }
}
