//! Section 4's mechanism: a lock that works across forked processes, Python's
//! `multiprocessing.Lock` (the program is `src/main.rs`, its Python original
//! `python/lock.py`).
//!
//! [`Lock`] is a glibc `pthread_mutex_t` in memory shared with every child forked after it
//! was made. Three of the mutex's attributes do the work:
//! - `PTHREAD_PROCESS_SHARED`: the futex it sleeps on is found by the physical page, so a
//!   waiter in one process is woken by a release in another;
//! - `PTHREAD_MUTEX_ROBUST`: the kernel keeps a list of the robust mutexes each thread holds,
//!   and when a thread dies it marks them, so the next locker gets `EOWNERDEAD` instead of
//!   waiting forever (Python's lock has no such thing);
//! - `PTHREAD_MUTEX_ERRORCHECK`: locking twice or unlocking another's is an error, not a
//!   hang.
//!
//! What this crate adds is the decision on `EOWNERDEAD`: was it the holder's whole process
//! that died (then what the lock guarded is no longer in use, and the lock is recovered:
//! [`Acquired::OwnerDied`]), or one thread of a process that goes on (then that process may
//! still use what it guarded, and the lock is never given again: `LockError::LockAbandoned`)?
//! The holder records itself (`pid << 32 | tid`) after taking the lock; the waiter asks the
//! kernel through a pidfd whether that pid has ended (`src/ended.rs` has the details).
//!
//! # The program
//!
//! `cargo run -p lock` runs `src/main.rs`:
//!
#![doc = concat!("```rust,ignore\n", include_str!("main.rs"), "```")]

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::mem::{ManuallyDrop, MaybeUninit, size_of};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use nix::errno::Errno;

use common::{Error, Mapping, current_pid};

mod ended;
mod error;
mod holder;
use ended::{holder_has_ended, holder_is_gone, pid_namespace};
pub use error::LockError;
use holder::{MAX_HELD, Thread, me};

/// How long an acquire that found its holder dead waits, at most, for the holder's process
/// to finish exiting (see [`Lock::acquire`]).
pub const EXIT_WAIT: Duration = Duration::from_secs(10);

/// How long a wait for the lock sleeps before it asks again. glibc's robust mutexes (2.36
/// here) can leave a waiter asleep on a lock that no one will ever wake it for: when a thread
/// ends holding the lock, the waiters that get ENOTRECOVERABLE pass no wake-up on, so some
/// of those already waiting sleep on; and a waiter woken by a release, then killed before it
/// runs, takes the wake-up with it if another locker came in meanwhile (reproduced, on a
/// bare robust mutex too). A sleep that ends each `SLICE` asks the mutex again and finds it
/// free, or unrecoverable.
const SLICE: Duration = Duration::from_millis(100);

unsafe extern "C" {
    /// glibc's (2.30 and later; not in the libc crate): `pthread_mutex_timedlock`, with the
    /// clock the deadline is on. Here `CLOCK_MONOTONIC`, which no one sets back:
    /// `pthread_mutex_timedlock`'s `CLOCK_REALTIME`, set back 3 s, made a 500 ms
    /// `acquire_timeout` take 3.5 s.
    fn pthread_mutex_clocklock(
        mutex: *mut libc::pthread_mutex_t,
        clock: libc::clockid_t,
        abstime: *const libc::timespec,
    ) -> libc::c_int;
}

/// The time on `clock` (`CLOCK_MONOTONIC`, or its coarse reading, about 7 ns where the
/// other takes about 34 on the bench's machine).
#[inline]
fn monotonic(clock: libc::clockid_t) -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `now`, which is alive. It does not fail
    // for these clocks on Linux (since 2.6.32); were it to, the time would read 0 and each
    // slice would end at once: a waiter would ask the mutex again and again, not hang.
    unsafe { libc::clock_gettime(clock, &mut now) };
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// How [`Lock::acquire`] got the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// The lock was free, or its holder released it.
    Released,
    /// The process that held the lock died holding it, or a thread of it panicked holding
    /// its guard. The lock is now the caller's, but what it guarded may be half-changed: the
    /// holder never finished its work.
    OwnerDied {
        /// The process id of the holder that died. (A holder that died before it recorded
        /// itself, or while it released the lock, handed nothing out: the next holder is
        /// told [`Released`](Acquired::Released).)
        pid: u32,
    },
}

