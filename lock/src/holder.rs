//! Who the calling thread is, as a lock records its holder, and how many locks it holds.
//! Both are kept per thread, for the process they were taken in, and start afresh in a
//! child after fork: they are tagged with [`common::process_key`], which every fork changes.
//!
//! Whether the thread holds a given lock is not kept here: the lock says it. Its holder
//! writes its [`Thread::owner`] there after taking it, and takes it out before it unlocks.
//! That is a random number drawn for each thread in each process, never `pid << 32 | tid`:
//! a pid and a tid are given again once their process or thread has died, and name other
//! processes in another pid namespace, so a thread that had a dead holder's name would be
//! taken for the holder. So a turn of the lock reads these plain per-thread values and
//! writes one, each way. With a list of holds per thread in a `RefCell`, searched and
//! changed about eight times a turn, the bench's lock row ran at 0.25 of its bare twin on
//! one CPU; without it, 0.40 (`bench --only lock,value`, two runs).

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
    /// This thread, in this process, as no other thread is or was: random, never 0.
    pub(crate) owner: u64,
    /// How many locks it holds.
    pub(crate) held: u32,
}

// Plain values with no destructor: there for a guard that another thread-local value's
// destructor drops at the thread's exit, too. Four cells, read and written a word at a
// time: a record read whole just after one field of it was written waits for that write
// to reach the cache (a processor cannot forward a narrow store to a wider load). An
// acquire and a release in one process took 45 ns so, 29 to 38 ns with the cells (a bare
// mutex: 11 to 12 ns).
thread_local! {
    /// The process the other three are for ([`process_key`]); 0 until asked.
    static KEY: Cell<u64> = const { Cell::new(0) };
    static NAME: Cell<u64> = const { Cell::new(0) };
    static OWNER: Cell<u64> = const { Cell::new(0) };
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
        owner: OWNER.get(),
        held: HELD.get(),
    }
}

#[cold]
fn start_afresh() {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() } as u32;
    NAME.set((u64::from(current_pid()) << 32) | u64::from(tid));
    OWNER.set(random_owner(tid));
    HELD.set(0);
    KEY.set(process_key());
}

/// A random number other than 0, from the kernel's generator. Where it cannot give one (a
/// kernel before 3.17, a seccomp filter, no entropy yet at boot): this thread's name and the
/// time, mixed. Two live threads never share a name, and a dead thread's name comes back
/// only at a later time. (Not std's `RandomState`: its keys are copied into a child by
/// fork, and it panics where it finds no randomness either.)
fn random_owner(tid: u32) -> u64 {
    let mut n = 0u64;
    // SAFETY: getrandom writes at most 8 bytes into `n`, which has 8.
    let got = unsafe { libc::getrandom((&raw mut n).cast(), 8, libc::GRND_NONBLOCK) };
    if got != 8 {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec into `now`; on failure it stays 0.
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
        let nanos = (now.tv_sec as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(now.tv_nsec as u64);
        let name = (u64::from(current_pid()) << 32) | u64::from(tid);
        n = mix(name ^ mix(nanos));
    }
    n.max(1)
}

/// SplitMix64's finaliser: spreads every bit of `x` over the result, one to one.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Thread {
    /// This thread, read by [`me`] just before, has taken a lock. (No lock is taken or
    /// given back on this thread between the two.)
    #[inline]
    pub(crate) fn took_one(self) {
        HELD.set(self.held + 1);
    }

    /// This thread, read by [`me`] just before, has given a lock back.
    #[inline]
    pub(crate) fn gave_one_back(self) {
        HELD.set(self.held.saturating_sub(1));
    }
}
