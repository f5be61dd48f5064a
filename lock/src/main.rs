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
//! What the lock guards here is small: one `println!` is one `write(2)` of the whole line,
//! and a write of at most `PIPE_BUF` bytes to a pipe is never mixed with another, so even
//! `--no-lock` prints whole lines. (Python's `print` writes its pieces separately, so there
//! lines can run together without the lock.) A lock earns its keep where a process reads,
//! changes and writes back shared data: see `shared-value`, and `Lock`'s owner-death rule
//! in `src/lib.rs`, which keeps a killed holder from locking everyone out.

use common::Process;
use lock::Lock;

const USAGE: &str = "usage: cargo run -p lock [-- --no-lock]";

fn f(l: &Lock, i: i32) -> Result<(), common::Error> {
    l.acquire()?;
    println!("hello world {i}");
    l.release()?;
    Ok(())
}

/// `f` without the lock, for `--no-lock`.
fn f_no_lock(i: i32) {
    println!("hello world {i}");
}

fn main() -> Result<(), common::Error> {
    let no_lock = common::args::one_of(USAGE, &["--no-lock"]).is_some();
    let lock = Lock::new()?;
    for num in 0..10 {
        if no_lock {
            Process::new(|| f_no_lock(num)).start()?;
        } else {
            Process::new(|| f(&lock, num)).start()?;
        }
    } // The children are joined at exit, as Python joins them.
    Ok(())
}