/// A process-shared lock: a robust, error-checking pthread mutex in a `MAP_SHARED` mapping.
///
/// Make it before `fork`: every child forked afterwards shares it with the parent, as the
/// children of Python's `Lock()` do. Lock and unlock are a few atomic instructions while no
/// one waits; a waiter sleeps in the kernel (a futex) until the holder releases.
///
/// ```no_run
/// use common::Process;
/// use lock::Lock;
///
/// let lock = Lock::new()?;
/// let mut p = Process::new(|| {
///     let _held = lock.lock().expect("lock");
///     println!("only one process at a time prints here");
/// });
/// p.start()?;
/// p.join()?;
/// # Ok::<(), lock::LockError>(())
/// ```
///
/// Where Python's lock would stay locked forever, this one does not:
/// - if its holder dies (killed, or exits without releasing), the next `acquire` gets the
///   lock and returns [`Acquired::OwnerDied`] with the dead holder's pid;
/// - if a thread ends holding it while its process goes on, every later `acquire` fails
///   with [`LockError::LockAbandoned`]: that process may still use what the lock guarded;
/// - acquiring a lock the calling thread already holds is an error, not a deadlock;
/// - releasing a lock the calling thread does not hold is an error.
///
/// Layout of the mapping: a `pthread_mutex_t` (PTHREAD_PROCESS_SHARED, PTHREAD_MUTEX_ROBUST,
/// PTHREAD_MUTEX_ERRORCHECK), then who holds it, as its holder wrote after taking it. The
/// mutex is never destroyed, only unmapped: a child that outlives the parent's handle may
/// still use it.
pub struct Lock {
    /// Unmapped by `drop`, unless a thread of this process still holds the mutex.
    map: ManuallyDrop<Mapping>,
}

impl Drop for Lock {
    fn drop(&mut self) {
        // A thread that holds a robust mutex (here, through a leaked guard) has it on its
        // robust list, which glibc links through the mutex's own memory, writes at that
        // thread's next lock or unlock, and the kernel walks when the thread dies. Unmapped,
        // that memory could be reused for other data, which they would then write, or the
        // walk would stop there and leave the thread's other locks held forever. So such a
        // mapping is kept (one page leaked). A thread of this process that has since died
        // only costs the page too. A thread that does not hold it names it in its list
        // only during a lock call (`list_op_pending`; see `forget_pending` for what glibc
        // leaves after a timeout), and no call is under way while the `Lock` is dropped.
        if self.holder() != Some(current_pid()) {
            // SAFETY: `map` is dropped once, here, and not used after.
            unsafe { ManuallyDrop::drop(&mut self.map) };
        }
    }
}

/// A thread's robust list head, as the kernel reads it (`struct robust_list_head`, from
/// linux/futex.h): the list of robust mutexes the thread holds, where in each entry its lock
/// word is, and the mutex of a lock call under way.
#[repr(C)]
struct RobustListHead {
    list: *mut libc::c_void,
    futex_offset: libc::c_long,
    list_op_pending: *mut libc::c_void,
}

/// What a turn of the lock writes (`holder`, `owner`, `hold`) sits in the mutex's cache line
/// (on x86-64, 40 bytes and three words: 64); what it only reads, after them. With `hold` in the
/// second line, a turn moved two lines between the processes instead of one.
#[repr(C)]
struct State {
    mutex: UnsafeCell<libc::pthread_mutex_t>,
    /// The holding thread, as `pid << 32 | tid`; 0 while free. Only a thread that has just
    /// taken the mutex writes it, and only that thread clears it, just before it unlocks.
    holder: AtomicU64,
    /// The holding thread, as no other thread is or was ([`holder::Thread::owner`]); 0 while
    /// free. Written and taken out with `holder`, by the holder only: whether the calling
    /// thread holds the lock is asked of this, never of `holder`, whose pid and tid a new
    /// thread or process may have once the holder has died.
    owner: AtomicU64,
    /// Which hold of the lock this is: each acquire adds 1, so that a guard releases its own
    /// hold only, never one its thread took after releasing the guard's explicitly.
    hold: AtomicU64,
    /// The pid namespace the lock was made in (`ended::pid_namespace`; 0 if
    /// the kernel cannot tell), written once by `new`. Only processes of that namespace use
    /// the lock: the mutex knows its holder by thread id, which names another thread in
    /// another namespace.
    home_ns: u64,
    /// The pid of a process whose thread panicked holding the lock (its guard was dropped
    /// while unwinding, half-way through a change), for the next holder to be told; 0.
    poisoned: AtomicU32,
    /// The pid of a holder that died holding the lock, whose end could not be told when the
    /// lock was found so (the waiter had no descriptor left to ask with); 0. The mutex was
    /// made consistent and unlocked all the same, rather than left unrecoverable for every
    /// process, and the holder's record left in place: the next to take the lock asks
    /// again before it takes it for its own ([`Lock::settle`]).
    unsettled: AtomicU32,
}

