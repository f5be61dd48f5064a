//! A thread's pid and tid are not its own for ever: once a thread or a process has died,
//! the kernel gives its numbers to a new one, and another pid namespace numbers its own
//! threads from 1. A thread that has a holder's numbers must still never be taken for the
//! holder: its `release` is refused (`NotHolder`) and touches nothing, not even for a moment
//! (a waiter that read the holder's record in that moment would recover a lock it must
//! abandon). As root, `ns_last_pid` gives the numbers again at once; otherwise each test
//! prints SKIPPED. `harness = false`: fork is refused while libtest's threads run.

// A failed unwrap is a failed test here, as in #[test] functions.
#![allow(clippy::unwrap_used)]

// The workspace's test harness, included by path rather than named as a dependency: a copy
// of this section without `testkit/` still builds and runs (its tests need `testkit/` too).
#[path = "../../testkit/src/lib.rs"]
#[allow(dead_code, unused_imports)]
mod testkit;

use std::sync::mpsc;
use std::time::Duration;

use common::{ExitStatus, Process};
use lock::{Lock, LockError};
use testkit::{assert_no_children, run_tests};

const NS_LAST_PID: &str = "/proc/sys/kernel/ns_last_pid";

fn main() {
    run_tests(&[
        (
            "a_new_thread_with_a_dead_holders_tid_is_not_the_holder",
            a_new_thread_with_a_dead_holders_tid_is_not_the_holder,
        ),
        (
            "a_process_at_a_dead_holders_pid_is_not_the_holder",
            a_process_at_a_dead_holders_pid_is_not_the_holder,
        ),
        (
            "a_thread_of_another_namespace_with_the_holders_numbers_is_not_the_holder",
            a_thread_of_another_namespace_with_the_holders_numbers_is_not_the_holder,
        ),
        (
            "without_getrandom_threads_still_have_owner_numbers_of_their_own",
            without_getrandom_threads_still_have_owner_numbers_of_their_own,
        ),
    ]);
    assert_no_children();
}

fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// Ends a child at once with `code`.
fn exit(code: i32) {
    // SAFETY: _exit ends the process; nothing of the parent's is run.
    unsafe { libc::_exit(code) }
}

/// A thread leaks its guard and ends: the lock is abandoned, and its record keeps that
/// thread's name, whose tid is returned.
fn abandoned_by_a_thread(lock: &'static Lock) -> i32 {
    std::thread::spawn(move || {
        std::mem::forget(lock.lock().unwrap());
        gettid()
    })
    .join()
    .unwrap()
}

/// Runs `f` on a new thread whose tid is `tid`; `None` if the tid could not be given again.
fn on_a_thread_with_tid<T: Send + 'static>(
    tid: i32,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let mut f = Some(f);
    for _ in 0..50 {
        std::fs::write(NS_LAST_PID, (tid - 1).to_string()).ok()?;
        let (is_it, told) = mpsc::channel();
        let (go, run) = mpsc::channel::<Option<Box<dyn FnOnce() -> T + Send>>>();
        let thread = std::thread::spawn(move || {
            is_it.send(gettid() == tid).unwrap();
            run.recv().unwrap().map(|f| f())
        });
        if told.recv().unwrap() {
            go.send(Some(Box::new(f.take().unwrap()))).unwrap();
            return thread.join().unwrap();
        }
        go.send(None).unwrap();
        thread.join().unwrap();
    }
    None
}

/// A thread that never took the lock, with the tid of the thread that left it, is refused.
fn a_new_thread_with_a_dead_holders_tid_is_not_the_holder() {
    let lock: &'static Lock = Box::leak(Box::new(Lock::new().unwrap()));
    let tid = abandoned_by_a_thread(lock);
    let holder = lock.holder();
    let Some(got) = on_a_thread_with_tid(tid, move || lock.release()) else {
        testkit::skipped(
            "the dead holder's tid could not be given again (ns_last_pid not writable: not root?)",
        );
        return;
    };
    assert!(matches!(got, Err(LockError::NotHolder)), "{got:?}");
    assert_eq!(lock.holder(), holder);
    // Still abandoned, never recovered in the process whose thread left it.
    let me = std::process::id();
    assert!(matches!(
        lock.acquire(),
        Err(LockError::LockAbandoned { pid }) if pid == me
    ));
}

/// Starts a child at pid `pid` that runs `f` and exits with its code; `None` if the pid
/// could not be given again.
fn at_pid(pid: i32, f: impl Fn() -> i32 + Send + Copy) -> Option<ExitStatus> {
    for _ in 0..50 {
        std::fs::write(NS_LAST_PID, (pid - 1).to_string()).ok()?;
        let mut p = Process::new(move || {
            exit(if std::process::id() as i32 == pid {
                f()
            } else {
                99
            })
        });
        p.start().unwrap();
        let status = p.join().unwrap();
        if status != ExitStatus::Exited(99) {
            return Some(status);
        }
    }
    None
}

