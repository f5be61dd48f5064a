//! The example's output, with and without the lock: against its golden file (in any order,
//! for the ten processes print in any order) and beside its Python original.

// The workspace's test harness, included by path rather than named as a dependency: a copy
// of this section without `testkit/` still builds and runs (its tests need `testkit/` too).
#[path = "../../testkit/src/lib.rs"]
#[allow(dead_code, unused_imports)]
mod testkit;

use std::path::Path;
use std::process::Command;

use snapbox::IntoData;
use testkit::{
    assert_golden, assert_help, assert_interrupts_are_clean, assert_unprintable_is_clear,
    assert_usage_error, check_python, repeat, sorted_lines, stdout_of,
};

fn lock(args: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lock"));
    cmd.args(args);
    stdout_of(cmd)
}

fn golden() -> snapbox::Data {
    snapbox::file!["golden/lock.stdout"].unordered()
}

#[test]
fn prints_the_golden_output_in_any_order() {
    repeat(|| {
        assert_golden(&lock(&[]), golden());
    });
}

/// Without the lock, each process's two writes still all come, in whatever order.
#[test]
fn without_the_lock_nothing_is_lost() {
    repeat(|| {
        let out = lock(&["--no-lock"]);
        assert_eq!(out.matches("hello world ").count(), 10, "{out}");
        let mut digits: Vec<char> = out.replace("hello world ", "").chars().collect();
        digits.sort_unstable();
        let digits: String = digits.into_iter().collect();
        assert_eq!(digits, format!("{}0123456789", "\n".repeat(10)), "{out}");
    });
}

/// Without the lock the lines run together (here, on at least one of ten runs: each line's
/// two writes are a millisecond apart, and the processes start well within that), which is
/// what the lock prevents.
#[test]
fn without_the_lock_lines_run_together() {
    let mixed = (0..10)
        .map(|_| lock(&["--no-lock"]))
        .filter(|out| {
            out.lines()
                .any(|line| !line.starts_with("hello world ") || line.len() != 13)
        })
        .count();
    assert!(
        mixed > 0,
        "ten runs without the lock, and no line was mixed"
    );
}

#[test]
fn prints_what_the_python_original_prints() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/lock.py");
    check_python(&script, &[], |python| {
        assert_eq!(python.stderr, "");
        // Python's lines, under its lock, are whole; both sides hold the same ten in any order.
        assert_golden(&python.stdout, golden());
        assert_eq!(sorted_lines(&lock(&[])), sorted_lines(&python.stdout));
    });
}

#[test]
fn the_unordered_golden_check_rejects_wrong_lines() {
    let wrong = "hello world 0\nhello world 1\nhello world 2\nhello world 3\nhello world 4\n\
                 hello world 5\nhello world 6\nhello world 7\nhello world 8\nhello world 8\n";
    let err = testkit::check_golden(wrong, golden().into_data());
    assert!(err.is_err(), "a duplicated line must fail");
    let mixed = "hello world hello world 1\n0\nhello world 2\nhello world 3\nhello world 4\n\
                 hello world 5\nhello world 6\nhello world 7\nhello world 8\nhello world 9\n";
    assert!(testkit::check_golden(mixed, golden().into_data()).is_err());
}

#[test]
fn refuses_unknown_arguments_with_usage() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lock"));
    cmd.arg("--nolock");
    assert_usage_error(
        cmd,
        &[
            "unknown argument '--nolock'",
            "usage: cargo run -p lock [-- --no-lock]",
        ],
    );
}

#[test]
fn an_interrupt_ends_every_child_and_leaves_nothing() {
    assert_interrupts_are_clean(|| Command::new(env!("CARGO_BIN_EXE_lock")));
}

#[test]
fn help_says_what_it_shows() {
    assert_help(
        Command::new(env!("CARGO_BIN_EXE_lock")),
        "Section 4: ten processes print",
    );
}

#[test]
fn a_stdout_that_cannot_be_written_is_a_one_line_error() {
    // The parent prints nothing; each child says why its line failed, as Python's do.
    assert_unprintable_is_clear(|| Command::new(env!("CARGO_BIN_EXE_lock")), 0);
}
