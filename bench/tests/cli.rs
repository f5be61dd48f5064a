//! The bench as CI runs it: `--quick` runs every workload once, with small counts, and
//! every check inside them holds; its table and chart come out whole. No time is asserted.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

use testkit::{Unwritable, assert_usage_error, python3, run, run_unwritable};

const WORKLOADS: [&str; 10] = [
    "1. start and join an empty process",
    "2. `map`",
    "3. `apply`",
    "4. `apply_async`",
    "5. queue",
    "6. lock",
    "7. `Value`",
    "8. manager",
    "9. start and join an empty process by spawn",
    "10. start and join an empty process by a fork server",
];

fn bench(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bench"));
    cmd.args(args);
    cmd
}

/// The cells of the table row that starts with `start`.
fn row<'a>(table: &'a str, start: &str) -> Vec<&'a str> {
    let line = table
        .lines()
        .find(|l| l.starts_with(&format!("| {start}")))
        .unwrap_or_else(|| panic!("no row for {start:?} in:\n{table}"));
    line.trim_matches('|').split(" | ").map(str::trim).collect()
}

/// The workloads that have a peer, by their row's start, and the peer's name in the table.
#[cfg(feature = "peers")]
const PEERS: [(&str, &str); 5] = [
    ("1. start and join an empty process", "(procspawn)"),
    ("3. `apply`", "(procspawn's Pool)"),
    ("5. queue", "(ipc-channel)"),
    ("6. lock", "(raw_sync)"),
    ("8. manager", "(ipc-channel)"),
];

/// With the peers, each table has two columns more: the peer's ops/s and Rust / peer.
const PEER_COLUMNS: usize = if cfg!(feature = "peers") { 2 } else { 0 };

const CONDITIONS: [&str; 3] = ["two idle cores", "one CPU for all", "two busy loops beside"];

/// The table that follows the condition's heading.
fn table<'a>(out: &'a str, condition: &str) -> &'a str {
    let heading = format!("**{condition}**");
    let start = out
        .find(&heading)
        .unwrap_or_else(|| panic!("no table for {condition} in:\n{out}"));
    let rest = &out[start + heading.len()..];
    &rest[..rest.find("**").unwrap_or(rest.len())]
}

#[test]
fn quick_runs_every_workload_in_every_condition_and_prints_the_tables() {
    let with_python = python3("the Python column of the bench").is_some();
    // Writes nothing: the run fails if it leaves a file in its directory.
    let out = run(bench(&["--quick"]));
    assert!(out.status.success(), "stderr:\n{}", out.stderr);
    assert!(
        out.stderr.contains("round 1 of 1"),
        "progress goes to stderr"
    );
    for condition in CONDITIONS {
        let table = table(&out.stdout, condition);
        let idle = condition == CONDITIONS[0];
        for workload in WORKLOADS {
            let cells = row(table, workload);
            assert_eq!(
                cells.len(),
                PEER_COLUMNS + if idle { 6 } else { 4 },
                "{cells:?}"
            );
            // Rust and its twin are measured everywhere, Python on idle cores: figures, not "-".
            let measured = match (idle, with_python) {
                (true, true) => &cells[1..4],
                (true, false) => &cells[2..4],
                (false, _) => &cells[1..3],
            };
            for cell in measured {
                assert!(
                    cell.starts_with(|c: char| c.is_ascii_digit()),
                    "{condition}, {workload}: {cells:?}"
                );
            }
        }
    }
    // Where a workload has two twins, the table says which one was the faster.
    let apply = row(table(&out.stdout, CONDITIONS[0]), WORKLOADS[2]);
    assert!(apply[3].ends_with("reads)"), "{apply:?}");
    #[cfg(feature = "peers")]
    every_peer_is_measured_in_every_condition(&out.stdout);
}

