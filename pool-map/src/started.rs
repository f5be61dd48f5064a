//! Which task a worker began last: one word of memory that the worker and the pool share.
//!
//! When a worker dies, the pool must tell the task it was running (which fails: it may have
//! done part of its work) from the tasks it had not begun (which go to another worker, to
//! run once). Its pipe cannot tell: a worker killed while it waits for a task still reads
//! a task written in that moment, and dies before it runs a line of it. So the worker says
//! it, in this word, just before any code of the caller's (the task's decoding, then `f`)
//! runs for the task. The word is a `memfd`'s page, mapped `MAP_SHARED` by both processes:
//! whichever way the worker was started (fork, spawn, fork server), it gets the descriptor,
//! as it gets its pipes, and maps the same page.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use common::Error;

/// The shared word: 0 until the worker is ready for tasks, [`READY`] while it is ready and
/// has begun none, else the number of the task it began last, plus one.
pub(crate) struct Started {
    word: NonNull<AtomicU64>,
}

/// The word of a worker that is ready for tasks and has begun none.
const READY: u64 = u64::MAX;

impl Started {
    /// A new word, 0, and the descriptor that a worker maps it from ([`Started::map`]).
    pub(crate) fn new() -> Result<(Started, OwnedFd), Error> {
        // SAFETY: memfd_create reads the name, a string with its NUL that lives in the
        // binary; the descriptor it returns is checked, then owned by `fd` alone.
        let fd = unsafe {
            libc::memfd_create(
                c"pool-worker-started".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            )
        };
        if fd < 0 {
            return Err(Error::os("memfd_create", std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just opened, and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: ftruncate touches no memory; `fd` is open.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size_of::<AtomicU64>() as libc::off_t) } < 0 {
            return Err(Error::os("ftruncate", std::io::Error::last_os_error()));
        }
        // Its length for good: a mapping of a file cut shorter faults (SIGBUS) where it reads,
        // and a task's code, safe code too, could reopen the file (`/proc/<pid>/map_files`)
        // and cut it, killing the pool's parent.
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: fcntl(F_ADD_SEALS) takes an int and touches no memory; `fd` is open.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
            return Err(Error::os(
                "fcntl(F_ADD_SEALS)",
                std::io::Error::last_os_error(),
            ));
        }
        Ok((Started::map(&fd)?, fd))
    }

    /// Maps the word of the descriptor that [`Started::new`] made (in the worker).
    pub(crate) fn map(fd: &OwnedFd) -> Result<Started, Error> {
        // SAFETY: a shared mapping of the descriptor's file, at an address of the kernel's
        // choosing, touches no memory that Rust knows of; the result is checked against
        // MAP_FAILED before it is used. The file is as long as the word, and sealed so that
        // no one can make it shorter (`new`).
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size_of::<AtomicU64>(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(Error::os("mmap", std::io::Error::last_os_error()));
        }
        let word =
            NonNull::new(ptr.cast()).ok_or(Error::os("mmap", std::io::Error::other("null")))?;
        Ok(Started { word })
    }

    /// In the worker: it is ready for tasks (its pipes are its own, its loop begins).
    pub(crate) fn ready(&self) {
        self.word().store(READY, Ordering::Release);
    }

    /// In the worker: it begins `task`. (Task numbers count up from 0 and never reach
    /// `u64::MAX - 1`, which would read as [`READY`], nor `u64::MAX`, which would read as 0.)
    pub(crate) fn begin(&self, task: u64) {
        self.word().store(task.wrapping_add(1), Ordering::Release);
    }

    /// Whether the worker had begun `task` when it died (asked after it was reaped). Tasks
    /// run in the order they were sent, so the last one begun is the only one that can
    /// have been running.
    pub(crate) fn began(&self, task: u64) -> bool {
        self.word().load(Ordering::Acquire) == task.wrapping_add(1)
    }

    /// Whether the worker had begun any task.
    pub(crate) fn began_any(&self) -> bool {
        !matches!(self.word().load(Ordering::Acquire), 0 | READY)
    }

    /// Whether the worker had got ready for tasks.
    pub(crate) fn got_ready(&self) -> bool {
        self.word().load(Ordering::Acquire) != 0
    }

    fn word(&self) -> &AtomicU64 {
        // SAFETY: `word` is the start of a live mapping (unmapped only in `drop`), page-aligned,
        // of 8 bytes of a file sealed at that length: a valid `AtomicU64`, for as long as
        // `self`. Any 64 bits are a valid value, whatever another process writes there (the
        // worker through its own `Started`, or anything with the file open by `write(2)`).
        unsafe { self.word.as_ref() }
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        // SAFETY: the pointer and length are those mmap was given and returned, and no
        // reference into the mapping outlives `self` (`word` borrows `self`).
        unsafe { libc::munmap(self.word.as_ptr().cast(), size_of::<AtomicU64>()) };
    }
}

// SAFETY: the mapping belongs to this value alone in this process, and the word is only used
// through atomic operations, so the value can move to another thread.
unsafe impl Send for Started {}
