//! Files of a segment directory: opens that never follow links or block, unnamed
//! files linked into place when complete, exclusive create, `fstat`, `pread`,
//! `posix_fallocate`, renames that never replace, memfds and seals.
//!
//! Every call works relative to one open directory descriptor, so a directory
//! mounted twice (stacked mounts of `/dev/shm`) cannot make a path name another
//! file system than the descriptor does.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

/// Directory that backs POSIX shared memory on Linux (`shm_open` opens files here).
pub(crate) const DEFAULT_DIR: &str = "/dev/shm";

/// Permission bits of every file we create: owner read/write, nobody else.
const MODE: libc::mode_t = 0o600;

/// How a file is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// `O_RDONLY`.
    Read,
    /// `O_RDWR`.
    ReadWrite,
}

impl Access {
    fn flags(self) -> libc::c_int {
        match self {
            Access::Read => libc::O_RDONLY,
            Access::ReadWrite => libc::O_RDWR,
        }
    }
}

fn cstr(name: impl AsRef<OsStr>) -> Result<CString, Errno> {
    CString::new(name.as_ref().as_bytes()).map_err(|_| Errno::EINVAL)
}

/// Turns a `-1`-on-error return value into `Err(errno)`.
fn cvt(ret: libc::c_int) -> Result<libc::c_int, Errno> {
    Errno::result(ret)
}

/// Retries a call interrupted by a signal.
fn retry<T>(mut f: impl FnMut() -> Result<T, Errno>) -> Result<T, Errno> {
    loop {
        match f() {
            Err(Errno::EINTR) => continue,
            other => return other,
        }
    }
}

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: callers pass a descriptor the kernel just returned to us, which nothing
    // else owns yet.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// An open directory that holds segments (default `/dev/shm`).
