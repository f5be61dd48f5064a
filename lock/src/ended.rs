//! Has a lock's holder ended? The question a waiter asks when the kernel hands it a lock
//! with `EOWNERDEAD`, answered in the kernel's words: a pidfd of the holder's pid, in the
//! pid namespace where that pid means something, and `/proc` to tell how long an exit that
//! has begun may still take. The namespace is cached per process and asked again in a child
//! after fork: the cache is tagged with [`common::process_key`], which every fork changes.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;

use common::{Error, current_pid, process_key};

use crate::EXIT_WAIT;

/// Whether the holder's process has ended, every thread of it ([`process_ended`],
/// from a pidfd), for a lock made in pid namespace `home_ns`. Only where the kernel tells
/// pid namespaces apart (`home_ns` is not 0): elsewhere, a process of another namespace
/// may use the lock, and the holder's pid name another process here. (A pid given again
/// to another process after the holder ended looks alive: the lock is then abandoned,
/// never recovered by mistake.)
pub(crate) fn holder_is_gone(pid: u32, home_ns: u64) -> bool {
    home_ns != 0 && matches!(process_ended(pid), Ok(Some(true)))
}

/// Whether the process of a lock's dead holder has ended, so that nothing it handed out
/// under the lock can still be in use. The kernel gives a dying process's locks up early in
/// its exit, before it is a zombie, and the rest of the exit (unmapping gigabytes, say) may
/// take seconds: a process that is exiting is waited for, up to [`EXIT_WAIT`]. One that is
/// not exiting a moment after its lock was given up lives on: only a thread of it died.
/// Where neither the kernel nor `/proc` can tell, the answer is "lives on" after
/// [`EXIT_WAIT`]: the lock is then abandoned, never recovered while its holder may run.
/// An error when this process has no descriptor left to ask with (see [`process_ended`]):
/// a passing want of this process, which says nothing of the holder.
pub(crate) fn holder_has_ended(pid: u32, home_ns: u64) -> Result<bool, Error> {
    if pid == 0 {
        // It died between taking the lock and recording itself: it handed nothing out.
        return Ok(true);
    }
    if pid == current_pid() || home_ns == 0 {
        // One of this process's threads, and this process goes on; or no telling.
        return Ok(false);
    }
    // The other threads of a killed process start their exit a moment after the first.
    // After that, two readings in a row must say "not exiting": between its taking SIGKILL
    // and flagging its exit, a dying first thread shows neither for a moment. (`/proc` only
    // decides how long to wait here, never that the holder has ended.)
    let start = Instant::now();
    let mut pause = Duration::from_micros(100);
    let mut not_exiting = 0;
    while process_ended(pid)? != Some(true) {
        let waited = start.elapsed();
        if waited >= EXIT_WAIT {
            return Ok(false);
        }
        match is_exiting(pid) {
            Some(false) if waited >= Duration::from_millis(100) => {
                not_exiting += 1;
                if not_exiting == 2 {
                    return Ok(false);
                }
            }
            Some(false) => {}
            // Exiting, or no telling from `/proc`: wait on.
            Some(true) | None => not_exiting = 0,
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
    Ok(true)
}

/// Whether process `pid` has ended, every thread of it: it is gone, or a zombie not yet
/// reaped. A process whose first thread has died shows as a zombie in `/proc` while its
/// other threads still run (and may still write memory it shares), and `/proc` can be
/// another pid namespace's, or not procfs at all; so the answer comes from a pidfd, which
/// the kernel makes readable only once the whole thread group has exited, and which names
/// the pid in this process's own pid namespace. Without a pidfd (before Linux 5.3, or no
/// descriptor left), `waitid` asks about a child of this process without reaping it, and
/// `kill` says when there is no such process at all. `None` when nothing can tell (a zombie
/// that is not this process's child, without pidfds). An error when only the want of a
/// descriptor (EMFILE, ENFILE) kept the pidfd from telling: asked again later, it may.
fn process_ended(pid: u32) -> Result<Option<bool>, Error> {
    // SAFETY: pidfd_open takes two integers and touches no memory; a descriptor it returns
    // is owned by `pidfd` below, and closed there.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd >= 0 {
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        let mut fds = [common::fd::pollfd(pidfd.as_raw_fd(), libc::POLLIN)];
        return Ok(common::fd::poll_fds(&mut fds, 0)
            .ok()
            .map(|ready| ready == 1));
    }
    let open_failed = Errno::last();
    let pid = Pid::from_raw(pid as libc::pid_t);
    if open_failed == Errno::ESRCH {
        // No such process, and `kill` must say so too: a seccomp filter that fails
        // pidfd_open with ESRCH does not make a live holder look dead. (A pid given to a
        // new process in between says "no telling".)
        return Ok((kill(pid, None) == Err(Errno::ESRCH)).then_some(true));
    }
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    match waitid(Id::Pid(pid), flags) {
        Ok(WaitStatus::StillAlive) => Ok(Some(false)),
        Ok(_) => Ok(Some(true)),
        Err(_) if kill(pid, None) == Err(Errno::ESRCH) => Ok(Some(true)),
        Err(_) if matches!(open_failed, Errno::EMFILE | Errno::ENFILE) => {
            Err(Error::os("pidfd_open", open_failed))
        }
        Err(_) => Ok(None),
    }
}

/// The process [`PID_NS`] was asked in; 0 until asked.
static PID_NS_KEY: AtomicU64 = AtomicU64::new(0);
/// This process's pid namespace, valid while [`PID_NS_KEY`] is this process's key. Every
/// thread of a process that writes it writes the same value.
static PID_NS: AtomicU64 = AtomicU64::new(0);

/// This process's pid namespace, in which its pid means what it says: the inode of the
/// namespace, asked of the kernel through a pidfd of this process (the
/// `PIDFD_GET_PID_NAMESPACE` ioctl, Linux 6.11), or, where the kernel has pidfds but not
/// that ioctl (Linux 5.3 to 6.10), through `/proc/self/ns/pid` ([`proc_pid_namespace`]).
/// `Ok(0)` when neither can tell (no pidfds, valgrind's emulation of them, a seccomp filter
/// that forbids them, or no `/proc`), and an error when the kernel could but the lookup
/// failed (no descriptor left, say). A process never changes its own pid namespace, so the
/// answer is cached.
#[inline]
pub(crate) fn pid_namespace() -> Result<u64, Error> {
    if PID_NS_KEY.load(Ordering::Acquire) == process_key() {
        return Ok(PID_NS.load(Ordering::Relaxed));
    }
    ask_and_cache_pid_namespace()
}

/// [`pid_namespace`], the first time a process asks.
#[cold]
fn ask_and_cache_pid_namespace() -> Result<u64, Error> {
    let key = process_key();
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
        return match Errno::last() {
            // A kernel with pidfds, without this ioctl (before Linux 6.11).
            Errno::ENOTTY | Errno::EINVAL | Errno::EOPNOTSUPP => proc_pid_namespace(),
            _ => failed("ioctl(PIDFD_GET_PID_NAMESPACE)"),
        };
    }
    // SAFETY: `ns` is a new descriptor that nothing else owns.
    namespace_inode(std::fs::File::from(unsafe { OwnedFd::from_raw_fd(ns) }))
}

