//! Section 5's mechanism: [`Value`] and [`Array`], plain data in memory shared with forked
//! children (`MAP_SHARED`), each with its own process-shared lock (`lock`'s [`Lock`]), as
//! Python's `multiprocessing.Value` and `Array` are. The program, `src/main.rs`, is below;
//! its Python originals are `python/shared_value.py` and `python/counter.py`.
//!
//! Every read and write goes through the lock: `value()` and `set_value()` take it for one
//! access, and `get_lock()` returns a guard that derefs to the data, for a read-modify-write
//! such as `+= 1` that must not be split. A holder that dies half-way through a change is
//! told to the next user, in any process, as [`LockError::OwnerDied`]: once, to that user
//! alone, whose call returns no data. Later calls, in that process or another, read what the
//! dead holder left, as if whole: the user told is the one to tell the others, or to set
//! the data right.
//!
//! # The program
//!
//! `cargo run -p shared-value` runs `src/main.rs`:
//!
#![doc = concat!("```rust,ignore\n", include_str!("main.rs"), "```")]

use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::ops::{Deref, DerefMut};

use common::{Mapping, SharedBorrow};
/// What can go wrong: every failure of a `Value` or an `Array` is its lock's, or an OS call's.
pub use lock::LockError;
use lock::{Acquired, Lock, LockGuard};

/// Data that may live in memory shared between processes.
///
/// A `String` or a `Vec` holds a pointer to memory of the process that made it; another
/// process would read garbage through it, or free it twice. So only types without pointers
/// qualify: the integers and floats Python's type codes name (`'i'` is `i32`, `'d'` is
/// `f64`, ...), and arrays of them. A type with a pointer does not compile:
///
/// ```compile_fail
/// let name = shared_value::Value::new(String::from("bob")); // String is not Plain
/// ```
///
/// A type aligned to more than a page (4096 bytes) cannot be placed in a page-aligned
/// mapping, and is refused when the program is built:
///
/// ```compile_fail
/// #[derive(Clone, Copy)]
/// #[repr(align(8192))]
/// struct Huge(u8);
/// // SAFETY: (wrongly) claimed plain, but no Value can hold it anyway.
/// unsafe impl shared_value::Plain for Huge {}
/// let v = shared_value::Value::new(Huge(0)); // align 8192 > 4096
/// ```
///
/// # Safety
/// An implementing type must be `Copy`, hold no pointer or reference, be valid for every
/// bit pattern (the mapping starts zeroed, and a process killed in the middle of a write can
/// leave a value half-written), and be aligned to at most 4096 bytes, a page, which is the
/// alignment of the mapping that holds it (checked when a `Value` or `Array` is built).
pub unsafe trait Plain: Copy + Send + Sync + 'static {}

/// The largest alignment a mapping gives: it starts on a page.
const PAGE: usize = 4096;

macro_rules! plain {
    ($($t:ty)*) => {
        // SAFETY: integers and floats are Copy, hold no pointer, and every bit pattern is one
        // of their values.
        $(unsafe impl Plain for $t {})*
    };
}
plain!(i8 u8 i16 u16 i32 u32 i64 u64 i128 u128 isize usize f32 f64);

// SAFETY: an array of Plain values is as plain as its elements.
unsafe impl<T: Plain, const N: usize> Plain for [T; N] {}

/// One `T` in shared memory, with its own lock: Python's `Value(typecode, value)`.
///
/// `value` and `set_value` each hold the lock for one read or one write, as Python's
/// `num.value` does. So `num.set_value(num.value()? + 1)` can lose updates when two
/// processes do it at once, exactly as `num.value += 1` can in Python. Hold the lock across
/// the read and the write with [`get_lock`](Value::get_lock) instead.
///
/// Layout: a mapping of its own holds the `T`; the [`Lock`] has another.
pub struct Value<T: Plain> {
    lock: Lock,
    map: Mapping,
    _value: PhantomData<T>,
}

