//! Tests of `Lock` across forked processes. `harness = false`, because fork is refused while
//! libtest's threads run.

// A failed unwrap is a failed test here, as in #[test] functions.
#![allow(clippy::unwrap_used)]

// The workspace's test harness, included by path rather than named as a dependency: a copy
// of this section without `testkit/` still builds and runs (its tests need `testkit/` too).
#[path = "../../testkit/src/lib.rs"]
#[allow(dead_code, unused_imports)]
mod testkit;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{ExitStatus, Mapping, Process};
use lock::{Acquired, Lock, LockError};
use testkit::{assert_no_children, run_tests};

fn main() {
    run_tests(&[
        ("one_holder_at_a_time", one_holder_at_a_time),
        ("a_dead_holder_is_reported", a_dead_holder_is_reported),
        (
            "a_holder_killed_while_others_wait",
            a_holder_killed_while_others_wait,
        ),
        ("acquire_timeout_gives_up", acquire_timeout_gives_up),
        ("misuse_is_an_error", misuse_is_an_error),
        ("guard_releases_on_drop", guard_releases_on_drop),
        ("mappings_are_unmapped", mappings_are_unmapped),
        (
            "a_release_by_another_changes_nothing",
            a_release_by_another_changes_nothing,
        ),
        (
            "a_dead_holders_pid_given_again_is_never_taken_for_dead",
            a_dead_holders_pid_given_again_is_never_taken_for_dead,
        ),
        (
            "a_thread_that_ends_holding_abandons_the_lock",
            a_thread_that_ends_holding_abandons_the_lock,
        ),
        (
            "a_lock_is_refused_in_another_pid_namespace",
            a_lock_is_refused_in_another_pid_namespace,
        ),
        (
            "a_lock_dropped_while_held_stays_mapped",
            a_lock_dropped_while_held_stays_mapped,
        ),
        (
            "a_dead_holder_is_recovered_with_no_descriptor_left",
            a_dead_holder_is_recovered_with_no_descriptor_left,
        ),
        (
            "a_waiter_with_no_descriptor_left_leaves_a_zombie_holders_lock_recoverable",
            a_waiter_with_no_descriptor_left_leaves_a_zombie_holders_lock_recoverable,
        ),
        (
            "a_thread_holds_at_most_as_many_locks_as_the_kernel_frees",
            a_thread_holds_at_most_as_many_locks_as_the_kernel_frees,
        ),
        (
            "a_guard_in_a_thread_local_is_released_at_the_threads_exit",
            a_guard_in_a_thread_local_is_released_at_the_threads_exit,
        ),
        (
            "a_guard_releases_only_its_own_hold",
            a_guard_releases_only_its_own_hold,
        ),
        (
            "a_lock_used_while_another_panic_unwinds_is_not_marked",
            a_lock_used_while_another_panic_unwinds_is_not_marked,
        ),
    ]);
}

/// Four processes each add 1 to a plain (non-atomic) shared counter 20,000 times, under the
/// lock: none of the increments is lost, which an unguarded read-modify-write would allow.
fn one_holder_at_a_time() {
    let lock = Lock::new().unwrap();
    let counter = Mapping::new(8).unwrap();
    let mut children: Vec<_> = (0..4)
        .map(|_| {
            Process::new(|| {
                let cell = counter.as_ptr().cast::<u64>();
                for _ in 0..20_000 {
                    let _held = lock.lock().unwrap();
                    // SAFETY: the counter is 8 aligned bytes of the mapping, only touched
                    // while the lock is held.
                    unsafe { cell.write_volatile(cell.read_volatile() + 1) };
                }
            })
        })
        .collect();
    for p in &mut children {
        p.start().unwrap();
    }
    for p in &mut children {
        assert_eq!(p.join().unwrap(), ExitStatus::Exited(0));
    }
    drop(children);
    let cell = counter.as_ptr().cast::<u64>();
    // SAFETY: every child has ended; nothing else writes the counter.
    assert_eq!(unsafe { cell.read_volatile() }, 80_000);
    assert_no_children();
}

