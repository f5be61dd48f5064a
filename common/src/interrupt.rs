//! Ctrl-C and `kill`: a process that has started children ends them before it ends itself.
//!
//! The first [`Process::start`](crate::Process::start) of a process installs a handler for
//! SIGINT, SIGTERM and SIGHUP (each one still at its default: a signal that is ignored, as
//! under `nohup`, or that the program handles itself, is left alone). When one arrives, the
//! handler, in the process that started the children:
//!
//! 1. sends SIGTERM to every child not yet reaped (pool workers, the manager's server, the
//!    examples' processes), then waits for each of them, with SIGKILL after two seconds;
//! 2. ends the process by the same signal, so that its status is the one a shell expects:
//!    130 after Ctrl-C, 143 after SIGTERM.
//!
//! No orphan is left behind, and no zombie: the children are reaped before the parent ends,
//! so nothing depends on the process that adopts orphans (in a container, it may never reap
//! them). In a child, the handler it inherits does only what the default would, end it by
//! the signal, until the child starts children of its own. Python leaves this to
//! `KeyboardInterrupt` and to `atexit`; a Rust program must do it in the handler, with
//! async-signal-safe calls only (`kill`, `waitpid`, `raise`).
//!
//! SIGKILL cannot be handled: for that, every child asks the kernel to kill it when its
//! parent dies (see [`Process`](crate::Process)).

use std::ffi::c_int;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

mod slots;
use slots::Slots;

/// The signals that end a process and its children.
const SIGNALS: [c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];
/// How long children have to end after SIGTERM, before SIGKILL.
const GRACE_NS: i64 = 2_000_000_000;

/// Pids of the children not yet reaped.
static CHILDREN: Slots = Slots::new();
/// The process whose handler is installed ([`crate::process_key`]): a forked child has
/// another key, so it installs its own when it starts children.
static INSTALLED_IN: AtomicU64 = AtomicU64::new(0);
/// Set for good by the handler before it reads a slot. Another thread that takes a pid out
/// of a slot checks it afterwards, and if it is set, does not reap the child (the handler
/// does): a pid the handler may have read stays this process's child. Every access to it and to the slots is `SeqCst`, so of the two orders
/// (the handler's store before its reads, the other thread's removal before its check) one
/// side always sees the other.
static HANDLING: AtomicBool = AtomicBool::new(false);

/// True once the handler has started in this process: see [`HANDLING`].
pub(crate) fn handling() -> bool {
    HANDLING.load(Ordering::SeqCst)
}

/// Children being started, by spawn, on threads other than the handler's: it waits for them
/// (see [`Starting`]). `SeqCst`, as `HANDLING`, for the same reason.
static STARTING: AtomicUsize = AtomicUsize::new(0);

/// The start of a child on a thread of a process that may have others (spawn): the handler,
/// run meanwhile on another thread, waits until the child is tracked, and no start begins
/// once it has run. Without this, a thread that kept starting children kept the handler
/// waiting for ever newer ones, and a child made while the handler ended the process was
/// left running, an orphan.
pub(crate) struct Starting {
    _held: Held,
}

impl Starting {
    /// Begins a start, with the three signals held back in this thread; fails once a
    /// signal is ending this process.
    pub(crate) fn begin() -> Result<Starting, crate::Error> {
        let held = Held::new();
        STARTING.fetch_add(1, Ordering::SeqCst);
        let starting = Starting { _held: held };
        if handling() {
            return Err(crate::Error::Ending);
        }
        Ok(starting)
    }

    /// Tracks the child just made. Where the handler has begun, it may have signalled the
    /// children before this one was tracked: this one gets its SIGTERM now.
    pub(crate) fn track(&self, pid: i32) {
        track(pid);
        if handling() {
            // SAFETY: kill touches no memory. The pid is a child not yet reaped: tracked,
            // and no one reaps a tracked child once HANDLING is set but the handler.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        // Before the signals are let through (`_held` is dropped after this).
        STARTING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Installs the handler in this process, once; a child installs its own.
pub(crate) fn install() {
    let key = crate::process_key();
    if INSTALLED_IN.load(Ordering::Relaxed) == key {
        return;
    }
    // A child forked after its parent installed the handler: the children it inherited are
    // its parent's (its siblings), not its own to end.
    for slot in CHILDREN.slots() {
        slot.store(0, Ordering::Relaxed);
    }
    INSTALLED_IN.store(key, Ordering::Relaxed);
    let ours = on_signal as extern "C" fn(c_int) as libc::sighandler_t;
    for signal in SIGNALS {
        // SAFETY: a zeroed sigaction is a valid value of the C struct (no handler, no flags,
        // empty mask), and sigaction only reads `action` and writes `old`, both alive here.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, ptr::null(), &mut old) != 0
                || (old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != ours)
            {
                continue;
            }
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = ours;
            action.sa_mask = signal_set();
            libc::sigaction(signal, &action, ptr::null_mut());
        }
    }
}

/// The three signals, as a set.
fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set that sigaddset then adds to; both only write it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in SIGNALS {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

/// Holds back SIGINT, SIGTERM and SIGHUP until dropped: a signal that arrives meanwhile is
/// handled at the drop. Made around a step that must not be cut in two: a `fork` and the
/// recording of its child.
pub(crate) struct Held {
    old: libc::sigset_t,
}

impl Held {
    /// Blocks the three signals in the calling thread.
    pub(crate) fn new() -> Held {
        let set = signal_set();
        // SAFETY: a zeroed sigset_t is valid for pthread_sigmask to overwrite with the old mask.
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: both sets are valid and alive; pthread_sigmask cannot fail with SIG_BLOCK
        // and a valid set.
        unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old) };
        Held { old }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // SAFETY: `old` is the mask saved by `new`; restoring it is always valid.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, ptr::null_mut()) };
    }
}

/// Unblocks the three signals, in a process just exec'd by a thread that held them back
/// (the mask survives exec).
pub(crate) fn release_in_new_process() {
    let set = signal_set();
    // SAFETY: the set is valid and alive; unblocking touches no other memory.
    unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, ptr::null_mut()) };
}

