//! Beyond the article: the three start methods, fork, spawn and forkserver, each starting
//! section 2's `f('bob')`.
//!
//! `info` prints who is running it. For each method, the main process calls it, then starts
//! a child process by that method, which calls it too. The child's parent is the main
//! process under fork and spawn, and the fork server under forkserver.
//!
//! Run it with `cargo run -p start-methods` (or `-- spawn` for one method); beside it,
//! `python3 start-methods/python/start_methods.py`. It prints (the ids differ on every run;
//! Python's module name is `__main__` in main and under fork, `__mp_main__` in a child
//! under spawn and forkserver):
//!
//! ```text
//! start method: fork
//! main line
//! module name: start_methods
//! parent process: 4100
//! process id: 4123
//! function f
//! module name: start_methods
//! parent process: 4123
//! process id: 4124
//! hello bob
//! start method: spawn
//! main line
//! module name: start_methods
//! parent process: 4100
//! process id: 4123
//! function f
//! module name: start_methods
//! parent process: 4123
//! process id: 4125
//! hello bob
//! start method: forkserver
//! main line
//! module name: start_methods
//! parent process: 4100
//! process id: 4123
//! function f
//! module name: start_methods
//! parent process: 4126
//! process id: 4127
//! hello bob
//! ```
//!
//! The mechanism is in `common/src/start.rs`; `src/lib.rs` says how each method works.

use start_methods::{Process, get_context, methods};
use std::os::unix::process::parent_id;
use std::process::id;

/// What `--help` prints.
const USAGE: &str = "Beyond the article: f('bob') started by each start method (fork, spawn,
forkserver); each process prints its module name, parent process id and process id.
usage: cargo run -p start-methods [-- fork|spawn|forkserver]";

fn info(title: &str) {
    println!("{title}");
    println!("module name: {}", module_path!());
    println!("parent process: {}", parent_id());
    println!("process id: {}", id());
}

fn f(name: String) {
    info("function f");
    println!("hello {name}");
}

fn main() -> Result<(), common::Error> {
    let only = common::args::one_of(USAGE, &["fork", "spawn", "forkserver"]);
    for method in methods(only) {
        let ctx = get_context(method)?;
        println!("start method: {method}");
        info("main line");
        let mut p = Process::new(&ctx, f, "bob".to_string())?;
        p.start()?;
        p.join()?;
    }
    Ok(())
}
