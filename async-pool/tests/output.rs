//! The two binaries' output: against their golden files, beside their Python originals,
//! and their arguments.
//!
//! `async-pool` prints every square twice, first from the worker that computed it, then
//! from `main`, which prints the results in the order it asked for them. The workers' lines
//! and `main`'s interleave, differently on every run. What must hold: each square appears
//! exactly twice, and the second appearances come in task order (0, 1, 4, ... 81), since
//! `main` prints a result only after its worker printed it. `apply` has one legal order.

// A failed unwrap is a failed test here, as in #[test] functions.
#![allow(clippy::unwrap_used)]

// The workspace's test harness, included by path rather than named as a dependency: a copy
// of this section without `testkit/` still builds and runs (its tests need `testkit/` too).
#[path = "../../testkit/src/lib.rs"]
#[allow(dead_code, unused_imports)]
mod testkit;

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

use snapbox::IntoData;
use testkit::{
    Run, StartDefault, assert_golden, assert_help, assert_interrupts_are_clean,
    assert_unprintable_is_clear, assert_usage_error, repeat, run, run_python_as,
};

const SHORT: &[&str] = &["--sleep", "0.05"];

fn async_pool(args: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_async-pool"));
    cmd.args(args);
    run(cmd).success()
}

fn apply(args: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_apply"));
    cmd.args(args);
    run(cmd).success()
}

fn python(script: &str, default: StartDefault) -> Option<Run> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(script);
    run_python_as(&script, &[], default)
}

/// Checks that `stdout` is a legal interleaving of the workers' and main's lines.
fn legal_async_order(stdout: &str) -> Result<(), String> {
    let squares: Vec<u32> = (0..10).map(|i| i * i).collect();
    let mut seen = [0; 10];
    let mut printed_by_main = Vec::new();
    for line in stdout.lines() {
        let value: u32 = line
            .parse()
            .map_err(|_| format!("not a number: {line:?}"))?;
        let task = squares
            .iter()
            .position(|&s| s == value)
            .ok_or_else(|| format!("{value} is not a square of 0..10"))?;
        seen[task] += 1;
        match seen[task] {
            1 => {}
            2 => printed_by_main.push(task),
            _ => return Err(format!("{value} printed more than twice")),
        }
    }
    if seen != [2; 10] {
        return Err(format!("each square twice, but the counts are {seen:?}"));
    }
    if !printed_by_main.is_sorted() {
        return Err(format!(
            "main printed the results out of order: {printed_by_main:?}"
        ));
    }
    Ok(())
}

/// Python's print writes a line's text and its newline separately; with unbuffered
/// output (PYTHONUNBUFFERED), lines of two processes can run together, as `09` and an
/// empty line. Such a run is checked for its characters only.
fn legal_python_async_order(stdout: &str) -> Result<(), String> {
    if !stdout.lines().any(str::is_empty) {
        return legal_async_order(stdout);
    }
    let chars = |text: &str| {
        let mut c: Vec<char> = text.chars().filter(|c| *c != '\n').collect();
        c.sort();
        c
    };
    let expected: String = (0..10).map(|i| format!("{0}\n{0}\n", i * i)).collect();
    (chars(stdout) == chars(&expected))
        .then_some(())
        .ok_or_else(|| format!("not the squares twice each: {stdout:?}"))
}

#[test]
fn async_pool_prints_the_golden_lines_in_a_legal_order() {
    repeat(|| {
        let out = async_pool(SHORT);
        assert_eq!(out.stderr, "");
        legal_async_order(&out.stdout).unwrap();
        assert_golden(
            &out.stdout,
            snapbox::file!["golden/async_pool.stdout"].unordered(),
        );
    });
}

#[test]
fn the_golden_file_itself_is_a_legal_order() {
    let golden = snapbox::file!["golden/async_pool.stdout"]
        .into_data()
        .render()
        .unwrap();
    legal_async_order(&golden).unwrap();
}

#[test]
fn illegal_orders_are_rejected() {
    let legal: String = (0..10).map(|i| format!("{0}\n{0}\n", i * i)).collect();
    legal_async_order(&legal).unwrap();
    // main's results out of order
    let swapped = legal.replacen("0\n0\n1\n1\n", "0\n1\n1\n0\n", 1);
    assert!(legal_async_order(&swapped).is_err());
    // a square missing, one printed three times, a stranger, lines run together
    assert!(legal_async_order(&legal.replacen("81\n", "", 1)).is_err());
    assert!(legal_async_order(&format!("{legal}4\n")).is_err());
    assert!(legal_async_order(&legal.replacen("9\n", "10\n", 1)).is_err());
    assert!(legal_async_order(&legal.replacen("0\n1\n", "01\n\n", 1)).is_err());
}

