//! An anonymous `MAP_SHARED` mapping: memory that a parent and its forked children share.

use std::cell::Cell;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

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

// How many `SharedBorrow`s live, counted per thread: each thread counts its own in a slot
// of its own with a plain load and store, and whoever must know the whole sums the slots.
// With one counter for the process, each guard paid two atomic read-modify-writes (locked
// instructions): `*value.get_lock()? += 1` took 54-55 ns a turn in one process on one CPU,
// 40-42 ns with the slots (eight runs of 20,000,000 turns each, the builds alternating).

/// One thread's count of its live borrows, on a cache line of its own: a thread's counting
/// never takes a line another thread writes.
#[repr(align(64))]
struct Slot {
    /// Whether a thread has the slot: taken by a thread at its first borrow, given back as
    /// it ends.
    taken: AtomicBool,
    /// How many borrows its thread has alive. Written only by that thread, so a plain load
    /// and store count one (a signal handler that interrupts the thread between the two
    /// ends its own borrows before it returns, so its count is never lost unless it leaks
    /// a guard, and a handler may not take a lock anyway); read by any thread.
    count: AtomicUsize,
}

/// Slots for this many threads at once; the borrows of a thread without one are counted in
/// [`OTHERS`], with atomic adds.
const SLOTS: usize = 64;
static SLOT: [Slot; SLOTS] = [const {
    Slot {
        taken: AtomicBool::new(false),
        count: AtomicUsize::new(0),
    }
}; SLOTS];
/// Live borrows of threads without a slot.
static OTHERS: AtomicUsize = AtomicUsize::new(0);

/// The calling thread's slot, once it has one; given back when the thread ends.
struct Mine(Cell<Option<&'static Slot>>);

impl Drop for Mine {
    fn drop(&mut self) {
        if let Some(slot) = self.0.get() {
            // A borrow still counted: the slot stays taken for good. A leaked guard's stays
            // counted in it; one held by a thread-local dropped later counts itself down in
            // the slot it holds, and no other thread counts there meanwhile.
            if slot.count.load(Ordering::Relaxed) == 0 {
                slot.taken.store(false, Ordering::Release);
            }
        }
    }
}

thread_local! {
    static MINE: Mine = const { Mine(Cell::new(None)) };
}

/// The calling thread's slot: `None` where every slot is taken, or where the thread's
/// storage is gone (a borrow made by a thread-local's destructor).
#[inline]
fn my_slot() -> Option<&'static Slot> {
    MINE.try_with(|mine| mine.0.get().or_else(|| take_slot(mine)))
        .ok()
        .flatten()
}

#[cold]
fn take_slot(mine: &Mine) -> Option<&'static Slot> {
    // Acquire: the count that the slot's last thread left (0) is seen before this thread
    // counts on from it.
    let slot = SLOT.iter().find(|slot| {
        slot.taken
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    })?;
    mine.0.set(Some(slot));
    Some(slot)
}

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
///
/// Each thread counts its borrows in a slot of its own, and a fork sums them. A reference
/// that reaches the forking thread from another was handed over by some synchronisation
/// (a scoped thread's start, a channel, a lock) that came after its thread counted it, so
/// the forking thread reads that count, and so does its child, whose memory is a copy of
/// what that thread sees.
pub struct SharedBorrow {
    /// Where it is counted: its thread's slot, or `OTHERS`.
    slot: Option<&'static Slot>,
    _not_send: PhantomData<*const ()>,
}

impl SharedBorrow {
    /// Counts a borrow of shared memory until this is dropped.
    #[inline]
    pub fn new() -> Self {
        crate::pid::watch_forks();
        let slot = my_slot();
        match slot {
            Some(slot) => slot
                .count
                .store(slot.count.load(Ordering::Relaxed) + 1, Ordering::Relaxed),
            None => {
                OTHERS.fetch_add(1, Ordering::Relaxed);
            }
        }
        SharedBorrow {
            slot,
            _not_send: PhantomData,
        }
    }

    /// How many live in this process: in every thread, and in threads that have ended with
    /// a guard leaked.
    pub(crate) fn live() -> usize {
        SLOT.iter()
            .map(|slot| slot.count.load(Ordering::Relaxed))
            .sum::<usize>()
            + OTHERS.load(Ordering::Relaxed)
    }
}

impl Default for SharedBorrow {
    fn default() -> Self {
        SharedBorrow::new()
    }
}

impl Drop for SharedBorrow {
    #[inline]
    fn drop(&mut self) {
        match self.slot {
            Some(slot) => slot
                .count
                .store(slot.count.load(Ordering::Relaxed) - 1, Ordering::Relaxed),
            None => {
                OTHERS.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// In a child just forked, from the C library's `pthread_atfork` handler: ends the child if
/// its parent had a [`SharedBorrow`] alive, whose reference the child now has a copy of.
/// Otherwise gives back the slots of the parent's other threads, which the child does not
/// have.
pub(crate) fn end_a_child_with_borrows() {
    if SharedBorrow::live() == 0 {
        let mine = MINE.try_with(|mine| mine.0.get()).ok().flatten();
        for slot in &SLOT {
            if !mine.is_some_and(|mine| std::ptr::eq(mine, slot)) {
                slot.taken.store(false, Ordering::Relaxed);
            }
        }
    } else {
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