/// The lock, held until dropped: the Rust way to write Python's `with lock:`.
///
/// Like std's `MutexGuard`, it stays on the thread that took the lock (it is neither `Send`
/// nor `Sync`): the mutex knows its holder by thread, and only that thread can release it. A
/// guard dropped elsewhere would leave the lock held forever, so that does not compile:
///
/// ```compile_fail
/// let lock = lock::Lock::new()?;
/// let held = lock.lock()?;
/// std::thread::scope(|s| {
///     s.spawn(move || drop(held)); // LockGuard is not Send
/// });
/// # Ok::<(), lock::LockError>(())
/// ```
///
/// Nor can it reach a child process through a [`Process`](common::Process) target, where
/// the lock is not held at all, nor a reference to it (the target must be `Send`):
///
/// ```compile_fail
/// let lock = lock::Lock::new()?;
/// let held = lock.lock()?;
/// let mut p = common::Process::new(|| drop(&held)); // LockGuard is not Sync
/// # Ok::<(), lock::LockError>(())
/// ```
///
/// (A guard that the forking thread keeps in its own memory, such as a `thread_local!` of a
/// `'static` lock's guard, is copied into every child that thread forks, as all its memory
/// is. There it holds nothing: the lock is its parent's ([`Lock::holder`] says so), and
/// dropping that copy releases nothing. Take such a guard out before a fork.)
///
/// A guard dropped while its thread panics marks the lock, and the next holder, in any
/// process, is told [`Acquired::OwnerDied`]: what the lock guarded may be half-changed. As
/// with std's `Mutex`, a guard taken while its thread was already unwinding a panic (in a
/// destructor) marks nothing, even if a second panic, caught in that destructor, drops it.
///
/// The lock itself can reach a child: it lives in shared memory.
///
/// ```
/// let lock = lock::Lock::new()?;
/// let mut p = common::Process::new(|| drop(lock.lock()));
/// # Ok::<(), lock::LockError>(())
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
    acquired: Acquired,
    /// Which of this thread's holds of the lock this guard is: an explicit `release` ends
    /// it, and a later `acquire` is a hold of its own, which the guard leaves alone.
    hold: u64,
    /// Whether the thread was already unwinding a panic when it took the lock: then the
    /// panic is not this guard's business, and its drop marks nothing (as std's `Mutex`).
    taken_in_a_panic: bool,
    _not_send: PhantomData<*const ()>,
}

// The calls of a turn (`lock`, `acquire`, `release`, a guard's drop) are `#[inline]`: called
// across crates, each returned its `Result` through memory, which the next read back before
// the write had landed (perf's hottest instructions). Inlined, a `Value` += 1 took 31-45 ns
// in one process instead of 74-79; in the bench (`--only lock,value`, four runs of each),
// on one CPU the lock went from 0.45-0.48 of its twin to 0.54-0.58, and `Value` from 0.30-0.33
// to 0.41-0.46. The rare outcomes of a lock call are in `not_simply_acquired`, kept out.
impl Lock {
    /// A new, unlocked lock in memory shared with every child forked afterwards.
    pub fn new() -> Result<Self, LockError> {
        let home_ns = pid_namespace()?;
        let map = Mapping::new(size_of::<State>())?;
        let state = map.as_ptr().cast::<State>();
        // SAFETY: the mapping is fresh, page-aligned, zeroed and large enough for a
        // `State`, and no one else uses it yet; `home_ns` is a plain field, written once here
        // and only read afterwards.
        unsafe { (&raw mut (*state).home_ns).write(home_ns) };
        let mutex = state.cast::<libc::pthread_mutex_t>();
        let mut attr = MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        let attr = attr.as_mut_ptr();
        // SAFETY: `attr` points to writable memory for a mutexattr, initialised by the first
        // call and destroyed by the last; `mutex` is the start of a fresh, page-aligned mapping
        // large enough for a `State`, which no one else uses yet.
        unsafe {
            check("pthread_mutexattr_init", libc::pthread_mutexattr_init(attr))?;
            let set = check(
                "pthread_mutexattr_setpshared",
                libc::pthread_mutexattr_setpshared(attr, libc::PTHREAD_PROCESS_SHARED),
            )
            .and_then(|()| {
                check(
                    "pthread_mutexattr_settype",
                    libc::pthread_mutexattr_settype(attr, libc::PTHREAD_MUTEX_ERRORCHECK),
                )
            })
            .and_then(|()| set_robust(attr))
            .and_then(|()| check("pthread_mutex_init", libc::pthread_mutex_init(mutex, attr)));
            libc::pthread_mutexattr_destroy(attr);
            set?;
        }
        Ok(Lock {
            map: ManuallyDrop::new(map),
        })
    }