#[test]
fn apply_prints_each_square_then_its_result() {
    repeat(|| {
        let out = apply(SHORT);
        assert_eq!(out.stderr, "");
        assert_golden(&out.stdout, snapbox::file!["golden/apply.stdout"]);
    });
}

/// Both originals sleep 1 s a call, as the Rust binaries do by default. Each original runs
/// under each default start method (forkserver is Python 3.14's). All six run at once, and
/// this test takes about 10 s.
#[test]
fn prints_what_the_python_originals_print() {
    let (rust_async, rust_apply, pythons) = std::thread::scope(|s| {
        let rust_async = s.spawn(|| async_pool(&[]));
        let rust_apply = s.spawn(|| apply(&[]));
        let pythons = StartDefault::ALL.map(|default| {
            let python_async = s.spawn(move || python("async_pool.py", default));
            let python_apply = s.spawn(move || python("apply_sync.py", default));
            (default, python_async, python_apply)
        });
        (
            rust_async.join().unwrap(),
            rust_apply.join().unwrap(),
            pythons.map(|(default, python_async, python_apply)| {
                let python_async = python_async.join().unwrap();
                (default, python_async, python_apply.join().unwrap())
            }),
        )
    });
    legal_async_order(&rust_async.stdout).unwrap();
    let apply_golden = snapbox::file!["golden/apply.stdout"]
        .into_data()
        .render()
        .unwrap();
    assert_eq!(rust_apply.stdout, apply_golden);
    for (default, python_async, python_apply) in pythons {
        let (Some(python_async), Some(python_apply)) = (python_async, python_apply) else {
            return;
        };
        assert_eq!(
            python_async.stderr,
            "",
            "with {} as the default start method",
            default.name()
        );
        legal_python_async_order(&python_async.stdout)
            .unwrap_or_else(|e| panic!("with {} as the default start method: {e}", default.name()));
        assert_eq!(
            python_apply.stdout,
            rust_apply.stdout,
            "with {} as the default start method",
            default.name()
        );
    }
}

#[test]
fn refuses_unknown_arguments_and_nonsense_sleeps() {
    for (bin, usage) in [
        (
            env!("CARGO_BIN_EXE_async-pool"),
            "usage: cargo run -p async-pool [-- --sleep SECONDS]",
        ),
        (
            env!("CARGO_BIN_EXE_apply"),
            "usage: cargo run -p async-pool --bin apply [-- --sleep SECONDS]",
        ),
    ] {
        let mut cmd = Command::new(bin);
        cmd.arg("--fast");
        assert_usage_error(cmd, &["unknown argument '--fast'", usage]);
        let mut cmd = Command::new(bin);
        cmd.args(["--sleep", "-3"]);
        assert_usage_error(
            cmd,
            &[
                "--sleep takes seconds from 0 to 60, as in 0.05; not '-3'",
                usage,
            ],
        );
        let mut cmd = Command::new(bin);
        cmd.arg("--sleep");
        assert_usage_error(cmd, &["--sleep needs a number of seconds", usage]);
        // Not UTF-8: refused as unknown, where `std::env::args` would panic.
        let mut cmd = Command::new(bin);
        cmd.arg(std::ffi::OsStr::from_bytes(b"--\xff"));
        assert_usage_error(cmd, &["unknown argument '--\u{fffd}'", usage]);
    }
}

#[test]
fn an_interrupt_of_async_pool_ends_every_child_and_leaves_nothing() {
    assert_interrupts_are_clean(|| Command::new(env!("CARGO_BIN_EXE_async-pool")));
}

#[test]
fn an_interrupt_of_apply_ends_every_child_and_leaves_nothing() {
    assert_interrupts_are_clean(|| Command::new(env!("CARGO_BIN_EXE_apply")));
}

#[test]
fn help_says_what_it_shows() {
    assert_help(
        Command::new(env!("CARGO_BIN_EXE_async-pool")),
        "Section 7: ten apply_async",
    );
    let apply = Command::new(env!("CARGO_BIN_EXE_apply"));
    assert_help(apply, "Section 7: ten synchronous apply calls");
}

#[test]
fn a_stdout_that_cannot_be_written_is_a_one_line_error() {
    // The workers print first: `f` panics, and `get` returns that as the task's error, which
    // ends the program with status 1, as Python's `get` raises the worker's exception.
    for bin in [
        env!("CARGO_BIN_EXE_async-pool"),
        env!("CARGO_BIN_EXE_apply"),
    ] {
        assert_unprintable_is_clear(
            || {
                let mut cmd = Command::new(bin);
                cmd.args(SHORT);
                cmd
            },
            1,
        );
    }
}