#[derive(Debug)]
pub(crate) struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl Dir {
    /// Opens a directory (`O_DIRECTORY|O_NOFOLLOW|O_CLOEXEC`) at `path` without
    /// following a symbolic link in its last component. Trailing `/` and `.`
    /// components are dropped first (`dir/` and `dir/.` would make the kernel follow
    /// a link named `dir`). `ENOENT`/`ENOTDIR` mean there is no such directory, or
    /// (`ENOTDIR`, `ELOOP`) that the last component is a symlink: [`lstat`] tells.
    /// Earlier components are resolved as usual.
    pub(crate) fn open(path: &Path) -> Result<Dir, Errno> {
        if path.as_os_str().is_empty() {
            return Err(Errno::ENOENT);
        }
        let path = normalize(path);
        let c = cstr(path.as_os_str())?;
        let fd = retry(|| {
            // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
            cvt(unsafe {
                libc::open(
                    c.as_ptr(),
                    libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_RDONLY | libc::O_CLOEXEC,
                )
            })
        })?;
        Ok(Dir {
            fd: owned(fd),
            path,
        })
    }

    /// `fstat` of the open directory (what the descriptor is, whatever its path
    /// names now).
    pub(crate) fn info(&self) -> Result<FileInfo, Errno> {
        fstat(&self.fd)
    }

    /// The directory's descriptor.
    pub(crate) fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Device and inode of the directory.
    pub(crate) fn id(&self) -> Result<(u64, u64), Errno> {
        fstat(&self.fd).map(|i| i.id())
    }

    /// The directory's path (for messages and for numpy).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn openat(
        &self,
        name: impl AsRef<OsStr>,
        flags: libc::c_int,
        mode: libc::mode_t,
    ) -> Result<File, Errno> {
        let c = cstr(name)?;
        let fd = retry(|| {
            // SAFETY: `c` is a valid NUL-terminated name and `self.fd` an open directory.
            cvt(unsafe {
                libc::openat(
                    self.fd.as_raw_fd(),
                    c.as_ptr(),
                    flags | libc::O_CLOEXEC,
                    libc::c_uint::from(mode),
                )
            })
        })?;
        Ok(File::from(owned(fd)))
    }

    /// Opens an existing entry without following a symlink (`ELOOP`), without
    /// blocking (a FIFO opens at once; `fstat` then tells what it is) and without
    /// acquiring a controlling terminal.
    pub(crate) fn open_file(&self, name: impl AsRef<OsStr>, access: Access) -> Result<File, Errno> {
        self.openat(
            name,
            access.flags() | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY,
            0,
        )
    }

    /// Creates an unnamed regular file in this directory (`O_TMPFILE`), mode 0600
    /// whatever the umask. Nobody can open it until [`Dir::link_unnamed`] names it;
    /// if this process dies first, the kernel frees it. `EOPNOTSUPP`/`EISDIR`/`EINVAL`
    /// mean the file system cannot do this.
    pub(crate) fn create_unnamed(&self) -> Result<File, Errno> {
        let file = self.openat(".", libc::O_TMPFILE | libc::O_RDWR, MODE)?;
        set_mode(&file)?;
        Ok(file)
    }

    /// Gives an unnamed file (from [`Dir::create_unnamed`]) the name `name` in this
    /// directory; fails with `EEXIST` if the name is taken (never replaces).
    ///
    /// `linkat(fd, "", dir, name, AT_EMPTY_PATH)` needs `CAP_DAC_READ_SEARCH`; without
    /// it, `linkat(AT_FDCWD, "/proc/self/fd/N", dir, name, AT_SYMLINK_FOLLOW)` does the
    /// same. Both link into the directory descriptor the file was created in.
    pub(crate) fn link_unnamed(&self, file: &File, name: impl AsRef<OsStr>) -> Result<(), Errno> {
        let c = cstr(name)?;
        let empty = c"";
        let first = retry(|| {
            // SAFETY: valid descriptors and NUL-terminated strings for the whole call.
            cvt(unsafe {
                libc::linkat(
                    file.as_raw_fd(),
                    empty.as_ptr(),
                    self.fd.as_raw_fd(),
                    c.as_ptr(),
                    libc::AT_EMPTY_PATH,
                )
            })
        });
        match first {
            Ok(_) => return Ok(()),
            Err(Errno::EEXIST) => return Err(Errno::EEXIST),
            Err(_) => {}
        }
        let proc_path = cstr(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
        retry(|| {
            // SAFETY: as above.
            cvt(unsafe {
                libc::linkat(
                    libc::AT_FDCWD,
                    proc_path.as_ptr(),
                    self.fd.as_raw_fd(),
                    c.as_ptr(),
                    libc::AT_SYMLINK_FOLLOW,
                )
            })
        })
        .map(drop)
    }

    /// Creates `name` exclusively (`O_CREAT|O_EXCL|O_NOFOLLOW`), mode 0600 whatever
    /// the umask.
    pub(crate) fn create_exclusive(&self, name: impl AsRef<OsStr>) -> Result<File, Errno> {
        let file = self.openat(
            name,
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
            MODE,
        )?;
        set_mode(&file)?;
        Ok(file)
    }

    /// Makes `to` a second name of the file `from` (a hard link); `EEXIST` if `to`
    /// is taken.
    pub(crate) fn link(&self, from: impl AsRef<OsStr>, to: impl AsRef<OsStr>) -> Result<(), Errno> {
        let (f, t) = (cstr(from)?, cstr(to)?);
        retry(|| {
            // SAFETY: valid descriptors and NUL-terminated strings for the whole call.
            cvt(unsafe {
                libc::linkat(
                    self.fd.as_raw_fd(),
                    f.as_ptr(),
                    self.fd.as_raw_fd(),
                    t.as_ptr(),
                    0,
                )
            })
        })
        .map(drop)
    }

    /// `stat` of `name` without following symlinks.
    pub(crate) fn stat(&self, name: impl AsRef<OsStr>) -> Result<FileInfo, Errno> {
        let c = cstr(name)?;
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        retry(|| {
            // SAFETY: `st` is a valid out-pointer; `c` a NUL-terminated name.
            cvt(unsafe {
                libc::fstatat(
                    self.fd.as_raw_fd(),
                    c.as_ptr(),
                    st.as_mut_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            })
        })?;
        // SAFETY: fstatat succeeded, so it filled `st`.
        Ok(FileInfo::from_stat(unsafe { &st.assume_init() }))
    }

    /// Removes the name `name` (not a directory).
    pub(crate) fn unlink(&self, name: impl AsRef<OsStr>) -> Result<(), Errno> {
        let c = cstr(name)?;
        // SAFETY: valid descriptor and NUL-terminated name.
        retry(|| cvt(unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) })).map(drop)
    }

    /// Renames `from` to `to` in this directory unless `to` exists (`EEXIST`):
    /// `renameat2(RENAME_NOREPLACE)`.
    pub(crate) fn rename_noreplace(
        &self,
        from: impl AsRef<OsStr>,
        to: impl AsRef<OsStr>,
    ) -> Result<(), Errno> {
        let (f, t) = (cstr(from)?, cstr(to)?);
        retry(|| {
            // SAFETY: valid descriptors and NUL-terminated strings; the raw syscall is used
            // because older glibc versions lack the renameat2 wrapper.
            Errno::result(unsafe {
                libc::syscall(
                    libc::SYS_renameat2,
                    self.fd.as_raw_fd(),
                    f.as_ptr(),
                    self.fd.as_raw_fd(),
                    t.as_ptr(),
                    libc::RENAME_NOREPLACE,
                )
            })
        })
        .map(drop)
    }

    /// The names in this directory (not `.`/`..`), as raw bytes, sorted. Read
    /// through the directory descriptor, not the path.
    pub(crate) fn entries(&self) -> Result<Vec<OsString>, Errno> {
        let fd = retry(|| {
            // SAFETY: `self.fd` is an open directory; "." is a valid C string.
            cvt(unsafe {
                libc::openat(
                    self.fd.as_raw_fd(),
                    c".".as_ptr(),
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
                )
            })
        })?;
        let mut dir = nix::dir::Dir::from_fd(owned(fd))?;
        let mut names: Vec<OsString> = dir
            .iter()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_bytes().to_vec())
            .filter(|n| n != b"." && n != b"..")
            .map(OsString::from_vec)
            .collect();
        names.sort();
        Ok(names)
    }
}

