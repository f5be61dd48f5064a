//! A reader killed at each instruction of a `get`, and what the next reader finds: never an
//! item twice, never one out of order. The parent single-steps a reader child with ptrace
//! and kills it after N instructions, on a fresh queue for each N. (Killing at a random
//! moment would practically never hit a window of a few instructions.)
//! `harness = false`, because fork is refused while libtest's threads run.

// A failed unwrap is a failed test here, as in #[test] functions.
#![allow(clippy::unwrap_used)]

// The workspace's test harness, included by path rather than named as a dependency: a copy
// of this section without `testkit/` still builds and runs (its tests need `testkit/` too).
#[path = "../../testkit/src/lib.rs"]
#[allow(dead_code, unused_imports)]
mod testkit;

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use common::{ExitStatus, Process};
use nix::libc::SYS_read;
use nix::sys::ptrace::{self, Options};
use nix::sys::signal::{Signal, raise};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use queue::{Queue, QueueError};
use testkit::{assert_no_children, open_fds, run_tests};

fn main() {
    run_tests(&[
        (
            "a_reader_killed_while_taking_an_item_duplicates_nothing",
            a_reader_killed_while_taking_an_item_duplicates_nothing,
        ),
        (
            "a_reader_killed_while_reading_ahead_duplicates_nothing",
            a_reader_killed_while_reading_ahead_duplicates_nothing,
        ),
    ]);
}

/// The queue holds items 2 and 3; 1 was got before. Item 2 is alone in the read-ahead buffer,
/// after 1's frame, and 3 is in the pipe: the get takes the buffer's last frame. Until the
/// fix, that took two stores (start, then end), and a reader killed between them left the
/// span covering 1 and 2 again.
fn two_and_three_read_ahead() -> Queue<u32> {
    let q = Queue::new().unwrap();
    q.put(&1).unwrap();
    q.put(&2).unwrap();
    assert_eq!(q.get().unwrap(), 1);
    q.put(&3).unwrap();
    q
}

fn a_reader_killed_while_taking_an_item_duplicates_nothing() {
    let fds = open_fds();
    let held = [2, 3];
    let kill_after = |steps| kill_reader(&two_and_three_read_ahead(), Start::AtGet, steps);
    let whole = kill_after(u64::MAX);
    assert_eq!(whole.items, [3], "a reader that is not killed takes 2");
    let total = whole.ran;
    // The number of instructions after which 2 is gone: killed before, the reader leaves 2.
    let (mut lo, mut hi) = (0, total);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if kill_after(mid).items.first() == Some(&2) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    let taken = lo;
    // Every instruction around the take (the old code's window, in a debug build, was the
    // 36 instructions from `taken` on), and every 16th of the rest of the get.
    let around = taken.saturating_sub(32)..=taken + 128;
    for n in around.clone().chain((0..=total).step_by(16)) {
        assert_legal(&held, &kill_after(n));
    }
    assert_no_children();
    assert_eq!(open_fds(), fds);
}

/// Items 1 and 2 are in the pipe, none in the buffer: the get reads both ahead, then takes 1.
/// The reader is killed at each instruction from its `read(2)` until 1 is taken.
fn a_reader_killed_while_reading_ahead_duplicates_nothing() {
    let fds = open_fds();
    let mut broken = 0;
    for steps in 0.. {
        let q = Queue::new().unwrap();
        q.put(&1).unwrap();
        q.put(&2).unwrap();
        let after = kill_reader(&q, Start::AtRead, steps);
        assert_legal(&[1, 2], &after);
        broken += usize::from(after.broken);
        if after.items == [2] {
            break;
        }
        assert_eq!(after.ran, steps, "the get returned without taking 1");
    }
    // The read itself is part of the change that a death leaves half done.
    assert!(broken > 0, "no reader was killed while reading ahead");
    assert_no_children();
    assert_eq!(open_fds(), fds);
}

/// Where the parent starts counting the reader's instructions.
#[derive(Clone, Copy, Debug)]
enum Start {
    /// At the call of `get`.
    AtGet,
    /// At its first `read(2)`, which the reader runs to at full speed.
    AtRead,
}

