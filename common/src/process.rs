//! A child process made by `fork` that runs a closure: Python's `multiprocessing.Process`.

use std::fmt;
use std::io::{self, Write};
use std::panic::{self, AssertUnwindSafe};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::{ForkResult, Pid, fork};

use crate::{Error, SharedBorrow, interrupt, private_fd};

mod wait;
pub use wait::ExitStatus;
pub(crate) use wait::{Block, DETACHED, detach, keep_children_to_reap, reap_detached, wait};

/// The exit code of a child whose target panicked, as Rust gives a panicking `main`.
pub const PANIC_EXIT_CODE: i32 = 101;

/// What a child's target returns, and the exit code it makes: `()` exits 0; a `Result`
/// exits 0 when `Ok`, and 1 when `Err`, after printing `Error: ` and the error to stderr, as
/// a Rust `main` does. So a target can use `?`.
///
/// A closure whose only statement is a `panic!` returns `!`, which is not an `Outcome`:
/// give such a target a named `fn` that returns `()`.
pub trait Outcome {
    /// The child's exit code for this outcome.
    fn exit_code(self) -> i32;
}

impl Outcome for () {
    fn exit_code(self) -> i32 {
        0
    }
}

impl<E: fmt::Debug> Outcome for Result<(), E> {
    fn exit_code(self) -> i32 {
        match self {
            Ok(()) => 0,
            Err(error) => {
                crate::error_line(format_args!("{error:?}"));
                1
            }
        }
    }
}

/// A child process that runs `target`, made by `fork` when [`start`](Process::start) is called.
///
/// The child is a copy of the parent: it sees the parent's variables as they were at `start`,
/// and what it changes, it changes in its own copy only. It prints to the same stdout.
///
/// ```no_run
/// use common::Process;
///
/// let mut p = Process::new(|| println!("hello bob"));
/// p.start()?;
/// p.join()?;
/// # Ok::<(), common::Error>(())
/// ```
///
/// Rules that hold for every child:
/// - stdout is flushed before `fork`, so no half-written line is printed twice;
/// - `fork` is refused while other threads run (see [`Error::ThreadsRunning`]), and while a
///   guard of shared memory is held (see [`SharedBorrow`]);
/// - the child closes, before anything else, the descriptors that other mechanisms keep for
///   their own process (see [`Private`](crate::Private)): a pool's pipes, say;
/// - the child runs `target` and then ends with `_exit`: it never returns into the caller's
///   code, and runs none of the parent's destructors. Its exit code is 0, or 101 after a panic
///   (the panic message goes to stderr);
/// - every child is reaped. A handle dropped while its child runs does not wait: as in Python,
///   the child goes on, and is joined by the next `start` that finds it finished, or when the
///   program exits (Python joins its non-daemon children at exit too). A handle never
///   dropped, because the program ended with `std::process::exit` (which runs no
///   destructor), is not waited for: its child is killed as the program ends, below. Join
///   or drop handles before `exit`;
/// - Ctrl-C, SIGTERM or SIGHUP sent to the parent ends and reaps every child before it ends
///   the parent (see `interrupt.rs`), and a parent killed by SIGKILL takes its children with
///   it (the kernel kills them: `PR_SET_PDEATHSIG`): none is left as an orphan (no process
///   down to the fifth generation below the program: see `interrupt.rs`).
pub struct Process<F> {
    target: Option<F>,
    pid: Option<Pid>,
    status: Option<ExitStatus>,
}

impl<F: FnOnce() -> R + Send, R: Outcome> Process<F> {
    /// A process that will run `target`: Python's `Process(target=f, args=(...))`.
    ///
    /// `target` must be `Send`: what could not go to another thread cannot go to a child.
    /// A child gets a copy of what the target captured, and a reference into shared memory
    /// still points at the same memory there; so a value tied to its thread (a lock's
    /// guard, say) can never reach a child, and neither can a reference to one:
    ///
    /// ```compile_fail
    /// let here = std::rc::Rc::new(1);
    /// let mut p = common::Process::new(|| drop(&here)); // Rc is not Sync
    /// ```
    pub fn new(target: F) -> Self {
        Process {
            target: Some(target),
            pid: None,
            status: None,
        }
    }