/// A child takes the lock and is killed holding it: the next acquire gets the lock at once
/// and names the dead holder, and after a release the lock works as before.
fn a_dead_holder_is_reported() {
    let lock = Lock::new().unwrap();
    let (mut r, w) = os_pipe::pipe().unwrap();
    let lock = &lock;
    // `move`, so that the parent's copy of the write end is closed once the child starts.
    let mut holder = Process::new(move || {
        lock.acquire().unwrap();
        (&w).write_all(b"L").unwrap();
        std::thread::sleep(Duration::from_secs(60));
    });
    holder.start().unwrap();
    let mut byte = [0];
    r.read_exact(&mut byte).unwrap();
    let pid = holder.pid().unwrap().as_raw() as u32;
    assert_eq!(lock.holder(), Some(pid));
    holder.kill().unwrap();
    holder.join().unwrap();

    let started = Instant::now();
    let acquired = lock.acquire_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(acquired, Some(Acquired::OwnerDied { pid }));
    assert_eq!(lock.holder(), Some(std::process::id()));
    lock.release().unwrap();
    assert_eq!(lock.acquire().unwrap(), Acquired::Released);
    lock.release().unwrap();

    // A holder that exits without releasing is a dead holder too.
    let mut quitter = Process::new(|| {
        std::mem::forget(lock.lock().unwrap());
    });
    quitter.start().unwrap();
    let pid = quitter.pid().unwrap().as_raw() as u32;
    quitter.join().unwrap();
    let guard = lock.lock().unwrap();
    assert_eq!(guard.acquired(), Acquired::OwnerDied { pid });
    drop(guard);
    assert_no_children();
}

/// While a child holds the lock, acquire_timeout waits its time, then gives up.
fn acquire_timeout_gives_up() {
    let lock = Lock::new().unwrap();
    let (mut r, w) = os_pipe::pipe().unwrap();
    let lock = &lock;
    let mut holder = Process::new(move || {
        let _held = lock.lock().unwrap();
        (&w).write_all(b"L").unwrap();
        std::thread::sleep(Duration::from_secs(60));
    });
    holder.start().unwrap();
    r.read_exact(&mut [0]).unwrap();

    let started = Instant::now();
    assert_eq!(
        lock.acquire_timeout(Duration::from_millis(200)).unwrap(),
        None
    );
    let waited = started.elapsed();
    // The upper bound only catches a hang.
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(5),
        "waited {waited:?}"
    );
    holder.kill().unwrap();
    holder.join().unwrap();
    assert_no_children();
}

fn misuse_is_an_error() {
    let lock = Lock::new().unwrap();
    assert!(matches!(lock.release(), Err(LockError::NotHolder)));
    let held = lock.lock().unwrap();
    assert!(matches!(lock.acquire(), Err(LockError::AlreadyHeld)));
    assert!(matches!(
        lock.acquire_timeout(Duration::from_secs(1)),
        Err(LockError::AlreadyHeld)
    ));
    drop(held);
    assert_eq!(lock.holder(), None);

    // A child cannot release the lock its parent holds.
    let held = lock.lock().unwrap();
    let mut p = Process::new(|| {
        assert!(matches!(lock.release(), Err(LockError::NotHolder)));
    });
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), ExitStatus::Exited(0));
    assert_eq!(lock.holder(), Some(std::process::id()));
    drop(held);
}

fn guard_releases_on_drop() {
    let lock = Lock::new().unwrap();
    {
        let guard = lock.lock().unwrap();
        assert_eq!(guard.acquired(), Acquired::Released);
        assert_eq!(lock.holder(), Some(std::process::id()));
    }
    assert_eq!(lock.holder(), None);
    let mut p = Process::new(|| {
        let _held = lock
            .acquire_timeout(Duration::from_secs(1))
            .unwrap()
            .unwrap();
        lock.release().unwrap();
    });
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), ExitStatus::Exited(0));
}

/// Dropping locks and mappings unmaps their memory.
fn mappings_are_unmapped() {
    let maps = || {
        std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .count()
    };
    let before = maps();
    for _ in 0..100 {
        let lock = Lock::new().unwrap();
        let map = Mapping::new(1 << 20).unwrap();
        drop((lock, map));
    }
    assert!(maps() <= before + 1, "{} mappings, {before} before", maps());
}

