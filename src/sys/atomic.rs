//! A 16-byte compare-and-swap (`lock cmpxchg16b` on x86-64), which std does not
//! offer on stable Rust. Elsewhere, or on an x86-64 CPU without it,
//! [`cas16_supported`] is false and callers take another path.

/// Whether [`cas16`] may be called on this machine (checked once by std).
#[inline]
pub(crate) fn cas16_supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("cmpxchg16b")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Atomically replaces the 16 bytes at `ptr` (as two native-endian `u64`s, the
/// one at the lower address first) by `new` if they equal `old`; either way
/// returns what they were. A full barrier (sequentially consistent).
///
/// Atomic with respect to every other locked or aligned access to the same bytes
/// by any processor (the 16 bytes are one aligned unit inside one cache line), so
/// it composes with the 4- and 8-byte atomics other code uses on parts of them.
///
/// # Safety
/// - `ptr` is valid for reads and writes of 16 bytes and 16-byte aligned.
/// - [`cas16_supported`] returned true.
#[inline]
pub(crate) unsafe fn cas16(ptr: *mut u8, old: [u64; 2], new: [u64; 2]) -> [u64; 2] {
    #[cfg(target_arch = "x86_64")]
    {
        let (lo, hi): (u64, u64);
        // SAFETY: per the caller's contract `ptr` is valid, aligned and the CPU has
        // `cmpxchg16b`. `rbx` is reserved by LLVM, so the low half of `new` is
        // swapped into it around the instruction and restored after; `rcx:rbx` is
        // the replacement and `rdx:rax` the expected value, replaced by the old
        // contents. The stack is not touched.
        unsafe {
            std::arch::asm!(
                "xchg {new_lo}, rbx",
                "lock cmpxchg16b xmmword ptr [{ptr}]",
                "mov rbx, {new_lo}",
                ptr = in(reg) ptr,
                new_lo = inout(reg) new[0] => _,
                in("rcx") new[1],
                inout("rax") old[0] => lo,
                inout("rdx") old[1] => hi,
                options(nostack),
            );
        }
        [lo, hi]
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (ptr, old, new);
        unreachable!("cas16 without cas16_supported")
    }
}

/// Asks for the cache line at `ptr` in a writable state ahead of a write (x86-64
/// `prefetchw`; a no-op elsewhere): one transfer instead of a shared copy and an
/// upgrade when another core holds the line. A hint: it touches no memory
/// architecturally and never faults, whatever `ptr` is.
#[inline]
pub(crate) fn prefetch_for_write(ptr: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetchw` only hints the cache; it reads and writes no memory
    // architecturally, cannot fault, and changes no register or flag.
    unsafe {
        std::arch::asm!("prefetchw [{}]", in(reg) ptr, options(nostack, preserves_flags, readonly));
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(C, align(16))]
    struct Unit([u64; 2]);

    #[test]
    fn swaps_only_when_both_halves_match() {
        if !cas16_supported() {
            return;
        }
        let mut u = Unit([1, 2]);
        let p = u.0.as_mut_ptr().cast::<u8>();
        // SAFETY: `u` is 16 bytes, 16-aligned, and ours.
        unsafe {
            assert_eq!(cas16(p, [1, 3], [7, 8]), [1, 2]);
            assert_eq!(cas16(p, [0, 2], [7, 8]), [1, 2]);
            assert_eq!(cas16(p, [1, 2], [7, 8]), [1, 2]);
        }
        assert_eq!(u.0, [7, 8]);
    }
}