    fn state(&self) -> &State {
        // SAFETY: `new` initialised a `State` at the start of the mapping, which lives as long
        // as `self`; its fields are shared only through the mutex's own calls and an atomic.
        unsafe { &*self.map.as_ptr().cast::<State>() }
    }

    /// Blocks until the lock is the caller's: Python's `l.acquire()`. If its holder died
    /// holding it, this waits for the holder's process to finish exiting (so that nothing
    /// it handed out under the lock is in use any more) and returns
    /// [`Acquired::OwnerDied`]; if only a thread of it died, and the process goes on, or if
    /// its exit has not finished within [`EXIT_WAIT`], the lock is abandoned
    /// ([`LockError::LockAbandoned`]). A caller with no file descriptor left to ask whether
    /// the holder's process has ended fails ([`LockError::Os`], naming `pidfd_open`), and
    /// leaves the lock for the next acquire, which asks again. So does the first lock call
    /// of a process (of every forked child too) with no descriptor left: it asks the kernel
    /// for the process's pid namespace, once, through a pidfd. A thread may hold at most
    /// 2,000 locks at once ([`LockError::TooManyHeld`]), and a lock made in another pid
    /// namespace is refused ([`LockError::OtherPidNamespace`]), as is one made where the pid
    /// namespace could be told, by a process that cannot tell its own
    /// ([`LockError::PidNamespaceUnknown`]).
    #[inline]
    pub fn acquire(&self) -> Result<Acquired, LockError> {
        Ok(self.take()?.0)
    }

    /// [`acquire`](Lock::acquire), and the number of this thread's hold.
    ///
    /// Always inlined, as [`lock`](Lock::lock) is (see there).
    #[inline(always)]
    fn take(&self) -> Result<(Acquired, u64), LockError> {
        let me = self.check_can_take()?;
        // A free lock is taken with no clock read (`lock_now`); a taken one is waited for in
        // slices (see `SLICE`), where each ends needs no more than the coarse clock.
        let mut rc = self.lock_now();
        while rc == libc::ETIMEDOUT {
            rc = self.lock_until(monotonic(libc::CLOCK_MONOTONIC_COARSE).saturating_add(SLICE));
        }
        self.acquired("pthread_mutex_clocklock", rc, me)
    }

    /// Waits at most `timeout` for the lock: Python's `l.acquire(timeout=...)`.
    /// `Ok(None)` when the time ran out. A lock whose holder died is taken at once, but the
    /// holder's exit is waited for first (see [`acquire`](Lock::acquire)), which the
    /// timeout does not bound: that wait is bounded by [`EXIT_WAIT`].
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<Option<Acquired>, LockError> {
        Ok(self.take_timeout(timeout)?.map(|(acquired, _)| acquired))
    }

    /// [`acquire_timeout`](Lock::acquire_timeout), and the number of this thread's hold.
    fn take_timeout(&self, timeout: Duration) -> Result<Option<(Acquired, u64)>, LockError> {
        let me = self.check_can_take()?;
        // A free lock is taken with no clock read (a queue's put comes here on every message).
        let mut rc = self.lock_now();
        if rc == libc::ETIMEDOUT && !timeout.is_zero() {
            rc = self.lock_within(timeout);
        }
        if rc == libc::ETIMEDOUT {
            self.forget_pending();
            return Ok(None);
        }
        self.acquired("pthread_mutex_clocklock", rc, me).map(Some)
    }

    /// Waits at most `timeout` for the mutex, in slices (see `SLICE`): ETIMEDOUT when the
    /// time ran out.
    fn lock_within(&self, timeout: Duration) -> libc::c_int {
        let deadline = monotonic(libc::CLOCK_MONOTONIC).saturating_add(timeout);
        loop {
            let slice_ends = monotonic(libc::CLOCK_MONOTONIC_COARSE).saturating_add(SLICE);
            match self.lock_until(slice_ends.min(deadline)) {
                libc::ETIMEDOUT if monotonic(libc::CLOCK_MONOTONIC) < deadline => continue,
                rc => return rc,
            }
        }
    }