/// A thread that ends holding the lock (here it leaks its guard, as safe code may) while
/// its process goes on: that process may still use what the lock guarded, so no one, in
/// this process or another, gets the lock again.
fn a_thread_that_ends_holding_abandons_the_lock() {
    let lock: &'static Lock = Box::leak(Box::new(Lock::new().unwrap()));
    std::thread::spawn(|| std::mem::forget(lock.lock().unwrap()))
        .join()
        .unwrap();
    let me = std::process::id();
    for _ in 0..2 {
        match lock.acquire() {
            Err(LockError::LockAbandoned { pid }) => assert_eq!(pid, me),
            other => panic!("an abandoned lock was taken: {other:?}"),
        }
    }
    assert!(matches!(
        lock.acquire_timeout(Duration::from_millis(10)),
        Err(LockError::LockAbandoned { .. })
    ));
    let mut child = Process::new(|| {
        assert!(matches!(lock.lock(), Err(LockError::LockAbandoned { .. })));
    });
    child.start().unwrap();
    assert_eq!(child.join().unwrap(), ExitStatus::Exited(0));
}

/// The kernel gives a killed holder's lock to a waiter early in the holder's exit, while
/// the holder still looks alive (a big process takes a while to unmap its memory). The
/// waiter still learns `OwnerDied`, never takes the lock for abandoned. Here the waiter is
/// already blocked, the holder has 64 MiB, and no one has reaped it yet.
fn a_holder_killed_while_others_wait() {
    let lock = Lock::new().unwrap();
    for _ in 0..5 {
        let (mut r, w) = os_pipe::pipe().unwrap();
        let lock = &lock;
        let mut holder = Process::new(move || {
            let memory = vec![1u8; 64 << 20];
            let _held = lock.lock().unwrap();
            (&w).write_all(b"L").unwrap();
            std::thread::sleep(Duration::from_secs(60));
            drop(memory);
        });
        holder.start().unwrap();
        r.read_exact(&mut [0]).unwrap();
        let victim = holder.pid().unwrap();
        let mut killer = Process::new(move || {
            std::thread::sleep(Duration::from_millis(100));
            nix::sys::signal::kill(victim, nix::sys::signal::Signal::SIGKILL).unwrap();
        });
        killer.start().unwrap();
        let guard = lock.lock().unwrap();
        assert_eq!(
            guard.acquired(),
            Acquired::OwnerDied {
                pid: victim.as_raw() as u32
            }
        );
        drop(guard);
        killer.join().unwrap();
        holder.join().unwrap();
    }
    assert_no_children();
}

/// A `release` by a process that does not hold the lock fails, and changes nothing: not
/// even for a moment is the holder's record wiped (a holder that died in that moment would
/// be taken for one that handed nothing out).
fn a_release_by_another_changes_nothing() {
    let lock = Lock::new().unwrap();
    let held = lock.lock().unwrap();
    let me = std::process::id();
    let mut other = Process::new(|| {
        let until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < until {
            assert!(matches!(lock.release(), Err(LockError::NotHolder)));
        }
    });
    other.start().unwrap();
    let mut wrong = 0;
    while other.is_alive().unwrap() {
        if lock.holder() != Some(me) {
            wrong += 1;
        }
    }
    assert_eq!(other.join().unwrap(), ExitStatus::Exited(0));
    assert_eq!(wrong, 0, "the holder's record was wrong {wrong} times");
    drop(held);
    assert_eq!(lock.holder(), None);
}

