//! Section 4: a `Lock` shared by processes.
//!
//! Ten processes each take the lock, print `hello world i`, and release it. The lines come
//! in any order, but while one process holds the lock no other prints.
//!
//! Run it with `cargo run -p lock`, and the same without the lock with
//! `cargo run -p lock -- --no-lock`; beside it, `python3 lock/python/lock.py`.
//! It prints ten lines, in an order that varies from run to run:
//!
//! ```text
//! hello world 1
//! hello world 0
//! hello world 2
//! ...
//! ```
//!
//! A line goes out in two writes, the words and then the number, as Python's `print` writes
//! its pieces apart (unbuffered, `python3 -u`, each is a write of its own), with a
//! millisecond between them, as a slow terminal might take. Under the lock, no other process
//! writes between them. Without it (`--no-lock`), the lines run together on almost every
//! run: `hello world hello world 3`, and a `7` alone on a later line. The lock itself, and
//! what it does when a holder dies, is in `src/lib.rs`.

use std::error::Error;
use std::io::{self, Write};

use common::Process;
use lock::{Lock, LockError};

/// What `--help` prints.
const USAGE: &str = "Section 4: ten processes print their line under one Lock; with --no-lock,
without it, and their lines run together.
usage: cargo run -p lock [-- --no-lock]";

fn f(l: &Lock, i: i32) -> Result<(), Box<dyn Error>> {
    l.acquire()?;
    print_hello(i)?;
    l.release()?;
    Ok(())
}

/// `print('hello world', i)`, in two writes a moment apart.
fn print_hello(i: i32) -> io::Result<()> {
    let mut out = io::stdout();
    write!(out, "hello world ")?;
    out.flush()?;
    std::thread::sleep(std::time::Duration::from_millis(1));
    writeln!(out, "{i}")
}

fn main() -> Result<(), LockError> {
    let no_lock = common::args::one_of(USAGE, &["--no-lock"]).is_some();
    let lock = Lock::new()?;
    for num in 0..10 {
        if no_lock {
            Process::new(move || print_hello(num)).start()?;
        } else {
            Process::new(|| f(&lock, num)).start()?;
        }
    } // The children are joined at exit, as Python joins them.
    Ok(())
}
