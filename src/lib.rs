//! shmarray: zero-copy numeric arrays shared between processes.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