/// A holder that exits holding the lock, is reaped, and whose pid goes to another process
/// before anyone asks: a waiter cannot tell that process from the holder (only `/proc`
/// could, and `/proc` can lie), so the lock is abandoned, never recovered while a process
/// at the holder's pid lives. As root, `ns_last_pid` chooses the pid; otherwise SKIPPED.
fn a_dead_holders_pid_given_again_is_never_taken_for_dead() {
    const NS_LAST_PID: &str = "/proc/sys/kernel/ns_last_pid";
    let lock = Lock::new().unwrap();
    let mut quitter = Process::new(|| std::mem::forget(lock.lock().unwrap()));
    quitter.start().unwrap();
    let dead = quitter.pid().unwrap().as_raw();
    quitter.join().unwrap();
    let mut stranger = None;
    for _ in 0..50 {
        if std::fs::write(NS_LAST_PID, (dead - 1).to_string()).is_err() {
            break;
        }
        let child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        if child.id() as i32 == dead {
            stranger = Some(child);
            break;
        }
        let mut child = child;
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let Some(mut stranger) = stranger else {
        testkit::skipped(
            "the dead holder's pid could not be given again (ns_last_pid not writable: not root?)",
        );
        return;
    };
    let got = lock.acquire();
    stranger.kill().unwrap();
    stranger.wait().unwrap();
    assert!(
        matches!(got, Err(LockError::LockAbandoned { pid }) if pid == dead as u32),
        "{got:?}"
    );
    assert_no_children();
}

/// The mutex knows its holder by thread id, and a new pid namespace numbers its threads
/// afresh: there, a process whose thread has the holder's number could release the holder's
/// lock, and would be told that it already holds it when it acquires. So a lock is refused
/// outside the pid namespace it was made in, while a lock made inside a namespace works
/// there, a dead holder's included. As root (`unshare(CLONE_NEWPID)`); otherwise SKIPPED.
fn a_lock_is_refused_in_another_pid_namespace() {
    const NS_LAST_PID: &str = "/proc/sys/kernel/ns_last_pid";
    const SKIPPED: i32 = 77;
    let lock = Lock::new().unwrap();
    let held = lock.lock().unwrap();
    // This test runs on the main thread, whose thread id is the process id.
    let holder_tid = std::process::id();
    let mut m = Process::new(|| {
        // SAFETY: unshare takes a flag and touches no memory; this process's next children
        // are in a new pid namespace.
        if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
            std::process::exit(SKIPPED);
        }
        let mut init = Process::new(|| {
            std::fs::write(NS_LAST_PID, (holder_tid - 1).to_string()).unwrap();
            let mut twin = Process::new(|| {
                assert_eq!(
                    std::process::id(),
                    holder_tid,
                    "no twin of the holder's tid"
                );
                let refused =
                    |got: Result<_, LockError>| matches!(got, Err(LockError::OtherPidNamespace));
                assert!(refused(lock.release()), "released the holder's lock");
                assert!(refused(lock.acquire().map(drop)));
                assert!(refused(lock.acquire_timeout(Duration::ZERO).map(drop)));
                assert_eq!(lock.dead_holder(), None);
            });
            twin.start().unwrap();
            assert_eq!(twin.join().unwrap(), ExitStatus::Exited(0));
            let own = Lock::new().unwrap();
            let mut quitter = Process::new(|| std::mem::forget(own.lock().unwrap()));
            quitter.start().unwrap();
            let pid = quitter.pid().unwrap().as_raw() as u32;
            quitter.join().unwrap();
            assert_eq!(own.acquire().unwrap(), Acquired::OwnerDied { pid });
            own.release().unwrap();
        });
        init.start().unwrap();
        assert_eq!(init.join().unwrap(), ExitStatus::Exited(0));
    });
    m.start().unwrap();
    let ended = m.join().unwrap();
    // Still this thread's: a release by another would make this one fail (NotHolder).
    std::mem::forget(held);
    lock.release().unwrap();
    if ended == ExitStatus::Exited(SKIPPED) {
        testkit::skipped("no new pid namespace (unshare(CLONE_NEWPID) needs CAP_SYS_ADMIN)");
        return;
    }
    assert_eq!(ended, ExitStatus::Exited(0));
    assert_no_children();
}

/// glibc links a robust mutex its thread holds into that thread's robust list, through the
/// mutex's own memory, and the kernel walks the list when the thread dies. A child holds B,
/// leaks a guard of A and drops A: were A's page unmapped, the walk would stop there, and B
/// would never be marked as left by a dead holder.
fn a_lock_dropped_while_held_stays_mapped() {
    let b = Lock::new().unwrap();
    let (mut r, w) = os_pipe::pipe().unwrap();
    let mut child = Process::new(|| {
        let _held = b.lock().unwrap();
        let a = Lock::new().unwrap();
        std::mem::forget(a.lock().unwrap());
        drop(a);
        (&w).write_all(b"x").unwrap();
        std::thread::sleep(Duration::from_secs(60));
    });
    child.start().unwrap();
    r.read_exact(&mut [0]).unwrap();
    let pid = child.pid().unwrap().as_raw() as u32;
    child.kill().unwrap();
    child.join().unwrap();
    let got = b.acquire_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(got, Some(Acquired::OwnerDied { pid }));
    b.release().unwrap();
    assert_no_children();
}

