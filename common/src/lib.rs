//! Plumbing shared by the examples, never a lesson of its own:
//!
//! - [`Process`]: start a closure in a child made by `fork`, and join it;
//! - [`repr()`]: print values as Python prints them, to the byte;
//! - [`Mapping`]: memory shared with forked children (`MAP_SHARED`);
//! - [`Lock`]: a lock that works across processes, and survives a holder that dies;
//! - [`Error`]: failures that name the OS call that failed;
//! - [`args`]: the examples' few command-line arguments, with usage on a wrong one.

pub mod args;
mod error;
#[cfg(feature = "test-support")]
pub mod golden;
mod lock;
mod process;
pub mod repr;
mod shm;

pub use error::Error;
pub use lock::{Acquired, Lock, LockGuard};
pub use process::{ExitStatus, Outcome, PANIC_EXIT_CODE, Process};
pub use repr::{Dict, PyRepr, PyValue, repr};
pub use shm::Mapping;
