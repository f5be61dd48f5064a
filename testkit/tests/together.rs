//! Mechanisms of different sections in one program: what one process holds must not reach
//! another's children. A `harness = false` binary, since fork is refused while libtest's
//! threads run.

// A failed unwrap is a failed test here, as in #[test] functions.
#![allow(clippy::unwrap_used)]

use manager::Manager;
use pool_map::Pool;
use testkit::{assert_no_children, run_tests};

fn main() {
    run_tests(&[(
        "a_pool_joins_while_a_manager_lives",
        a_pool_joins_while_a_manager_lives,
    )]);
}

fn square(x: i64) -> i64 {
    x * x
}

/// A manager's server forked after a pool does not keep the pool's pipes open (they are
/// `Private`), so the pool's `close(); join()` ends while the manager lives.
fn a_pool_joins_while_a_manager_lives() {
    // A hang fails the test (SIGALRM ends it) instead of waiting forever.
    // SAFETY: alarm touches no memory.
    unsafe { libc::alarm(30) };
    let pool = Pool::new(2).unwrap();
    let manager = Manager::new().unwrap();
    let d = manager.dict().unwrap();
    assert_eq!(pool.map(square, &[1, 2, 3]).unwrap(), [1, 4, 9]);
    pool.close().unwrap();
    pool.join().unwrap();
    d.set(1, 1).unwrap();
    assert_eq!(d.len().unwrap(), 1);
    drop(d);
    drop(manager);
    // SAFETY: as above; 0 cancels it.
    unsafe { libc::alarm(0) };
    assert_no_children();
}