/// The value's lock, held: reads and writes the value until dropped.
///
/// The `&mut T` it gives points into memory that other processes share, so it must never
/// reach another process: while a guard lives, `Process::start` refuses to fork, and a
/// child forked by other code ends before it returns from `fork` (see [`SharedBorrow`]);
/// and the guard stays on its thread (it is neither `Send` nor `Sync`), so it cannot be
/// captured by a child's target at all:
///
/// ```compile_fail
/// let num = shared_value::Value::new(0.0)?;
/// let mut held = num.get_lock()?;
/// let mut p = common::Process::new(|| *held += 1.0); // ValueGuard is not Send
/// # Ok::<(), lock::LockError>(())
/// ```
pub struct ValueGuard<'a, T: Plain> {
    _held: LockGuard<'a>,
    _borrow: SharedBorrow,
    value: &'a mut T,
}

impl<T: Plain> Value<T> {
    /// A shared `value`: `Value::new(0.0)` is Python's `Value('d', 0.0)`.
    pub fn new(value: T) -> Result<Self, LockError> {
        const { assert!(align_of::<T>() <= PAGE, "a page-aligned mapping aligns T") };
        let map = Mapping::new(size_of::<T>())?;
        // SAFETY: the mapping is page-aligned (so aligned for T, checked above) and at least
        // size_of::<T>() bytes, and no one else can see it yet.
        unsafe { map.as_ptr().cast::<T>().write(value) };
        Ok(Value {
            lock: Lock::new()?,
            map,
            _value: PhantomData,
        })
    }

    /// The value, read under the lock: Python's `num.value`.
    pub fn value(&self) -> Result<T, LockError> {
        Ok(*self.get_lock()?)
    }

    /// Writes the value under the lock: Python's `num.value = x`.
    pub fn set_value(&self, value: T) -> Result<(), LockError> {
        *self.get_lock()? = value;
        Ok(())
    }

    /// Takes the value's lock; the guard reads and writes the value until dropped. Python's
    /// `with num.get_lock(): num.value += 1` is `*num.get_lock()? += 1`.
    ///
    /// If the process that held the lock died holding it, the value may be half-written:
    /// this call returns [`LockError::OwnerDied`] instead, and releases the lock, which is
    /// usable again; the next call takes it as usual.
    pub fn get_lock(&self) -> Result<ValueGuard<'_, T>, LockError> {
        // Counted before the lock is taken (and uncounted after it is released: fields drop
        // in order), so that the count is not made while the other process waits.
        let borrow = SharedBorrow::new();
        let held = lock(&self.lock)?;
        // SAFETY: the mapping holds a T (written by `new`) and lives as long as `self`. Every
        // access to it goes through this lock, which this thread of this process now holds:
        // - no other process holds it, and no copy of this reference can reach one, since
        //   while `borrow` lives, fork is refused, a child forked by other code ends before
        //   it runs, and the guard cannot leave this thread;
        // - no other thread holds it, and the lock refuses a second `lock` on this thread.
        // So this is the only reference to the value until the guard is dropped.
        let value = unsafe { &mut *self.map.as_ptr().cast::<T>() };
        Ok(ValueGuard {
            _held: held,
            _borrow: borrow,
            value,
        })
    }
}

impl<T: Plain> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.value
    }
}

impl<T: Plain> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.value
    }
}

/// A fixed number of `T` in shared memory, with one lock: Python's `Array(typecode, items)`.
///
/// `get` and `set` each hold the lock for one element, as Python's `a[i]` does; hold it
/// across several with [`get_lock`](Array::get_lock).
///
/// Layout: a mapping of its own holds the elements one after another, as a `[T]`; the
/// [`Lock`] has another.
pub struct Array<T: Plain> {
    lock: Lock,
    map: Mapping,
    len: usize,
    _items: PhantomData<T>,
}

/// The array's lock, held: reads and writes the elements as a slice until dropped. Like
/// [`ValueGuard`], it never reaches another process or thread.
pub struct ArrayGuard<'a, T: Plain> {
    _held: LockGuard<'a>,
    _borrow: SharedBorrow,
    items: &'a mut [T],
}