/// A waiter with no descriptor left cannot open the dead holder's pidfd, nor read `/proc`;
/// it must not take that for "its process lives on", which would abandon the lock for good.
/// For its own child it asks `waitid` instead.
fn a_dead_holder_is_recovered_with_no_descriptor_left() {
    let lock = Lock::new().unwrap();
    let mut quitter = Process::new(|| std::mem::forget(lock.lock().unwrap()));
    quitter.start().unwrap();
    let pid = quitter.pid().unwrap().as_raw() as u32;
    while !testkit::has_ended(pid) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut files = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        files.push(f);
    }
    let got = lock.acquire_timeout(Duration::from_secs(1));
    drop(files);
    assert_eq!(got.unwrap(), Some(Acquired::OwnerDied { pid }));
    lock.release().unwrap();
    quitter.join().unwrap();

    // A holder that is not the waiter's child, and is gone (reaped by its own parent):
    // `kill` tells, with no descriptor.
    let (mut r, w) = os_pipe::pipe().unwrap();
    let mut parent = Process::new(|| {
        let mut quitter = Process::new(|| std::mem::forget(lock.lock().unwrap()));
        quitter.start().unwrap();
        quitter.join().unwrap();
        let pid = quitter.pid().unwrap().as_raw() as u32;
        (&w).write_all(&pid.to_ne_bytes()).unwrap();
    });
    parent.start().unwrap();
    let mut pid = [0; 4];
    r.read_exact(&mut pid).unwrap();
    parent.join().unwrap();
    let mut files = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        files.push(f);
    }
    let got = lock.acquire_timeout(Duration::from_secs(1));
    drop(files);
    let pid = u32::from_ne_bytes(pid);
    assert_eq!(got.unwrap(), Some(Acquired::OwnerDied { pid }));
    lock.release().unwrap();
    assert_no_children();
}

/// A dead holder that is a zombie its own parent has not reaped yet (not the waiter's child),
/// found by a waiter with no descriptor left: nothing the waiter can ask tells whether it has
/// ended. That acquire fails, naming `pidfd_open`, and the lock is not abandoned for every
/// process by one process's want of descriptors: the next acquire, with descriptors back,
/// recovers it.
fn a_waiter_with_no_descriptor_left_leaves_a_zombie_holders_lock_recoverable() {
    let lock = Lock::new().unwrap();
    let (mut pid_r, pid_w) = os_pipe::pipe().unwrap();
    let (mut reap_r, mut reap_w) = os_pipe::pipe().unwrap();
    let mut parent = Process::new(|| {
        let mut quitter = Process::new(|| std::mem::forget(lock.lock().unwrap()));
        quitter.start().unwrap();
        let pid = quitter.pid().unwrap().as_raw() as u32;
        while !testkit::has_ended(pid) {
            std::thread::sleep(Duration::from_millis(1));
        }
        (&pid_w).write_all(&pid.to_ne_bytes()).unwrap();
        // A zombie until the test says to reap it.
        reap_r.read_exact(&mut [0]).unwrap();
        quitter.join().unwrap();
    });
    parent.start().unwrap();
    let mut pid = [0; 4];
    pid_r.read_exact(&mut pid).unwrap();
    let pid = u32::from_ne_bytes(pid);
    let mut files = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        files.push(f);
    }
    let without_descriptors = lock.acquire_timeout(Duration::from_secs(1));
    drop(files);
    let holder = lock.holder();
    let with_descriptors = lock.acquire_timeout(Duration::from_secs(1));
    reap_w.write_all(&[1]).unwrap();
    assert_eq!(parent.join().unwrap(), ExitStatus::Exited(0));
    let err = without_descriptors.unwrap_err();
    assert!(
        matches!(err, LockError::Os(_)) && err.to_string().contains("pidfd_open"),
        "{err}"
    );
    assert_eq!(holder, Some(pid));
    assert_eq!(with_descriptors.unwrap(), Some(Acquired::OwnerDied { pid }));
    lock.release().unwrap();
    assert_no_children();
}

