//! Who is who among processes: this process's pid and key, which every fork changes.

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_int};
use std::ops::{Deref, DerefMut};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, Once, PoisonError};

use nix::unistd::Pid;

/// This process's pid, cached; 0 until asked for in this process.
static PID: AtomicU32 = AtomicU32::new(0);
/// How many forks lie between this process and the one that first asked for its pid.
static GENERATION: AtomicU32 = AtomicU32::new(0);
static AT_FORK: Once = Once::new();

/// One of this crate's two lists (the private descriptors, the detached children): a
/// `Mutex` that every fork takes too, so that the child gets the list whole and unlocked.
pub(crate) type List<T> = Mutex<Vec<T>>;

/// A list, locked by [`lock`]; counted in `LOCKING_HERE` while it lives. Fields drop in
/// order: the lock is let go of before the count goes down, so that the count covers it for
/// as long as it is held.
pub(crate) struct Locked<T: 'static> {
    guard: MutexGuard<'static, Vec<T>>,
    _counted: Counted,
}

/// One count in `LOCKING_HERE`, from `new` until dropped.
struct Counted;

impl Counted {
    fn new() -> Self {
        let _ = LOCKING_HERE.try_with(|n| n.set(n.get() + 1));
        Counted
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let _ = LOCKING_HERE.try_with(|n| n.set(n.get() - 1));
    }
}

thread_local! {
    /// The lists' locks, held by the thread that forks from just before `fork` until just
    /// after it.
    static HELD_ACROSS_FORK: RefCell<Option<(Locked<RawFd>, Locked<Pid>)>> =
        const { RefCell::new(None) };
    /// How many of the lists' locks this thread holds or waits for.
    static LOCKING_HERE: Cell<u32> = const { Cell::new(0) };
    /// How many forks on this thread, under way, took no lock (forks from signal handlers
    /// that interrupted this thread, nested in one another).
    static SKIPPED: Cell<u32> = const { Cell::new(0) };
}

/// Locks one of the lists.
pub(crate) fn lock<T>(list: &'static List<T>) -> Locked<T> {
    // Registered as the program is loaded (and first thing in a spawned child or a fork
    // server); here too, in case another library's constructor comes here before that.
    watch_forks();
    // Counted before it may wait: a signal handler that forks on this thread meanwhile must
    // not wait for the lock (see `before_fork`).
    let counted = Counted::new();
    Locked {
        guard: list.lock().unwrap_or_else(PoisonError::into_inner),
        _counted: counted,
    }
}

impl<T> Deref for Locked<T> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        &self.guard
    }
}

impl<T> DerefMut for Locked<T> {
    fn deref_mut(&mut self) -> &mut Vec<T> {
        &mut self.guard
    }
}

/// Runs in the thread that forks, just before `fork`, whichever code forks: takes the locks
/// of this crate's lists, so that no other thread holds one, half-way through changing its
/// list, at the moment the child's copy of the memory is taken. The child has only the
/// forking thread: a lock another thread held would stay held there for ever, and the
/// child's next `Private::new` or start would wait for it (a process forked by
/// `nix::unistd::daemon` while another thread made a pipe, say). The C library does the same
/// for `malloc`'s locks. None of this crate's code forks while it holds either lock; a
/// signal handler that forks may have interrupted this thread in one, though: then the
/// locks are not taken, where this thread would wait for itself for ever. (Such a child may
/// do only what is safe in a signal handler, which these lists are not.)
extern "C" fn before_fork() {
    if LOCKING_HERE.try_with(Cell::get).unwrap_or(0) > 0 {
        let _ = SKIPPED.try_with(|n| n.set(n.get() + 1));
        return;
    }
    let lists = (
        lock(&crate::private_fd::REGISTERED),
        lock(&crate::process::DETACHED),
    );
    // Where the thread's storage is gone (a fork from a thread-local's destructor), the
    // locks are let go at once: nothing is protected then, but nothing waits either.
    let _ = HELD_ACROSS_FORK.try_with(|held| {
        if let Ok(mut held) = held.try_borrow_mut() {
            *held = Some(lists);
        }
    });
}

