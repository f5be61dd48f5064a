//! The interrupt handler's set of children to end: a set that a signal handler can read
//! while other code adds to it and takes from it.

use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// A set of non-zero words that a signal handler can read while other code adds and
/// removes: slots in blocks of 256, linked as they are needed. A handler may not allocate,
/// so blocks are allocated only by `insert`, never freed, and reused: the set holds as many
/// words as were ever in it at once, with no limit.
pub(super) struct Slots {
    first: Block,
}

struct Block {
    slots: [AtomicUsize; 256],
    next: AtomicPtr<Block>,
}

impl Slots {
    pub(super) const fn new() -> Slots {
        Slots {
            first: Block::new(),
        }
    }

    fn blocks(&self) -> impl Iterator<Item = &Block> {
        std::iter::successors(Some(&self.first), |block| {
            // SAFETY: `next` is null or a block leaked by `insert`, which lives forever.
            unsafe { block.next.load(Ordering::Acquire).as_ref() }
        })
    }

    pub(super) fn slots(&self) -> impl Iterator<Item = &AtomicUsize> {
        self.blocks().flat_map(|block| &block.slots)
    }

    /// Puts `word` (not 0) in a free slot, adding a block when every slot is taken.
    pub(super) fn insert(&self, word: usize) {
        let mut block = &self.first;
        loop {
            for slot in &block.slots {
                if slot
                    .compare_exchange(0, word, Ordering::SeqCst, Ordering::Relaxed)
                    .is_ok()
                {
                    return;
                }
            }
            let mut next = block.next.load(Ordering::Acquire);
            if next.is_null() {
                let new = Box::into_raw(Box::new(Block::new()));
                next = match block.next.compare_exchange(
                    ptr::null_mut(),
                    new,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => new,
                    Err(other) => {
                        // SAFETY: `new` was made just above and published nowhere.
                        drop(unsafe { Box::from_raw(new) });
                        other
                    }
                };
            }
            // SAFETY: `next` is a block leaked by `insert`, which lives forever.
            block = unsafe { &*next };
        }
    }

    /// Takes `word` out of its slot; false if it was not there.
    pub(super) fn remove(&self, word: usize) -> bool {
        self.slots().any(|slot| {
            slot.compare_exchange(word, 0, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
        })
    }
}

impl Block {
    const fn new() -> Block {
        Block {
            slots: [const { AtomicUsize::new(0) }; 256],
            next: AtomicPtr::new(ptr::null_mut()),
        }
    }
}