    /// Takes the mutex if it is free, or returns ETIMEDOUT at once (or what a lock call
    /// returns for a dead holder). The deadline is already past: glibc tries the lock before
    /// it looks at the deadline, and gives up on a negative one with no system call. This
    /// spares a free lock the clock read of a wait's deadline: on one CPU the lock went from
    /// 0.54-0.64 of its bare twin to 0.56-0.72, `Value` from 0.39-0.48 to 0.44-0.51 (four
    /// alternating runs of `bench --only lock,value,queue --rounds 3`).
    ///
    /// Not `pthread_mutex_trylock`: glibc (2.36 here) returns ENOTRECOVERABLE from it with
    /// the mutex left locked by the caller, so that every later lock of an abandoned lock by
    /// another thread or process waits forever (the same thread gets EDEADLK):
    /// `a_thread_that_ends_holding_abandons_the_lock` hangs so.
    #[inline]
    fn lock_now(&self) -> libc::c_int {
        let past = libc::timespec {
            tv_sec: -1,
            tv_nsec: 0,
        };
        // SAFETY: the mutex was initialised by `new` and lives as long as `self`; `past` is a
        // valid timespec that outlives the call.
        unsafe { pthread_mutex_clocklock(self.state().mutex.get(), libc::CLOCK_MONOTONIC, &past) }
    }

    /// Takes this mutex out of the calling thread's `list_op_pending`, where a lock call
    /// that timed out left it. glibc (2.36 here) names the mutex there before a robust lock
    /// call, for the kernel to look at should the thread die in the middle of it, and every
    /// return clears it but ETIMEDOUT's (and EINVAL's and EOVERFLOW's, which these calls do
    /// not make). Left there, it outlived the `Lock`: once the page was unmapped and mapped
    /// again for other data (a `Value`), the thread's exit made the kernel treat that data as
    /// a mutex, and write its owner-died bit into it wherever it held the thread's id.
    #[cold]
    fn forget_pending(&self) {
        let mut head: *mut RobustListHead = std::ptr::null_mut();
        let mut len: libc::size_t = 0;
        // SAFETY: get_robust_list writes the calling thread's list head's address and length
        // into the two variables, which outlive the call.
        let rc =
            unsafe { libc::syscall(libc::SYS_get_robust_list, 0, &raw mut head, &raw mut len) };
        if rc != 0 || head.is_null() || len != size_of::<RobustListHead>() {
            return;
        }
        let mutex = self.state().mutex.get() as usize;
        // SAFETY: the head is the calling thread's own, which glibc registered (the length
        // says it has the kernel's layout) and keeps for the thread's life; only this thread
        // and the kernel, at its exit, use it, and this thread is here. The entry is cleared
        // only if it names this mutex: its lock word is at `futex_offset` from the entry.
        unsafe {
            let pending = (&raw const (*head).list_op_pending).read();
            let offset = (&raw const (*head).futex_offset).read();
            if !pending.is_null()
                && (pending as usize).wrapping_add_signed(offset as isize) == mutex
            {
                (&raw mut (*head).list_op_pending).write(std::ptr::null_mut());
            }
        }
    }

    /// Locks the mutex, or gives up at `when` (`CLOCK_MONOTONIC`) with ETIMEDOUT.
    #[inline]
    fn lock_until(&self, when: Duration) -> libc::c_int {
        let when = libc::timespec {
            tv_sec: when.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
            tv_nsec: when.subsec_nanos() as _,
        };
        // SAFETY: the mutex was initialised by `new` and lives as long as `self`; `when` is a
        // valid timespec that outlives the call.
        unsafe { pthread_mutex_clocklock(self.state().mutex.get(), libc::CLOCK_MONOTONIC, &when) }
    }

