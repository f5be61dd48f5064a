//! Spawn from a program whose file was replaced while it ran (rebuilt, say): the child runs
//! the file the program runs, which the kernel keeps, not the new one at its path. This test
//! binary copies itself, runs the copy, replaces the copy's file, and then has the copy
//! start a child by spawn and by a fork server. `harness = false`: the copy is this binary,
//! run with an argument that libtest would not take.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};

use start_methods::{Context, Method};

/// What the copy's children run.
fn entry(_args: &[u8], _fds: Vec<OwnedFd>) -> i32 {
    7
}

/// The copy: waits for a line on stdin (its file has been replaced then), then starts a
/// child by each method and prints how each ended; then again while a guard of shared
/// memory lives (beside which a child forked by other code ends at once: spawn must not
/// fork so).
fn copy() {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).expect("read stdin");
    for guarded in [false, true] {
        let borrow = guarded.then(common::SharedBorrow::new);
        for method in [Method::Spawn, Method::ForkServer] {
            let ended = Context::new(method)
                .and_then(|ctx| ctx.start(entry, Vec::new(), Vec::new()))
                .and_then(|mut child| child.join());
            println!("{method}: {ended:?}");
        }
        drop(borrow);
    }
}

/// A directory removed when this is dropped, whether the test passes or panics.
struct Removed(std::path::PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--copy") {
        return copy();
    }
    let me = std::env::current_exe().expect("this test's path");
    let dir = std::env::temp_dir().join(format!("replaced-executable-{}", std::process::id()));
    std::fs::create_dir(&dir).expect("a directory of its own");
    let _removed = Removed(dir.clone());
    let copy_path = dir.join("copy");
    std::fs::copy(&me, &copy_path).expect("copy this test");
    let mut copy = Command::new(&copy_path)
        .arg("--copy")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the copy");
    // Replaced as a build replaces it: a new file, renamed over the old one's path.
    let new = dir.join("copy.new");
    std::fs::copy(&me, &new).expect("copy again");
    std::fs::rename(&new, &copy_path).expect("replace the copy's file");
    let mut stdin = copy.stdin.take().expect("its stdin");
    stdin.write_all(b"go\n").expect("tell the copy");
    drop(stdin);
    let lines: Vec<String> = BufReader::new(copy.stdout.take().expect("its stdout"))
        .lines()
        .map(|l| l.expect("read the copy's output"))
        .collect();
    let status = copy.wait().expect("wait for the copy");
    assert!(status.success(), "{status}: {lines:?}");
    assert_eq!(
        lines,
        ["spawn: Ok(Exited(7))", "forkserver: Ok(Exited(7))"].repeat(2),
        "a child of a program whose file was replaced"
    );
    println!("test spawn_runs_the_file_the_program_runs ... ok");
}
