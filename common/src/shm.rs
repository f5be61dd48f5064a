//! An anonymous `MAP_SHARED` mapping: memory that a parent and its forked children share.

use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::Error;

/// `len` bytes of zeroed memory, mapped `MAP_SHARED | MAP_ANONYMOUS`.
///
/// A child made by `fork` after the mapping inherits it: both processes then see the same
/// physical pages, and a write by one is seen by the other. Memory that is not mapped this
/// way is copied on fork, which is why processes do not share ordinary variables.
///
/// The mapping is page-aligned and is unmapped when dropped. A forked child that is still
/// running keeps its own mapping of the pages until it exits.
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    /// Maps `len` zeroed bytes (at least one) shared with every child forked afterwards.
    pub fn new(len: usize) -> Result<Self, Error> {
        let len = len.max(1);
        // SAFETY: an anonymous mapping at an address of the kernel's choosing touches no memory
        // that Rust knows of; the result is checked against MAP_FAILED before it is used.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(Error::os("mmap", std::io::Error::last_os_error()));
        }
        let ptr = NonNull::new(ptr.cast()).ok_or(Error::os("mmap", nix::errno::Errno::EINVAL))?;
        Ok(Mapping { ptr, len })
    }

    /// The first byte of the mapping; it is page-aligned, so aligned for any type.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: a mapping holds at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `len` are exactly what mmap returned and was asked for, and no
        // reference into the mapping outlives `self` (every user borrows it from `self`).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

// SAFETY: the mapping is plain memory owned by this handle; what is stored in it, and how
// it is synchronised, is the business of the types built on it.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` hands out only a raw pointer, whose use is unsafe.
unsafe impl Sync for Mapping {}

/// How many [`SharedBorrow`]s live in this process.
static BORROWS: AtomicUsize = AtomicUsize::new(0);

/// Proof that a reference into shared memory is alive in this process, such as a `&mut T`
/// handed out under a lock: while one lives, [`Process::start`](crate::Process::start)
/// refuses to fork ([`Error::SharedBorrowHeld`]), and a child forked by any other code ends
/// at once.
///
/// A child made by `fork` gets a copy of every reference of its parent, and a reference
/// into a `MAP_SHARED` mapping still points at the same memory there. So a child started
/// while a guard's `&mut T` is alive could write through it at the same time as its parent,
/// both believing they hold the lock: undefined behaviour, reached from safe code. Borrows
/// end with the guard that made them, so no guard alive means no such reference alive.
///
/// `Process::start` is not the only fork that safe code can reach: `nix::unistd::daemon`
/// forks, and so may any library. So every child that the C library forks while a borrow
/// lives in its parent ends in a `pthread_atfork` handler, before `fork` returns there: it
/// prints why to stderr and exits with 101, as a child that panicked. A program started by
/// `posix_spawn` (spawn's child; `std::process::Command` where it can) is not affected: that
/// runs no such handler, and the program has no copy of any reference. But `Command` forks
/// and then execs instead where it is asked for what `posix_spawn` cannot do (a user or group,
/// a `pre_exec` closure, its own `PATH` for a bare program name): such a child, forked while
/// a guard lives in any thread of the process, ends too, though it would only have run
/// `exec`. Drop guards before such a command starts.
///
/// It stays on the thread that made it (`!Send`), as the guard that holds it does.
pub struct SharedBorrow {
    _not_send: PhantomData<*const ()>,
}

impl SharedBorrow {
    /// Counts a borrow of shared memory until this is dropped.
    pub fn new() -> Self {
        crate::pid::watch_forks();
        BORROWS.fetch_add(1, Ordering::Relaxed);
        SharedBorrow {
            _not_send: PhantomData,
        }
    }

    /// How many live in this process.
    pub(crate) fn live() -> usize {
        BORROWS.load(Ordering::Relaxed)
    }
}

impl Default for SharedBorrow {
    fn default() -> Self {
        SharedBorrow::new()
    }
}

impl Drop for SharedBorrow {
    fn drop(&mut self) {
        BORROWS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// In a child just forked, from the C library's `pthread_atfork` handler: ends the child if
/// its parent had a [`SharedBorrow`] alive, whose reference the child now has a copy of.
pub(crate) fn end_a_child_with_borrows() {
    if BORROWS.load(Ordering::Relaxed) > 0 {
        let why = b"a process forked while a guard of shared memory was held: the child \
            ends before it could write through its copy of the guard's reference\n";
        // SAFETY: write(2) reads `why`, which is alive, and `_exit` ends the process; both
        // are async-signal-safe, so safe in a child just forked from any thread.
        unsafe {
            libc::write(libc::STDERR_FILENO, why.as_ptr().cast(), why.len());
            libc::_exit(crate::PANIC_EXIT_CODE);
        }
    }
}