    /// Acquires the lock and returns a guard that releases it when dropped.
    //
    // Always inlined, and `take` with it: the guard's `Result` is large, and returned
    // through memory it is read back before its writes have landed (see `shared-value`'s
    // `lock`). `#[inline]` left it to the compiler, which stopped inlining both into
    // `Value::get_lock` once the bench was built with more code (its `peers` feature): the
    // bench's `Value` row went from 31 to 53 ns a turn on one CPU, the lock's own row (through
    // `acquire`) not at all; with both always inlined, 32 ns in either build.
    #[inline(always)]
    pub fn lock(&self) -> Result<LockGuard<'_>, LockError> {
        let (acquired, hold) = self.take()?;
        Ok(LockGuard {
            lock: self,
            acquired,
            hold,
            taken_in_a_panic: std::thread::panicking(),
            _not_send: PhantomData,
        })
    }

    /// Waits at most `timeout` for the lock, and returns a guard; `Ok(None)` when the time
    /// ran out.
    pub fn lock_timeout(&self, timeout: Duration) -> Result<Option<LockGuard<'_>>, LockError> {
        Ok(self
            .take_timeout(timeout)?
            .map(|(acquired, hold)| LockGuard {
                lock: self,
                acquired,
                hold,
                taken_in_a_panic: std::thread::panicking(),
                _not_send: PhantomData,
            }))
    }

    /// Releases the lock: Python's `l.release()`. It is an error to release a lock that the
    /// calling thread does not hold.
    #[inline]
    pub fn release(&self) -> Result<(), LockError> {
        self.give_back(None)
    }

    /// Releases hold `hold` of the calling thread, or its hold whatever its number (`None`).
    #[inline]
    fn give_back(&self, hold: Option<u64>) -> Result<(), LockError> {
        let state = self.state();
        let me = me();
        if !self.held_by(me, hold) {
            // Not taken by this thread (through this `Lock` or a copy of it in this
            // process): nothing is touched, and the holder's record stands. A caller from
            // another pid namespace is told so. (A holder took the lock in its namespace,
            // which a process never leaves. Checked again on every release, inside the
            // turn: on one CPU the lock ran at 0.61-0.69 of its twin, `Value` 0.45-0.50;
            // without, 0.65-0.68 and 0.50-0.54: `bench --only lock,value`, four runs each.)
            self.check_namespace()?;
            return Err(LockError::NotHolder);
        }
        // The record is taken out before the unlock, while this thread still holds the
        // mutex: a thread that takes it next and dies before writing its own record then
        // leaves 0 (it handed nothing out), never this thread's record, which would name a
        // live process.
        state.owner.store(0, Ordering::Relaxed);
        state.holder.store(0, Ordering::Release);
        // SAFETY: the mutex was initialised by `new` and lives as long as `self`.
        let rc = unsafe { libc::pthread_mutex_unlock(state.mutex.get()) };
        if rc != 0 {
            // Still held: the record goes back.
            state.holder.store(me.name, Ordering::Release);
            state.owner.store(me.owner, Ordering::Relaxed);
            return Err(Error::os("pthread_mutex_unlock", Errno::from_raw(rc)).into());
        }
        me.gave_one_back();
        Ok(())
    }

    /// Whether thread `me` holds the lock, by hold `hold` or by any (`None`): only the
    /// holder writes its owner number in the lock, and it takes it out before it unlocks.
    #[inline]
    fn held_by(&self, me: Thread, hold: Option<u64>) -> bool {
        let state = self.state();
        state.owner.load(Ordering::Relaxed) == me.owner
            && hold.is_none_or(|hold| hold == state.hold.load(Ordering::Relaxed))
    }

    /// The pid of the process holding the lock, or `None` while it is free (and for a moment
    /// while a holder releases it: the record goes before the lock). Once the lock is
    /// abandoned, the pid of the process whose thread left it, for good; and while a dead
    /// holder's end could not be told (see [`acquire`](Lock::acquire)), that holder's.
    pub fn holder(&self) -> Option<u32> {
        match (self.state().holder.load(Ordering::Acquire) >> 32) as u32 {
            0 => None,
            pid => Some(pid),
        }
    }

    /// The pid of the lock's holder if that process has ended (it died holding the lock),
    /// without waiting: for a caller that waits for the holder to finish what it does.
    pub fn dead_holder(&self) -> Option<u32> {
        self.check_namespace().ok()?;
        let pid = self.holder()?;
        (pid != current_pid() && holder_is_gone(pid, self.state().home_ns)).then_some(pid)
    }

    /// Refuses an acquire from another pid namespace ([`check_namespace`](Self::check_namespace)),
    /// or by a thread that holds as many locks as the kernel can give up at its death (a
    /// thread that holds this lock already is refused by the mutex: `EDEADLK`). Returns the
    /// calling thread.
    #[inline]
    fn check_can_take(&self) -> Result<Thread, LockError> {
        self.check_namespace()?;
        let me = me();
        if me.held >= MAX_HELD {
            return Err(if self.held_by(me, None) {
                LockError::AlreadyHeld
            } else {
                LockError::TooManyHeld {
                    limit: MAX_HELD as usize,
                }
            });
        }
        Ok(me)
    }

    /// Refuses a caller outside the lock's pid namespace. There, the mutex would take a
    /// thread for the holder because its tid has the holder's number (so that thread could
    /// release another process's lock), and a pid would name another process. A lock made
    /// where the kernel could not tell its maker's namespace (without pidfds: before Linux
    /// 5.3, or under a seccomp filter) lets every caller through; one made where it could
    /// refuses a caller that cannot tell its own.
    #[inline]
    fn check_namespace(&self) -> Result<(), LockError> {
        let home = self.state().home_ns;
        if home == 0 {
            return Ok(());
        }
        match pid_namespace()? {
            // The lock was made where the kernel could tell, and here it cannot (a seccomp
            // filter in this process, say): no telling whether this is its namespace.
            0 => Err(LockError::PidNamespaceUnknown),
            here if here == home => Ok(()),
            _ => Err(LockError::OtherPidNamespace),
        }
    }

    /// What a lock call's return code means, once the call has returned with the lock or
    /// an error to thread `me`.
    #[inline]
    fn acquired(
        &self,
        call: &'static str,
        rc: libc::c_int,
        me: Thread,
    ) -> Result<(Acquired, u64), LockError> {
        let state = self.state();
        let acquired = match rc {
            // Still the dead holder's, in all but the mutex: settled first.
            0 if state.unsettled.load(Ordering::Relaxed) != 0 => self.settle()?,
            // Read, and cleared (below) only when set: not a locked swap on every acquire.
            0 => match state.poisoned.load(Ordering::Acquire) {
                0 => Acquired::Released,
                // Its holder panicked half-way: told as a holder that died half-way.
                pid => Acquired::OwnerDied { pid },
            },
            rc => self.not_simply_acquired(call, rc)?,
        };
        // Recorded before anything is handed out under the lock.
        state.holder.store(me.name, Ordering::Release);
        state.owner.store(me.owner, Ordering::Relaxed);
        if let Acquired::OwnerDied { .. } = acquired {
            // A death is told once. The mark goes only now that this thread's record is
            // there: killed before, this thread leaves the mark for the next holder, who is
            // told of the same death; killed after, its record tells of its own. Only a
            // holder writes the mark, so under the mutex nothing writes between the read
            // and this.
            state.poisoned.store(0, Ordering::Relaxed);
        }
        // Only the holder writes the hold's number: no other write comes between the two.
        let hold = state.hold.load(Ordering::Relaxed) + 1;
        state.hold.store(hold, Ordering::Relaxed);
        me.took_one();
        Ok((acquired, hold))
    }

    /// [`acquired`](Self::acquired), for a lock call that returned anything but 0: the lock
    /// with its holder dead, or an error.
    #[cold]
    fn not_simply_acquired(
        &self,
        call: &'static str,
        rc: libc::c_int,
    ) -> Result<Acquired, LockError> {
        let state = self.state();
        match rc {
            libc::EOWNERDEAD => {
                // An unsettled mark, left by a waiter that could not tell, is this same
                // death (the dead holder's record is still there, see below).
                state.unsettled.store(0, Ordering::Relaxed);
                // This thread holds the mutex, so no one else writes the record or the mark.
                // Who died is in the record: the dead holder, or 0 if it died before writing
                // it or while releasing (a release clears it before it unlocks). Or that of
                // a holder that died before it (if a waiter recovering that one's lock was
                // killed before it recorded itself), whose process has ended. The mark, if
                // up, only says whose panic left the data half-changed: that process may
                // live on (a thread of it panicked, and the lock's next taker died).
                let pid = self.holder().unwrap_or(0);
                let ended = holder_has_ended(pid, state.home_ns);
                if matches!(ended, Ok(false)) {
                    // The thread that held it ended, but its process goes on: whatever that
                    // thread handed out under the lock (a leaked guard's `&mut`) may still be
                    // in use there. So no one gets the lock again: unlocked without being
                    // made consistent, the mutex is unrecoverable, and every later lock
                    // fails (ENOTRECOVERABLE, below).
                    // SAFETY: EOWNERDEAD means this thread now holds the mutex.
                    unsafe { libc::pthread_mutex_unlock(state.mutex.get()) };
                    return Err(LockError::LockAbandoned { pid });
                }
                // SAFETY: EOWNERDEAD means this thread now holds the mutex, which is what
                // pthread_mutex_consistent requires.
                let rc = unsafe { libc::pthread_mutex_consistent(state.mutex.get()) };
                if rc != 0 {
                    // Not given out: unlocked (and so unrecoverable) rather than held here.
                    // SAFETY: EOWNERDEAD means this thread holds the mutex.
                    unsafe { libc::pthread_mutex_unlock(state.mutex.get()) };
                    return Err(Error::os("pthread_mutex_consistent", Errno::from_raw(rc)).into());
                }
                if let Err(e) = ended {
                    // This process has no descriptor left to ask whether the holder has
                    // ended: a passing want of this process, which must not make the lock
                    // unrecoverable for every process. So this call fails, and the lock,
                    // consistent again, is unlocked with a mark naming the dead holder
                    // (whose record stays: this thread records nothing): the next to take
                    // it asks again before it is handed out (`settle`). (`pid` is not 0:
                    // a holder that left no record is known to have handed nothing out.)
                    state.unsettled.store(pid, Ordering::Relaxed);
                    // SAFETY: EOWNERDEAD means this thread holds the mutex, made consistent
                    // above.
                    unsafe { libc::pthread_mutex_unlock(state.mutex.get()) };
                    return Err(e.into());
                }
                Ok(self.told_of_death(pid))
            }
            libc::ENOTRECOVERABLE => Err(LockError::LockAbandoned {
                pid: self.holder().unwrap_or(0),
            }),
            libc::EDEADLK => Err(LockError::AlreadyHeld),
            rc => Err(Error::os(call, Errno::from_raw(rc)).into()),
        }
    }

    /// What the caller that takes a dead holder's lock is told, once the process of `pid`
    /// (the holder's record, 0 if none) has ended: a holder that panicked half-way (the
    /// mark) is named, whoever died after it; a holder that died before it recorded itself,
    /// or as it released, handed nothing out.
    fn told_of_death(&self, pid: u32) -> Acquired {
        match (self.state().poisoned.load(Ordering::Acquire), pid) {
            (0, 0) => Acquired::Released,
            (0, pid) | (pid, _) => Acquired::OwnerDied { pid },
        }
    }

    /// [`acquired`](Self::acquired), for a lock call that returned 0 with the `unsettled`
    /// mark up: its holder died holding it, and the waiter that found it so could not tell
    /// whether the holder's process had ended. Asked again, as on EOWNERDEAD: if it has
    /// ended, the lock is this thread's ([`Acquired::OwnerDied`]); if it lives on, or there
    /// is still no telling, this call fails, the lock is unlocked, and the mark stays, so
    /// that every later acquire asks again (and refuses the lock while that process lives,
    /// as an abandoned one).
    #[cold]
    fn settle(&self) -> Result<Acquired, LockError> {
        let state = self.state();
        let pid = state.unsettled.load(Ordering::Relaxed);
        match holder_has_ended(pid, state.home_ns) {
            Ok(true) => {
                state.unsettled.store(0, Ordering::Relaxed);
                Ok(self.told_of_death(pid))
            }
            ended => {
                // SAFETY: the lock call returned 0, so this thread holds the mutex.
                unsafe { libc::pthread_mutex_unlock(state.mutex.get()) };
                Err(match ended {
                    Err(e) => e.into(),
                    Ok(_) => LockError::LockAbandoned { pid },
                })
            }
        }
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("holder", &self.holder())
            .finish()
    }
}

