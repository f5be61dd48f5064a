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
// of its own with a plain load and store, and `Process::start` and the fork handler in a
// child sum the slots and `OTHERS`. With one counter for the process, each guard paid two atomic
// read-modify-writes (locked instructions): `*value.get_lock()? += 1` took 54-55 ns a turn
// in one process on one CPU, 40-42 ns with the slots (eight runs of 20,000,000 turns each,
// the builds alternating).

/// One thread's count of its live borrows, on a cache line of its own: a thread's counting
/// writes no line that another thread's does.
#[repr(align(64))]
struct Slot {
    /// Whether a thread has the slot: taken by a thread at its first borrow, given back as
    /// it ends (or later, see `orphaned`). Never given back: the slots of a parent's other
    /// threads, in a child forked from it, and one taken by a first borrow made after the
    /// thread's thread-locals were torn down (from a `pthread_key_create` destructor), whose
    /// giving back is registered too late to run.
    taken: AtomicBool,
    /// Set where the thread ended with borrows still counted here, held by thread-locals
    /// dropped after the slot's own (see [`Release`]): the last of them gives the slot back.
    /// A leaked guard's borrow keeps it taken for good.
    orphaned: AtomicBool,
    /// How many borrows its thread has alive. Written only by that thread, so a plain load
    /// and store count one; read by any thread. (A signal handler that interrupts the thread
    /// between the two ends its own borrows before it returns, so no count is lost, unless
    /// it leaks a guard; and a handler may not take a lock at all: `pthread_mutex_lock` is
    /// not async-signal-safe.)
    count: AtomicUsize,
}

/// Slots for this many threads at once; the borrows of a thread without one are counted in
/// [`OTHERS`], with atomic adds.
const SLOTS: usize = 64;
static SLOT: [Slot; SLOTS] = [const {
    Slot {
        taken: AtomicBool::new(false),
        orphaned: AtomicBool::new(false),
        count: AtomicUsize::new(0),
    }
}; SLOTS];
/// Live borrows of threads without a slot.
static OTHERS: AtomicUsize = AtomicUsize::new(0);

