//! Plumbing shared by the examples, never a lesson of its own:
//!
//! - [`Process`]: start a closure in a child made by `fork`, and join it;
//! - [`start`]: start a function in a child by fork, spawn or a fork server;
//! - [`current_pid`], [`process_key`]: which process this is;
//! - [`repr()`]: print values as Python prints them, to the byte;
//! - [`Mapping`]: memory shared with forked children (`MAP_SHARED`);
//! - [`frame`]: values between processes, as bincode frames over pipes and sockets;
//! - [`fd`]: pipe and socket ends, non-blocking, and waiting on them (spinning first where
//!   that pays);
//! - [`Private`]: descriptors a process keeps for itself, closed in its children at fork;
//! - `interrupt.rs`: Ctrl-C ends a process's children before it ends;
//! - [`Error`]: failures that name the OS call that failed; [`error_line`] says one whole,
//!   [`say!`] a line that stderr may refuse;
//! - [`args`]: the examples' few command-line arguments, with usage on a wrong one;
//! - [`unprintable`]: a one-line error, not a panic report, when stdout cannot be written.

pub mod args;
mod error;
pub mod fd;
pub mod frame;
mod interrupt;
mod pid;
mod private_fd;
mod process;
pub mod repr;
mod shm;
pub mod start;
pub mod unprintable;

pub use error::{Error, error_line};
pub use pid::{current_pid, process_key};
pub use private_fd::{Owns, Private};
pub use process::{ExitStatus, Outcome, PANIC_EXIT_CODE, Process};
pub use repr::{PyRepr, PyValue, repr};
pub use shm::{Mapping, SharedBorrow};