    /// Forks the child, which runs the target and exits.
    pub fn start(&mut self) -> Result<(), Error> {
        if self.pid.is_some() {
            return Err(Error::AlreadyStarted);
        }
        reap_detached(Block::No);
        ensure_single_threaded()?;
        keep_children_to_reap()?;
        if SharedBorrow::live() > 0 {
            return Err(Error::SharedBorrowHeld {
                guards: SharedBorrow::live(),
            });
        }
        io::stdout()
            .flush()
            .map_err(|e| Error::os("write(stdout)", e))?;
        let parent = std::process::id() as libc::pid_t;
        // A signal that comes while the child is made waits until it is tracked, so that the
        // handler (see `interrupt`) ends it too.
        let held = interrupt::Held::new();
        // SAFETY: `fork` is unsound only where another thread could hold a lock (malloc's, stdout's)
        // or be half-way through changing shared state: the child would inherit that state with no
        // thread to finish it. `ensure_single_threaded` just checked that this thread is the
        // process's only one, so nothing is held or half-changed at this point.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                die_with_parent(parent);
                private_fd::close_inherited();
                crate::fd::forget_waits();
                drop(held);
                run_child(self.target.take())
            }
            Ok(ForkResult::Parent { child }) => {
                interrupt::track(child.as_raw());
                drop(held);
                self.pid = Some(child);
                // The parent's copy of the target is never run; drop what it captured now.
                self.target = None;
                Ok(())
            }
            Err(errno) => Err(Error::os("fork", errno)),
        }
    }
}

impl<F> Process<F> {
    /// Waits for the child to end: Python's `p.join()`. Joining again returns the same status.
    pub fn join(&mut self) -> Result<ExitStatus, Error> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let pid = self.pid.ok_or(Error::NotStarted)?;
        let status = wait(pid, Block::Yes)?.ok_or(Error::os("waitpid", Errno::ECHILD))?;
        self.status = Some(status);
        Ok(status)
    }

    /// The child's process id, once started: Python's `p.pid`.
    pub fn pid(&self) -> Option<Pid> {
        self.pid
    }

    /// How the child ended, without waiting; `None` while it runs or before `start`.
    /// Python's `p.exitcode` is this status's [`code`](ExitStatus::code).
    pub fn poll(&mut self) -> Result<Option<ExitStatus>, Error> {
        if let (Some(pid), None) = (self.pid, self.status) {
            self.status = wait(pid, Block::No)?;
        }
        Ok(self.status)
    }

    /// True from `start` until the child has ended: Python's `p.is_alive()`.
    pub fn is_alive(&mut self) -> Result<bool, Error> {
        Ok(self.pid.is_some() && self.poll()?.is_none())
    }

    /// Sends SIGTERM to the child, unless it has been reaped: Python's `p.terminate()`.
    pub fn terminate(&self) -> Result<(), Error> {
        self.signal(Signal::SIGTERM)
    }

    /// Sends SIGKILL to the child, unless it has been reaped: Python's `p.kill()`.
    pub fn kill(&self) -> Result<(), Error> {
        self.signal(Signal::SIGKILL)
    }

    /// Sends `signal` to the child, unless it has been reaped.
    pub(crate) fn signal(&self, signal: Signal) -> Result<(), Error> {
        match (self.pid, self.status) {
            // Until it is reaped its pid cannot be reused, so the signal reaches this child.
            (Some(pid), None) => interrupt::signal_child(pid, signal),
            (None, _) => Err(Error::NotStarted),
            (Some(_), Some(_)) => Ok(()),
        }
    }
}

impl<F> Drop for Process<F> {
    fn drop(&mut self) {
        if let (Some(pid), None) = (self.pid, self.status) {
            // Reap it now if it has ended; otherwise leave it to the next start or to exit.
            if let Ok(None) = wait(pid, Block::No) {
                detach(pid);
            }
        }
    }
}