/// A process that dies holding the lock, and a new process at its pid (so its one thread
/// has the holder's pid and tid), which is refused and changes nothing; the next acquire
/// recovers the lock from the dead holder, by its pid.
fn a_process_at_a_dead_holders_pid_is_not_the_holder() {
    let lock = Lock::new().unwrap();
    let mut quitter = Process::new(|| std::mem::forget(lock.lock().unwrap()));
    quitter.start().unwrap();
    let dead = quitter.pid().unwrap().as_raw();
    quitter.join().unwrap();
    let Some(status) = at_pid(dead, || match lock.release() {
        Err(LockError::NotHolder) => 0,
        Ok(()) => 1,
        Err(_) => 2,
    }) else {
        testkit::skipped(
            "the dead holder's pid could not be given again (ns_last_pid not writable: not root?)",
        );
        return;
    };
    assert_eq!(
        status,
        ExitStatus::Exited(0),
        "0: NotHolder, 1: Ok, 2: another error"
    );
    assert_eq!(lock.holder(), Some(dead as u32), "the record was changed");
    assert_eq!(
        lock.acquire().unwrap(),
        lock::Acquired::OwnerDied { pid: dead as u32 }
    );
    lock.release().unwrap();
}

/// Where namespaces cannot be told apart, a process of a new pid namespace whose pid and
/// tid are the live holder's numbers (the mutex knows its holder by that tid number) is
/// refused, and no one else gets the lock while the holder holds it. The whole test runs
/// in a child, which the seccomp filter then confines.
fn a_thread_of_another_namespace_with_the_holders_numbers_is_not_the_holder() {
    let mut test = Process::new(|| {
        // pidfd_open fails with EPERM, as under a seccomp filter: the kernel can then not tell
        // pid namespaces apart, and a lock made here lets every caller through.
        testkit::filter_syscall(
            libc::SYS_pidfd_open,
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        );
        let lock = Lock::new().unwrap();
        let mut holder = Process::new(|| {
            let _held = lock.lock().unwrap();
            std::thread::sleep(Duration::from_secs(2));
        });
        holder.start().unwrap();
        let hpid = holder.pid().unwrap().as_raw();
        while lock.holder().is_none() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut waiter = Process::new(|| {
            exit(match lock.acquire_timeout(Duration::from_millis(1500)) {
                Ok(None) => 0,
                Ok(Some(_)) => 10, // taken while the holder held it
                Err(_) => 11,
            })
        });
        waiter.start().unwrap();
        // The stray: in a new pid namespace, at the holder's number.
        let mut outside = Process::new(|| {
            // SAFETY: unshare takes an integer.
            if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
                exit(77);
            }
            // The namespace's first process (its init) places the stray.
            let mut init = Process::new(|| {
                exit(
                    at_pid(hpid, || match lock.release() {
                        Err(LockError::NotHolder) => 0,
                        Ok(()) => 20,
                        Err(_) => 21,
                    })
                    .map_or(78, |s| s.code()),
                )
            });
            init.start().unwrap();
            exit(init.join().unwrap().code())
        });
        outside.start().unwrap();
        let stray = outside.join().unwrap().code();
        let waited = waiter.join().unwrap().code();
        holder.join().unwrap();
        exit(if matches!(stray, 77 | 78) {
            77
        } else if stray != 0 {
            stray
        } else {
            waited
        })
    });
    test.start().unwrap();
    match test.join().unwrap() {
        ExitStatus::Exited(77) => {
            testkit::skipped("no new pid namespace (unshare(CLONE_NEWPID) needs CAP_SYS_ADMIN)")
        }
        status => assert_eq!(
            status,
            ExitStatus::Exited(0),
            "20: the stray released it, 10: taken while held"
        ),
    }
}

/// Where the kernel gives no random numbers (here a seccomp filter refuses `getrandom`), a
/// thread's owner number comes from its name and the time: the holder is still told from
/// the other threads of its process, and from a child made by fork while it holds the lock.
/// The test runs in a child, which the filter then confines.
fn without_getrandom_threads_still_have_owner_numbers_of_their_own() {
    let mut test = Process::new(|| {
        testkit::filter_syscall(
            libc::SYS_getrandom,
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        );
        let lock = Lock::new().unwrap();
        let held = lock.lock().unwrap();
        let threads_refused = (0..20).all(|_| {
            std::thread::scope(|s| {
                s.spawn(|| matches!(lock.release(), Err(LockError::NotHolder)))
                    .join()
                    .unwrap()
            })
        });
        let mut child = Process::new(|| {
            exit(match lock.release() {
                Err(LockError::NotHolder) => 0,
                _ => 1,
            })
        });
        child.start().unwrap();
        let child_refused = child.join().unwrap() == ExitStatus::Exited(0);
        drop(held);
        let released = lock.holder().is_none();
        exit(match (threads_refused, child_refused, released) {
            (true, true, true) => 0,
            (false, _, _) => 1,
            (_, false, _) => 2,
            _ => 3,
        })
    });
    test.start().unwrap();
    assert_eq!(
        test.join().unwrap(),
        ExitStatus::Exited(0),
        "1: a thread, 2: a child released it; 3: its holder did not"
    );
}