/// Records a child just forked, so that the handler ends it. Call it while [`Held`].
pub(crate) fn track(pid: i32) {
    install();
    CHILDREN.insert(pid as usize);
}

/// Forgets a child that has ended, before it is reaped: a pid in the set always belongs to
/// one of this process's children, alive or a zombie, so the handler may signal it.
pub(crate) fn untrack(pid: i32) {
    CHILDREN.remove(pid as usize);
}

/// The handler. Only async-signal-safe calls from here on: no allocation, no lock, no stdio.
/// In a child that inherited it and has started no child of its own, it is the default
/// action: the process ends by the signal. (Leaving it in place costs a child nothing at
/// fork, where putting the defaults back would take six system calls.)
extern "C" fn on_signal(signal: c_int) {
    if crate::pid::process_key_in_handler() == INSTALLED_IN.load(Ordering::Relaxed) {
        HANDLING.store(true, Ordering::SeqCst);
        end_children();
    }
    die(signal)
}

/// SIGTERM to every tracked child, then reap them all; SIGKILL to those still there after
/// the grace period. The children are stopped first and continued last, so that each has
/// SIGTERM pending before any of them ends: a child never sees another end (a manager's
/// client its server, say) and reports it as an error on its way out.
fn end_children() {
    let send = |signal| {
        for slot in CHILDREN.slots() {
            let pid = slot.load(Ordering::SeqCst) as i32;
            if pid > 0 {
                // SAFETY: kill touches no memory. The pid is a child not yet reaped: `wait`
                // untracks a child before it reaps it, and reaps none once HANDLING is set,
                // so it cannot have been reused by another process.
                unsafe { libc::kill(pid, signal) };
            }
        }
    };
    send(libc::SIGSTOP);
    send(libc::SIGTERM);
    send(libc::SIGCONT);
    let started = now_ns();
    loop {
        let mut running = false;
        for slot in CHILDREN.slots() {
            let pid = slot.load(Ordering::SeqCst) as i32;
            if pid <= 0 {
                continue;
            }
            let mut status = 0;
            // SAFETY: waitpid writes only `status`, which is alive.
            let reaped = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if reaped == 0 || (reaped < 0 && errno() == libc::EINTR) {
                running = true;
            } else {
                // Reaped now, or already reaped elsewhere (ECHILD).
                slot.store(0, Ordering::Release);
            }
        }
        // A start under way on another thread (`Starting`) is waited for too, up to twice
        // the grace: its child is about to be tracked, and gets its SIGTERM then.
        let waited = now_ns() - started;
        if !running && (STARTING.load(Ordering::SeqCst) == 0 || waited > 2 * GRACE_NS) {
            return;
        }
        if waited > GRACE_NS {
            // Again at each round: a child tracked after the first SIGKILL gets one too.
            send(libc::SIGKILL);
        }
        let pause = libc::timespec {
            tv_sec: 0,
            tv_nsec: 1_000_000,
        };
        // SAFETY: nanosleep reads `pause` and may write nothing else (null remainder).
        unsafe { libc::nanosleep(&pause, ptr::null_mut()) };
    }
}

/// Ends the process by `signal`, with the default action, as if no handler had been there.
fn die(signal: c_int) -> ! {
    // SAFETY: signal, sigprocmask, raise and _exit are async-signal-safe and read only the
    // set made here. Unblocking the signal (the handler runs with it blocked) makes raise
    // deliver it at once, and the default action ends the process.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, ptr::null_mut());
        libc::raise(signal);
        libc::_exit(128 + signal)
    }
}

fn now_ns() -> i64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes `now`, which is alive; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec * 1_000_000_000 + now.tv_nsec
}

fn errno() -> c_int {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Whether `pid` is in the set of children the handler would signal.
#[cfg(test)]
pub(crate) fn is_tracked(pid: i32) -> bool {
    CHILDREN
        .slots()
        .any(|slot| slot.load(Ordering::Acquire) == pid as usize)
}

/// Every pid tracked so far, for a test that watches the set from another thread.
#[cfg(test)]
pub(crate) fn tracked() -> Vec<i32> {
    CHILDREN
        .slots()
        .map(|slot| slot.load(Ordering::Acquire) as i32)
        .filter(|&pid| pid > 0)
        .collect()
}
