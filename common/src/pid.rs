//! Who is who among processes: this process's pid and key, which every fork changes, and
//! whether another process has ended.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;

/// This process's pid, cached; 0 until asked for in this process.
static PID: AtomicU32 = AtomicU32::new(0);
/// How many forks lie between this process and the one that first asked for its pid.
static GENERATION: AtomicU32 = AtomicU32::new(0);
static AT_FORK: Once = Once::new();

/// Runs in every child just after `fork`, whichever code forks.
extern "C" fn after_fork_in_child() {
    PID.store(0, Ordering::Relaxed);
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// This process's id, as `std::process::id()` gives it, without a system call each time:
/// it is cached, and the cache is cleared in every child at `fork` (by a `pthread_atfork`
/// handler, whichever code forks).
pub fn current_pid() -> u32 {
    AT_FORK.call_once(|| {
        // SAFETY: the handler only stores to atomics, which is safe in a child just after
        // fork; the other two handlers are absent.
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
    });
    match PID.load(Ordering::Relaxed) {
        0 => {
            let pid = std::process::id();
            PID.store(pid, Ordering::Relaxed);
            pid
        }
        pid => pid,
    }
}

/// A number that tells this process apart from every other process that holds a copy of
/// its memory: its pid, and how many forks led to it. A pid alone does not: once a process
/// has died its pid may be given again, and a child of a child can get it, with copies of
/// the dead process's objects (a pool, a private descriptor) that must not take it for
/// their owner. Objects that belong to one process keep this key, not the pid.
pub fn process_key() -> u64 {
    let pid = current_pid();
    key(pid, GENERATION.load(Ordering::Relaxed))
}

/// [`process_key`] in a signal handler: no `Once`, and the pid from `getpid`.
pub(crate) fn process_key_in_handler() -> u64 {
    // SAFETY: getpid has no preconditions and is async-signal-safe.
    let pid = unsafe { libc::getpid() } as u32;
    key(pid, GENERATION.load(Ordering::Relaxed))
}

fn key(pid: u32, generation: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(pid)
}

/// True once process `pid` has ended, every thread of it; in doubt, "still running". See
/// [`process_ended`].
pub fn has_ended(pid: u32) -> bool {
    process_ended(pid) == Some(true)
}

/// Whether process `pid` has ended, every thread of it: it is gone, or a zombie not yet
/// reaped. A process whose first thread has died shows as a zombie in `/proc` while its
/// other threads still run (and may still write memory it shares), and `/proc` can be
/// another pid namespace's, or not procfs at all; so the answer comes from a pidfd, which
/// the kernel makes readable only once the whole thread group has exited, and which names
/// the pid in this process's own pid namespace. Without a pidfd (before Linux 5.3, or no
/// descriptor left), `waitid` asks about a child of this process without reaping it, and
/// `kill` says when there is no such process at all. `None` when nothing can tell (a zombie
/// that is not this process's child, without a pidfd).
pub fn process_ended(pid: u32) -> Option<bool> {
    // SAFETY: pidfd_open takes two integers and touches no memory; a descriptor it returns
    // is owned by `pidfd` below, and closed there.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd >= 0 {
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        let mut fds = [crate::fd::pollfd(pidfd.as_raw_fd(), libc::POLLIN)];
        return crate::fd::poll_fds(&mut fds, 0)
            .ok()
            .map(|ready| ready == 1);
    }
    if Errno::last() == Errno::ESRCH {
        return Some(true);
    }
    let pid = Pid::from_raw(pid as libc::pid_t);
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    match waitid(Id::Pid(pid), flags) {
        Ok(WaitStatus::StillAlive) => Some(false),
        Ok(_) => Some(true),
        Err(_) => (kill(pid, None) == Err(Errno::ESRCH)).then_some(true),
    }
}

/// Field `n` of a `/proc/<pid>/stat` line, numbered from 1 as proc(5) numbers them.
pub fn stat_field(stat: &str, n: usize) -> Option<&str> {
    // The command name, field 2, is in parentheses and may hold spaces: count after it.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(n.checked_sub(3)?)
}
