//! `common`'s fork handlers run at every fork, even one that comes before the program's
//! first use of `common`: they are registered as the program is loaded. (Registered at the
//! first use, they missed a fork that another thread had begun meanwhile, and such a
//! child could find a list's lock held for ever.) A child forked before any use of `common`
//! is told apart by its process key, whose generation the child handler counts: 1 in a
//! child whose fork ran it. `harness = false`: libtest's `main` could use `common` first.
//!
//! The same holds in a process started by spawn or by a fork server, whose target runs
//! before `main`, from `.init_array` too.

use common::ExitStatus;
use common::start::{Context, Method};

/// A started process's target: forks before any use of `common`, and exits with 10 and
/// how many generations its child is past it (1 where the child handler ran at that fork).
fn fork_first(_: &[u8], _: Vec<std::os::fd::OwnedFd>) -> i32 {
    // SAFETY: the child asks for its key and ends with `_exit`; this process has one thread.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let generation = (common::process_key() >> 32) as i32;
        // SAFETY: `_exit` ends the child at once.
        unsafe { libc::_exit(generation.clamp(0, 100)) };
    }
    let mut status = 0;
    // SAFETY: waitpid writes `status`, which is alive; `pid` is this process's child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let own = (common::process_key() >> 32) as i32;
    10 + libc::WEXITSTATUS(status) - own
}

fn main() {
    let mut ends = [0; 2];
    // SAFETY: pipe writes two descriptors into `ends`, which is alive.
    assert_eq!(unsafe { libc::pipe(ends.as_mut_ptr()) }, 0, "pipe");
    // SAFETY: this process has one thread; the child asks for its key, writes one byte
    // and ends with `_exit`.
    let pid = match unsafe { libc::fork() } {
        0 => {
            let generation = (common::process_key() >> 32) as u8;
            // SAFETY: write(2) reads one live byte; `_exit` ends the child at once.
            unsafe {
                libc::write(ends[1], [generation].as_ptr().cast(), 1);
                libc::_exit(0)
            }
        }
        pid => pid,
    };
    let mut generation = [u8::MAX];
    let mut status = 0;
    // SAFETY: read writes at most one byte into `generation`, and waitpid writes `status`,
    // both alive; `pid` is this process's child.
    unsafe {
        libc::read(ends[0], generation.as_mut_ptr().cast(), 1);
        libc::waitpid(pid, &mut status, 0);
    }
    assert_eq!(status, 0, "the child's status");
    assert_eq!(
        generation,
        [1],
        "the child's generation: common's child handler did not run at a fork before its \
         first use"
    );
    println!("test common_watches_a_fork_before_its_first_use ... ok");
    for method in [Method::Spawn, Method::ForkServer] {
        let context = Context::new(method).expect("a context");
        let mut child = context
            .start(fork_first, Vec::new(), Vec::new())
            .expect("a started child");
        assert_eq!(
            child.join().expect("joined"),
            ExitStatus::Exited(11),
            "{}: the child handler did not run at its target's first fork",
            method.name()
        );
    }
    println!("test a_started_process_watches_its_first_fork ... ok");
}