/// Where the calling thread counts its borrows.
#[derive(Clone, Copy)]
enum Claim {
    /// It has made none yet.
    Unasked,
    /// In a slot of its own.
    Slot(&'static Slot),
    /// In [`OTHERS`]: every slot was taken at its first borrow, or it has given its slot
    /// back as it ends.
    Others,
}

thread_local! {
    /// Where this thread counts. No destructor: the fork handler reads it in a child just
    /// forked, where a first use of a thread-local with one would register it (`calloc`).
    static CLAIM: Cell<Claim> = const { Cell::new(Claim::Unasked) };
    /// Gives the thread's slot back as the thread ends; first used as the slot is taken.
    static RELEASE: Release = const { Release };
}

/// Gives the thread's slot back as the thread ends, or leaves it to the last borrow still
/// counted there (a guard held by a thread-local whose destructor runs later).
struct Release;

impl Drop for Release {
    fn drop(&mut self) {
        // Borrows made from here on (by other thread-locals' destructors) count in OTHERS.
        if let Claim::Slot(slot) = CLAIM.replace(Claim::Others) {
            if slot.count.load(Ordering::Relaxed) == 0 {
                slot.taken.store(false, Ordering::Release);
            } else {
                slot.orphaned.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// The calling thread's slot, taken at its first borrow; `None` where it counts in
/// [`OTHERS`].
#[inline]
fn my_slot() -> Option<&'static Slot> {
    match CLAIM.get() {
        Claim::Slot(slot) => Some(slot),
        Claim::Unasked => take_slot(),
        Claim::Others => None,
    }
}

#[cold]
fn take_slot() -> Option<&'static Slot> {
    // The slot is given back by RELEASE's destructor, so that is registered first (should
    // that fail, no slot is taken).
    let slot = RELEASE.try_with(|_| ()).ok().and_then(|()| {
        // Acquire: what the slot's last thread left (a count of 0, no orphan mark) is seen
        // before this thread counts on from it.
        SLOT.iter().find(|slot| {
            slot.taken
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        })
    });
    CLAIM.set(slot.map_or(Claim::Others, Claim::Slot));
    slot
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
/// Each thread counts its borrows in a slot of its own (or, past 64 threads, in one shared
/// counter), and `Process::start`, and the fork handler in the child, sum them. A reference
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
            Some(slot) => {
                let left = slot.count.load(Ordering::Relaxed) - 1;
                slot.count.store(left, Ordering::Relaxed);
                // The last borrow of a thread that has ended gives its slot back.
                if left == 0 && slot.orphaned.load(Ordering::Relaxed) {
                    slot.orphaned.store(false, Ordering::Relaxed);
                    slot.taken.store(false, Ordering::Release);
                }
            }
            None => {
                OTHERS.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// In a child just forked, from the C library's `pthread_atfork` handler: ends the child if
/// its parent had a [`SharedBorrow`] alive, whose reference the child now has a copy of.
///
/// The slots of the parent's other threads stay taken in the child, which does not have
/// those threads: a thread of its own past the free ones counts in [`OTHERS`]. (Giving
/// them back here gave back, too, a slot that a signal handler's fork had interrupted this
/// thread in taking, which the thread then counted in beside the next thread to take it.)
pub(crate) fn end_a_child_with_borrows() {
    if SharedBorrow::live() > 0 {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Held by each test here: one takes every free slot for a moment.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// Which slot the calling thread counts in, by its index.
    fn my_index() -> Option<usize> {
        my_slot().map(|mine| {
            SLOT.iter()
                .position(|slot| std::ptr::eq(slot, mine))
                .unwrap()
        })
    }

    #[test]
    fn the_last_borrow_of_an_ended_thread_gives_its_slot_back() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        thread_local! {
            static HELD: RefCell<Option<SharedBorrow>> = const { RefCell::new(None) };
        }
        let index = std::thread::spawn(|| {
            // First used before the slot is taken: dropped after the slot's release.
            HELD.with(|_| {});
            let borrow = SharedBorrow::new();
            let index = my_index();
            HELD.with(|held| *held.borrow_mut() = Some(borrow));
            index
        })
        .join()
        .unwrap()
        .expect("a slot");
        let slot = &SLOT[index];
        assert!(!slot.taken.load(Ordering::Acquire), "slot {index} kept");
        assert!(!slot.orphaned.load(Ordering::Relaxed));
        assert_eq!(slot.count.load(Ordering::Relaxed), 0);
    }

    /// A child keeps the slots its parent's threads had taken: one of them may be its own
    /// thread's, taken by a claim that a signal handler's fork interrupted (the thread has
    /// not noted it yet), and given back, the thread would count in it beside another.
    #[test]
    fn a_child_keeps_the_slots_its_parent_had_taken() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let (taken, taken_rx) = std::sync::mpsc::channel();
        let (forked, forked_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            drop(SharedBorrow::new());
            taken.send(my_index()).unwrap();
            let _ = forked_rx.recv();
        });
        let index = taken_rx.recv().unwrap().expect("a slot");
        // SAFETY: the child reads an atomic and calls `_exit`, both safe in a child forked
        // from a process with threads.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let kept = SLOT[index].taken.load(Ordering::Relaxed);
            // SAFETY: as above.
            unsafe { libc::_exit(if kept { 0 } else { 1 }) };
        }
        assert!(pid > 0, "fork: {}", std::io::Error::last_os_error());
        drop(forked);
        thread.join().unwrap();
        let mut status = 0;
        // SAFETY: waitpid writes `status`, which is alive; `pid` is this process's child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "the child gave slot {index} back (status {status:#x})"
        );
    }

    #[test]
    fn a_thread_that_found_no_slot_does_not_look_again() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        // Every free slot taken here, for the moment of the test.
        let taken: Vec<&Slot> = SLOT
            .iter()
            .filter(|slot| {
                slot.taken
                    .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            })
            .collect();
        let (asked, asked_rx) = std::sync::mpsc::channel();
        let (freed, freed_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let first = SharedBorrow::new().slot.is_none();
            asked.send(()).unwrap();
            freed_rx.recv().unwrap();
            // Slots are free again, but this thread counts where it did: no second search.
            (first, SharedBorrow::new().slot.is_none())
        });
        asked_rx.recv().unwrap();
        for slot in taken {
            slot.taken.store(false, Ordering::Release);
        }
        freed.send(()).unwrap();
        assert_eq!(thread.join().unwrap(), (true, true));
    }
}
