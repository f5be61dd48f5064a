//! What can go wrong with a lock, beyond an OS call that fails.

use std::fmt;

/// What went wrong with a [`Lock`](crate::Lock).
#[derive(thiserror::Error)]
pub enum LockError {
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
    /// can never be taken again. (Unless the waiter that found the holder dead had no
    /// descriptor left to ask whether it had ended: then each later acquire asks again, and
    /// is refused while that process lives.)
    #[error(
        "a thread of process {pid} ended holding the lock, and that process cannot be shown \
         to have ended: what the lock guarded may still be in use there, so the lock cannot \
         be taken again"
    )]
    LockAbandoned {
        /// The process whose thread held the lock.
        pid: u32,
    },
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
    /// An OS call failed.
    #[error(transparent)]
    Os(#[from] common::Error),
}

/// The same text as `Display`, so that `main` returning this error prints the message.
impl fmt::Debug for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
