//! The holder's record across a release: a thread that takes the lock just after another
//! released it, and is killed before it records itself, must leave no record that names the
//! releaser, a live process (the waiter would then abandon the lock).
//!
//! The two windows are widened by putting this binary's own `pthread_mutex_clocklock` and
//! `pthread_mutex_unlock` in front of glibc's (the lock crate's calls resolve to these):
//! one pauses just after a successful unlock, as a preempted releaser would; the other
//! raises SIGKILL just after a successful lock, as a kill arriving at that instruction
//! would. `harness = false`: fork is refused while libtest's threads run.

// A failed unwrap is a failed test here, as in #[test] functions.
#![allow(clippy::unwrap_used)]

// The workspace's test harness, included by path rather than named as a dependency: a copy
// of this section without `testkit/` still builds and runs (its tests need `testkit/` too).
#[path = "../../testkit/src/lib.rs"]
#[allow(dead_code, unused_imports)]
mod testkit;

use std::cell::Cell;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::sync::OnceLock;
use std::time::Duration;

use common::{ExitStatus, Process};
use lock::{Acquired, Lock};
use testkit::{assert_no_children, run_tests};

type MutexFn = unsafe extern "C" fn(*mut libc::pthread_mutex_t) -> libc::c_int;
type ClockLockFn = unsafe extern "C" fn(
    *mut libc::pthread_mutex_t,
    libc::clockid_t,
    *const libc::timespec,
) -> libc::c_int;
static REAL_LOCK: OnceLock<ClockLockFn> = OnceLock::new();
static REAL_UNLOCK: OnceLock<MutexFn> = OnceLock::new();

thread_local! {
    /// After its next unlock, this thread writes a byte to this descriptor, then pauses.
    static PAUSE_AFTER_UNLOCK: Cell<i32> = const { Cell::new(-1) };
    static DIE_AFTER_LOCK: Cell<bool> = const { Cell::new(false) };
    static DIE_BEFORE_UNLOCK: Cell<bool> = const { Cell::new(false) };
}

/// glibc's own function `name`, as a pointer to be cast to its type.
fn real(name: &std::ffi::CStr) -> *mut libc::c_void {
    // SAFETY: dlsym reads a NUL-terminated name; RTLD_NEXT is a valid handle.
    let f = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
    assert!(!f.is_null(), "no {name:?} in libc");
    f
}

/// # Safety
/// As glibc's `pthread_mutex_clocklock`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_mutex_clocklock(
    m: *mut libc::pthread_mutex_t,
    clock: libc::clockid_t,
    abstime: *const libc::timespec,
) -> libc::c_int {
    let real_lock = REAL_LOCK.get_or_init(|| {
        // SAFETY: glibc's pthread_mutex_clocklock is a function of this type.
        unsafe {
            std::mem::transmute::<*mut libc::c_void, ClockLockFn>(real(c"pthread_mutex_clocklock"))
        }
    });
    // SAFETY: the caller's contract is pthread_mutex_clocklock's.
    let rc = unsafe { real_lock(m, clock, abstime) };
    if rc == 0 && DIE_AFTER_LOCK.with(Cell::get) {
        // SAFETY: raise has no preconditions; SIGKILL ends the process here.
        unsafe { libc::raise(libc::SIGKILL) };
    }
    rc
}

/// # Safety
/// As glibc's `pthread_mutex_unlock`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_mutex_unlock(m: *mut libc::pthread_mutex_t) -> libc::c_int {
    if DIE_BEFORE_UNLOCK.with(Cell::get) {
        // SAFETY: raise has no preconditions; SIGKILL ends the process here.
        unsafe { libc::raise(libc::SIGKILL) };
    }
    let real_unlock = REAL_UNLOCK.get_or_init(|| {
        // SAFETY: glibc's pthread_mutex_unlock is a function of this type.
        unsafe { std::mem::transmute::<*mut libc::c_void, MutexFn>(real(c"pthread_mutex_unlock")) }
    });
    // SAFETY: the caller's contract is pthread_mutex_unlock's.
    let rc = unsafe { real_unlock(m) };
    let tell = PAUSE_AFTER_UNLOCK.with(|p| p.replace(-1));
    if rc == 0 && tell >= 0 {
        // SAFETY: writes one byte from a live buffer to a descriptor the test keeps open.
        unsafe { libc::write(tell, b"x".as_ptr().cast(), 1) };
        std::thread::sleep(Duration::from_secs(1));
    }
    rc
}

fn main() {
    run_tests(&[
        (
            "a_holder_killed_before_recording_itself_is_not_taken_for_the_last_releaser",
            a_holder_killed_before_recording_itself_is_not_taken_for_the_last_releaser,
        ),
        (
            "a_holder_killed_while_its_panic_releases_is_told_once",
            a_holder_killed_while_its_panic_releases_is_told_once,
        ),
        (
            "a_taker_killed_before_recording_itself_leaves_the_mark_of_a_panic",
            a_taker_killed_before_recording_itself_leaves_the_mark_of_a_panic,
        ),
        (
            "a_panic_in_a_live_process_then_a_taker_killed_is_not_an_abandoned_lock",
            a_panic_in_a_live_process_then_a_taker_killed_is_not_an_abandoned_lock,
        ),
    ]);
}

