//! Platform layer: the one place that calls libc/nix.
//!
//! Everything here returns `nix::errno::Errno`, `std::io::Error` or plain data;
//! callers above map errors to the crate's error variants, with the names they know.

pub(crate) mod atomic;
#[cfg(feature = "pool")]
pub(crate) mod dl;
pub(crate) mod fs;
pub(crate) mod futex;
pub(crate) mod lock;
pub(crate) mod mman;
pub(crate) mod mounts;
pub(crate) mod proc;
#[cfg(feature = "pool")]
pub(crate) mod process;
pub(crate) mod pthread;
