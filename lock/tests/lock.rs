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
            "every_waiter_hears_of_an_abandoned_lock",
            every_waiter_hears_of_an_abandoned_lock,
        ),
        (
            "no_waiter_sleeps_on_a_free_lock_after_a_kill",
            no_waiter_sleeps_on_a_free_lock_after_a_kill,
        ),
        (
            "acquire_timeout_keeps_its_time_when_the_clock_is_set_back",
            acquire_timeout_keeps_its_time_when_the_clock_is_set_back,
        ),
        (
            "a_lock_is_refused_in_another_pid_namespace",
            a_lock_is_refused_in_another_pid_namespace,
        ),
        (
            "without_the_namespace_ioctl_proc_names_the_namespace",
            without_the_namespace_ioctl_proc_names_the_namespace,
        ),
        (
            "a_lock_call_that_timed_out_leaves_nothing_behind",
            a_lock_call_that_timed_out_leaves_nothing_behind,
        ),
        (
            "a_filter_that_hides_every_process_does_not_make_a_holder_dead",
            a_filter_that_hides_every_process_does_not_make_a_holder_dead,
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

/// While a child holds the lock, acquire_timeout waits its time, then gives up; with no time,
/// it gives up at once.
fn acquire_timeout_gives_up() {
    let lock = Lock::new().unwrap();
    let lock = &lock;
    let mut holder = a_child_holding(lock);

    // A zero timeout is a try: no wait at all (the lock's first try, whose deadline is
    // already past, and nothing after it).
    for _ in 0..1000 {
        assert_eq!(lock.acquire_timeout(Duration::ZERO).unwrap(), None);
    }
    assert_eq!(lock.holder(), Some(holder.pid().unwrap().as_raw() as u32));

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

/// Processes already waiting in `acquire` when a thread ends holding the lock: each gets
/// `LockAbandoned` (glibc passes no wake-up on from a waiter that gets ENOTRECOVERABLE: 2 or
/// 3 of 4 returned, the rest slept for ever, before the lock woke in slices).
fn every_waiter_hears_of_an_abandoned_lock() {
    let lock: &'static Lock = Box::leak(Box::new(Lock::new().unwrap()));
    let (r, mut w) = os_pipe::pipe().unwrap();
    let mut waiters: Vec<_> = (0..4)
        .map(|_| {
            let mut r = r.try_clone().unwrap();
            let mut waiter = Process::new(move || {
                r.read_exact(&mut [0]).unwrap();
                match lock.acquire() {
                    Err(LockError::LockAbandoned { .. }) => {}
                    other => panic!("not told the lock is abandoned: {other:?}"),
                }
            });
            waiter.start().unwrap();
            waiter
        })
        .collect();
    drop(r);
    std::thread::spawn(move || {
        std::mem::forget(lock.lock().unwrap());
        w.write_all(&[0; 4]).unwrap();
        // Long enough for the waiters to be asleep in the mutex when this thread ends.
        std::thread::sleep(Duration::from_millis(300));
    })
    .join()
    .unwrap();
    for waiter in &mut waiters {
        let pid = waiter.pid().unwrap().as_raw() as u32;
        if !testkit::ends_within(pid, Duration::from_secs(10)) {
            waiter.kill().unwrap();
            waiter.join().unwrap();
            panic!("a waiter slept on an abandoned lock");
        }
        assert_eq!(waiter.join().unwrap(), ExitStatus::Exited(0));
    }
}

/// A process killed while it uses the lock, beside one waiter in `acquire` and one in
/// `acquire_timeout`: if the killed process was the waiter a release had just woken, and
/// another locker came in meanwhile, the wake-up died with it, and the waiter in `acquire`
/// slept on a free lock for ever (4 runs in 4, within 302 rounds, before the lock woke in
/// slices). Each round here must end.
fn no_waiter_sleeps_on_a_free_lock_after_a_kill() {
    let lock: &'static Lock = Box::leak(Box::new(Lock::new().unwrap()));
    let shared = Mapping::new(8).unwrap();
    let stop = shared.as_ptr().cast::<std::sync::atomic::AtomicU64>() as usize;
    // SAFETY: the mapping holds 8 zeroed, aligned bytes, shared by every child, and lives
    // until the end of this test, after every child is reaped.
    let stop: &'static std::sync::atomic::AtomicU64 = unsafe { &*(stop as *const _) };
    // Turn after turn, until the process is killed.
    let turns = move || {
        while stop.load(std::sync::atomic::Ordering::Relaxed) < 2 {
            if let Ok(guard) = lock.lock() {
                drop(guard);
            }
        }
    };
    for round in 0..300u64 {
        stop.store(0, std::sync::atomic::Ordering::Relaxed);
        let mut victim = Process::new(move || {
            std::thread::spawn(turns);
            turns()
        });
        let waiter = |timed: bool| {
            Process::new(move || {
                while stop.load(std::sync::atomic::Ordering::Relaxed) == 0 {
                    let got = if timed {
                        lock.acquire_timeout(Duration::from_millis(3))
                            .map(|a| a.is_some())
                    } else {
                        lock.acquire().map(|_| true)
                    };
                    if got.unwrap() {
                        lock.release().unwrap();
                    }
                }
            })
        };
        let (mut waiting, mut timed) = (waiter(false), waiter(true));
        victim.start().unwrap();
        waiting.start().unwrap();
        timed.start().unwrap();
        std::thread::sleep(Duration::from_micros(200 + (round * 997) % 5000));
        victim.kill().unwrap();
        victim.join().unwrap();
        stop.store(1, std::sync::atomic::Ordering::Relaxed);
        let pids = [&waiting, &timed].map(|w| w.pid().unwrap().as_raw() as u32);
        if !pids
            .iter()
            .all(|&pid| testkit::ends_within(pid, Duration::from_secs(10)))
        {
            let _ = (waiting.kill(), timed.kill(), waiting.join(), timed.join());
            panic!("round {round}: a waiter slept on a free lock");
        }
        assert_eq!(waiting.join().unwrap(), ExitStatus::Exited(0));
        assert_eq!(timed.join().unwrap(), ExitStatus::Exited(0));
    }
    drop(shared);
}

/// The wall clock, set back by `by` until this is dropped, and then put right: to where it
/// would be had it not been set back (the monotonic clock says how long that was).
struct ClockSetBack {
    /// CLOCK_REALTIME minus CLOCK_MONOTONIC, before.
    offset: Duration,
}

fn now_on(clock: libc::clockid_t) -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `now`, which is alive.
    assert_eq!(unsafe { libc::clock_gettime(clock, &mut now) }, 0);
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

fn set_wall_clock(to: Duration) -> bool {
    let to = libc::timespec {
        tv_sec: to.as_secs() as libc::time_t,
        tv_nsec: to.subsec_nanos() as _,
    };
    // SAFETY: clock_settime reads one timespec, which is alive.
    unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &to) == 0 }
}

