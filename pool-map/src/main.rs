//! Section 1: the most basic use of a process pool, `Pool.map`.
//!
//! Five worker processes are forked; `map` sends them the numbers 1, 2 and 3, each worker
//! squares what it gets, and the results come back in the order of the input.
//!
//! Run it with `cargo run -p pool-map`; beside it, `python3 pool-map/python/pool_map.py`.
//! It prints:
//!
//! ```text
//! [1, 4, 9]
//! ```

use common::repr;
use pool_map::Pool;

/// What `--help` prints.
const USAGE: &str = "Section 1: Pool(5).map(f, [1, 2, 3]): five forked workers square the items.
usage: cargo run -p pool-map";

fn f(x: i32) -> i32 {
    x * x
}

fn main() -> Result<(), pool_map::PoolError> {
    common::args::none(USAGE);
    let p = Pool::new(5)?;
    println!("{}", repr(&p.map(f, &[1, 2, 3])?));
    Ok(())
}