/// This process's pid namespace from `/proc/self/ns/pid`, for kernels with pidfds but
/// without `PIDFD_GET_PID_NAMESPACE` (Linux 5.3 to 6.10: Debian 12's 6.1, Ubuntu 24.04's
/// 6.8). The link is the kernel's own for whichever process opens it, whichever pid
/// namespace's `/proc` this is: one where this process has no number has no `self`, and
/// says nothing (`Ok(0)`). The file opened must be the namespace file system's, or this
/// says nothing either: another file at that path (a mount over `/proc`) is not taken for
/// a namespace. Only another namespace's real file, mounted over the link on purpose,
/// would pass, and what can mount that can write the lock's memory as well.
fn proc_pid_namespace() -> Result<u64, Error> {
    /// `NSFS_MAGIC`, from linux/magic.h.
    const NSFS_MAGIC: libc::c_long = 0x6e73_6673;
    let ns = match std::fs::File::open("/proc/self/ns/pid") {
        Ok(ns) => ns,
        Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
            return Err(Error::os("open(/proc/self/ns/pid)", e));
        }
        Err(_) => return Ok(0),
    };
    // SAFETY: an all-zero statfs is a valid C struct; fstatfs writes it, and it outlives
    // the call; `ns` is open for the call.
    let fs_type = unsafe {
        let mut fs: libc::statfs = std::mem::zeroed();
        if libc::fstatfs(ns.as_raw_fd(), &mut fs) != 0 {
            return Ok(0);
        }
        fs.f_type
    };
    if fs_type as libc::c_long != NSFS_MAGIC {
        return Ok(0);
    }
    namespace_inode(ns)
}

/// The inode of an open namespace file: the namespace's number, the same whichever way the
/// file was opened.
fn namespace_inode(ns: std::fs::File) -> Result<u64, Error> {
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
fn is_exiting(pid: u32) -> Option<bool> {
    const PF_EXITING: u32 = 0x4;
    const SIGKILL_PENDING: u64 = 1 << (libc::SIGKILL - 1);
    if !proc_is_ours() {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let flags: u32 = stat_field(&stat, 9)?.parse().ok()?;
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

/// Field `n` of a `/proc/<pid>/stat` line, numbered from 1 as proc(5) numbers them.
fn stat_field(stat: &str, n: usize) -> Option<&str> {
    // The command name, field 2, is in parentheses and may hold spaces: count after it.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(n.checked_sub(3)?)
}
