use std::fmt;
use std::io;

/// What went wrong in `common`'s plumbing. Every OS failure names the call that failed.
#[derive(thiserror::Error)]
pub enum Error {
    /// An OS call failed: `fork: Resource temporarily unavailable (os error 11)`.
    #[error("{call}: {source}")]
    Os {
        /// The call, as its man page names it (`fork`, `waitpid`).
        call: &'static str,
        /// What the OS said.
        source: io::Error,
    },
    /// `fork` was refused because other threads of this process are running.
    #[error(
        "fork refused: {threads} threads are running, and a child would inherit locks that \
         only they can release; join the other threads before fork"
    )]
    ThreadsRunning {
        /// How many threads the process had, the calling one included.
        threads: usize,
    },
    /// `fork` was refused because guards of shared memory are alive in this process: the
    /// child would get a copy of their references (see [`SharedBorrow`](crate::SharedBorrow)).
    #[error(
        "fork refused: {guards} guard(s) of shared memory are held, and a child would write \
         through their references as if it held the lock too; drop them before fork"
    )]
    SharedBorrowHeld {
        /// How many guards are alive.
        guards: usize,
    },
    /// A child was not started because the program's SIGCHLD handler has `SA_NOCLDWAIT`:
    /// the kernel would reap the child as it ended, and give its pid to another process
    /// while its handle still names it.
    #[error(
        "start refused: the handler of SIGCHLD has SA_NOCLDWAIT, so the kernel would reap the \
         child as it ended, and a signal meant for it could reach another process that got \
         its pid; clear SA_NOCLDWAIT before starting children"
    )]
    ChildrenReapedByKernel,
    /// `start` was called on a process that was already started.
    #[error("cannot start a process twice")]
    AlreadyStarted,
    /// `join` was called on a process that was never started.
    #[error("can only join a started process")]
    NotStarted,
    /// A handle was used in a process that did not make it (a copy made by fork).
    #[error("this handle belongs to the process that made it, not to this one")]
    NotOwner,
    /// A request to start a child was over [`MAX_ARGS`](crate::start::MAX_ARGS) bytes or
    /// [`MAX_FDS`](crate::start::MAX_FDS) descriptors.
    #[error(
        "a child's request takes at most {} bytes and {} descriptors, not {bytes} and {fds}; \
         send more through a pipe",
        crate::start::MAX_ARGS,
        crate::start::MAX_FDS
    )]
    RequestTooLarge {
        /// The bytes of arguments.
        bytes: usize,
        /// The descriptors.
        fds: usize,
    },
    /// A function to run in a spawned child is not in this executable (it is in a shared
    /// library), so another run of the program cannot find it.
    #[error(
        "the function at {address:#x} is not in this executable, so a spawned child could not \
         find it; use a function of the program itself"
    )]
    NotInExecutable {
        /// The function's address.
        address: usize,
    },
    /// The fork server ended (or was killed) before it answered.
    #[error("the fork server has ended")]
    ForkServerGone,
    /// A signal (Ctrl-C, SIGTERM, SIGHUP) is ending this process and its children: no child
    /// is started any more.
    #[error("this process is ending on a signal: no child is started")]
    Ending,
}

impl Error {
    /// The error of OS call `call`, from what the OS said.
    pub fn os(call: &'static str, source: impl Into<io::Error>) -> Self {
        Error::Os {
            call,
            source: source.into(),
        }
    }
}

/// The same text as `Display`, so that `main` returning this error prints the message.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `eprintln!`, without its panic where stderr cannot be written (`2>/dev/full`, a pipe
/// whose reader has gone): the line is lost, and the program goes on, or exits with its own
/// status (a usage error with 2, not 101).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = ::std::writeln!(::std::io::stderr(), $($arg)*);
    }};
}

/// Writes `Error: <what>` and a newline on stderr in one write, so that the line stays whole
/// beside other processes' lines and if this process is killed now. (stderr is unbuffered:
/// `eprintln!` writes each piece of its format apart, and the lines of processes that fail
/// at once run into each other: `Error: write(stdout) in a pool worker: Error: ...`.)
pub fn error_line(what: fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = io::stderr().write_all(format!("Error: {what}\n").as_bytes());
}
