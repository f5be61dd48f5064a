//! Who holds a lock: the calling thread as a lock records its holder, and the locks each
//! thread holds. Both are kept per thread, for the process they were taken in, and start
//! afresh in a child after fork: they are tagged with [`common::process_key`], which every
//! fork changes.

use std::cell::{Cell, RefCell};
use std::mem::ManuallyDrop;

use common::{current_pid, process_key};

/// How many locks one thread may hold at once. The kernel walks at most 2,048 entries of a
/// dead thread's list of robust mutexes (`ROBUST_LIST_LIMIT`): a lock past that would never
/// be marked as its holder's death left it. A few are left for other libraries' mutexes.
pub(crate) const MAX_HELD: usize = 2000;

/// The locks a thread holds: each as the address of its mutex and the number of the hold
/// (a guard releases only its own hold), for the process they were taken in.
struct Held {
    key: u64,
    next: u64,
    /// Never dropped with the thread's other values, so that the list is there for a guard
    /// that another thread-local value's destructor drops at the thread's exit; its buffer
    /// is freed by [`FreeAtExit`] if it is empty by then.
    list: ManuallyDrop<Vec<(usize, u64)>>,
}

thread_local! {
    static HELD: RefCell<Held> = const {
        RefCell::new(Held { key: 0, next: 0, list: ManuallyDrop::new(Vec::new()) })
    };
    static FREE_AT_EXIT: FreeAtExit = const { FreeAtExit };
}

/// Frees the list's buffer at the thread's exit, if no lock is listed: a guard that a later
/// destructor drops still finds its hold. (A thread that exits holding locks leaks it.)
struct FreeAtExit;

impl Drop for FreeAtExit {
    fn drop(&mut self) {
        let _ = HELD.try_with(|held| {
            if let Ok(mut held) = held.try_borrow_mut() {
                if held.list.is_empty() {
                    drop(std::mem::take(&mut *held.list));
                }
            }
        });
    }
}

/// Runs `f` on the calling thread's held locks, emptied first if they were another
/// process's (this thread's copy in a child made by fork, which holds none of them).
fn with_held<T>(f: impl FnOnce(&mut Held) -> T) -> T {
    let key = process_key();
    HELD.with(|held| {
        let mut held = held.borrow_mut();
        if held.key != key {
            held.key = key;
            drop(std::mem::take(&mut *held.list));
        }
        f(&mut held)
    })
}

/// How many locks the calling thread holds.
pub(crate) fn held() -> usize {
    with_held(|held| held.list.len())
}

/// Whether the calling thread holds the lock whose mutex is at `lock`: by hold `hold`, or by
/// any when `None`.
pub(crate) fn holds(lock: usize, hold: Option<u64>) -> bool {
    with_held(|held| {
        held.list
            .iter()
            .any(|&(l, h)| l == lock && hold.is_none_or(|hold| hold == h))
    })
}

/// The calling thread has taken the lock at `lock`: returns the number of this hold.
pub(crate) fn take_hold(lock: usize) -> u64 {
    // Registers the cleaner of the list for this thread's exit (unless it is exiting).
    let _ = FREE_AT_EXIT.try_with(|_| {});
    with_held(|held| {
        held.next += 1;
        let hold = held.next;
        held.list.push((lock, hold));
        hold
    })
}

/// The calling thread has given the lock at `lock` back.
pub(crate) fn end_hold(lock: usize) {
    with_held(|held| {
        if let Some(at) = held.list.iter().position(|&(l, _)| l == lock) {
            held.list.swap_remove(at);
        }
    })
}

thread_local! {
    /// This thread's id and the process it was asked in; (0, 0) until asked.
    static TID: Cell<(u64, u32)> = const { Cell::new((0, 0)) };
}

/// The calling thread, as a lock records its holder: `pid << 32 | tid`.
pub(crate) fn this_thread() -> u64 {
    let key = process_key();
    let tid = TID.with(|cached| match cached.get() {
        (k, tid) if k == key => tid,
        _ => {
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() } as u32;
            cached.set((key, tid));
            tid
        }
    });
    (u64::from(current_pid()) << 32) | u64::from(tid)
}