/// How many instructions the killed reader ran from where, and what a reader finds after
/// it: the items it gets, in order, until the queue is empty or broken.
struct After {
    ran: u64,
    from: Start,
    items: Vec<u32>,
    broken: bool,
}

/// The killed reader took the first of the items `held` or not, and the next reader gets
/// the others in order; or the queue is broken, after some of them. Nothing else.
fn assert_legal(held: &[u32], after: &After) {
    let items = &after.items[..];
    let legal = if after.broken {
        held.starts_with(items) || held[1..].starts_with(items)
    } else {
        items == held || items == &held[1..]
    };
    assert!(
        legal,
        "a reader was killed {} instructions from {:?} with {held:?} queued, then the next \
         found {:?} (broken: {})",
        after.ran, after.from, after.items, after.broken
    );
}

/// Starts a reader child that gets one item from `q`, lets it run `steps` instructions from
/// `start` (fewer if its get returns first), kills it, and returns what the next reader
/// finds.
fn kill_reader(q: &Queue<u32>, start: Start, steps: u64) -> After {
    let mut reader = Process::new(|| {
        // A process's first lock looks up who it is (its thread id, its namespaces): done
        // here, so that the steps counted are the get's own.
        let warm = lock::Lock::new().unwrap();
        drop(warm.lock().unwrap());
        // Stopped until the parent steps it, from the call of `get`; stopped again after.
        ptrace::traceme().unwrap();
        raise(Signal::SIGSTOP).unwrap();
        let _ = q.get();
        raise(Signal::SIGSTOP).unwrap();
    });
    reader.start().unwrap();
    let pid = reader.pid().unwrap();
    // Killed and reaped even when a check fails, so that no stopped child is left behind.
    let ran = catch_unwind(AssertUnwindSafe(|| step(pid, start, steps)));
    reader.kill().unwrap();
    assert_eq!(
        reader.join().unwrap(),
        ExitStatus::Signaled(Signal::SIGKILL)
    );
    let ran = ran.unwrap_or_else(|panic| resume_unwind(panic));
    let mut after = After {
        ran,
        from: start,
        items: Vec::new(),
        broken: false,
    };
    loop {
        match q.get_nowait() {
            Ok(item) => after.items.push(item),
            Err(QueueError::Empty) => break,
            Err(QueueError::Broken { pid: dead }) => {
                assert_eq!(dead, pid.as_raw() as u32, "the queue names the dead reader");
                after.broken = true;
                break;
            }
            Err(e) => panic!("after a reader killed at {ran} instructions from {start:?}: {e}"),
        }
    }
    after
}

/// Single-steps the stopped reader `steps` instructions from `start`, or until its get
/// returns; returns how many it ran.
fn step(pid: Pid, start: Start, steps: u64) -> u64 {
    assert_eq!(
        waitpid(pid, None).unwrap(),
        WaitStatus::Stopped(pid, Signal::SIGSTOP),
        "the reader did not stop itself (is ptrace refused?)"
    );
    if let Start::AtRead = start {
        run_to_read(pid);
    }
    let mut ran = 0;
    while ran < steps {
        // No signal: the SIGSTOP that stopped the reader is not delivered.
        ptrace::step(pid, None).unwrap();
        match waitpid(pid, None).unwrap() {
            // A step out of a system call's entry may be reported as its exit.
            WaitStatus::Stopped(_, Signal::SIGTRAP) | WaitStatus::PtraceSyscall(_) => ran += 1,
            WaitStatus::Stopped(_, Signal::SIGSTOP) => break,
            other => panic!("the reader stopped unexpectedly: {other:?}"),
        }
    }
    ran
}

/// Runs the stopped reader at full speed until it enters its first `read(2)`.
fn run_to_read(pid: Pid) {
    ptrace::setoptions(pid, Options::PTRACE_O_TRACESYSGOOD).unwrap();
    // Stops alternate: a system call's entry, then its exit.
    let mut entry = true;
    loop {
        ptrace::syscall(pid, None).unwrap();
        assert_eq!(waitpid(pid, None).unwrap(), WaitStatus::PtraceSyscall(pid));
        // /proc/<pid>/syscall starts with the number of the call the process is in.
        let call = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap();
        if entry && call.split_whitespace().next() == Some(&SYS_read.to_string()) {
            return;
        }
        entry = !entry;
    }
}
