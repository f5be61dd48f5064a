//! The checks every example run goes through must be able to fail: an orphan, a file left
//! behind, and a process that leaves its child running when interrupted are each caught.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::Command;

use testkit::{assert_interrupts_are_clean, run};

fn sh(script: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script]);
    cmd
}

/// The panic message of `f`, which must panic.
fn panic_of(f: impl FnOnce()) -> String {
    let payload = catch_unwind(AssertUnwindSafe(f)).expect_err("the check should have failed");
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => payload.downcast_ref::<&str>().unwrap_or(&"").to_string(),
    }
}

#[test]
fn a_clean_run_passes() {
    let out = run(sh("echo hello")).success();
    assert_eq!(out.stdout, "hello\n");
}

#[test]
fn an_orphan_fails_the_run() {
    let message = panic_of(|| {
        run(sh("sleep 30 & echo started"));
    });
    assert!(
        message.contains("left these processes of its session"),
        "{message}"
    );
}

#[test]
fn a_file_left_in_tmpdir_or_the_working_directory_fails_the_run() {
    for script in ["touch \"$TMPDIR/socket\"", "mkdir leftover"] {
        let message = panic_of(|| {
            run(sh(script)).success();
        });
        assert!(message.contains("left these in its directory"), "{message}");
    }
}

#[test]
fn a_parent_that_dies_without_ending_its_child_fails_the_interrupt_check() {
    // sh dies at SIGINT, and its sleep goes on as an orphan.
    let message = panic_of(|| assert_interrupts_are_clean(|| sh("sleep 30 & wait")));
    assert!(
        message.contains("left these processes of its session"),
        "{message}"
    );
}

#[test]
fn a_run_that_is_never_caught_with_children_fails_the_interrupt_check() {
    let message = panic_of(|| assert_interrupts_are_clean(|| sh("exit 0")));
    assert!(
        message.contains("were interrupted while children ran"),
        "{message}"
    );
}
