//! Start methods in a program with threads: libtest runs each test in a thread of its own,
//! with other tests running beside it, which is where fork is refused and spawn and
//! forkserver must work. (The pool started by each method: `pool-map/tests/start_methods.rs`.)

// The workspace's test harness, included by path rather than named as a dependency.
#[path = "../../testkit/src/lib.rs"]
#[allow(dead_code, unused_imports)]
mod testkit;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{Error, ExitStatus};
use nix::sys::signal::Signal;
use start_methods::{Context, Method, Process, get_context};
use testkit::has_ended;

const THREADED: [Method; 2] = [Method::Spawn, Method::ForkServer];

fn quiet(_: i64) {}

fn sleep_for(seconds: u64) {
    thread::sleep(Duration::from_secs(seconds));
}

fn fails(why: String) -> Result<(), String> {
    Err(why)
}

fn panics(why: String) {
    panic!("{why}");
}

/// Runs `check` with one more thread of this process running beside it.
fn beside_a_thread<T>(check: impl FnOnce() -> T) -> T {
    /// Stops the thread when dropped: when `check` returns, and when it panics.
    struct Stop<'a>(&'a AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(1));
            }
        });
        let _stop = Stop(&stop);
        check()
    })
}

/// Waits (to catch a hang, not to time it) until `pid` has ended.
fn assert_ends(pid: u32, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !has_ended(pid) {
        assert!(Instant::now() < deadline, "{what} ({pid}) still runs");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_process_reports_how_its_target_ended_by_every_method() {
    beside_a_thread(|| {
        // Fork is refused here (libtest's threads run); it is tested in `common`.
        for method in THREADED {
            let ctx = get_context(method).expect("context");
            let run = |mut p: Process| {
                p.start().expect("start");
                p.join().expect("join")
            };
            let ok = Process::new(&ctx, quiet, 3).expect("process");
            assert_eq!(run(ok), ExitStatus::Exited(0), "{method}: returned");
            let err = Process::new(&ctx, fails, "on purpose".to_string()).expect("process");
            assert_eq!(run(err), ExitStatus::Exited(1), "{method}: Err");
            let panic = Process::new(&ctx, panics, "on purpose".to_string()).expect("process");
            assert_eq!(run(panic), ExitStatus::Exited(101), "{method}: panicked");
            let mut sleeper = Process::new(&ctx, sleep_for, 30).expect("process");
            sleeper.start().expect("start");
            assert!(sleeper.is_alive().expect("is_alive"), "{method}: alive");
            sleeper.terminate().expect("terminate");
            let status = sleeper.join().expect("join");
            assert_eq!(
                status,
                ExitStatus::Signaled(Signal::SIGTERM),
                "{method}: terminated"
            );
            assert!(!sleeper.is_alive().expect("is_alive"), "{method}: ended");
            assert!(has_ended(sleeper.pid().expect("pid")), "{method}: reaped");
        }
    });
}

#[test]
fn a_request_too_large_for_one_message_is_refused() {
    let ctx = get_context(Method::Spawn).expect("context");
    let mut p = Process::new(&ctx, |v: Vec<u8>| drop(v), vec![7u8; 100_000]).expect("process");
    assert!(matches!(p.start(), Err(Error::RequestTooLarge { .. })));
}

/// Not a test of its own: the owner that `the_fork_server_and_its_children_end_with_a_killed_owner`
/// starts, as a second run of this test binary. Outside that, it returns at once.
#[test]
fn owner_of_a_fork_server() {
    if std::env::var_os("START_METHODS_OWNER").is_none() {
        return;
    }
    let ctx: Context = get_context(Method::ForkServer).expect("context");
    let mut p = Process::new(&ctx, sleep_for, 60).expect("process");
    p.start().expect("start");
    println!(
        "server {} child {}",
        ctx.server_pid().expect("server"),
        p.pid().expect("pid")
    );
    sleep_for(60);
}

#[test]
fn the_fork_server_and_its_children_end_with_a_killed_owner() {
    let mut owner = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "owner_of_a_fork_server",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("START_METHODS_OWNER", "1")
        .stdout(Stdio::piped())
        .spawn()
        .expect("owner");
    let mut line = String::new();
    let stdout = owner.stdout.take().expect("stdout");
    for read in BufReader::new(stdout).lines() {
        // libtest prints `test owner_of_a_fork_server ... ` first, on the same line.
        let read = read.expect("read");
        if let Some(at) = read.find("server ") {
            line = read[at..].to_owned();
            break;
        }
    }
    let words: Vec<u32> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(
        words.len(),
        2,
        "the owner says its server and child: {line:?}"
    );
    owner.kill().expect("SIGKILL the owner");
    owner.wait().expect("reap the owner");
    assert_ends(words[1], "the fork server's child");
    assert_ends(words[0], "the fork server");
}
