//! The example's output: against its golden file, and beside its Python original.

// The workspace's test harness, included by path rather than named as a dependency: a copy
// of this section without `testkit/` still builds and runs (its tests need `testkit/` too).
#[path = "../../testkit/src/lib.rs"]
#[allow(dead_code, unused_imports)]
mod testkit;

use std::path::Path;
use std::process::Command;

use testkit::{
    Run, assert_golden, assert_help, assert_interrupts_are_clean, assert_unprintable_is_clear,
    assert_usage_error, check_python, in_new_pid_namespace, normalise, redact_pids, repeat, run,
};

fn fork_info() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fork-info"))
}

/// The ids that `info` printed, per process: (parent process, process id).
fn ids(stdout: &str) -> Vec<(u32, u32)> {
    let values = |prefix: &str| -> Vec<u32> {
        stdout
            .lines()
            .filter_map(|line| line.strip_prefix(prefix)?.parse().ok())
            .collect()
    };
    let parents = values("parent process: ");
    let own = values("process id: ");
    assert_eq!(parents.len(), own.len(), "unpaired ids in:\n{stdout}");
    parents.into_iter().zip(own).collect()
}

/// The main process was started by this test; its child's parent is the main process.
fn assert_ids_are_related(run: &Run) {
    let ids = ids(&run.stdout);
    assert_eq!(
        ids.len(),
        2,
        "two processes print their ids:\n{}",
        run.stdout
    );
    let (main, child) = (ids[0], ids[1]);
    assert_eq!(main, (std::process::id(), run.pid), "main line ids");
    assert_eq!(child.0, main.1, "the child's parent is the main process");
    assert_ne!(child.1, main.1, "the child is a process of its own");
}

#[test]
fn prints_the_golden_output() {
    repeat(|| {
        let out = run(fork_info()).success();
        assert_golden(
            &redact_pids(&out.stdout),
            snapbox::file!["golden/fork_info.stdout"],
        );
        assert_eq!(out.stderr, "");
    });
}

#[test]
fn the_child_is_a_new_process_whose_parent_is_main() {
    assert_ids_are_related(&run(fork_info()).success());
}

/// In a pid namespace of its own, main is pid 1 and the child it forks first is 2: the ids
/// the child prints are its own, not merely different from main's (a child that printed any
/// other number would fail here, and pass the test above).
#[test]
fn the_child_prints_its_own_ids() {
    let Some(cmd) = in_new_pid_namespace(Path::new(env!("CARGO_BIN_EXE_fork-info"))) else {
        return;
    };
    let run = run(cmd).success();
    assert_eq!(ids(&run.stdout), [(0, 1), (1, 2)], "{}", run.stdout);
}

/// Also where forkserver is the default (Python 3.14): there the child would be the fork
/// server's, and would see the program as `__mp_main__`, had the original not named fork.
#[test]
fn prints_what_the_python_original_prints() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/fork_info.py");
    check_python(&script, &[], |python| {
        assert_ids_are_related(&python);
        // The child is a copy of the main process: its module is `__main__` too.
        assert_eq!(
            python.stdout.matches("module name: __main__\n").count(),
            2,
            "{}",
            python.stdout
        );
        let rust = run(fork_info()).success();
        assert_eq!(normalise(&rust.stdout), normalise(&python.stdout));
    });
}

#[test]
fn refuses_arguments_with_usage() {
    let mut cmd = fork_info();
    cmd.arg("--bogus");
    assert_usage_error(
        cmd,
        &[
            "unknown argument '--bogus'",
            "usage: cargo run -p fork-info",
        ],
    );
}

#[test]
fn an_interrupt_ends_every_child_and_leaves_nothing() {
    assert_interrupts_are_clean(|| Command::new(env!("CARGO_BIN_EXE_fork-info")));
}

#[test]
fn help_says_what_it_shows() {
    assert_help(
        Command::new(env!("CARGO_BIN_EXE_fork-info")),
        "Section 2: a Process is made by fork",
    );
}

#[test]
fn a_stdout_that_cannot_be_written_is_a_one_line_error() {
    assert_unprintable_is_clear(|| Command::new(env!("CARGO_BIN_EXE_fork-info")), 101);
}
