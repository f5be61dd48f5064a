//! The example's output: against its golden file, and beside its Python original.

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

use testkit::{
    assert_golden, assert_help, assert_interrupts_are_clean, assert_unprintable_is_clear,
    assert_usage_error, check_python, repeat, run, stdout_of,
};

fn manager() -> String {
    stdout_of(Command::new(env!("CARGO_BIN_EXE_manager")))
}

#[test]
fn prints_the_golden_output() {
    repeat(|| {
        // Insertion order, as Python 3 prints the dict; not the article's Python 2 hash order.
        assert_golden(&manager(), snapbox::file!["golden/manager.stdout"]);
    });
}

#[test]
fn prints_what_the_python_original_prints() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/manager.py");
    check_python(&script, &[], |python| {
        assert_eq!(python.stderr, "");
        assert_eq!(manager(), python.stdout);
    });
}

/// Started by a parent that ignores SIGCHLD, which `exec` passes on (the kernel would reap
/// its children itself): the output is the same, as Python's is, and the status 0. (It was
/// `Error: waitid: No child processes`, status 1: the child's status was lost.)
#[test]
fn prints_the_same_with_sigchld_ignored() {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_manager"));
    // SAFETY: between fork and exec, one signal(2) call, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGCHLD, libc::SIG_IGN);
            Ok(())
        })
    };
    let out = run(cmd).success();
    assert_eq!(out.stderr, "");
    assert_golden(&out.stdout, snapbox::file!["golden/manager.stdout"]);
}

#[test]
fn leaves_no_socket_behind() {
    // A temporary directory of this test's own, so that other tests' managers are not seen.
    let tmp = std::env::temp_dir().join(format!("manager-output-test-{}", std::process::id()));
    std::fs::create_dir(&tmp).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_manager"));
    cmd.env("TMPDIR", &tmp);
    let out = run(cmd).success();
    assert_eq!(out.stdout.lines().count(), 2);
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
    std::fs::remove_dir(&tmp).unwrap();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn refuses_arguments_with_usage() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_manager"));
    cmd.arg("--dict");
    assert_usage_error(
        cmd,
        &["unknown argument '--dict'", "usage: cargo run -p manager"],
    );
    // Not UTF-8: refused as unknown, where `std::env::args` would panic.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_manager"));
    cmd.arg(std::ffi::OsStr::from_bytes(b"\xff"));
    assert_usage_error(
        cmd,
        &["unknown argument '\u{fffd}'", "usage: cargo run -p manager"],
    );
}

/// An owner that ignores SIGTERM (or catches it) gives its server the same disposition at
/// fork: the manager's end must not rest on SIGTERM, or it waits for ever.
#[test]
fn ends_when_its_owner_ignores_sigterm() {
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "trap '' TERM; exec \"$0\"",
        env!("CARGO_BIN_EXE_manager"),
    ]);
    assert_golden(&stdout_of(cmd), snapbox::file!["golden/manager.stdout"]);
}

#[test]
fn an_interrupt_ends_every_child_and_leaves_nothing() {
    assert_interrupts_are_clean(|| Command::new(env!("CARGO_BIN_EXE_manager")));
}

/// The example run with at most `limit` descriptors: `ulimit -n`, then the example itself.
fn manager_with_descriptors(limit: u32) -> testkit::Run {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", r#"ulimit -n "$1" && exec "$0""#])
        .arg(env!("CARGO_BIN_EXE_manager"))
        .arg(limit.to_string());
    // `run` kills it and fails if it hangs, and fails if it leaves a process or a file.
    run(cmd)
}

#[test]
fn out_of_descriptors_is_a_clear_error() {
    let run = manager_with_descriptors(5);
    assert_eq!(run.status.code(), Some(1), "{run:?}");
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        "Error: the manager's server is out of file descriptors \
         (accept: Too many open files (os error 24))\n"
    );
}

#[test]
fn every_descriptor_limit_gives_a_clear_error_or_the_whole_output() {
    let golden = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/manager.stdout"),
    )
    .unwrap();
    // What Python prints too when its child raised: the dict and the list untouched.
    let untouched = "{}\n[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n";
    let refused = "Error: the manager's server is out of file descriptors \
                   (accept: Too many open files (os error 24))\n";
    let mut full_runs = 0;
    // Below 4, the dynamic loader itself has no descriptor for the program's libraries.
    for limit in 4..=12 {
        let run = manager_with_descriptors(limit);
        if run.status.success() && run.stderr.is_empty() {
            assert_eq!(run.stdout, golden, "limit {limit}");
            full_runs += 1;
        } else if run.status.success() {
            // Room for the parent's connection and not the child's: the child fails with
            // the error, and main goes on, as Python's does, and prints what it finds.
            assert_eq!(
                (run.stdout.as_str(), run.stderr.as_str()),
                (untouched, refused)
            );
        } else {
            assert_eq!(run.status.code(), Some(1), "limit {limit}: {run:?}");
            assert_eq!(run.stdout, "", "limit {limit}");
            assert!(
                run.stderr.lines().all(|l| l.starts_with("Error: ")) && !run.stderr.is_empty(),
                "limit {limit}: {}",
                run.stderr
            );
        }
    }
    assert!(full_runs > 0, "no limit from 4 to 12 was enough");
}

#[test]
fn help_says_what_it_shows() {
    assert_help(
        Command::new(env!("CARGO_BIN_EXE_manager")),
        "Section 6: a Manager",
    );
}

#[test]
fn a_stdout_that_cannot_be_written_is_a_one_line_error() {
    assert_unprintable_is_clear(|| Command::new(env!("CARGO_BIN_EXE_manager")), 101);
}
