//! Who the calling thread is, as a lock records its holder, and how many locks it holds.
//! Both are kept per thread, for the process they were taken in, and start afresh in a
//! child after fork: they are tagged with [`common::process_key`], which every fork changes.
//!
//! Whether the thread holds a given lock is not kept here: the lock's own record says it
//! (only its holder writes its own name there, and takes it out before it unlocks). So a
//! turn of the lock reads these plain per-thread values and writes one, each way. With a
//! list of holds per thread in a `RefCell`, searched and changed about eight times a turn,
//! the bench's lock row ran at 0.25 of its bare twin on one CPU; without it, 0.40
//! (`bench --only lock,value`, two runs).

use std::cell::Cell;

use common::{current_pid, process_key};

/// How many locks one thread may hold at once. The kernel walks at most 2,048 entries of a
/// dead thread's list of robust mutexes (`ROBUST_LIST_LIMIT`): a lock past that would never
/// be marked as its holder's death left it. A few are left for other libraries' mutexes.
pub(crate) const MAX_HELD: u32 = 2000;

/// The calling thread, as [`me`] tells it.
#[derive(Clone, Copy)]
pub(crate) struct Thread {
    /// This thread as a lock records its holder: `pid << 32 | tid`.
    pub(crate) name: u64,
    /// How many locks it holds.
    pub(crate) held: u32,
}

// Plain values with no destructor: there for a guard that another thread-local value's
// destructor drops at the thread's exit, too. Three cells, read and written a word at a
// time: a record read whole just after one field of it was written waits for that write
// to reach the cache (a processor cannot forward a narrow store to a wider load). An
// acquire and a release in one process took 45 ns so, 29 to 38 ns with the cells (a bare
// mutex: 11 to 12 ns).
thread_local! {
    /// The process the other two are for ([`process_key`]); 0 until asked.
    static KEY: Cell<u64> = const { Cell::new(0) };
    static NAME: Cell<u64> = const { Cell::new(0) };
    static HELD: Cell<u32> = const { Cell::new(0) };
}

/// The calling thread, made afresh if its record was another process's (this thread's copy
/// in a child made by fork, which holds none of the locks, and has another pid and tid).
#[inline]
pub(crate) fn me() -> Thread {
    if KEY.get() != process_key() {
        start_afresh();
    }
    Thread {
        name: NAME.get(),
        held: HELD.get(),
    }
}

#[cold]
fn start_afresh() {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() } as u32;
    NAME.set((u64::from(current_pid()) << 32) | u64::from(tid));
    HELD.set(0);
    KEY.set(process_key());
}

impl Thread {
    /// This thread, read by [`me`] just before, has taken a lock. (No lock is taken or
    /// given back on this thread between the two.)
    pub(crate) fn took_one(self) {
        HELD.set(self.held + 1);
    }

    /// This thread, read by [`me`] just before, has given a lock back.
    pub(crate) fn gave_one_back(self) {
        HELD.set(self.held.saturating_sub(1));
    }
}