impl LockGuard<'_> {
    /// How the lock was acquired: [`Acquired::OwnerDied`] if its previous holder died.
    pub fn acquired(&self) -> Acquired {
        self.acquired
    }
}

impl Drop for LockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        if std::thread::panicking()
            && !self.taken_in_a_panic
            && self.lock.held_by(me(), Some(self.hold))
        {
            // Dropped while unwinding: what the lock guards may be half-changed, as std's
            // `Mutex` poisons itself; the next holder learns it, in whichever process.
            self.lock
                .state()
                .poisoned
                .store(current_pid(), Ordering::Release);
        }
        // This thread took the lock (the guard cannot leave the thread): if the hold is still
        // this guard's, it ends here; if an explicit `release` ended it, there is nothing to
        // do (the error says so, and is of no use here).
        let _ = self.lock.give_back(Some(self.hold));
    }
}

/// Makes a mutex robust: when its holder dies, the next locker gets it with EOWNERDEAD.
unsafe fn set_robust(attr: *mut libc::pthread_mutexattr_t) -> Result<(), LockError> {
    // SAFETY: the caller passes an initialised mutexattr.
    let rc = unsafe { libc::pthread_mutexattr_setrobust(attr, libc::PTHREAD_MUTEX_ROBUST) };
    check("pthread_mutexattr_setrobust", rc)
}

/// pthread calls return the error number instead of setting errno.
fn check(call: &'static str, rc: libc::c_int) -> Result<(), LockError> {
    match rc {
        0 => Ok(()),
        rc => Err(Error::os(call, Errno::from_raw(rc)).into()),
    }
}