/// Each peer's figure and its ratio to Rust are in its row of every table, named; the rows
/// of workloads with no peer say so.
#[cfg(feature = "peers")]
fn every_peer_is_measured_in_every_condition(out: &str) {
    assert!(
        out.contains("procspawn 1.0.2, ipc-channel 0.23.1, raw_sync 0.1.5"),
        "the peers' crates and versions are named:\n{out}"
    );
    for condition in CONDITIONS {
        for workload in WORKLOADS {
            let cells = row(table(out, condition), workload);
            let [.., peer, ratio] = cells[..] else {
                panic!("{cells:?}")
            };
            match PEERS.iter().find(|(w, _)| workload.starts_with(w)) {
                Some((_, name)) => {
                    assert!(
                        peer.starts_with(|c: char| c.is_ascii_digit()) && peer.ends_with(name),
                        "{condition}, {workload}: {cells:?}"
                    );
                    assert!(
                        ratio.starts_with(|c: char| c.is_ascii_digit()) && ratio.ends_with('x'),
                        "{condition}, {workload}: {cells:?}"
                    );
                }
                None => assert_eq!([peer, ratio], ["no peer", "-"], "{condition}, {workload}"),
            }
        }
    }
}

#[test]
fn the_results_are_written_where_asked() {
    let dir = std::env::temp_dir().join(format!("bench-results-{}", std::process::id()));
    let out = run(bench(&[
        "--quick",
        "--no-python",
        "--out",
        dir.to_str().expect("a UTF-8 path"),
    ]));
    let md = std::fs::read_to_string(dir.join("bench.md"));
    let svg = std::fs::read_to_string(dir.join("bench.svg"));
    std::fs::remove_dir_all(&dir).expect("rm -r");
    assert!(out.status.success(), "stderr:\n{}", out.stderr);
    assert_eq!(md.expect("bench.md"), out.stdout);
    let svg = svg.expect("bench.svg");
    assert!(svg.starts_with("<svg") && svg.contains("Rust, this workspace"));
    assert_eq!(svg.contains("peer crate"), cfg!(feature = "peers"));
    assert!(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("python/bench.py")
            .is_file()
    );
}

#[test]
fn a_stdout_that_cannot_be_written_fails_the_run_but_not_the_results() {
    for unwritable in Unwritable::ALL {
        let dir = std::env::temp_dir().join(format!("bench-unwritable-{}", std::process::id()));
        let out = run_unwritable(
            bench(&[
                "--quick",
                "--no-python",
                "--only",
                "process",
                "--out",
                dir.to_str().expect("a UTF-8 path"),
            ]),
            unwritable,
        );
        let md = std::fs::read_to_string(dir.join("bench.md"));
        std::fs::remove_dir_all(&dir).expect("rm -r");
        assert_eq!(out.status.code(), Some(1), "stderr:\n{}", out.stderr);
        let says = format!("bench: cannot print the tables: {}", unwritable.cause());
        assert!(out.stderr.contains(&says), "stderr:\n{}", out.stderr);
        assert!(
            !out.stderr.contains(" panicked at "),
            "stderr:\n{}",
            out.stderr
        );
        assert!(
            md.expect("bench.md")
                .contains("1. start and join an empty process")
        );
    }
}

