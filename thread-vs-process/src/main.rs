//! Section 3: threads share memory, processes do not.
//!
//! Ten threads append their number to one list and print it: the list grows, `[0]`,
//! `[0, 1]`, ... Then ten processes do the same, but each appends to its own copy of the
//! list, made by `fork`, and prints a list of one: `[0]`, `[1]`, ... in any order.
//!
//! Run both halves with `cargo run -p thread-vs-process`, or one alone with
//! `cargo run -p thread-vs-process -- threads` (or `-- processes`). Beside them:
//! `python3 thread-vs-process/python/thread_share.py` and `.../process_no_share.py`.
//! With both halves, a line on stderr marks where each begins. It prints (the threads'
//! order may vary, the processes' lines come in any order):
//!
//! ```text
//! [0]
//! [0, 1]
//! ...
//! [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
//! [0]
//! [1]
//! ...
//! [9]
//! ```
//!
//! The mechanism is [`common::Process`] (`common/src/process.rs`): the child made by `fork`
//! gets a copy of the parent's memory, `info` included, and changes only its copy.

use common::{Process, repr, say};
use std::panic;
use std::sync::{Mutex, PoisonError};
use std::thread;

/// What `--help` prints.
const USAGE: &str = "Section 3: ten threads append to one shared list; ten processes each append
to a copy of their own.
usage: cargo run -p thread-vs-process [-- threads | processes]";

fn run(info_list: &mut Vec<i32>, n: i32) {
    info_list.push(n);
    println!("{}", repr(info_list));
}

/// thread_share.py: the threads share `info`. Python's GIL keeps the list whole;
/// in Rust a `Mutex` does, held while the thread appends and prints.
fn thread_share() -> Result<(), common::Error> {
    let info = Mutex::new(Vec::new());
    thread::scope(|s| {
        let mut threads = Vec::new();
        for i in 0..10 {
            let info = &info;
            let p = thread::Builder::new()
                .spawn_scoped(s, move || {
                    run(&mut info.lock().unwrap_or_else(PoisonError::into_inner), i)
                })
                .map_err(|e| common::Error::os("pthread_create", e))?;
            threads.push(p);
        }
        // Every thread is joined here, as Python waits for its threads at exit. A thread
        // that panicked (it could not print, say) has said why; its panic goes on here.
        for p in threads {
            p.join().unwrap_or_else(|panic| panic::resume_unwind(panic));
        }
        Ok(())
    })
}

/// process_no_share.py: each child appends to its own copy of `info`.
fn process_no_share() -> Result<(), common::Error> {
    let mut info = Vec::new();
    for i in 0..10 {
        let mut p = Process::new(|| run(&mut info, i));
        p.start()?;
    } // The children are joined at exit, as Python joins them.
    Ok(())
}

fn main() -> Result<(), common::Error> {
    match common::args::one_of(USAGE, &["threads", "processes"]) {
        Some("threads") => thread_share()?,
        Some(_) => process_no_share()?,
        None => {
            // Each half is marked on stderr, so that stdout stays what Python prints (a
            // stderr that cannot be written loses the marks, not the run).
            say!("== threads (thread_share.py): ten threads, one list");
            thread_share()?;
            say!("== processes (process_no_share.py): ten processes, a list each");
            process_no_share()?;
        }
    }
    Ok(())
}
