//! What an example says when it cannot print: its stdout is a pipe whose reader has gone
//! (`cargo run -p queue | head -1`), or a full disk.
//!
//! Python's `print` raises `BrokenPipeError` there, and the program ends with its traceback
//! and status 1. Rust's `println!` panics, and the panic's report (thread, file, line, a
//! note about backtraces) reads like a bug in the example. The examples keep `println!`,
//! as their Python originals keep `print`; [`explain`] makes that one panic report a
//! one-line error instead. The panic itself goes on as any panic does: the process unwinds,
//! so that its pool, its manager and its children are ended and reaped, and it ends with
//! status 101 (a child, with [`PANIC_EXIT_CODE`](crate::PANIC_EXIT_CODE)).

use std::panic;
use std::sync::Once;

/// How Rust's `print!` and `println!` begin the message of their panic (std's `print_to`).
const FAILED_PRINTING: &str = "failed printing to stdout";

/// From now on, in this process and the children it forks, a panic of `print!` or
/// `println!` prints `Error: failed printing to stdout: <why>` on stderr, and nothing else;
/// any other panic is reported as before. Every example calls this first (through
/// [`args::one_of`](crate::args::one_of)), and so does a child started by spawn or a fork
/// server, whose `main` never runs.
pub fn explain() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let report = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            match info.payload().downcast_ref::<String>() {
                Some(message) if message.starts_with(FAILED_PRINTING) => {
                    // stderr may be gone too: then there is no one to tell.
                    crate::error_line(format_args!("{message}"));
                }
                _ => report(info),
            }
        }));
    });
}
