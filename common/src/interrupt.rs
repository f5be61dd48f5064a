//! Ctrl-C and `kill`: a process that has started children ends them before it ends itself.
//!
//! The first [`Process::start`](crate::Process::start) of a process (or its first start by
//! spawn, before the child is made) installs a handler for SIGINT, SIGTERM and SIGHUP (each
//! one still at its default: a signal that is ignored, as under `nohup`, or that the program
//! handles itself, is left alone). When one arrives, the handler, in the process that
//! started the children:
//!
//! 1. sends SIGTERM to every child not yet reaped (pool workers, the manager's server, the
//!    examples' processes), then waits for each of them, with SIGKILL after two seconds
//!    (and, up to four seconds, for a child another thread is starting or reaping just
//!    then: see [`Busy`]); half as long in a child of this program, and half again at each
//!    generation below ([`grace_ns`]), so that a child has ended its own children before
//!    its parent's SIGKILL comes;
//! 2. ends the process by the same signal, so that its status is the one a shell expects:
//!    130 after Ctrl-C, 143 after SIGTERM.
//!
//! No orphan is left behind, and no zombie: the children are reaped before the parent ends,
//! so nothing depends on the process that adopts orphans (in a container, it may never reap
//! them). Down to the fifth generation below the program: the grace stops halving at the
//! fourth ([`grace_ns`]), so a process of the fifth may be killed by its parent before it
//! has ended its own children, which die with it (`PR_SET_PDEATHSIG`) and are left to the
//! adopter. In a child, the handler it inherits does only what the default would, end it
//! by the signal, until the child starts children of its own. Python leaves this to
//! `KeyboardInterrupt` and to `atexit`; a Rust program must do it in the handler, with
//! async-signal-safe calls only (`kill`, `waitpid`, `raise`).
//!
//! SIGKILL cannot be handled: for that, every child asks the kernel to kill it when its
//! parent dies (see [`Process`](crate::Process)).

use std::ffi::c_int;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

mod slots;
use slots::Slots;

/// The signals that end a process and its children.
const SIGNALS: [c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];
/// How long children have to end after SIGTERM, before SIGKILL, in the program as started
/// (see [`grace_ns`]).
const GRACE_NS: i64 = 2_000_000_000;

/// How many generations of this program's processes stand above this one: 0 in the program
/// as started, 1 in a child it started, 2 in a child of that... A child started by spawn
/// is told its generation in its request; a fork server's children are one below it.
static DEPTH: AtomicU32 = AtomicU32::new(0);

/// This process's generation (see [`DEPTH`]).
pub(crate) fn depth() -> u32 {
    DEPTH.load(Ordering::Relaxed)
}

/// In a child just forked by `Process::start`: one generation below its parent.
pub(crate) fn descend() {
    set_depth(depth().saturating_add(1));
}

/// In a process started by spawn, or forked by a fork server: its generation.
pub(crate) fn set_depth(depth: u32) {
    DEPTH.store(depth, Ordering::Relaxed);
}

/// How long this process's children have to end after SIGTERM: [`GRACE_NS`], halved at each
/// generation, down to a sixteenth (125 ms, from the fourth generation below the program
/// on; a fork server counts as one). A parent gives its child twice as long as that child
/// gives its own, and then kills it: with one grace for all, a child whose child ignored
/// SIGTERM was killed just before it killed and reaped that one, which was left, a zombie,
/// to whoever adopted it. So a process six generations below the program, or more, still
/// may be, as its parent and grandparent give the same grace.
pub(crate) fn grace_ns() -> i64 {
    GRACE_NS >> depth().min(4)
}

/// Pids of the children not yet reaped.
static CHILDREN: Slots = Slots::new();
/// The process whose handler is installed ([`crate::process_key`]): a forked child has
/// another key, so it installs its own when it starts children.
static INSTALLED_IN: AtomicU64 = AtomicU64::new(0);
/// Set for good by the handler before it reads a slot. Another thread that takes a pid out
/// of a slot checks it afterwards, and if it is set, does not reap the child (the handler
/// does): a pid the handler may have read stays this process's child. Its store and loads,
/// the count of steps ([`BUSY`]), and the slots' inserts, removals and loads that these
/// orders rest on are all `SeqCst`: of two orders such as the handler's store before its
/// reads and another thread's removal before its check, one side always sees the other.
static HANDLING: AtomicBool = AtomicBool::new(false);

/// True once the handler has started in this process: see [`HANDLING`].
pub(crate) fn handling() -> bool {
    HANDLING.load(Ordering::SeqCst)
}

/// Steps under way on threads other than the handler's that put a child into the set,
/// take one out of it, or signal one: a child being started by spawn ([`begin_start`]),
/// reaped (`process::wait`), or signalled ([`signal_child`]). While one is, the handler
/// reaps no child, and it does not end the process before they are over (see [`Busy`]).
/// `SeqCst`, as `HANDLING`.
static BUSY: AtomicUsize = AtomicUsize::new(0);

/// A step that puts a child into the set, takes one out, or signals one, on a thread of a
/// process that may have others: the three signals are held back in this thread, and the
/// handler, run meanwhile on another thread, waits for the step to end and reaps nothing
/// until then (up to twice the grace: a step blocked on a lock that the thread the handler
/// interrupted holds, std's environment lock in `Command::spawn`, say, waits that long). So
/// a child started as the signal comes is tracked before the process ends, and gets its
/// SIGTERM; a child taken out of the set to be reaped is put back if the handler has begun,
/// and the handler reaps it; and, within that bound, no pid the handler or the step signals
/// can have been reaped and given to another process meanwhile. Without this, a thread that
/// kept starting children kept the handler waiting for ever newer ones, or had some left
/// running, and a child whose handle was dropped as the handler ran was left unreaped.
pub(crate) struct Busy {
    _held: Held,
}