/// The kernel walks at most 2,048 entries of a dead thread's robust list: a thread may hold
/// 2,000 locks, and is refused one more, until it releases one.
fn a_thread_holds_at_most_as_many_locks_as_the_kernel_frees() {
    let locks: Vec<Lock> = (0..=2000).map(|_| Lock::new().unwrap()).collect();
    let guards: Vec<_> = locks[..2000].iter().map(|l| l.lock().unwrap()).collect();
    assert!(matches!(
        locks[2000].acquire(),
        Err(LockError::TooManyHeld { limit: 2000 })
    ));
    assert!(matches!(
        locks[2000].acquire_timeout(Duration::ZERO),
        Err(LockError::TooManyHeld { limit: 2000 })
    ));
    // Taking one it holds is that error, not this one.
    assert!(matches!(locks[0].acquire(), Err(LockError::AlreadyHeld)));
    // Another thread holds none.
    std::thread::scope(|s| {
        s.spawn(|| drop(locks[2000].lock().unwrap()))
            .join()
            .unwrap()
    });
    drop(guards);
    drop(locks[2000].lock().unwrap());
}

/// A guard kept in a thread-local value is dropped by that value's destructor when its
/// thread exits, after the lock's own per-thread state may have been destroyed: the release
/// must still work (it aborted the process once), and the lock be free.
fn a_guard_in_a_thread_local_is_released_at_the_threads_exit() {
    use std::cell::RefCell;
    thread_local! {
        static KEPT: RefCell<Option<lock::LockGuard<'static>>> = const { RefCell::new(None) };
    }
    let lock: &'static Lock = Box::leak(Box::new(Lock::new().unwrap()));
    std::thread::spawn(move || {
        KEPT.with(|kept| kept.borrow_mut().take()); // Touched first: destroyed last.
        let held = lock.lock().unwrap();
        KEPT.with(|kept| *kept.borrow_mut() = Some(held));
    })
    .join()
    .unwrap();
    assert_eq!(
        lock.acquire_timeout(Duration::from_secs(5)).unwrap(),
        Some(Acquired::Released)
    );
    lock.release().unwrap();
}

/// A guard ends its own hold only: after an explicit `release` and a new `acquire`, dropping
/// the guard leaves the new hold in place, as the thread expects.
fn a_guard_releases_only_its_own_hold() {
    let lock = Lock::new().unwrap();
    let guard = lock.lock().unwrap();
    lock.release().unwrap();
    lock.acquire().unwrap();
    drop(guard);
    assert_eq!(lock.holder(), Some(std::process::id()));
    lock.release().unwrap();
    assert_eq!(lock.holder(), None);
    assert!(matches!(lock.release(), Err(LockError::NotHolder)));
}

/// A guard dropped while its thread panics marks the lock, for the next holder to be told
/// that what it guarded may be half-changed; but a lock taken and released whole while
/// another panic unwinds (in a `Drop`) is not that panic's business.
fn a_lock_used_while_another_panic_unwinds_is_not_marked() {
    struct UsesTheLock<'a>(&'a Lock);
    impl Drop for UsesTheLock<'_> {
        fn drop(&mut self) {
            drop(self.0.lock().unwrap());
        }
    }
    let lock = Lock::new().unwrap();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _uses = UsesTheLock(&lock);
        if lock.holder().is_none() {
            panic!("unrelated");
        }
    }));
    assert!(caught.is_err());
    assert_eq!(lock.acquire().unwrap(), Acquired::Released);
    lock.release().unwrap();

    // And a guard that a panic drops does mark it, once.
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _held = lock.lock().unwrap();
        if lock.holder().is_some() {
            panic!("half-way");
        }
    }));
    assert!(caught.is_err());
    let me = std::process::id();
    assert_eq!(lock.acquire().unwrap(), Acquired::OwnerDied { pid: me });
    lock.release().unwrap();
    assert_eq!(lock.acquire().unwrap(), Acquired::Released);
    lock.release().unwrap();
}