/// Asks the kernel to kill this child, just forked, when its parent dies: a parent killed by
/// SIGKILL runs no handler, and would leave its children running as orphans. (Strictly, when
/// the thread that forked dies; `start` forks only from a process's one thread.) A parent
/// that died before the request was made has been replaced as parent by then: the child ends
/// at once. Two cases escape: a parent in another pid namespace than the child (one that made
/// a new one with `unshare`) cannot be named from it, so its death before the request goes
/// unseen; and a child that changes its user (`setuid`) loses the request, by a rule of the
/// kernel. Such a child lives on, as every child would without this.
pub(crate) fn die_with_parent(parent: libc::pid_t) {
    // SAFETY: prctl(PR_SET_PDEATHSIG) and getppid take integers and touch no memory; raise
    // ends this process.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        // 0: the parent is in another pid namespace (the child's is new), and cannot be named.
        let now = libc::getppid();
        if now != parent && now != 0 {
            libc::raise(libc::SIGKILL);
        }
    }
}

/// Runs in the child, after `fork`: the target, then `_exit`. Never returns.
fn run_child<F: FnOnce() -> R, R: Outcome>(target: Option<F>) -> ! {
    // The parent's unjoined children are not this process's to wait for.
    crate::pid::lock(&DETACHED).clear();
    interrupt::descend();
    let mut code = 0;
    if let Some(target) = target {
        // The outcome is turned into an exit code inside too: an error whose `Debug` or
        // `Drop` panics would unwind out of `start` into the parent's code.
        match panic::catch_unwind(AssertUnwindSafe(|| target().exit_code())) {
            Ok(exit_code) => code = exit_code,
            Err(payload) => {
                // The panic hook has printed the message. Dropping the payload could panic
                // again, and the process is about to end, so it is forgotten instead.
                std::mem::forget(payload);
                code = PANIC_EXIT_CODE;
            }
        }
    }
    // Children that the target started and did not join are joined here, not orphaned.
    reap_detached(Block::Yes);
    if io::stdout().flush().is_err() && code == 0 {
        code = 1;
    }
    // SAFETY: `_exit` ends the process at once and is always safe to call. It is used instead
    // of `exit` so that the parent's `atexit` handlers and Rust's runtime teardown do not run
    // a second time in the child; stdout was flushed just above.
    unsafe { libc::_exit(code) }
}

/// Fails unless the calling thread is the only thread of the process, after up to a second.
fn ensure_single_threaded() -> Result<(), Error> {
    match threads_after(Duration::from_secs(1))? {
        0 | 1 => Ok(()),
        threads => Err(Error::ThreadsRunning { threads }),
    }
}

/// The number of threads in this process, asked again while it is above one, for up to
/// `patience`: a thread that was just joined can still be counted for a moment while the
/// kernel finishes tearing it down (longer on a busy machine).
pub(crate) fn threads_after(patience: Duration) -> Result<usize, Error> {
    let mut threads = thread_count()?;
    let mut pause = Duration::from_micros(50);
    let deadline = Instant::now() + patience;
    while threads > 1 && Instant::now() < deadline {
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
        threads = thread_count()?;
    }
    Ok(threads)
}

/// The number of threads in this process. Linux counts them in the link count of
/// `/proc/self/task` (two, plus one per thread): one `stat`, where listing the directory
/// takes an open, several reads and a close. Where that count is not kept (it reads two or
/// less), the directory is listed.
fn thread_count() -> Result<usize, Error> {
    use std::os::unix::fs::MetadataExt;
    let links = std::fs::metadata("/proc/self/task")
        .map_err(|e| Error::os("stat(/proc/self/task)", e))?
        .nlink();
    if links > 2 {
        return Ok(links as usize - 2);
    }
    let tasks =
        std::fs::read_dir("/proc/self/task").map_err(|e| Error::os("open(/proc/self/task)", e))?;
    Ok(tasks.count())
}

#[cfg(not(target_os = "linux"))]
compile_error!("written for Linux: robust mutexes, /proc, waitid with WNOWAIT, pipe sizes");