/// `path` without trailing `/` and without `.` components (`a/./b/.` is `a/b`), so
/// that its last component is the directory's own name. `..` is kept.
fn normalize(path: &Path) -> PathBuf {
    let p: PathBuf = path.components().collect();
    if p.as_os_str().is_empty() {
        // "." (or "./"): the current directory.
        PathBuf::from(".")
    } else {
        p
    }
}

/// `lstat` of a path: what its last component is, without following a symlink.
pub(crate) fn lstat(path: &Path) -> Result<FileInfo, Errno> {
    let c = cstr(normalize(path).as_os_str())?;
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    retry(|| {
        // SAFETY: `st` is a valid out-pointer; `c` a NUL-terminated path.
        cvt(unsafe {
            libc::fstatat(
                libc::AT_FDCWD,
                c.as_ptr(),
                st.as_mut_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })
    })?;
    // SAFETY: fstatat succeeded, so it filled `st`.
    Ok(FileInfo::from_stat(unsafe { &st.assume_init() }))
}

fn set_mode(file: &File) -> Result<(), Errno> {
    // SAFETY: `file` is an open descriptor.
    cvt(unsafe { libc::fchmod(file.as_raw_fd(), MODE) }).map(drop)
}

/// What kind of directory entry a file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// A regular file.
    Regular,
    /// A directory.
    Directory,
    /// A named pipe.
    Fifo,
    /// A symbolic link (only from `stat` without following).
    Symlink,
    /// A socket or a device.
    Other,
}

impl FileKind {
    /// What this kind is, as a reason in messages ("it is a FIFO").
    pub(crate) fn describe(self) -> &'static str {
        match self {
            FileKind::Regular => "it is a regular file",
            FileKind::Directory => "it is a directory",
            FileKind::Fifo => "it is a FIFO",
            FileKind::Symlink => "it is a symbolic link",
            FileKind::Other => "it is a socket or device",
        }
    }
}

/// What `fstat` says about a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileInfo {
    /// Size in bytes.
    pub(crate) size: u64,
    /// Device id.
    pub(crate) dev: u64,
    /// Inode number.
    pub(crate) ino: u64,
    /// Owner uid.
    pub(crate) uid: u32,
    /// Permission bits (`st_mode & 0o7777`).
    pub(crate) mode: u32,
    /// Number of names (0: unlinked).
    pub(crate) nlink: u64,
    /// Entry type.
    pub(crate) kind: FileKind,
}

