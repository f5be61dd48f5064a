//! The example's output: against its golden file, beside its Python original, and the
//! counter that shows why `+=` needs the value's lock.

// The workspace's test harness, included by path rather than named as a dependency: a copy
// of this section without `testkit/` still builds and runs (its tests need `testkit/` too).
#[path = "../../testkit/src/lib.rs"]
#[allow(dead_code, unused_imports)]
mod testkit;

use std::path::Path;
use std::process::Command;

use testkit::{
    assert_golden, assert_help, assert_interrupts_are_clean, assert_unprintable_is_clear,
    assert_usage_error, check_python, repeat, stdout_of,
};

fn shared_value(args: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shared-value"));
    cmd.args(args);
    stdout_of(cmd)
}

/// Runs `check` on the stdout of a Python original, under each default start method.
fn python(script: &str, mut check: impl FnMut(&str)) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(script);
    check_python(&script, &[], |out| {
        assert_eq!(out.stderr, "");
        check(&out.stdout);
    });
}

#[test]
fn prints_the_golden_output() {
    repeat(|| {
        assert_golden(
            &shared_value(&[]),
            snapbox::file!["golden/shared_value.stdout"],
        );
    });
}

#[test]
fn prints_what_the_python_original_prints() {
    python("shared_value.py", |python| {
        assert_eq!(shared_value(&[]), python);
    });
}

/// The two counter lines: (without get_lock, with get_lock).
fn counts(stdout: &str) -> (u32, u32) {
    let lines: Vec<&str> = stdout.lines().collect();
    let count = |line: &str, label: &str| -> u32 {
        line.strip_prefix(label)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("expected {label:?} and a count, got {line:?}"))
    };
    assert_eq!(lines.len(), 2, "two lines: {stdout:?}");
    (
        count(lines[0], "without get_lock: "),
        count(lines[1], "with get_lock: "),
    )
}

#[test]
fn the_counter_is_exact_under_get_lock() {
    repeat(|| {
        let (unlocked, locked) = counts(&shared_value(&["counter"]));
        assert_eq!(locked, 200_000);
        // Lost updates are likely, not certain: only the bound is asserted.
        assert!(unlocked <= 200_000, "{unlocked}");
    });
}

#[test]
fn the_counter_matches_python_where_it_is_determined() {
    python("counter.py", |python| {
        let (python_unlocked, python_locked) = counts(python);
        assert_eq!(python_locked, 200_000);
        assert!(python_unlocked <= 200_000);
    });
}

#[test]
fn refuses_unknown_arguments_with_usage() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shared-value"));
    cmd.arg("count");
    assert_usage_error(
        cmd,
        &[
            "unknown argument 'count'",
            "usage: cargo run -p shared-value [-- counter]",
        ],
    );
}

#[test]
fn an_interrupt_ends_every_child_and_leaves_nothing() {
    assert_interrupts_are_clean(|| Command::new(env!("CARGO_BIN_EXE_shared-value")));
}

#[test]
fn help_says_what_it_shows() {
    assert_help(
        Command::new(env!("CARGO_BIN_EXE_shared-value")),
        "Section 5: a child changes",
    );
}

#[test]
fn a_stdout_that_cannot_be_written_is_a_one_line_error() {
    assert_unprintable_is_clear(|| Command::new(env!("CARGO_BIN_EXE_shared-value")), 101);
}
