//! Plumbing shared by the examples, never a lesson of its own:
//!
//! - [`Process`]: start a closure in a child made by `fork`, and join it;
//! - [`repr()`]: print values as Python prints them, to the byte;
//! - [`Error`]: failures that name the OS call that failed;
//! - [`args`]: the examples' few command-line arguments, with usage on a wrong one.

pub mod args;
mod error;
#[cfg(feature = "test-support")]
pub mod golden;
mod process;
pub mod repr;

pub use error::Error;
pub use process::{ExitStatus, PANIC_EXIT_CODE, Process};
pub use repr::{Dict, PyRepr, PyValue, repr};