impl FileInfo {
    fn from_stat(st: &libc::stat) -> FileInfo {
        let kind = match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => FileKind::Regular,
            libc::S_IFDIR => FileKind::Directory,
            libc::S_IFIFO => FileKind::Fifo,
            libc::S_IFLNK => FileKind::Symlink,
            _ => FileKind::Other,
        };
        FileInfo {
            size: u64::try_from(st.st_size).unwrap_or(0),
            dev: st.st_dev,
            ino: st.st_ino,
            uid: st.st_uid,
            mode: st.st_mode & 0o7777,
            nlink: st.st_nlink,
            kind,
        }
    }

    /// Device and inode: which file this is, whatever its name.
    pub(crate) fn id(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }
}

/// `fstat` of an open file.
pub(crate) fn fstat(file: &impl AsFd) -> Result<FileInfo, Errno> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` is a valid out-pointer; the descriptor is open.
    retry(|| cvt(unsafe { libc::fstat(file.as_fd().as_raw_fd(), st.as_mut_ptr()) }))?;
    // SAFETY: fstat succeeded, so it filled `st`.
    Ok(FileInfo::from_stat(unsafe { &st.assume_init() }))
}

/// Reads exactly `buf.len()` bytes at `offset` (`pread`, retried on `EINTR` and short
/// reads). A file that ends first is `UnexpectedEof`. Never touches a mapping, so a
/// file another process truncates meanwhile is an error, not a `SIGBUS`.
pub(crate) fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    file.read_exact_at(buf, offset)
}

/// Reserves `len` bytes of backing store (`posix_fallocate`), so running out of
/// space is `ENOSPC` now rather than `SIGBUS` on first touch. Falls back to
/// `ftruncate` only on file systems that cannot allocate (`EOPNOTSUPP`).
pub(crate) fn reserve(file: &File, len: u64) -> Result<(), Errno> {
    let len = libc::off_t::try_from(len).map_err(|_| Errno::EFBIG)?;
    let rc = loop {
        // SAFETY: `file` is an open descriptor; posix_fallocate returns the error
        // number instead of setting errno.
        let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
        if rc != libc::EINTR {
            break rc;
        }
    };
    match rc {
        0 => Ok(()),
        libc::EOPNOTSUPP => {
            // SAFETY: as above.
            retry(|| cvt(unsafe { libc::ftruncate(file.as_raw_fd(), len) })).map(drop)
        }
        e => Err(Errno::from_raw(e)),
    }
}

/// Opens the file behind `file` again through `/proc/self/fd`, which makes a new
/// open file description (a `dup` would share it, and with it its OFD locks).
pub(crate) fn reopen(file: &File, access: Access) -> Result<File, Errno> {
    let path = cstr(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
    let fd = retry(|| {
        // SAFETY: `path` is a valid NUL-terminated path.
        cvt(unsafe { libc::open(path.as_ptr(), access.flags() | libc::O_CLOEXEC) })
    })?;
    Ok(File::from(owned(fd)))
}

/// Creates an anonymous, close-on-exec, sealable memory file (`memfd_create`),
/// on hugetlb pages (the default huge page size) when `huge`.
pub(crate) fn memfd(label: &str, huge: bool) -> Result<File, Errno> {
    let label = CString::new(label.replace('\0', "")).map_err(|_| Errno::EINVAL)?;
    let flags =
        libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING | if huge { libc::MFD_HUGETLB } else { 0 };
    // SAFETY: `label` is a valid NUL-terminated string.
    let fd = cvt(unsafe { libc::memfd_create(label.as_ptr(), flags) })?;
    let file = File::from(owned(fd));
    // memfds start as 0777; nobody reaches them by path, but say what we mean.
    set_mode(&file)?;
    Ok(file)
}

/// Seals a memfd against shrinking, growing and further sealing, so no process can
/// make a mapping of it point past the end of the file.
pub(crate) fn seal_size(file: &File) -> Result<(), Errno> {
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: `file` is an open descriptor; F_ADD_SEALS takes an int argument.
    cvt(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) }).map(drop)
}
