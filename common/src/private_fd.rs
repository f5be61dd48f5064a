//! Descriptors that only the process that opened them uses, closed in every child at fork.
//!
//! `fork` copies every open descriptor into the child. For a pipe that is a trap: a pipe
//! reports its end (EOF) only when every copy of its write end is closed, so a copy kept by
//! an unrelated child (another pool's worker, a manager's server, a helper that `f` started)
//! keeps a reader waiting forever. A [`Private`] descriptor is registered when it is made,
//! and [`Process::start`](crate::Process::start) lets go of every registered one in the
//! child right after `fork`: it puts a copy of `/dev/null` (read-only) in its place. The pipe
//! end is gone from the child, but its number stays taken, so a reference to it that the
//! child's target carried across (`Private::get` before the fork) reads nothing and cannot
//! write, rather than reach another file that got the number. The child's copy of the
//! `Private` value neither hands the value out nor closes it.

use std::fs::File;
use std::io::Write;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

use crate::Error;
use crate::pid::{List, Locked};

/// The descriptors of this process that its children must not keep.
pub(crate) static REGISTERED: List<RawFd> = List::new(Vec::new());
/// `/dev/null`, read-only, opened with the first `Private`: what a child puts in their place.
static DEV_NULL: OnceLock<OwnedFd> = OnceLock::new();

/// A descriptor (a pipe end, a socket) that belongs to the process that made this value:
/// children forked by [`Process::start`](crate::Process::start) do not inherit it.
///
/// It is made only of a type that owns its descriptor and never changes it ([`Owns`]): a
/// registered number that another value owned, or that was swapped out, would be closed in
/// every child under the feet of whatever holds that number there. So a borrowed
/// descriptor does not compile:
///
/// ```compile_fail
/// use std::os::fd::AsFd;
/// let file = std::fs::File::open("/dev/null")?;
/// let private = common::Private::new(file.as_fd()); // BorrowedFd does not own it
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Private<T: Owns> {
    value: ManuallyDrop<T>,
    owner: u64,
}

/// A type that owns one descriptor, for as long as it lives, and never swaps it for another:
/// what [`Private`] may hold. Sealed: a pipe end, a Unix socket, a file, an `OwnedFd`.
pub trait Owns: AsRawFd + sealed::Sealed {}

mod sealed {
    pub trait Sealed {}
}

macro_rules! owns {
    ($($t:ty),*) => {
        $(impl sealed::Sealed for $t {}
        impl Owns for $t {})*
    };
}
owns!(
    os_pipe::PipeReader,
    os_pipe::PipeWriter,
    std::os::unix::net::UnixStream,
    std::fs::File,
    std::os::fd::OwnedFd
);

impl<T: Owns> Private<T> {
    /// Registers `value`'s descriptor, to be let go of in every child forked from now on.
    pub fn new(value: T) -> Result<Self, Error> {
        if DEV_NULL.get().is_none() {
            let null = File::open("/dev/null").map_err(|e| Error::os("open(/dev/null)", e))?;
            let _ = DEV_NULL.set(null.into());
        }
        lock().push(value.as_raw_fd());
        Ok(Private {
            value: ManuallyDrop::new(value),
            owner: crate::process_key(),
        })
    }

    /// The descriptor, in the process that made it; `None` in a child, where it was closed
    /// at fork and its number may name another file by now. (Pipe ends and sockets read and
    /// write through a shared reference: `impl Read for &PipeReader`.)
    pub fn get(&self) -> Option<&T> {
        (self.owner == crate::process_key()).then_some(&*self.value)
    }
}

impl<T: Owns> Drop for Private<T> {
    fn drop(&mut self) {
        if self.owner != crate::process_key() {
            // A copy made by fork: the child let the descriptor go when it started.
            return;
        }
        let fd = self.value.as_raw_fd();
        lock().retain(|&registered| registered != fd);
        // SAFETY: the value is dropped once, here, and never used again.
        unsafe { ManuallyDrop::drop(&mut self.value) };
    }
}

/// Lets go, in a child just forked, of every descriptor its parent registered: each becomes
/// a copy of `/dev/null`. Called by `Process::start` before the child runs anything else;
/// the process has one thread.
pub(crate) fn close_inherited() {
    let mut registered = lock();
    let Some(null) = DEV_NULL.get() else {
        return; // No `Private` was ever made, so none is registered.
    };
    for fd in registered.drain(..) {
        // SAFETY: dup3 touches no memory. `fd` was registered by a `Private` of the parent,
        // which owns it; here every copy of that `Private` refuses to hand it out or close
        // it. Replacing what the number names, rather than closing it, keeps the number
        // taken: a reference carried across fork reads EOF and fails to write (EBADF), and
        // never reaches a file opened later in this process. O_CLOEXEC: exec drops it.
        if unsafe { libc::dup3(null.as_raw_fd(), fd, libc::O_CLOEXEC) } < 0
            && !replace_past_limit(null.as_raw_fd(), fd)
        {
            // The child would keep its parent's pipe end: it must not run.
            let error = std::io::Error::last_os_error();
            let _ = writeln!(
                std::io::stderr(),
                "Error: dup3: cannot let go of descriptor {fd} in a child: {error}"
            );
            // SAFETY: `_exit` ends this child at once, before it runs anything.
            unsafe { libc::_exit(1) };
        }
    }
}

/// Puts `null` in place of `fd` when dup3 refused because `fd` is at or past the soft
/// RLIMIT_NOFILE (lowered after the parent opened it): dup3 gives out no number past that
/// limit. The limit is raised to the hard one for the dup3, then put back. Past the hard
/// limit too, `fd` is closed instead: no file opened later can get its number then (only a
/// privileged process can raise a hard limit). False when `fd` was none of these.
fn replace_past_limit(null: RawFd, fd: RawFd) -> bool {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes `limit`, which is alive.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } < 0
        || (fd as libc::rlim_t) < limit.rlim_cur
    {
        return false;
    }
    let raised = libc::rlimit {
        rlim_cur: limit.rlim_max,
        ..limit
    };
    // SAFETY: setrlimit reads `raised`, which is alive.
    let is_raised = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0;
    // SAFETY: dup3 touches no memory; as in `close_inherited`, `fd` is a number that no value
    // of this child uses or closes.
    let replaced = is_raised && unsafe { libc::dup3(null, fd, libc::O_CLOEXEC) } >= 0;
    if is_raised {
        // SAFETY: setrlimit reads `limit`, which is alive. Lowering a soft limit is always
        // allowed, and leaves open the descriptors past it.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    }
    // SAFETY: as for dup3.
    replaced || unsafe { libc::close(fd) } == 0
}

fn lock() -> Locked<RawFd> {
    crate::pid::lock(&REGISTERED)
}