impl Busy {
    /// A step begins.
    pub(crate) fn new() -> Busy {
        let held = Held::new();
        BUSY.fetch_add(1, Ordering::SeqCst);
        Busy { _held: held }
    }

    /// Tracks a child just made. Where the handler has begun, it may have sent its signals
    /// before this child was tracked: this one gets its SIGTERM now.
    pub(crate) fn track(&self, pid: i32) {
        track(pid);
        if handling() {
            // SAFETY: kill touches no memory. The pid is a child not yet reaped: the handler
            // reaps nothing while this step is counted (up to twice the grace), and no other
            // code reaps a tracked child once HANDLING is set.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }

    /// Takes an exited child out of the set, so that it can be reaped: false when the
    /// handler has begun, which reaps it instead (it is left in the set, or put back).
    pub(crate) fn untrack(&self, pid: i32) -> bool {
        if handling() {
            return false;
        }
        CHILDREN.remove(pid as usize);
        if handling() {
            // The handler began between the two, and may have looked for the pid while it
            // was out: back in the set, where its next round (after this step) finds it.
            CHILDREN.insert(pid as usize);
            return false;
        }
        true
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        // Before the signals are let through (`_held` is dropped after this).
        BUSY.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Sends `signal` to a child of this process not yet reaped by its handle: in a step
/// ([`Busy`]), since the handler, once begun, reaps children that their handles have not.
/// Then it is not sent: the handler is ending the child already (SIGTERM, SIGKILL after
/// the grace), and the process.
pub(crate) fn signal_child(
    pid: nix::unistd::Pid,
    signal: nix::sys::signal::Signal,
) -> Result<(), crate::Error> {
    let busy = Busy::new();
    if handling() {
        return Ok(());
    }
    let sent = nix::sys::signal::kill(pid, signal).map_err(|e| crate::Error::os("kill", e));
    drop(busy);
    sent
}

/// Begins the start of a child by spawn, which may run beside other threads: the handler
/// installed first, so that a signal during the very first start ends that child too; and
/// refused ([`Error::Ending`](crate::Error::Ending)) once a signal is ending this process.
pub(crate) fn begin_start() -> Result<Busy, crate::Error> {
    install();
    let busy = Busy::new();
    if handling() {
        return Err(crate::Error::Ending);
    }
    Ok(busy)
}

/// Forgets, in a child just forked, the steps under way in its parent's other threads, and
/// a handler running in its parent (another thread may fork while it runs): neither exists
/// in the child, whose own handler has not begun.
pub(crate) fn forget_steps_in_child() {
    BUSY.store(0, Ordering::Relaxed);
    HANDLING.store(false, Ordering::Relaxed);
}

/// Installs the handler in this process, once; a child installs its own. Two threads that
/// start their process's first children at once install it once: one installs, the other
/// waits until it has, so that neither clears the set after the other has put a child in.
pub(crate) fn install() {
    let key = crate::process_key();
    // The handler is being installed by the process of this key (keys never use that bit).
    let installing = key | 1 << 63;
    loop {
        let now = INSTALLED_IN.load(Ordering::Acquire);
        if now == key {
            return;
        }
        if now == installing {
            std::thread::yield_now();
            continue;
        }
        // Not yet installed in this process (or in its parent, before a fork, whose children
        // are its siblings, not its own to end).
        if INSTALLED_IN
            .compare_exchange(now, installing, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            break;
        }
    }
    for slot in CHILDREN.slots() {
        slot.store(0, Ordering::Relaxed);
    }
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
    // Last: a thread waiting in `install` starts its child only once the handler is there.
    INSTALLED_IN.store(key, Ordering::Release);
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
        if HANDLING.swap(true, Ordering::SeqCst) {
            // Another signal (a second Ctrl-C) runs the handler on another thread already
            // (each blocks the three signals only in its own thread): that one ends the
            // children and the process. Two would reap and signal the same pids. (A child
            // forked meanwhile does not inherit the mark: `forget_steps_in_child`.)
            loop {
                // SAFETY: pause only waits for a signal.
                unsafe { libc::pause() };
            }
        }
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
                // SAFETY: kill touches no memory. The pid is a child not yet reaped: a
                // thread takes a child out of the set before it reaps it, and puts it back
                // instead once HANDLING is set; this handler clears a slot only once it has
                // reaped its child.
                unsafe { libc::kill(pid, signal) };
            }
        }
    };
    send(libc::SIGSTOP);
    send(libc::SIGTERM);
    send(libc::SIGCONT);
    let grace = grace_ns();
    let started = now_ns();
    loop {
        let waited = now_ns() - started;
        // Read before the set: while a step is under way on another thread ([`Busy`]), it
        // may still put a child in the set, so nothing is reaped and the process does not
        // end; up to twice the grace (a thread stuck in `exec` cannot keep it forever).
        let busy = BUSY.load(Ordering::SeqCst) > 0 && waited <= 2 * grace;
        let mut running = false;
        for slot in CHILDREN.slots() {
            let pid = slot.load(Ordering::SeqCst) as i32;
            if pid <= 0 {
                continue;
            }
            if busy {
                running = true;
                continue;
            }
            let mut status = 0;
            // SAFETY: waitpid writes only `status`, which is alive.
            let reaped = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if reaped == 0 || (reaped < 0 && errno() == libc::EINTR) {
                running = true;
            } else {
                // Reaped now, or already reaped elsewhere (ECHILD). Only this pid is cleared.
                let _ = slot.compare_exchange(pid as usize, 0, Ordering::SeqCst, Ordering::Relaxed);
            }
        }
        if !running && !busy {
            return;
        }
        if waited > grace {
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
