//! Section 5: memory shared between processes, with `Value` and `Array`.
//!
//! The main process makes a `Value` and an `Array` in shared memory and prints them. A child
//! sets the value and negates every element; after `join`, the main process sees the child's
//! changes, which a plain variable, copied by `fork`, would not show.
//!
//! Run it with `cargo run -p shared-value`; beside it, `python3 shared-value/python/shared_value.py`.
//! It prints:
//!
//! ```text
//! 0.0
//! [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
//! 3.1415927
//! [0, -1, -2, -3, -4, -5, -6, -7, -8, -9]
//! ```
//!
//! `cargo run -p shared-value -- counter` shows why `+=` needs the lock (beside it,
//! `python3 shared-value/python/counter.py`): two processes add 1 a hundred thousand
//! times each, first with `set_value(value() + 1)`, which loses updates as Python's
//! `n.value += 1` does, then holding `get_lock()`, which gives exactly 200000.

use common::{Process, repr};
use shared_value::{Array, LockError, Value};

/// What `--help` prints.
const USAGE: &str = "Section 5: a child changes a Value and an Array in shared memory, and the
parent sees the change; counter: why += on a Value needs its lock.
usage: cargo run -p shared-value [-- counter]";

// The article's number, not PI: 3.1415927 is what Python prints back.
#[allow(clippy::approx_constant)]
fn f(n: &Value<f64>, a: &Array<i32>) -> Result<(), LockError> {
    n.set_value(3.1415927)?;
    for i in 0..a.len() {
        a.set(i, -a.get(i)?)?;
    }
    Ok(())
}

fn main() -> Result<(), LockError> {
    if common::args::one_of(USAGE, &["counter"]).is_some() {
        return counter();
    }
    let num = Value::new(0.0)?;
    let arr = Array::new(0..10)?;
    println!("{}", repr(&num.value()?));
    println!("{}", repr(&arr.to_vec()?));
    let mut p = Process::new(|| f(&num, &arr));
    p.start()?;
    p.join()?;
    println!("{}", repr(&num.value()?));
    println!("{}", repr(&arr.to_vec()?));
    Ok(())
}

/// counter.py: `n.value += 1` from two processes, without and with the value's lock.
fn counter() -> Result<(), LockError> {
    fn add(n: &Value<i32>, times: i32) -> Result<(), LockError> {
        for _ in 0..times {
            n.set_value(n.value()? + 1)?; // two locked steps: another process can come between
        }
        Ok(())
    }
    fn add_locked(n: &Value<i32>, times: i32) -> Result<(), LockError> {
        for _ in 0..times {
            *n.get_lock()? += 1; // one locked step
        }
        Ok(())
    }
    type Target = fn(&Value<i32>, i32) -> Result<(), LockError>;
    let targets: [(&str, Target); 2] = [("without get_lock", add), ("with get_lock", add_locked)];
    for (name, target) in targets {
        let num = Value::new(0)?;
        let mut ps: Vec<_> = (0..2)
            .map(|_| Process::new(|| target(&num, 100_000)))
            .collect();
        for p in &mut ps {
            p.start()?;
        }
        for p in &mut ps {
            p.join()?;
        }
        println!("{name}: {}", num.value()?);
    }
    Ok(())
}
