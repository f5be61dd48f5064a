use std::fmt;
use std::io;

/// What went wrong in `common`'s plumbing. Every OS failure names the call that failed.
pub enum Error {
    /// An OS call failed: `fork: Resource temporarily unavailable (os error 11)`.
    Os {
        /// The call, as its man page names it (`fork`, `waitpid`).
        call: &'static str,
        /// What the OS said.
        source: io::Error,
    },
    /// `fork` was refused because other threads of this process are running.
    ThreadsRunning {
        /// How many threads the process had, the calling one included.
        threads: usize,
    },
    /// `fork` was refused because guards of shared memory are alive in this process: the
    /// child would get a copy of their references (see [`SharedBorrow`](crate::SharedBorrow)).
    SharedBorrowHeld {
        /// How many guards are alive.
        guards: usize,
    },
    /// The process that held a lock died holding it. The lock was made usable again, but
    /// what it guarded may be half-changed: the dead holder never finished its work.
    OwnerDied {
        /// The process id of the holder that died.
        pid: u32,
    },
    /// A thread ended holding a lock (it exited, or leaked its guard), and its process could
    /// not be shown to have ended too (it goes on, or its exit did not finish in time, or
    /// nothing could tell): that process may still use what the lock guarded, so the lock
    /// can never be taken again.
    LockAbandoned {
        /// The process whose thread held the lock.
        pid: u32,
    },
    /// `start` was called on a process that was already started.
    AlreadyStarted,
    /// `join` was called on a process that was never started.
    NotStarted,
    /// A lock was acquired again by the thread that holds it, which would wait forever.
    AlreadyHeld,
    /// A lock was released by a thread that does not hold it.
    NotHolder,
    /// A lock was used from another pid namespace than the one it was made in, where
    /// thread and process ids name other threads and processes.
    OtherPidNamespace,
    /// A thread that holds `limit` locks asked for one more: the kernel could not give them
    /// all up if the thread died.
    TooManyHeld {
        /// How many locks one thread may hold.
        limit: usize,
    },
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

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Os { call, source } => write!(f, "{call}: {source}"),
            Error::ThreadsRunning { threads } => write!(
                f,
                "fork refused: {threads} threads are running, and a child would inherit \
                 locks that only they can release; join the other threads before fork"
            ),
            Error::SharedBorrowHeld { guards } => write!(
                f,
                "fork refused: {guards} guard(s) of shared memory are held, and a child would \
                 write through their references as if it held the lock too; drop them before fork"
            ),
            Error::OwnerDied { pid } => write!(
                f,
                "process {pid} died holding the lock; what it guarded may be half-changed"
            ),
            Error::LockAbandoned { pid } => write!(
                f,
                "a thread of process {pid} ended holding the lock, and that process cannot be \
                 shown to have ended: what the lock guarded may still be in use there, so the \
                 lock cannot be taken again"
            ),
            Error::AlreadyStarted => f.write_str("cannot start a process twice"),
            Error::NotStarted => f.write_str("can only join a started process"),
            Error::AlreadyHeld => f.write_str(
                "acquire of a lock that this thread already holds: it would wait forever",
            ),
            Error::NotHolder => f.write_str("release of a lock that this thread does not hold"),
            Error::TooManyHeld { limit } => write!(
                f,
                "this thread already holds {limit} locks, as many as the kernel can give up \
                 when a thread dies"
            ),
            Error::OtherPidNamespace => f.write_str(
                "lock used from another pid namespace than its own, where its holder's ids \
                 name other processes",
            ),
        }
    }
}

/// The same text as `Display`, so that `main` returning this error prints the message.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Os { source, .. } => Some(source),
            _ => None,
        }
    }
}
