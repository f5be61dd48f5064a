//! Who holds a lock, in the words the kernel uses: the thread id the mutex keeps, the pid
//! namespace in which that id means something, and whether the holder's process is on its
//! way out. Each is cached per process (per thread for the thread id) and asked again in a
//! child after fork, where the answers differ: the cache is tagged with
//! [`common::process_key`], which every fork changes.

use std::cell::{Cell, RefCell};
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};

use common::{Error, current_pid, process_key};

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

/// The process [`PID_NS`] was asked in; 0 until asked.
static PID_NS_KEY: AtomicU64 = AtomicU64::new(0);
/// This process's pid namespace, valid while [`PID_NS_KEY`] is this process's key. Every
/// thread of a process that writes it writes the same value.
static PID_NS: AtomicU64 = AtomicU64::new(0);

/// This process's pid namespace, in which its pid means what it says: the inode of the
/// namespace, asked of the kernel through a pidfd of this process (the
/// `PIDFD_GET_PID_NAMESPACE` ioctl, Linux 6.11), never through a path, which another mount
/// could fake. `Ok(0)` when the kernel cannot tell (an older one, valgrind's emulation of it,
/// or a seccomp filter that forbids pidfds), and an error when it could but the lookup
/// failed (no descriptor left, say). A
/// process never changes its own pid namespace, so the answer is cached.
pub(crate) fn pid_namespace() -> Result<u64, Error> {
    let key = process_key();
    if PID_NS_KEY.load(Ordering::Acquire) == key {
        return Ok(PID_NS.load(Ordering::Relaxed));
    }
    let ns = ask_pid_namespace()?;
    PID_NS.store(ns, Ordering::Relaxed);
    PID_NS_KEY.store(key, Ordering::Release);
    Ok(ns)
}

fn ask_pid_namespace() -> Result<u64, Error> {
    /// `_IO(PIDFS_IOCTL_MAGIC, 5)`, from linux/pidfd.h.
    const PIDFD_GET_PID_NAMESPACE: libc::c_ulong = 0xFF05;
    // The failure of `call`: "cannot tell" (0) where a kernel without pidfds (ENOSYS), or
    // without this ioctl (ENOTTY before pidfs, EINVAL or EOPNOTSUPP), says so, or a seccomp
    // filter that forbids them (EPERM, EACCES); an error otherwise.
    let failed = |call: &'static str| {
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(
                libc::ENOSYS
                | libc::ENOTTY
                | libc::EINVAL
                | libc::EOPNOTSUPP
                | libc::EPERM
                | libc::EACCES,
            ) => Ok(0),
            _ => Err(Error::os(call, e)),
        }
    };
    // SAFETY: pidfd_open takes two integers and touches no memory; a descriptor it returns
    // is owned by `pidfd` below.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
    if fd < 0 {
        return failed("pidfd_open");
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    // SAFETY: this ioctl reads its argument as an integer, which must be 0, and returns a
    // new descriptor or -1; it touches no memory of ours.
    let ns = unsafe { libc::ioctl(pidfd.as_raw_fd(), PIDFD_GET_PID_NAMESPACE, 0) };
    if ns < 0 {
        return failed("ioctl(PIDFD_GET_PID_NAMESPACE)");
    }
    // SAFETY: `ns` is a new descriptor that nothing else owns.
    let ns = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(ns) });
    use std::os::unix::fs::MetadataExt;
    let meta = ns.metadata().map_err(|e| Error::os("fstat", e))?;
    Ok(meta.ino())
}

/// Whether `/proc` shows this process's own pid namespace, so that `/proc/<pid>` is the
/// process that `pid` names here: after `unshare --pid` without a new `/proc`, it is the
/// parent namespace's, where the same number is another process. Then `NSpid` of
/// `/proc/self/status` lists more than one pid.
fn proc_is_ours() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    let Some(pids) = status.lines().find_map(|line| line.strip_prefix("NSpid:")) else {
        return false;
    };
    let mut pids = pids.split_whitespace();
    pids.next().and_then(|pid| pid.parse().ok()) == Some(current_pid()) && pids.next().is_none()
}

/// Whether process `pid` as a whole is on its way out: its first thread has begun its exit
/// (the kernel's PF_EXITING flag, field 9 of `/proc/<pid>/stat`) or has SIGKILL pending,
/// which a kill of the process, or an `exit_group` by another thread, puts on every thread
/// before any of them exits (`/proc/<pid>/status`, SigPnd and ShdPnd). A thread that ends
/// alone sets neither on the first thread. `None` when `/proc` does not say, or is not this
/// pid namespace's. (`/proc` can lie: it only ever decides how long to wait.)
pub(crate) fn is_exiting(pid: u32) -> Option<bool> {
    const PF_EXITING: u32 = 0x4;
    const SIGKILL_PENDING: u64 = 1 << (libc::SIGKILL - 1);
    if !proc_is_ours() {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let flags: u32 = common::stat_field(&stat, 9)?.parse().ok()?;
    if flags & PF_EXITING != 0 {
        return Some(true);
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let pending = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
    };
    let killed = [pending("SigPnd:")?, pending("ShdPnd:")?]
        .iter()
        .any(|mask| mask & SIGKILL_PENDING != 0);
    Some(killed)
}
