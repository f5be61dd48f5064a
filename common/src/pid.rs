//! Who is who among processes: this process's pid and key, which every fork changes.

use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

/// This process's pid, cached; 0 until asked for in this process.
static PID: AtomicU32 = AtomicU32::new(0);
/// How many forks lie between this process and the one that first asked for its pid.
static GENERATION: AtomicU32 = AtomicU32::new(0);
static AT_FORK: Once = Once::new();

/// Runs in every child just after `fork`, whichever code forks.
extern "C" fn after_fork_in_child() {
    PID.store(0, Ordering::Relaxed);
    GENERATION.fetch_add(1, Ordering::Relaxed);
    crate::interrupt::forget_steps_in_child();
    crate::shm::end_a_child_with_borrows();
}

/// Makes `after_fork_in_child` run in every child forked from now on, by any code that forks
/// through the C library (`fork`, `daemon`, a library's own fork), not only by [`Process`].
///
/// [`Process`]: crate::Process
pub(crate) fn watch_forks() {
    AT_FORK.call_once(|| {
        // SAFETY: the handler only stores to atomics and, where it must end the child,
        // calls write(2) and _exit(2), all async-signal-safe, so it is safe in a child just
        // after fork; the other two handlers are absent.
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
    });
}

/// This process's id, as `std::process::id()` gives it, without a system call each time:
/// it is cached, and the cache is cleared in every child at `fork` (by a `pthread_atfork`
/// handler, whichever code forks).
#[inline]
pub fn current_pid() -> u32 {
    watch_forks();
    match PID.load(Ordering::Relaxed) {
        0 => {
            let pid = std::process::id();
            PID.store(pid, Ordering::Relaxed);
            pid
        }
        pid => pid,
    }
}

/// A number that tells this process apart from every other process that holds a copy of
/// its memory: its pid, and how many forks led to it. A pid alone does not: once a process
/// has died its pid may be given again, and a child of a child can get it, with copies of
/// the dead process's objects (a pool, a private descriptor) that must not take it for
/// their owner. Objects that belong to one process keep this key, not the pid.
#[inline]
pub fn process_key() -> u64 {
    let pid = current_pid();
    key(pid, GENERATION.load(Ordering::Relaxed))
}

/// [`process_key`] in a signal handler: no `Once`, and the pid from `getpid`.
pub(crate) fn process_key_in_handler() -> u64 {
    // SAFETY: getpid has no preconditions and is async-signal-safe.
    let pid = unsafe { libc::getpid() } as u32;
    key(pid, GENERATION.load(Ordering::Relaxed))
}

#[inline]
fn key(pid: u32, generation: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(pid)
}
