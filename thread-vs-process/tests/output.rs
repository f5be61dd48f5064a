//! The example's output: against its golden files, and beside its two Python originals.
//!
//! The threads' lines come in an order that varies: `[3]`, `[3, 0]`, ... is as legal as
//! `[0]`, `[0, 1]`, ... What must hold is that the threads grew one list: each line is the
//! line before plus one number, and the last holds 0 to 9 once each. Once that is checked,
//! every number is renamed after its place in the last line, so any legal run reads as the
//! golden `[0]`, `[0, 1]`, ... The processes' lines are compared in any order.

// The workspace's test harness, included by path rather than named as a dependency: a copy
// of this section without `testkit/` still builds and runs (its tests need `testkit/` too).
#[path = "../../testkit/src/lib.rs"]
#[allow(dead_code, unused_imports)]
mod testkit;

use std::path::Path;
use std::process::Command;

use snapbox::{Data, IntoData};
use testkit::{
    assert_golden, assert_help, assert_interrupts_are_clean, assert_unprintable_is_clear,
    assert_usage_error, check_golden, check_python, normalise, repeat, run, stdout_of,
    with_stderr_full,
};

fn example(args: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_thread-vs-process"));
    cmd.args(args);
    normalise(&stdout_of(cmd))
}

fn threads_golden() -> Data {
    snapbox::file!["golden/threads.stdout"].into_data()
}

fn processes_golden() -> Data {
    snapbox::file!["golden/processes.stdout"].unordered()
}

fn parse_list(line: &str) -> Result<Vec<i64>, String> {
    let inner = line
        .strip_prefix('[')
        .and_then(|l| l.strip_suffix(']'))
        .ok_or_else(|| format!("not a list: {line:?}"))?;
    inner
        .split(", ")
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse()
                .map_err(|_| format!("not a list of ints: {line:?}"))
        })
        .collect()
}

/// Checks that `lines` show one list growing by one number a line to a permutation of
/// 0..=9, and returns them with each number renamed after its place in the last line.
fn canonical_threads(lines: &[&str]) -> Result<String, String> {
    let lists = lines
        .iter()
        .map(|line| parse_list(line))
        .collect::<Result<Vec<_>, _>>()?;
    if lists.len() != 10 {
        return Err(format!("{} thread lines, not 10: {lines:?}", lists.len()));
    }
    for (k, list) in lists.iter().enumerate() {
        let before: &[i64] = if k == 0 { &[] } else { &lists[k - 1] };
        if list.len() != k + 1 || !list.starts_with(before) {
            return Err(format!(
                "line {} is not the line before plus one number, so the threads did not \
                 share one list: {lines:?}",
                k + 1
            ));
        }
    }
    let last = &lists[9];
    let mut sorted = last.clone();
    sorted.sort();
    if sorted != (0..10).collect::<Vec<_>>() {
        return Err(format!("the last list is not 0 to 9 once each: {last:?}"));
    }
    // Each line is a prefix of the last one, so renamed it reads [0, 1, ..., k].
    let canonical = lists
        .iter()
        .map(|list| {
            let renamed = (0..list.len()).map(|i| i.to_string()).collect::<Vec<_>>();
            format!("[{}]\n", renamed.join(", "))
        })
        .collect();
    Ok(canonical)
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn threads_share_one_list() {
    repeat(|| {
        let out = example(&["threads"]);
        let canonical = canonical_threads(&lines(&out)).unwrap_or_else(|e| panic!("{e}"));
        assert_golden(&canonical, threads_golden());
    });
}

#[test]
fn processes_each_append_to_their_own_copy() {
    repeat(|| {
        assert_golden(&example(&["processes"]), processes_golden());
    });
}

#[test]
fn without_arguments_prints_threads_then_processes() {
    repeat(|| {
        let run = run(Command::new(env!("CARGO_BIN_EXE_thread-vs-process"))).success();
        assert_eq!(
            run.stderr,
            "== threads (thread_share.py): ten threads, one list\n\
             == processes (process_no_share.py): ten processes, a list each\n"
        );
        let out = normalise(&run.stdout);
        let all = lines(&out);
        assert_eq!(all.len(), 20, "{out}");
        let canonical = canonical_threads(&all[..10]).unwrap_or_else(|e| panic!("{e}"));
        assert_golden(&canonical, threads_golden());
        assert_golden(&(all[10..].join("\n") + "\n"), processes_golden());
    });
}

/// A stderr that cannot be written loses the marks between the halves, not the run: the
/// same twenty lines on stdout, status 0 (`eprintln!` panicked before the first: 101).
#[test]
fn a_stderr_that_cannot_be_written_loses_only_the_marks() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_thread-vs-process"));
    with_stderr_full(&mut cmd);
    let out = normalise(&stdout_of(cmd));
    let all = lines(&out);
    assert_eq!(all.len(), 20, "{out}");
    let canonical = canonical_threads(&all[..10]).unwrap_or_else(|e| panic!("{e}"));
    assert_golden(&canonical, threads_golden());
    assert_golden(&(all[10..].join("\n") + "\n"), processes_golden());
}

