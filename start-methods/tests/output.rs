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

const METHODS: [&str; 3] = ["fork", "spawn", "forkserver"];

fn start_methods() -> Command {
    Command::new(env!("CARGO_BIN_EXE_start-methods"))
}

/// What one method's part of the output says: (method, main's (parent, pid), the child's
/// (parent, pid), the child's module name).
type Part = (String, (u32, u32), (u32, u32), String);

fn parts(stdout: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    for block in stdout.split("start method: ").skip(1) {
        let method = block.lines().next().unwrap_or_default().to_owned();
        let values = |prefix: &str| -> Vec<String> {
            block
                .lines()
                .filter_map(|line| line.strip_prefix(prefix).map(str::to_owned))
                .collect()
        };
        let number = |s: &String| s.parse::<u32>().expect("a pid");
        let parents: Vec<u32> = values("parent process: ").iter().map(number).collect();
        let own: Vec<u32> = values("process id: ").iter().map(number).collect();
        let modules = values("module name: ");
        assert_eq!(
            (parents.len(), own.len(), modules.len()),
            (2, 2, 2),
            "two processes print their ids under {method}:\n{block}"
        );
        parts.push((
            method,
            (parents[0], own[0]),
            (parents[1], own[1]),
            modules[1].clone(),
        ));
    }
    parts
}

/// Under every method main is the process this test started; the child is a new process,
/// whose parent is main under fork and spawn, and another process (the server) under
/// forkserver.
fn assert_ids_are_related(run: &Run) {
    let parts = parts(&run.stdout);
    let methods: Vec<&str> = parts.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(methods, METHODS, "the methods, in order:\n{}", run.stdout);
    for (method, main, child, _) in &parts {
        assert_eq!(
            *main,
            (std::process::id(), run.pid),
            "{method}: main line ids"
        );
        assert_ne!(
            child.1, main.1,
            "{method}: the child is a process of its own"
        );
        if method == "forkserver" {
            assert_ne!(
                child.0, main.1,
                "forkserver: the child's parent is the server"
            );
            assert_ne!(
                child.0, main.0,
                "forkserver: the child's parent is the server"
            );
        } else {
            assert_eq!(child.0, main.1, "{method}: the child's parent is main");
        }
    }
}

#[test]
fn prints_the_golden_output() {
    repeat(|| {
        let out = run(start_methods()).success();
        assert_golden(
            &redact_pids(&out.stdout),
            snapbox::file!["golden/start_methods.stdout"],
        );
        assert_eq!(out.stderr, "");
    });
}

#[test]
fn each_child_has_the_parent_its_method_gives() {
    assert_ids_are_related(&run(start_methods()).success());
}

/// In a pid namespace of its own, main is pid 1 and the processes it makes are numbered in
/// the order it makes them: the fork child 2, the spawned child 3, the fork server 4 and its
/// child 5. So each child's printed ids are its own and its real parent's, not merely
/// different from main's (a child that printed any other number would pass the test above,
/// and fail here).
#[test]
fn each_child_prints_its_own_ids() {
    let Some(cmd) = in_new_pid_namespace(Path::new(env!("CARGO_BIN_EXE_start-methods"))) else {
        return;
    };
    let run = run(cmd).success();
    let parts = parts(&run.stdout);
    let ids: Vec<_> = parts
        .iter()
        .map(|(method, main, child, _)| (method.as_str(), *main, *child))
        .collect();
    assert_eq!(
        ids,
        [
            ("fork", (0, 1), (1, 2)),
            ("spawn", (0, 1), (1, 3)),
            ("forkserver", (0, 1), (4, 5)),
        ],
        "{}",
        run.stdout
    );
}

/// Started by a parent that ignores SIGCHLD, which `exec` passes on: each method's child,
/// the method alone, is still joined with its status. (`join` failed with ECHILD.)
#[test]
fn each_method_works_with_sigchld_ignored() {
    use std::os::unix::process::CommandExt;
    for method in METHODS {
        let mut cmd = start_methods();
        cmd.arg(method);
        // SAFETY: between fork and exec, one signal(2) call, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGCHLD, libc::SIG_IGN);
                Ok(())
            })
        };
        let out = run(cmd).success();
        assert_eq!(out.stderr, "", "{method}");
        assert_eq!(parts(&out.stdout).len(), 1, "{method}: {}", out.stdout);
    }
}

#[test]
fn one_method_alone() {
    for method in METHODS {
        let mut cmd = start_methods();
        cmd.arg(method);
        let out = run(cmd).success();
        let parts = parts(&out.stdout);
        assert_eq!(parts.len(), 1, "{method} alone:\n{}", out.stdout);
        assert_eq!(parts[0].0, method);
    }
}

#[test]
fn prints_what_the_python_original_prints() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/start_methods.py");
    // The original names each method, so it prints the same whatever the default is.
    check_python(&script, &[], |python| {
        assert_ids_are_related(&python);
        // Python's child imports the main module again under spawn and forkserver, as
        // `__mp_main__`; a forked child is a copy of `__main__`.
        let modules: Vec<String> = parts(&python.stdout).into_iter().map(|p| p.3).collect();
        assert_eq!(modules, ["__main__", "__mp_main__", "__mp_main__"]);
        let rust = run(start_methods()).success();
        assert_eq!(normalise(&rust.stdout), normalise(&python.stdout));
    });
}

#[test]
fn refuses_arguments_with_usage() {
    let mut cmd = start_methods();
    cmd.arg("vfork");
    assert_usage_error(
        cmd,
        &[
            "unknown argument 'vfork'",
            "usage: cargo run -p start-methods",
        ],
    );
}

#[test]
fn help_says_what_it_shows() {
    assert_help(
        start_methods(),
        "Beyond the article: f('bob') started by each start method",
    );
}

/// Run by hand, with stdin as the test's or closed (the fork server failed on its closed
/// stdin with `fcntl: Bad file descriptor` and status 1).
#[test]
fn a_started_child_run_by_hand_says_it_is_not_for_that() {
    for flag in ["--multiprocessing-fork", "--multiprocessing-forkserver"] {
        for closed in [false, true] {
            let mut cmd = start_methods();
            cmd.arg(flag);
            if closed {
                use std::os::unix::process::CommandExt;
                // SAFETY: close is async-signal-safe and touches no memory.
                unsafe {
                    cmd.pre_exec(|| {
                        libc::close(0);
                        Ok(())
                    })
                };
            }
            let out = run(cmd);
            let how = if closed { ", stdin closed" } else { "" };
            assert_eq!(out.status.code(), Some(2), "{flag} by hand{how}: {out:?}");
            assert!(
                out.stderr.contains("it is not run by hand"),
                "{flag} by hand{how} says why: {}",
                out.stderr
            );
            assert_eq!(out.stdout, "");
        }
    }
}

#[test]
fn an_interrupt_ends_every_child_and_leaves_nothing() {
    // One run goes through the three methods, each child living a millisecond or so; the
    // children of each method, caught while they run, and the fork server are interrupted
    // in `tests/threads.rs` (`an_interrupt_ends_the_owners_children_by_every_method`).
    assert_interrupts_are_clean(start_methods);
}

#[test]
fn a_stdout_that_cannot_be_written_is_a_one_line_error() {
    assert_unprintable_is_clear(|| Command::new(env!("CARGO_BIN_EXE_start-methods")), 101);
}