impl<T: Plain> Array<T> {
    /// A shared array of `items`: `Array::new(0..10)` is Python's `Array('i', range(10))`.
    pub fn new(items: impl IntoIterator<Item = T>) -> Result<Self, LockError> {
        let items: Vec<T> = items.into_iter().collect();
        const { assert!(align_of::<T>() <= PAGE, "a page-aligned mapping aligns T") };
        let map = Mapping::new(size_of::<T>() * items.len())?;
        // SAFETY: the mapping is page-aligned, holds at least `items.len()` values of T, and no
        // one else can see it yet; the source is a separate Vec.
        unsafe {
            std::ptr::copy_nonoverlapping(items.as_ptr(), map.as_ptr().cast::<T>(), items.len())
        };
        Ok(Array {
            lock: Lock::new()?,
            map,
            len: items.len(),
            _items: PhantomData,
        })
    }

    /// How many elements it holds: Python's `len(a)`.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when it holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Element `i`, read under the lock: Python's `a[i]`.
    ///
    /// # Panics
    /// If `i` is out of range, as indexing a slice does (Python raises IndexError), before
    /// it takes the lock: the array is left as it was, and unmarked.
    pub fn get(&self, i: usize) -> Result<T, LockError> {
        self.check_index(i);
        Ok(self.get_lock()?[i])
    }

    /// Writes element `i` under the lock: Python's `a[i] = x`.
    ///
    /// # Panics
    /// If `i` is out of range, before it takes the lock, as [`get`](Array::get).
    pub fn set(&self, i: usize, value: T) -> Result<(), LockError> {
        self.check_index(i);
        self.get_lock()?[i] = value;
        Ok(())
    }

    /// Panics if `i` is out of range. Checked before the lock is taken: a panic under it
    /// would mark the lock as a holder's that died half-way, for every process.
    fn check_index(&self, i: usize) {
        assert!(
            i < self.len,
            "index out of range: the index is {i} but the length is {}",
            self.len
        );
    }

    /// A copy of every element, read under the lock: Python's `a[:]`.
    pub fn to_vec(&self) -> Result<Vec<T>, LockError> {
        Ok(self.get_lock()?.to_vec())
    }

    /// Takes the array's lock; the guard reads and writes the elements until dropped.
    /// [`LockError::OwnerDied`] if the lock's holder died holding it, as for
    /// [`Value::get_lock`].
    pub fn get_lock(&self) -> Result<ArrayGuard<'_, T>, LockError> {
        // Counted before the lock is taken, as in `Value::get_lock`.
        let borrow = SharedBorrow::new();
        let held = lock(&self.lock)?;
        // SAFETY: the mapping holds `len` values of T (written by `new`) and lives as long as
        // `self`. As in `Value::get_lock`: the lock is this thread's, no child forked while
        // `borrow` lives runs, and the guard cannot leave this thread, so no other reference
        // to the elements exists, in any process, until the guard is dropped.
        let items =
            unsafe { std::slice::from_raw_parts_mut(self.map.as_ptr().cast::<T>(), self.len) };
        Ok(ArrayGuard {
            _held: held,
            _borrow: borrow,
            items,
        })
    }
}

/// Takes `lock`; [`LockError::OwnerDied`] (and the lock released) if its holder died holding it,
/// so that no one reads what it left half-written as if it were whole.
///
/// `#[inline]`, as the lock's own calls are (see `lock`'s `Lock`): called from another
/// crate's `get_lock`, it returned the guard through memory, which the caller read back
/// before the writes had landed. `*value.get_lock()? += 1` took 49-50 ns a turn in one
/// process on one CPU so, 40-42 ns inlined (eight runs of 20,000,000 turns each, the builds
/// alternating).
#[inline]
fn lock(lock: &Lock) -> Result<LockGuard<'_>, LockError> {
    let held = lock.lock()?;
    match held.acquired() {
        Acquired::Released => Ok(held),
        Acquired::OwnerDied { pid } => Err(LockError::OwnerDied { pid }),
    }
}

impl<T: Plain> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.items
    }
}

impl<T: Plain> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.items
    }
}