/// Runs in the parent just after `fork`, and first thing in the child: lets go of the locks
/// that this fork's [`before_fork`] took, if it took them; not those of the fork that a
/// signal handler's fork interrupted, which lets go of its own.
extern "C" fn after_fork() {
    if SKIPPED.try_with(Cell::get).unwrap_or(0) > 0 {
        let _ = SKIPPED.try_with(|n| n.set(n.get() - 1));
        return;
    }
    let lists = HELD_ACROSS_FORK.try_with(|held| held.try_borrow_mut().ok()?.take());
    drop(lists);
}

/// Runs in every child just after `fork`, whichever code forks.
extern "C" fn after_fork_in_child() {
    // The forking thread's locks, copied: this thread holds them, and lets go of them.
    after_fork();
    PID.store(0, Ordering::Relaxed);
    GENERATION.fetch_add(1, Ordering::Relaxed);
    crate::interrupt::forget_steps_in_child();
    crate::shm::end_a_child_with_borrows();
}

/// Registers the handlers above as the program is loaded, before `main`, while it has one
/// thread: glibc calls each function of the executable's `.init_array` section then (as
/// `start/child.rs` does to run a spawned child). Registered at a program's first use of
/// this crate instead, they could miss a fork that another thread had begun meanwhile (its
/// handlers are fixed when it begins), or copy into its child a `Once` still being run,
/// which no thread would ever finish there. A spawned child or a fork server never reaches
/// `main`, and may run its target before this (the order of `.init_array` entries is the
/// linker's): `start/child.rs` registers them first thing too. In a shared library loaded
/// with `dlopen`, this runs then, in the loading thread, maybe beside others: a fork another
/// thread began meanwhile runs without them, as before.
// SAFETY (of the attribute): the section holds pointers to functions of this signature,
// which the loader calls once each with argc, argv and envp (before `main` in an executable,
// at `dlopen` in a shared library); that is what this static is.
#[used]
#[unsafe(link_section = ".init_array")]
static WATCH_FORKS_AT_LOAD: extern "C" fn(c_int, *const *const c_char, *const *const c_char) =
    watch_forks_at_load;

extern "C" fn watch_forks_at_load(_: c_int, _: *const *const c_char, _: *const *const c_char) {
    watch_forks();
}

