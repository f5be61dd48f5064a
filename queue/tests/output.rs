//! The example's output: against its golden file, and beside its Python original. The ten
//! items come in any order, so both are compared as sets of lines.

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
    assert_usage_error, check_golden, check_python, repeat, sorted_lines, stdout_of,
};

fn queue() -> String {
    stdout_of(Command::new(env!("CARGO_BIN_EXE_queue")))
}

fn golden() -> snapbox::Data {
    snapbox::file!["golden/queue_demo.stdout"].unordered()
}

#[test]
fn prints_the_golden_output_in_any_order() {
    repeat(|| {
        assert_golden(&queue(), golden());
    });
}

#[test]
fn the_golden_check_rejects_a_lost_or_doubled_item() {
    let doubled = "[0, 'hello']\n[1, 'hello']\n[2, 'hello']\n[3, 'hello']\n[4, 'hello']\n\
                   [5, 'hello']\n[6, 'hello']\n[7, 'hello']\n[8, 'hello']\n[8, 'hello']\n";
    assert!(check_golden(doubled, golden().into_data()).is_err());
    let tuple = doubled.replace("[8, 'hello']\n[8", "[8, 'hello']\n(9");
    assert!(check_golden(&tuple, golden().into_data()).is_err());
}

#[test]
fn prints_what_the_python_original_prints() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/queue_demo.py");
    check_python(&script, &[], |python| {
        assert_eq!(python.stderr, "");
        // Only the main process prints, one line at a time: Python's lines are whole too.
        assert_golden(&python.stdout, golden());
        assert_eq!(sorted_lines(&queue()), sorted_lines(&python.stdout));
    });
}

#[test]
fn refuses_arguments_with_usage() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_queue"));
    cmd.arg("10");
    assert_usage_error(cmd, &["unknown argument '10'", "usage: cargo run -p queue"]);
}

#[test]
fn an_interrupt_ends_every_child_and_leaves_nothing() {
    assert_interrupts_are_clean(|| Command::new(env!("CARGO_BIN_EXE_queue")));
}

#[test]
fn help_says_what_it_shows() {
    assert_help(
        Command::new(env!("CARGO_BIN_EXE_queue")),
        "Section 3: ten processes put",
    );
}

#[test]
fn a_stdout_that_cannot_be_written_is_a_one_line_error() {
    assert_unprintable_is_clear(|| Command::new(env!("CARGO_BIN_EXE_queue")), 101);
}
