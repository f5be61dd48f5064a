//! Section 7, last line: "synchronous is apply". `Pool.apply` blocks until its result is in.
//!
//! The same `f` as `async-pool`'s, called ten times with the blocking `apply`: each square is
//! printed by the worker, then, a second later, by `main`. One worker at a time is busy.
//!
//! Run it with `cargo run -p async-pool --bin apply` (about 10 s; `-- --sleep 0.05` shortens
//! it); beside it, `python3 async-pool/python/apply_sync.py`. It prints:
//!
//! ```text
//! 0
//! 0
//! 1
//! 1
//! 4
//! 4
//! ...
//! 81
//! 81
//! ```
//!
//! The mechanism is section 1's pool, [`pool_map::Pool`] (`pool-map/src/`):
//! [`apply`](pool_map::Pool::apply) sends the task and waits for its result.

use std::sync::LazyLock;
use std::thread;
use std::time::Duration;

use pool_map::{Pool, PoolError};

#[path = "../args.rs"]
mod args;

/// What `--help` prints.
const USAGE: &str = "Section 7: ten synchronous apply calls on a Pool of four, one after another.
--sleep: how long f sleeps (1 s).
usage: cargo run -p async-pool --bin apply [-- --sleep SECONDS]";

/// How long f sleeps: the article's 1 s, unless `--sleep SECONDS` says otherwise. Read from
/// the command line by the first process that asks, which a forked worker can be: it has
/// the same command line, so the answer is the same wherever the pool is made.
static SLEEP: LazyLock<Duration> =
    LazyLock::new(|| args::sleep(USAGE).unwrap_or(Duration::from_secs(1)));

fn f(x: i32) -> i32 {
    println!("{}", x * x);
    thread::sleep(*SLEEP);
    x * x
}

fn main() -> Result<(), PoolError> {
    LazyLock::force(&SLEEP); // A wrong command line stops here.
    let pool = Pool::new(4)?;
    for i in 0..10 {
        println!("{}", pool.apply(f, i)?);
    }
    Ok(())
}
