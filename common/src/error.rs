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
    /// The process that held a lock died holding it, or a thread of it panicked holding its
    /// guard. The lock was made usable again, but what it guarded may be half-changed: the
    /// holder never finished its work.
    #[error(
        "process {pid} died, or panicked, holding the lock; what it guarded may be half-changed"
    )]
    OwnerDied {
        /// The process id of the holder that died.
        pid: u32,
    },
    /// A thread ended holding a lock (it exited, or leaked its guard), and its process could
    /// not be shown to have ended too (it goes on, or its exit did not finish in time, or
    /// nothing could tell): that process may still use what the lock guarded, so the lock
    /// can never be taken again.
    #[error(
        "a thread of process {pid} ended holding the lock, and that process cannot be shown \
         to have ended: what the lock guarded may still be in use there, so the lock cannot \
         be taken again"
    )]
    LockAbandoned {
        /// The process whose thread held the lock.
        pid: u32,
    },
    /// `start` was called on a process that was already started.
    #[error("cannot start a process twice")]
    AlreadyStarted,
    /// `join` was called on a process that was never started.
    #[error("can only join a started process")]
    NotStarted,
    /// A lock was acquired again by the thread that holds it, which would wait forever.
    #[error("acquire of a lock that this thread already holds: it would wait forever")]
    AlreadyHeld,
    /// A lock was released by a thread that does not hold it.
    #[error("release of a lock that this thread does not hold")]
    NotHolder,
    /// A lock was used from another pid namespace than the one it was made in, where
    /// thread and process ids name other threads and processes.
    #[error(
        "lock used from another pid namespace than its own, where its holder's ids name \
         other processes"
    )]
    OtherPidNamespace,
    /// A lock was used by a process that cannot tell its pid namespace (pidfds are missing
    /// or forbidden to it), while the process that made the lock could.
    #[error(
        "this process cannot tell its pid namespace (no pidfds here), so it cannot use a lock \
         made where it could"
    )]
    PidNamespaceUnknown,
    /// A thread that holds `limit` locks asked for one more: the kernel could not give them
    /// all up if the thread died.
    #[error(
        "this thread already holds {limit} locks, as many as the kernel can give up when a \
         thread dies"
    )]
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

/// The same text as `Display`, so that `main` returning this error prints the message.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