/// Makes the handlers above run at every fork from now on, by any code that forks through
/// the C library (`fork`, `daemon`, a library's own fork), not only by [`Process`]. Done as
/// the program is loaded (above); called again, it does nothing.
///
/// [`Process`]: crate::Process
pub(crate) fn watch_forks() {
    AT_FORK.call_once(|| {
        // SAFETY: `before_fork` and `after_fork` run in the forking thread as any
        // of its code does, around the fork. In the child, `after_fork_in_child` unlocks
        // mutexes its thread holds (an atomic swap, and a futex wake where a waiter was
        // counted: a system call), loads and stores atomics, uses thread-locals whose use
        // registers nothing there (those without a destructor, and `HELD_ACROSS_FORK`,
        // which `before_fork` used before the fork) and, where it must end the child,
        // calls write(2) and _exit(2): all safe in a child just forked from a process with
        // threads, whose other threads' locks it does not touch.
        unsafe {
            libc::pthread_atfork(
                Some(before_fork),
                Some(after_fork),
                Some(after_fork_in_child),
            )
        };
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

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::thread;
    use std::time::Duration;

    use nix::sys::wait::{WaitStatus, waitpid};
    use nix::unistd::Pid;

    /// Another thread holds one of the crate's locks while this one forks with the C
    /// library's `fork`, as a library (or `daemon`) would. The child then uses the locked
    /// list: it must not wait for a lock whose holder does not exist there (an alarm ends
    /// it if it does).
    fn fork_while_another_thread_holds(hold: fn() -> Box<dyn std::any::Any>) {
        let (held, is_held) = mpsc::channel();
        let holder = thread::spawn(move || {
            let guard = hold();
            held.send(()).unwrap();
            thread::sleep(Duration::from_millis(200));
            drop(guard);
        });
        is_held.recv().unwrap();
        super::watch_forks();
        // SAFETY: the child runs `use_the_lists`, which allocates (the C library makes that
        // safe after fork), takes only the locks this test is about and ends with `_exit`.
        let pid = match unsafe { libc::fork() } {
            0 => use_the_lists(),
            pid => Pid::from_raw(pid),
        };
        holder.join().unwrap();
        assert_eq!(waitpid(pid, None), Ok(WaitStatus::Exited(pid, 0)));
    }

    /// In the child: makes a `Private` and reaps the detached children, then exits 0 (1 where
    /// either fails; killed by SIGALRM where it waits for ever).
    fn use_the_lists() -> ! {
        // SAFETY: alarm takes an integer; its signal ends this child if it hangs.
        unsafe { libc::alarm(10) };
        let made = std::fs::File::open("/dev/null")
            .ok()
            .and_then(|file| crate::Private::new(file).ok());
        crate::process::reap_detached(crate::process::Block::No);
        // SAFETY: `_exit` ends the child at once, as a forked child of a test must.
        unsafe { libc::_exit(if made.is_some() { 0 } else { 1 }) }
    }

    #[test]
    fn a_child_forked_while_the_private_list_is_locked_can_use_it() {
        fork_while_another_thread_holds(|| Box::new(super::lock(&crate::private_fd::REGISTERED)));
    }

    #[test]
    fn a_child_forked_while_the_detached_list_is_locked_can_use_it() {
        fork_while_another_thread_holds(|| Box::new(super::lock(&crate::process::DETACHED)));
    }

    /// A signal handler that forks (a crash reporter's, say) on a thread that holds a list's
    /// lock: the fork must not wait for the lock its own thread holds.
    #[test]
    fn a_fork_from_a_signal_handler_does_not_wait_for_its_own_thread() {
        super::watch_forks();
        // SAFETY: the child, with this thread alone, runs `fork_in_a_signal_handler`, which
        // allocates nothing but the list's lock, and ends with `_exit`.
        let pid = match unsafe { libc::fork() } {
            0 => fork_in_a_signal_handler(),
            pid => Pid::from_raw(pid),
        };
        assert_eq!(waitpid(pid, None), Ok(WaitStatus::Exited(pid, 0)));
    }

    /// Holds the private list's lock while a signal whose handler forks comes; exits 0 once
    /// the handler has returned (killed by SIGALRM where the fork waits for ever).
    fn fork_in_a_signal_handler() -> ! {
        extern "C" fn handler(_: libc::c_int) {
            // SAFETY: fork, and in the child `_exit`, are what this test is about; the
            // parent reaps the child with waitpid, which touches only `status`.
            unsafe {
                match libc::fork() {
                    0 => libc::_exit(0),
                    pid => {
                        let mut status = 0;
                        libc::waitpid(pid, &mut status, 0);
                    }
                }
            }
        }
        // SAFETY: alarm takes an integer; signal installs a handler that lives for the
        // whole program; raise runs it on this thread, before it returns.
        unsafe {
            libc::alarm(10);
            libc::signal(libc::SIGUSR1, handler as *const () as libc::sighandler_t);
        }
        let held = super::lock(&crate::private_fd::REGISTERED);
        // SAFETY: as above.
        unsafe { libc::raise(libc::SIGUSR1) };
        drop(held);
        // SAFETY: `_exit` ends the child at once, as a forked child of a test must.
        unsafe { libc::_exit(0) }
    }
}