fn a_holder_killed_before_recording_itself_is_not_taken_for_the_last_releaser() {
    let lock = Lock::new().unwrap();
    let (mut r, w) = os_pipe::pipe().unwrap();
    let mut releaser = Process::new(|| {
        let held = lock.lock().unwrap();
        PAUSE_AFTER_UNLOCK.with(|p| p.set(w.as_raw_fd()));
        drop(held); // Unlocked: it says so, pauses a second, and lives on.
        std::thread::sleep(Duration::from_secs(30));
    });
    releaser.start().unwrap();
    r.read_exact(&mut [0]).unwrap();
    kill_a_taker_before_its_record(&lock);
    let got = lock.acquire_timeout(Duration::from_secs(5));
    releaser.kill().unwrap();
    releaser.join().unwrap();
    // Neither abandoned (the record would name the releaser, alive) nor told as a death
    // of one who had handed something out.
    assert_eq!(
        got.unwrap(),
        Some(Acquired::Released),
        "the lock of a holder that handed nothing out"
    );
    lock.release().unwrap();
    assert_no_children();
}

/// A holder panics, and is killed while its guard's drop releases the lock: after the guard
/// marked the lock, before the unlock. The next holder is told of the death once; the one
/// after it takes the lock as usual.
fn a_holder_killed_while_its_panic_releases_is_told_once() {
    let lock = Lock::new().unwrap();
    let (pid, ended) = a_holder_that_panics(&lock, true);
    assert_eq!(
        ended,
        ExitStatus::Signaled(nix::sys::signal::Signal::SIGKILL)
    );
    assert_told_once_of_the_panic_of(&lock, pid);
    assert_no_children();
}

/// A holder panics half-way and its guard releases the lock, marked; the next to take it is
/// killed before it records itself. The one after it is told of the first death, by the
/// holder's pid: the mark goes only once a taker has recorded itself.
fn a_taker_killed_before_recording_itself_leaves_the_mark_of_a_panic() {
    let lock = Lock::new().unwrap();
    let (pid, ended) = a_holder_that_panics(&lock, false);
    assert_eq!(ended, ExitStatus::Exited(common::PANIC_EXIT_CODE));
    kill_a_taker_before_its_record(&lock);
    assert_told_once_of_the_panic_of(&lock, pid);
    assert_no_children();
}

/// A thread of this process panics half-way holding the lock (its guard marks the lock and
/// releases it), and this process lives on; the next to take the lock is killed before it
/// records itself. The one after it is told of the panic, by this process's pid: the mark
/// says whose panic it was, and the record (empty) who died. (Asked whether the panicking
/// process had ended, the lock found it alive and was abandoned for good.)
fn a_panic_in_a_live_process_then_a_taker_killed_is_not_an_abandoned_lock() {
    let lock = Lock::new().unwrap();
    std::thread::scope(|s| {
        let panicked = s
            .spawn(|| {
                let _held = lock.lock().unwrap();
                if lock.holder().is_some() {
                    panic!("half-way");
                }
            })
            .join();
        assert!(panicked.is_err());
    });
    kill_a_taker_before_its_record(&lock);
    assert_told_once_of_the_panic_of(&lock, std::process::id());
    assert_no_children();
}

/// Starts a process that takes `lock` and is killed right after, before it records itself.
fn kill_a_taker_before_its_record(lock: &Lock) {
    let mut victim = Process::new(|| {
        DIE_AFTER_LOCK.with(|d| d.set(true));
        let _ = lock.acquire(); // Killed after the lock, before its record.
    });
    victim.start().unwrap();
    assert_eq!(
        victim.join().unwrap(),
        ExitStatus::Signaled(nix::sys::signal::Signal::SIGKILL)
    );
}

/// The next acquire of `lock` is told that `pid` panicked holding it (`OwnerDied`), and the
/// one after it takes the lock as usual.
fn assert_told_once_of_the_panic_of(lock: &Lock, pid: u32) {
    let first = lock.acquire();
    if first.is_ok() {
        lock.release().unwrap();
    }
    assert_eq!(
        first.unwrap(),
        Acquired::OwnerDied { pid },
        "the holder that panicked"
    );
    assert_eq!(lock.acquire().unwrap(), Acquired::Released, "told twice");
    lock.release().unwrap();
}

/// Runs a process that takes `lock` and panics half-way (killed as its guard releases the
/// lock, after marking it, when `killed_releasing`); returns its pid and how it ended.
fn a_holder_that_panics(lock: &Lock, killed_releasing: bool) -> (u32, ExitStatus) {
    let mut holder = Process::new(|| {
        let _held = lock.lock().unwrap();
        DIE_BEFORE_UNLOCK.with(|d| d.set(killed_releasing));
        if lock.holder().is_some() {
            panic!("half-way");
        }
    });
    holder.start().unwrap();
    let pid = holder.pid().unwrap().as_raw() as u32;
    (pid, holder.join().unwrap())
}