#[test]
fn wrong_ports_fail_the_checks() {
    // Threads that did not share: each printed a list of its own.
    let unshared = (0..10).map(|i| format!("[{i}]")).collect::<Vec<_>>();
    let unshared = unshared.iter().map(String::as_str).collect::<Vec<_>>();
    assert!(canonical_threads(&unshared).is_err());
    // Threads whose lines were printed apart from their append: a list seen twice.
    let mut twice = (1..=10)
        .map(|n| format!("{:?}", (0..n).collect::<Vec<_>>()))
        .collect::<Vec<_>>();
    twice[1] = twice[2].clone();
    let twice = twice.iter().map(String::as_str).collect::<Vec<_>>();
    assert!(canonical_threads(&twice).is_err());
    // The right lines, but out of turn: one printed after a later append.
    let mut late = (1..=10)
        .map(|n| format!("{:?}", (0..n).collect::<Vec<_>>()))
        .collect::<Vec<_>>();
    late.swap(3, 4);
    let late = late.iter().map(String::as_str).collect::<Vec<_>>();
    assert!(canonical_threads(&late).is_err());
    // Processes that shared one list, as threads do.
    let shared = (1..=10)
        .map(|n| format!("{:?}\n", (0..n).collect::<Vec<_>>()))
        .collect::<String>();
    assert!(check_golden(&shared, processes_golden()).is_err());
    // A process line twice and another missing.
    let doubled = "[0]\n[0]\n[2]\n[3]\n[4]\n[5]\n[6]\n[7]\n[8]\n[9]\n";
    assert!(check_golden(doubled, processes_golden()).is_err());
    // And the right lines in another order pass.
    let reversed = (0..10)
        .rev()
        .map(|i| format!("[{i}]\n"))
        .collect::<String>();
    assert!(check_golden(&reversed, processes_golden()).is_ok());
}

#[test]
fn refuses_unknown_arguments_with_usage() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_thread-vs-process"));
    cmd.arg("thread");
    assert_usage_error(cmd, &["unknown argument 'thread'", "threads | processes"]);
}

/// Runs `check` on a Python original's lines, pulled apart where they ran together, under
/// each default start method.
///
/// Python's `print` writes the text and the newline apart, so when stdout is unbuffered
/// (`PYTHONUNBUFFERED`, or a pipe in some runs) a thread or process can write between the
/// two: `[0, 1, 2, 3][0, 1, 2]` and then an empty line. That is allowed on the Python side
/// only; the Rust lines must come whole, and in the order of the appends.
fn python_lines(script: &str, mut check: impl FnMut(Vec<String>)) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(script);
    check_python(&path, &[], |run| {
        let out = normalise(&run.stdout).replace("][", "]\n[");
        check(
            out.lines()
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect(),
        );
    });
}

#[test]
fn threads_print_what_thread_share_py_prints() {
    python_lines("thread_share.py", |mut py| {
        // Pulled apart, Python's lines can also be out of turn ([0, 1, 2, 3] before
        // [0, 1, 2]): each is still a snapshot of the one shared list, so they are put back
        // in the order the list grew before the same check as Rust's.
        py.sort_by_key(|line| line.matches(", ").count());
        let py = py.iter().map(String::as_str).collect::<Vec<_>>();
        let py = canonical_threads(&py).unwrap_or_else(|e| panic!("Python: {e}"));
        let rust = example(&["threads"]);
        let rust = canonical_threads(&lines(&rust)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rust, py);
    });
}

#[test]
fn processes_print_what_process_no_share_py_prints() {
    python_lines("process_no_share.py", |mut py| {
        let rust = example(&["processes"]);
        let mut rust = lines(&rust);
        rust.sort();
        py.sort();
        assert_eq!(rust, py);
    });
}

#[test]
fn an_interrupt_ends_every_child_and_leaves_nothing() {
    // The processes alone: with both halves, stderr holds the marks of the halves.
    assert_interrupts_are_clean(|| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_thread-vs-process"));
        cmd.arg("processes");
        cmd
    });
}

/// A thread that cannot be started (here: a stack larger than memory, asked for through
/// `RUST_MIN_STACK`; `ulimit -u` does the same to a user that is not root) is an error with
/// exit status 1, as every example reports a failed OS call, not a panic.
#[test]
fn a_thread_that_cannot_start_is_an_error() {
    for args in [&["threads"][..], &[]] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_thread-vs-process"));
        cmd.args(args)
            .env("RUST_MIN_STACK", (1u64 << 40).to_string());
        let out = testkit::run(cmd);
        assert_eq!(out.status.code(), Some(1), "stderr:\n{}", out.stderr);
        // After the mark of the threads' half, when both halves run.
        let error = out.stderr.lines().last().unwrap_or_default();
        assert!(
            error.starts_with("Error: pthread_create: "),
            "stderr:\n{}",
            out.stderr
        );
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
}

#[test]
fn help_says_what_it_shows() {
    assert_help(
        Command::new(env!("CARGO_BIN_EXE_thread-vs-process")),
        "Section 3: ten threads",
    );
}

#[test]
fn a_stdout_that_cannot_be_written_is_a_one_line_error() {
    let part = |part: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_thread-vs-process"));
        cmd.arg(part);
        cmd
    };
    // Each thread that failed says so in a line, and the first thread's panic ends the run.
    assert_unprintable_is_clear(|| part("threads"), 101);
    // Each child that failed says so in a line; the parent, which prints nothing, ends with
    // 0, as Python's does.
    assert_unprintable_is_clear(|| part("processes"), 0);
}