#[test]
fn help_says_what_it_measures_and_exits_0() {
    let out = run(bench(&["--help"]));
    assert!(out.status.success(), "stderr:\n{}", out.stderr);
    assert!(
        out.stdout.starts_with("What each mechanism"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("usage: cargo run --release -p bench"));
    assert!(out.stdout.contains("--out DIR"));
    assert_eq!(out.stderr, "");
}

#[test]
fn refuses_unknown_arguments_and_nonsense_rounds() {
    let usage = "usage: cargo run --release -p bench";
    assert_usage_error(bench(&["--fast"]), &["unknown argument '--fast'", usage]);
    assert_usage_error(
        bench(&["--rounds", "0"]),
        &["--rounds takes 1 to 100; not '0'", usage],
    );
    assert_usage_error(bench(&["--out"]), &["--out needs a directory", usage]);
    // Not UTF-8: refused as unknown, where `std::env::args` would panic.
    let mut cmd = bench(&[]);
    cmd.arg(std::ffi::OsStr::from_bytes(b"\xff"));
    assert_usage_error(cmd, &["unknown argument '\u{fffd}'", usage]);
}

/// A directory holding a `python3` that prints `says`, for PATH.
fn fake_python(says: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("bench-fake-python-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let script = dir.join("python3");
    std::fs::write(
        &script,
        format!("#!/bin/sh\n[ \"$1\" = --version ] && echo 'Python 3.0' || echo '{says}'\n"),
    )
    .expect("write the fake python3");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

#[test]
fn missing_python_leaves_its_column_empty_and_a_broken_one_fails() {
    let mut cmd = bench(&["--quick"]);
    cmd.env("PATH", "/nonexistent");
    let out = run(cmd);
    assert!(out.status.success(), "stderr:\n{}", out.stderr);
    assert!(out.stderr.contains("python3 not found"), "{}", out.stderr);
    assert_eq!(row(&out.stdout, WORKLOADS[1])[1], "-");

    let dir = fake_python("not a number");
    let mut cmd = bench(&["--quick"]);
    cmd.env("PATH", &dir);
    let out = run(cmd);
    std::fs::remove_dir_all(&dir).expect("rm -r");
    assert_eq!(out.status.code(), Some(1), "stderr:\n{}", out.stderr);
    assert!(
        out.stderr
            .contains("FAILED map, Python, two idle cores: bench.py map printed \"not a number\\n\", not seconds"),
        "{}",
        out.stderr
    );
}

/// A bench killed while procspawn's children run leaves no process behind: by SIGKILL, which
/// no handler sees, or by SIGTERM, which the bench's handler answers by ending the children it
/// forked, not procspawn's. The kernel kills procspawn's children with the bench (asked for
/// between their fork and their exec); they would also end on their own once their channel
/// closes, as the bench's functions all return at once, so this checks the outcome, not which
/// of the two brought it.
#[cfg(feature = "peers")]
#[test]
fn a_bench_killed_while_procspawn_children_run_leaves_no_process() {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    for signal in [libc::SIGKILL, libc::SIGTERM] {
        let mut cmd = bench(&["--quick", "--no-python"]);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: runs in the forked child before exec, and calls only setsid, which is
        // async-signal-safe: the bench and everything it starts are one session.
        unsafe {
            cmd.pre_exec(|| {
                (libc::setsid() >= 0)
                    .then_some(())
                    .ok_or_else(std::io::Error::last_os_error)
            })
        };
        let mut bench = cmd.spawn().expect("run the bench");
        let pid = bench.id();
        let deadline = Instant::now() + Duration::from_secs(60);
        let spawned = loop {
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default();
            let spawned = children.split_whitespace().find(|child| {
                std::fs::read(format!("/proc/{child}/environ"))
                    .is_ok_and(|env| env.windows(9).any(|w| w == b"PROCSPAWN"))
            });
            if let Some(child) = spawned {
                break child.to_owned();
            }
            let ended = bench.try_wait().expect("waitpid").is_some();
            assert!(
                !ended && Instant::now() < deadline,
                "no procspawn child was seen"
            );
        };
        // SAFETY: kill touches no memory; `pid` is our child, not yet reaped.
        unsafe { libc::kill(pid as i32, signal) };
        let status = bench.wait().expect("waitpid");
        assert!(
            status.signal() == Some(signal) || status.success(),
            "the bench ended {status}"
        );
        // The kernel kills the children as the bench dies; whoever adopts them reaps them.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut left = session(pid);
        while !left.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            left = session(pid);
        }
        if !left.is_empty() {
            // SAFETY: kill touches no memory; the group is the session's, made by setsid.
            unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
        }
        assert!(
            left.is_empty(),
            "signal {signal} with procspawn's child {spawned} running left {left:?}"
        );
    }
}

/// The processes of session `sid`, by their `/proc/<pid>/stat` (the session is its sixth field).
#[cfg(feature = "peers")]
fn session(sid: u32) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{name}/stat")).ok()?;
            let (_, rest) = stat.rsplit_once(')')?;
            let session: u32 = rest.split_whitespace().nth(3)?.parse().ok()?;
            (session == sid).then_some(name)
        })
        .collect()
}
