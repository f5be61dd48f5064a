//! Tests of `Value` and `Array` across forked processes. `harness = false`, because fork is
//! refused while libtest's threads run.

// A failed unwrap is a failed test here, as in #[test] functions.
#![allow(clippy::unwrap_used)]

use common::golden::{assert_no_children, run_tests};
use common::{ExitStatus, Process};
use shared_value::{Array, Value};

fn main() {
    run_tests(&[
        (
            "a_child_changes_what_the_parent_sees",
            a_child_changes_what_the_parent_sees,
        ),
        (
            "get_lock_makes_increments_exact",
            get_lock_makes_increments_exact,
        ),
        ("arrays_of_any_length", arrays_of_any_length),
        ("guards_exclude_other_access", guards_exclude_other_access),
    ]);
}

fn a_child_changes_what_the_parent_sees() {
    let num = Value::new(0.5f64).unwrap();
    let arr = Array::new([1u8, 2, 3]).unwrap();
    let plain = std::cell::Cell::new(7);
    let mut p = Process::new(|| {
        num.set_value(-2.25).unwrap();
        arr.set(1, 20).unwrap();
        plain.set(8); // the child's own copy
    });
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), ExitStatus::Exited(0));
    assert_eq!(num.value().unwrap(), -2.25);
    assert_eq!(arr.to_vec().unwrap(), [1, 20, 3]);
    assert_eq!(plain.get(), 7);
    assert_no_children();
}

/// Two processes x 100,000 `+= 1` under get_lock: exactly 200,000.
fn get_lock_makes_increments_exact() {
    let num = Value::new(0i64).unwrap();
    let mut ps: Vec<_> = (0..2)
        .map(|_| {
            Process::new(|| {
                for _ in 0..100_000 {
                    *num.get_lock().unwrap() += 1;
                }
            })
        })
        .collect();
    for p in &mut ps {
        p.start().unwrap();
    }
    for p in &mut ps {
        assert_eq!(p.join().unwrap(), ExitStatus::Exited(0));
    }
    assert_eq!(num.value().unwrap(), 200_000);
}

fn arrays_of_any_length() {
    let empty = Array::<i32>::new([]).unwrap();
    assert!(empty.is_empty());
    assert_eq!(empty.to_vec().unwrap(), Vec::<i32>::new());
    // More than one page, of a type larger than a byte.
    let big = Array::new((0..10_000).map(f64::from)).unwrap();
    assert_eq!(big.len(), 10_000);
    let mut p = Process::new(|| {
        for x in big.get_lock().unwrap().iter_mut() {
            *x *= 2.0;
        }
    });
    p.start().unwrap();
    p.join().unwrap();
    let doubled: Vec<f64> = (0..10_000).map(|i| f64::from(i) * 2.0).collect();
    assert_eq!(big.to_vec().unwrap(), doubled);
    let pairs = Value::new([1u16, 2]).unwrap();
    pairs.get_lock().unwrap()[1] = 9;
    assert_eq!(pairs.value().unwrap(), [1, 9]);
}

/// While this process holds the guard, reading the value again is refused, not a deadlock,
/// and a child waits for the guard's release.
fn guards_exclude_other_access() {
    let num = Value::new(1u32).unwrap();
    let mut held = num.get_lock().unwrap();
    assert!(matches!(num.value(), Err(common::Error::AlreadyHeld)));
    let mut p = Process::new(|| {
        assert_eq!(num.value().unwrap(), 2);
    });
    p.start().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    *held = 2;
    drop(held);
    assert_eq!(p.join().unwrap(), ExitStatus::Exited(0));
}
