//! Files and directories: openat, exclusive create, fstat, fallocate, memfd and seals.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{self, OFlag};
use nix::sys::stat::{self, Mode};

use crate::error::NameProblem;

/// Directory that backs POSIX shared memory on Linux (`shm_open` opens files here).
pub const DEFAULT_DIR: &str = "/dev/shm";

/// Checks a segment name and returns it without its optional leading `/`.
///
/// Rules: non-empty, at most 255 bytes, no `/` after the optional leading one,
/// no NUL, not `.` or `..`. Pure: no syscall.
pub fn validate_name(name: &str) -> Result<&str, NameProblem> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    if bare.is_empty() {
        return Err(NameProblem::Empty);
    }
    if bare.len() > 255 {
        return Err(NameProblem::TooLong);
    }
    if bare.contains('/') {
        return Err(NameProblem::Slash);
    }
    if bare.contains('\0') {
        return Err(NameProblem::Nul);
    }
    if bare == "." || bare == ".." {
        return Err(NameProblem::Dots);
    }
    Ok(bare)
}

/// An open directory that holds segments (default `/dev/shm`).
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl Dir {
    /// Opens a directory (`O_DIRECTORY|O_CLOEXEC`).
    pub fn open(path: &Path) -> Result<Dir, Errno> {
        let fd = fcntl::open(
            path,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        // SAFETY: `open` just returned this descriptor and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Dir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates `name` exclusively (`O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC`), mode 0600
    /// whatever the umask.
    pub fn create_exclusive(&self, name: &str) -> Result<File, Errno> {
        let fd = fcntl::openat(
            Some(self.fd.as_raw_fd()),
            name,
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::S_IRUSR | Mode::S_IWUSR,
        )?;
        // SAFETY: `openat` just returned this descriptor and nothing else owns it.
        let file = unsafe { File::from_raw_fd(fd) };
        // The umask may have removed bits from 0600; set the mode exactly.
        stat::fchmod(file.as_raw_fd(), Mode::S_IRUSR | Mode::S_IWUSR)?;
        Ok(file)
    }

    /// Opens an existing `name` read-write or read-only (`O_NOFOLLOW|O_CLOEXEC`).
    pub fn open_existing(&self, name: &str, writable: bool) -> Result<File, Errno> {
        let access = if writable {
            OFlag::O_RDWR
        } else {
            OFlag::O_RDONLY
        };
        let fd = fcntl::openat(
            Some(self.fd.as_raw_fd()),
            name,
            access | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            Mode::empty(),
        )?;
        // SAFETY: `openat` just returned this descriptor and nothing else owns it.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// `stat` of `name` without following symlinks.
    pub fn stat(&self, name: &str) -> Result<FileInfo, Errno> {
        let st = stat::fstatat(
            Some(self.fd.as_raw_fd()),
            name,
            fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )?;
        Ok(FileInfo::from(st))
    }

    /// Removes `name` from the directory.
    pub fn unlink(&self, name: &str) -> Result<(), Errno> {
        nix::unistd::unlinkat(
            Some(self.fd.as_raw_fd()),
            name,
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        )
    }

    /// Names of the entries of this directory (no `.`/`..`), sorted.
    pub fn entries(&self) -> std::io::Result<Vec<String>> {
        let mut names: Vec<String> = std::fs::read_dir(&self.path)?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        Ok(names)
    }
}

/// What `fstat` says about a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileInfo {
    /// Size in bytes.
    pub size: u64,
    /// Device id.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Owner uid.
    pub uid: u32,
    /// Whether it is a regular file.
    pub regular: bool,
}

impl From<libc::stat> for FileInfo {
    fn from(st: libc::stat) -> Self {
        FileInfo {
            size: st.st_size.max(0) as u64,
            dev: st.st_dev,
            ino: st.st_ino,
            uid: st.st_uid,
            regular: (st.st_mode & libc::S_IFMT) == libc::S_IFREG,
        }
    }
}

/// `fstat` of an open file.
pub fn fstat(file: &impl AsFd) -> Result<FileInfo, Errno> {
    stat::fstat(file.as_fd().as_raw_fd()).map(FileInfo::from)
}

/// Reserves `len` bytes of backing store (`posix_fallocate`), so running out of
/// space is `ENOSPC` now rather than `SIGBUS` on first touch. Falls back to
/// `ftruncate` only on filesystems that cannot allocate (`EOPNOTSUPP`).
pub fn reserve(file: &File, len: u64) -> Result<(), Errno> {
    let len_off = libc::off_t::try_from(len).map_err(|_| Errno::EFBIG)?;
    match fcntl::posix_fallocate(file.as_raw_fd(), 0, len_off) {
        Ok(()) => Ok(()),
        Err(Errno::EOPNOTSUPP) => nix::unistd::ftruncate(file.as_fd(), len_off),
        Err(e) => Err(e),
    }
}

/// Creates an anonymous, close-on-exec, sealable memory file (`memfd_create`).
pub fn memfd(label: &str) -> Result<File, Errno> {
    use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
    let label = CString::new(label.replace('\0', "")).map_err(|_| Errno::EINVAL)?;
    let fd = memfd_create(
        &label,
        MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
    )?;
    Ok(File::from(fd))
}

/// Seals a memfd against shrinking, growing and further sealing, so no process can
/// make our mapping point past the end of the file.
pub fn seal_size(file: &File) -> Result<(), Errno> {
    use nix::fcntl::{FcntlArg, SealFlag};
    let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL;
    fcntl::fcntl(file.as_raw_fd(), FcntlArg::F_ADD_SEALS(seals)).map(drop)
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
        assert!(validate_name(&"x".repeat(255)).is_ok());
    }
}
