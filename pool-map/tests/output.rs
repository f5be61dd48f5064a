//! The example's output: against its golden file, and beside its Python original.

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

fn pool_map() -> String {
    stdout_of(Command::new(env!("CARGO_BIN_EXE_pool-map")))
}

#[test]
fn prints_the_golden_output() {
    repeat(|| {
        assert_golden(&pool_map(), snapbox::file!["golden/pool_map.stdout"]);
    });
}

#[test]
fn prints_what_the_python_original_prints() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/pool_map.py");
    check_python(&script, &[], |python| {
        assert_eq!(python.stderr, "");
        assert_eq!(pool_map(), python.stdout);
    });
}

#[test]
fn refuses_arguments_with_usage() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pool-map"));
    cmd.arg("5");
    assert_usage_error(
        cmd,
        &["unknown argument '5'", "usage: cargo run -p pool-map"],
    );
}

#[test]
fn an_interrupt_ends_every_child_and_leaves_nothing() {
    assert_interrupts_are_clean(|| Command::new(env!("CARGO_BIN_EXE_pool-map")));
}

#[test]
fn help_says_what_it_shows() {
    assert_help(
        Command::new(env!("CARGO_BIN_EXE_pool-map")),
        "Section 1: Pool(5).map",
    );
}

#[test]
fn a_stdout_that_cannot_be_written_is_a_one_line_error() {
    assert_unprintable_is_clear(|| Command::new(env!("CARGO_BIN_EXE_pool-map")), 101);
}
