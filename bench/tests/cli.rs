//! The bench as CI runs it: `--quick` runs every workload once, with small counts, and
//! every check inside them holds; its table and chart come out whole. No time is asserted.

use std::path::Path;
use std::process::Command;

use testkit::{assert_usage_error, python3, run};

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

/// The workload measured without a bare twin.
const NO_TWIN: &str = WORKLOADS[9];

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
            assert_eq!(cells.len(), if idle { 6 } else { 4 }, "{cells:?}");
            // Rust and its twin are measured everywhere, Python on idle cores: figures, not "-".
            let measured = match (idle, with_python) {
                (true, true) => &cells[1..4],
                (true, false) => &cells[2..4],
                (false, _) => &cells[1..3],
            };
            let twin = if idle { 3 } else { 2 };
            for (i, cell) in measured.iter().enumerate() {
                // The fork server's row has no twin (a bare one would be the same server).
                if workload == NO_TWIN && std::ptr::eq(cell, &cells[twin]) {
                    assert_eq!(*cell, "-", "{condition}, {workload}: {cells:?} ({i})");
                    continue;
                }
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
    assert!(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("python/bench.py")
            .is_file()
    );
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
