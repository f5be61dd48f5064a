//! Section 7: asynchronous calls, `Pool.apply_async` and `AsyncResult.get(timeout)`.
//!
//! Four workers are forked. Ten calls of `f` are handed to the pool at once; each prints its
//! square, sleeps a second, and returns the square. Then the main process waits for each
//! result in turn and prints it. The workers' lines and the main process's lines interleave:
//! the first four squares print at once, then each second the finished results and the
//! next squares.
//!
//! Run it with `cargo run -p async-pool` (about 3 s); `-- --sleep 0.05` shortens f's sleep.
//! Beside it, `python3 async-pool/python/async_pool.py`. The synchronous version is
//! `cargo run -p async-pool --bin apply`. It prints, in an order that varies a little:
//!
//! ```text
//! 0
//! 1
//! 4
//! 9
//! 0
//! 1
//! 4
//! 16
//! ...
//! ```
//!
//! Every square appears twice: first from the worker that computed it, then from `main`,
//! which prints the results in the order it asked for them.
//!
//! The mechanism is section 1's pool, [`pool_map::Pool`] (`pool-map/src/`):
//! [`apply_async`](pool_map::Pool::apply_async) sends the task and returns at once, and
//! [`get_timeout`](pool_map::AsyncResult::get_timeout) waits for its result.

use std::sync::LazyLock;
use std::thread;
use std::time::Duration;

use pool_map::{Pool, PoolError};

mod args;

/// What `--help` prints.
const USAGE: &str = "Section 7: ten apply_async calls on a Pool of four; the main process gets
each result, waiting at most 10 s. --sleep: how long f sleeps (1 s).
usage: cargo run -p async-pool [-- --sleep SECONDS]";

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
    let mut res_list = Vec::new();
    for i in 0..10 {
        let res = pool.apply_async(f, i)?;
        res_list.push(res);
    }
    for r in &res_list {
        println!("{}", r.get_timeout(Duration::from_secs(10))?); // timeout in seconds
    }
    Ok(())
}
