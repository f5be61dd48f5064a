//! A pool's workers sleep in `read(2)` on their task pipe while they have nothing to do;
//! when the pool's owner is killed (SIGKILL: no handler runs), they must end all the same,
//! and so must a fork server, by every start method. `harness = false`: the owner is made
//! by `fork`, which libtest's threads would make unsound.

// A failed unwrap is a failed test here, as in #[test] functions.
#![allow(clippy::unwrap_used)]

// The workspace's test harness, included by path rather than named as a dependency: a copy
// of this section without `testkit/` still builds and runs (its tests need `testkit/` too).
#[path = "../../testkit/src/lib.rs"]
#[allow(dead_code, unused_imports)]
mod testkit;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::start::{Context, Method};
use pool_map::Pool;
use testkit::{assert_no_children, has_ended, run_tests};

fn main() {
    run_tests(&[(
        "workers_end_with_a_killed_owner_by_every_method",
        workers_end_with_a_killed_owner_by_every_method,
    )]);
    assert_no_children();
}

fn square(x: i64) -> i64 {
    x * x
}

fn workers_end_with_a_killed_owner_by_every_method() {
    for method in [Method::Fork, Method::Spawn, Method::ForkServer] {
        let (mut r, mut w) = os_pipe::pipe().unwrap();
        // SAFETY: this test runs no other thread; the child runs the pool and never returns.
        let owner = unsafe { libc::fork() };
        if owner == 0 {
            drop(r);
            let ctx = Context::new(method).unwrap();
            let pool = Pool::with_context(2, &ctx).unwrap();
            assert_eq!(pool.apply(square, 3).unwrap(), 9);
            let mut pids = pool.pids();
            pids.extend(ctx.server_pid());
            let line: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
            writeln!(w, "{}", line.join(" ")).unwrap();
            drop(w);
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
        drop(w);
        // One line: forked workers hold the write end too, so no end of file comes.
        let mut line = String::new();
        let mut byte = [0u8; 1];
        while r.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
            line.push(byte[0] as char);
        }
        let pids: Vec<u32> = line
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        assert!(pids.len() >= 2, "{method}: {line:?}");
        // SAFETY: kill and waitpid take integers; `owner` is this process's child.
        unsafe {
            libc::kill(owner, libc::SIGKILL);
            libc::waitpid(owner, std::ptr::null_mut(), 0);
        }
        let start = Instant::now();
        while !pids.iter().all(|&p| has_ended(p)) && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let left: Vec<u32> = pids.iter().copied().filter(|&p| !has_ended(p)).collect();
        for &p in &left {
            // SAFETY: kill takes integers; these are the test's own grandchildren.
            unsafe { libc::kill(p as i32, libc::SIGKILL) };
        }
        assert!(
            left.is_empty(),
            "{method}: {left:?} outlived the pool's owner"
        );
    }
}
