//! Section 2: processes are made by `fork`.
//!
//! `info` prints who is running it. The main process calls it, then starts a child process
//! that calls it too: the child's parent process is the main process.
//!
//! Run it with `cargo run -p fork-info`; beside it, `python3 fork-info/python/fork_info.py`.
//! It prints (the ids differ on every run, and Python's module name is `__main__`):
//!
//! ```text
//! main line
//! module name: fork_info
//! parent process: 4100
//! process id: 4123
//! function f
//! module name: fork_info
//! parent process: 4123
//! process id: 4124
//! hello bob
//! ```
//!
//! The mechanism is [`common::Process`] (`common/src/process.rs`): `start` forks, the child
//! runs the target and ends with `_exit`, and `join` waits for it.

use common::Process;
use std::os::unix::process::parent_id;
use std::process::id;

/// What `--help` prints.
const USAGE: &str = "Section 2: a Process is made by fork: main and its child each print their
module name, parent process id and process id.
usage: cargo run -p fork-info";

fn info(title: &str) {
    println!("{title}");
    println!("module name: {}", module_path!());
    // Python asks hasattr(os, 'getppid') first; every Unix has it.
    println!("parent process: {}", parent_id());
    println!("process id: {}", id());
}

fn f(name: &str) {
    info("function f");
    println!("hello {name}");
}

fn main() -> Result<(), common::Error> {
    common::args::none(USAGE);
    info("main line");
    let mut p = Process::new(|| f("bob"));
    p.start()?;
    p.join()?;
    Ok(())
}
