//! The `shmarray` command's library part: the demo's worker ([`worker`]), which the
//! command's `demo` and hidden `__worker` subcommands and the two-process benches
//! (`benches/zero_copy.rs`, `benches/attach.rs`) share. Not an API: the library is
//! the `shmarray` crate.
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod worker;