impl ClockSetBack {
    /// `None` where this process may not set the clock (not root).
    fn by(by: Duration) -> Option<ClockSetBack> {
        let offset = now_on(libc::CLOCK_REALTIME) - now_on(libc::CLOCK_MONOTONIC);
        set_wall_clock(now_on(libc::CLOCK_REALTIME) - by).then_some(ClockSetBack { offset })
    }
}

impl Drop for ClockSetBack {
    fn drop(&mut self) {
        assert!(set_wall_clock(now_on(libc::CLOCK_MONOTONIC) + self.offset));
    }
}

/// An `acquire_timeout` of 500 ms, while the wall clock is set back 3 s: it still gives up
/// after about 500 ms (its deadline was on CLOCK_REALTIME, and it waited 3.5 s). Needs
/// CAP_SYS_TIME: it sets the machine's clock, for half a second (and puts it right when it
/// ends, even by a panic; not if it is killed then).
fn acquire_timeout_keeps_its_time_when_the_clock_is_set_back() {
    let lock = Lock::new().unwrap();
    std::thread::scope(|s| {
        let (held, waited) = (std::sync::mpsc::channel(), std::sync::mpsc::channel());
        let lock = &lock;
        s.spawn(move || {
            let guard = lock.lock().unwrap();
            held.0.send(()).unwrap();
            // Held until the waiter is done.
            waited.1.recv().unwrap();
            drop(guard);
        });
        held.1.recv().unwrap();
        let waiter = s.spawn(move || {
            let started = Instant::now();
            let got = lock.acquire_timeout(Duration::from_millis(500));
            (got.map(|a| a.is_some()), started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(100));
        let Some(set_back) = ClockSetBack::by(Duration::from_secs(3)) else {
            waited.0.send(()).unwrap();
            let _ = waiter.join().unwrap();
            testkit::skipped("the clock cannot be set here (it needs CAP_SYS_TIME)");
            return;
        };
        let (got, took) = waiter.join().unwrap();
        drop(set_back);
        waited.0.send(()).unwrap();
        assert!(!got.unwrap(), "the lock was held throughout");
        assert!(
            took < Duration::from_secs(2),
            "a 500 ms timeout took {took:?}"
        );
    });
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

/// Where the kernel has pidfds but cannot name a pid namespace through one (Linux 5.3 to
/// 6.10, the `PIDFD_GET_PID_NAMESPACE` ioctl missing: here a seccomp filter fails every
/// ioctl with ENOTTY), `/proc/self/ns/pid` names it: a dead holder's lock is recovered, a
/// lock made with the ioctl is used without it, and another file at that path (a tmpfs
/// mounted over `/proc`) is not taken for the namespace. Each part runs in a child, which
/// the filter then confines.
fn without_the_namespace_ioctl_proc_names_the_namespace() {
    const SKIPPED: i32 = 77;
    let made_with_ioctl = Lock::new().unwrap();
    let outcome = |lock: &Lock| {
        let mut quitter = Process::new(|| std::mem::forget(lock.lock().unwrap()));
        quitter.start().unwrap();
        let pid = quitter.pid().unwrap().as_raw() as u32;
        quitter.join().unwrap();
        let got = lock.acquire();
        if got.is_ok() {
            lock.release().unwrap();
        }
        (pid, got)
    };
    let mut test = Process::new(|| {
        testkit::filter_syscall(
            libc::SYS_ioctl,
            libc::SECCOMP_RET_ERRNO | libc::ENOTTY as u32,
        );
        for lock in [&made_with_ioctl, &Lock::new().unwrap()] {
            let (pid, got) = outcome(lock);
            assert_eq!(got.unwrap(), Acquired::OwnerDied { pid });
        }
    });
    test.start().unwrap();
    assert_eq!(test.join().unwrap(), ExitStatus::Exited(0));

    let mut faked = Process::new(|| {
        // SAFETY: unshare takes a flag; mount reads the strings, alive for the call. This
        // process gets a mount namespace of its own, whose `/proc` is a tmpfs.
        let mounted = unsafe {
            libc::unshare(libc::CLONE_NEWNS) == 0
                && libc::mount(
                    c"none".as_ptr(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) == 0
                && libc::mount(
                    c"fake".as_ptr(),
                    c"/proc".as_ptr(),
                    c"tmpfs".as_ptr(),
                    0,
                    std::ptr::null(),
                ) == 0
        };
        if !mounted {
            std::process::exit(SKIPPED);
        }
        std::fs::create_dir_all("/proc/self/ns").unwrap();
        std::fs::write("/proc/self/ns/pid", "not a namespace").unwrap();
        testkit::filter_syscall(
            libc::SYS_ioctl,
            libc::SECCOMP_RET_ERRNO | libc::ENOTTY as u32,
        );
        assert!(matches!(
            made_with_ioctl.acquire(),
            Err(LockError::PidNamespaceUnknown)
        ));
        // Forked bare: `Process` counts threads in `/proc`, and this one is a fake.
        let lock = Lock::new().unwrap();
        // SAFETY: this process has one thread; the child takes the lock, leaks it and ends
        // at once, without returning into this code.
        let pid = unsafe {
            match libc::fork() {
                0 => {
                    std::mem::forget(lock.lock());
                    libc::_exit(0)
                }
                pid => pid,
            }
        };
        assert!(pid > 0);
        let ended = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        assert!(matches!(
            ended,
            Ok(nix::sys::wait::WaitStatus::Exited(_, 0))
        ));
        let got = lock.acquire();
        assert!(
            matches!(got, Err(LockError::LockAbandoned { .. })),
            "holder {pid}: {got:?}"
        );
    });
    faked.start().unwrap();
    match faked.join().unwrap() {
        ExitStatus::Exited(SKIPPED) => {
            testkit::skipped("no mount namespace (unshare(CLONE_NEWNS) needs CAP_SYS_ADMIN)")
        }
        status => assert_eq!(status, ExitStatus::Exited(0)),
    }
    assert_no_children();
}

/// A lock call that times out leaves nothing behind in the calling thread: glibc left the
/// mutex named in the thread's robust list head (`list_op_pending`), so once the `Lock` was
/// dropped and its page mapped again for other data, the thread's exit made the kernel
/// write the owner-died bit (0x40000000) into that data, where it held the thread's id.
fn a_lock_call_that_timed_out_leaves_nothing_behind() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, mpsc};
    for (round, timeout) in [Duration::ZERO, Duration::from_millis(20)]
        .into_iter()
        .cycle()
        .take(10)
        .enumerate()
    {
        let lock = Arc::new(Lock::new().unwrap());
        let held = lock.lock().unwrap();
        let (tid_tx, tid_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let theirs = Arc::clone(&lock);
        let waiter = std::thread::spawn(move || {
            if round % 4 < 2 {
                assert!(theirs.lock_timeout(timeout).unwrap().is_none());
            } else {
                assert_eq!(theirs.acquire_timeout(timeout).unwrap(), None);
            }
            drop(theirs);
            tid_tx.send(nix::unistd::gettid().as_raw() as u32).unwrap();
            // Ends once the lock's page holds other data.
            go_rx.recv().unwrap();
        });
        let tid = tid_rx.recv().unwrap();
        drop(held);
        // The last handle, and no thread holds it: its page is unmapped, and likely the
        // next mapping of one page gets the same address.
        drop(lock);
        let other = Mapping::new(4096).unwrap();
        // SAFETY: the mapping is fresh, page-aligned and at least 4 bytes long, and only
        // this thread uses it, through this atomic.
        let word = unsafe { &*other.as_ptr().cast::<AtomicU32>() };
        word.store(tid, Ordering::Relaxed);
        go_tx.send(()).unwrap();
        waiter.join().unwrap();
        assert_eq!(
            word.load(Ordering::Relaxed),
            tid,
            "round {round}: the waiter's exit wrote into other data"
        );
    }
}

/// A live holder is never taken for dead because `pidfd_open` says ESRCH (here a seccomp
/// filter says so for every pid, in a child that knew its pid namespace before): `kill` is
/// asked too.
fn a_filter_that_hides_every_process_does_not_make_a_holder_dead() {
    let lock = Lock::new().unwrap();
    let lock = &lock;
    let mut holder = a_child_holding(lock);
    let pid = holder.pid().unwrap().as_raw() as u32;
    let mut looker = Process::new(|| {
        assert_eq!(lock.dead_holder(), None);
        testkit::filter_syscall(
            libc::SYS_pidfd_open,
            libc::SECCOMP_RET_ERRNO | libc::ESRCH as u32,
        );
        assert_eq!(lock.dead_holder(), None, "a live holder taken for dead");
    });
    looker.start().unwrap();
    let looked = looker.join().unwrap();
    holder.kill().unwrap();
    holder.join().unwrap();
    assert_eq!(looked, ExitStatus::Exited(0));
    assert_eq!(lock.acquire().unwrap(), Acquired::OwnerDied { pid });
    lock.release().unwrap();
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

/// A child that holds `lock` (a minute, unless killed), started, once it holds it.
fn a_child_holding(lock: &Lock) -> Process<impl FnOnce() + Send + '_> {
    let (mut r, w) = os_pipe::pipe().unwrap();
    let mut holder = Process::new(move || {
        let _held = lock.lock().unwrap();
        (&w).write_all(b"L").unwrap();
        std::thread::sleep(Duration::from_secs(60));
    });
    holder.start().unwrap();
    r.read_exact(&mut [0]).unwrap();
    holder
}
