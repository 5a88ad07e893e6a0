//! Which loaded object (executable or shared library) a code address lies in:
//! `dladdr` for the object's load address, `/proc/self/maps` for its file.

/// The loaded object that contains a code address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Object {
    /// Load address of the object (`dli_fbase`).
    pub(crate) base: usize,
    /// The object's file name as the dynamic loader knows it (`dli_fname`; for the
    /// main program this may be relative or empty).
    pub(crate) name: String,
}

/// The object containing `addr`, or `None` if the dynamic loader knows of none.
pub(crate) fn object_of(addr: usize) -> Option<Object> {
    // SAFETY: `Dl_info` is plain data, valid when zeroed.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads the loader's tables and writes `info`; any address
    // value is allowed (it returns 0 when no object contains it).
    let found = unsafe { libc::dladdr(addr as *const libc::c_void, &mut info) };
    if found == 0 || info.dli_fbase.is_null() {
        return None;
    }
    let name = if info.dli_fname.is_null() {
        String::new()
    } else {
        // SAFETY: dladdr set `dli_fname` to a NUL-terminated string owned by the
        // loader, alive as long as the object stays loaded (we copy it at once).
        unsafe { std::ffi::CStr::from_ptr(info.dli_fname) }
            .to_string_lossy()
            .into_owned()
    };
    Some(Object {
        base: info.dli_fbase as usize,
        name,
    })
}

/// An address inside the main executable's mapping (its program headers,
/// `AT_PHDR`), or 0 if the auxiliary vector lacks it.
pub(crate) fn executable_address() -> usize {
    // SAFETY: getauxval only reads the auxiliary vector the kernel gave this
    // process; it returns 0 for a missing entry.
    (unsafe { libc::getauxval(libc::AT_PHDR) }) as usize
}

/// The file mapped at `addr` according to `/proc/self/maps`: (device as the kernel
/// prints it, inode, path). Identifies an object independently of how the loader
/// names it.
pub(crate) fn mapped_file(addr: usize) -> Option<(String, u64, String)> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|line| parse_maps_line(line, addr))
}

fn parse_maps_line(line: &str, addr: usize) -> Option<(String, u64, String)> {
    let mut fields = line.split_ascii_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    if !(start..end).contains(&addr) {
        return None;
    }
    let _perms = fields.next()?;
    let _offset = fields.next()?;
    let dev = fields.next()?.to_string();
    let ino = fields.next()?.parse().ok()?;
    let path = fields.collect::<Vec<_>>().join(" ");
    Some((dev, ino, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn here() {}

    #[test]
    fn code_of_this_crate_and_of_libc_lie_in_different_objects() {
        let ours = object_of(here as fn() as usize).expect("our object");
        let libc = object_of(libc::strlen as *const () as usize).expect("libc");
        assert_ne!(ours.base, libc.base);
        assert!(libc.name.contains("libc"), "{}", libc.name);
        let (_, ino, path) = mapped_file(here as fn() as usize).expect("mapped");
        assert!(ino > 0 && !path.is_empty());
        // Unit tests link this crate into the test executable.
        let exe = mapped_file(executable_address()).expect("executable mapped");
        assert_eq!((exe.1, exe.2), (ino, path));
    }

    #[test]
    fn maps_lines_parse() {
        let l = "55d0c-55d1c r-xp 00001000 fd:01 1234  /usr/bin/my prog";
        assert_eq!(
            parse_maps_line(l, 0x55d0f),
            Some(("fd:01".into(), 1234, "/usr/bin/my prog".into()))
        );
        assert_eq!(parse_maps_line(l, 0x10), None);
    }
}
