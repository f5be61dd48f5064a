//! Descriptors that only the process that opened them uses, closed in every child at fork.
//!
//! `fork` copies every open descriptor into the child. For a pipe that is a trap: a pipe
//! reports its end (EOF) only when every copy of its write end is closed, so a copy kept by
//! an unrelated child (another pool's worker, a manager's server, a helper that `f` started)
//! keeps a reader waiting forever. A [`Private`] descriptor is registered when it is made,
//! and [`Process::start`](crate::Process::start) closes every registered one in the child
//! right after `fork`. The child's copy of the `Private` value then holds a number that is no
//! longer its own: it neither hands the value out nor closes it there.

use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Mutex, PoisonError};

/// The descriptors of this process that its children must not keep.
static REGISTERED: Mutex<Vec<RawFd>> = Mutex::new(Vec::new());

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
/// # Ok::<(), std::io::Error>(())
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
    /// Registers `value`'s descriptor, to be closed in every child forked from now on.
    pub fn new(value: T) -> Self {
        lock().push(value.as_raw_fd());
        Private {
            value: ManuallyDrop::new(value),
            owner: crate::process_key(),
        }
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
            // A copy made by fork: the child closed the descriptor when it started.
            return;
        }
        let fd = self.value.as_raw_fd();
        lock().retain(|&registered| registered != fd);
        // SAFETY: the value is dropped once, here, and never used again.
        unsafe { ManuallyDrop::drop(&mut self.value) };
    }
}

/// Closes, in a child just forked, every descriptor its parent registered. Called by
/// `Process::start` before the child runs anything else; the process has one thread.
pub(crate) fn close_inherited() {
    let mut registered = lock();
    for fd in registered.drain(..) {
        // SAFETY: the parent registered `fd` as its own; in this child nothing uses it (every
        // `Private` copy refuses to hand it out here), so closing it breaks no owner.
        unsafe { libc::close(fd) };
    }
}

fn lock() -> std::sync::MutexGuard<'static, Vec<RawFd>> {
    REGISTERED.lock().unwrap_or_else(PoisonError::into_inner)
}
