//! How a child ended, and waiting for it: every child is reaped, by `join`, or if its handle
//! was dropped while it ran, by a later `start` or at exit.

use std::fmt;
use std::io::{self, Write};
use std::sync::Once;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use nix::unistd::Pid;

use crate::pid::{List, lock};
use crate::{Error, interrupt};

/// How a child process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// It ended with this exit code: 0 when its target returned (or returned `Ok`), 1 when
    /// it returned `Err`, 101 when it panicked.
    Exited(i32),
    /// A signal ended it.
    Signaled(Signal),
}

impl ExitStatus {
    /// True when the child exited with code 0.
    pub fn success(self) -> bool {
        self == ExitStatus::Exited(0)
    }

    /// Python's `Process.exitcode`: the exit code, or minus the signal's number.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(code) => code,
            ExitStatus::Signaled(signal) => -(signal as i32),
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Exited(code) => write!(f, "exit code {code}"),
            ExitStatus::Signaled(signal) => write!(f, "killed by {signal}"),
        }
    }
}

#[derive(Clone, Copy)]
pub(crate) enum Block {
    Yes,
    No,
}

/// Puts SIGCHLD back to its default where it is ignored (`SIG_IGN`, or `SA_NOCLDWAIT`), as a
/// parent that ignores it passes on through `exec`: then the kernel reaps this process's
/// children itself, as they end. Their exit status is lost (`join` failed with ECHILD where
/// Python's `join` goes on), and, worse, a pid is free for another process the moment its
/// child ends, while the handles that name it (a `Process`, the interrupt handler's list)
/// would still signal it: a manager's drop killed an unrelated process that got its
/// server's pid. Called before each child is started, by every start method. The default
/// differs from `SIG_IGN` only in that children wait to be reaped.
///
/// A handler of the program's own is left as it is, but not with `SA_NOCLDWAIT`: that asks
/// the kernel to reap the children all the same, so the start is refused
/// ([`Error::ChildrenReapedByKernel`]). (Left so, `terminate`, and Ctrl-C's handler,
/// signalled whatever process got a reaped child's pid: a review put an unrelated one
/// there, and it was killed.) Clearing the flag would leave the program's other children,
/// which it expects the kernel to reap, as zombies.
pub(crate) fn keep_children_to_reap() -> Result<(), Error> {
    // SAFETY: sigaction reads and writes one `sigaction` each, which outlive the calls; the
    // one read is written back with only its handler or a flag changed.
    unsafe {
        let mut now: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGCHLD, std::ptr::null(), &mut now) != 0 {
            return Ok(());
        }
        let handled = now.sa_sigaction != libc::SIG_IGN && now.sa_sigaction != libc::SIG_DFL;
        let reaped_by_kernel =
            now.sa_sigaction == libc::SIG_IGN || now.sa_flags & libc::SA_NOCLDWAIT != 0;
        if handled && reaped_by_kernel {
            return Err(Error::ChildrenReapedByKernel);
        }
        if reaped_by_kernel {
            now.sa_sigaction = libc::SIG_DFL;
            now.sa_flags &= !libc::SA_NOCLDWAIT;
            libc::sigaction(libc::SIGCHLD, &now, std::ptr::null_mut());
        }
    }
    Ok(())
}

/// Waits for one child: `Ok(None)` when `Block::No` and it is still running.
///
/// It looks first without reaping (`waitid` with `WNOWAIT`): until it is reaped, the ended
/// child stays a zombie whose pid no other process can take. Only once it is untracked is it
/// reaped, so the interrupt handler, which signals every tracked pid, never signals a pid
/// that may belong to another process by then.
pub(crate) fn wait(pid: Pid, block: Block) -> Result<Option<ExitStatus>, Error> {
    let mut flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
    if let Block::No = block {
        flags |= WaitPidFlag::WNOHANG;
    }
    let status = loop {
        match waitid(Id::Pid(pid), flags) {
            Ok(WaitStatus::Exited(_, code)) => break ExitStatus::Exited(code),
            Ok(WaitStatus::Signaled(_, signal, _)) => break ExitStatus::Signaled(signal),
            Ok(WaitStatus::StillAlive) => return Ok(None),
            // Stops and continues are reported only when asked for, which we do not.
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(errno) => {
                if errno == Errno::ECHILD {
                    if interrupt::handling() {
                        // Reaped by the handler, which is ending this process.
                        wait_for_the_end();
                    }
                    // Reaped by other code: no longer ours to signal either.
                    interrupt::untrack(pid.as_raw());
                }
                return Err(Error::os("waitid", errno));
            }
        }
    };
    // Untracked and reaped in one step the handler waits for (`interrupt::Busy`): run
    // between the two, it would find the child untracked, and end this process without
    // reaping it (a zombie left to whoever adopts it). The child has exited, so the reaping
    // does not wait.
    let busy = interrupt::Busy::new();
    if !busy.untrack(pid.as_raw()) {
        // The handler has begun: the child stays in its set, a zombie it reaps before it
        // ends this process.
        drop(busy);
        wait_for_the_end();
    }
    let reaped = loop {
        match waitpid(pid, None) {
            Err(Errno::EINTR) => continue,
            Ok(_) => break Ok(Some(status)),
            Err(errno) => break Err(Error::os("waitpid", errno)),
        }
    };
    drop(busy);
    reaped
}

/// Waits, on a thread that was joining a child, for the interrupt handler, run on another
/// thread, to end this process. Returned, the join let the program go on (print, clean
/// up, start more) after Ctrl-C, while the handler ended its children and then it.
fn wait_for_the_end() -> ! {
    loop {
        std::thread::park();
    }
}

/// Children whose handle was dropped while they ran.
pub(crate) static DETACHED: List<Pid> = List::new(Vec::new());
static JOIN_AT_EXIT: Once = Once::new();

pub(crate) fn detach(pid: Pid) {
    lock(&DETACHED).push(pid);
    JOIN_AT_EXIT.call_once(|| {
        // SAFETY: `atexit` only records the address of `join_detached_at_exit`, a function that
        // lives for the whole program and does not unwind.
        if unsafe { libc::atexit(join_detached_at_exit) } != 0 {
            let _ = writeln!(
                io::stderr(),
                "atexit: could not register; children may be orphaned"
            );
        }
    });
}

/// Reaps the detached children that have ended, or with `Block::Yes`, all of them.
/// A child that `waitpid` no longer knows (reaped by other code) is forgotten.
pub(crate) fn reap_detached(block: Block) {
    match block {
        // Under the list's lock, which nothing here waits in: each is only looked at, and
        // reaped if it has ended.
        Block::No => lock(&DETACHED).retain(|&pid| matches!(wait(pid, Block::No), Ok(None))),
        // A process's last act (at exit; at a child's end): they are taken out of the list
        // and waited for without its lock, which every fork takes (`pid::before_fork`), so
        // that a fork by another thread meanwhile does not wait for them too.
        Block::Yes => {
            let all = std::mem::take(&mut *lock(&DETACHED));
            for pid in all {
                let _ = wait(pid, Block::Yes);
            }
        }
    }
}

extern "C" fn join_detached_at_exit() {
    reap_detached(Block::Yes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::thread;

    /// The interrupt handler signals every tracked pid, so a tracked pid must never have been
    /// reaped: its number could belong to another process by then. One thread forks and
    /// waits for short-lived children again and again; another keeps checking that every
    /// pid it sees tracked is still a child of ours (alive or a zombie).
    #[test]
    fn a_tracked_child_is_never_already_reaped() {
        let done = AtomicBool::new(false);
        let mut seen_reaped = Vec::new();
        thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..3000 {
                    let held = interrupt::Held::new();
                    // SAFETY: the child only calls `_exit`, which is async-signal-safe, so
                    // forking from a process with other threads is safe here.
                    let pid = match unsafe { libc::fork() } {
                        // SAFETY: `_exit` ends the child at once, as a forked child must.
                        0 => unsafe { libc::_exit(0) },
                        pid => pid,
                    };
                    interrupt::track(pid);
                    drop(held);
                    wait(Pid::from_raw(pid), Block::Yes).expect("waitid");
                }
                done.store(true, Ordering::Relaxed);
            });
            while !done.load(Ordering::Relaxed) {
                for pid in interrupt::tracked() {
                    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
                    if waitid(Id::Pid(Pid::from_raw(pid)), flags) == Err(Errno::ECHILD)
                        && interrupt::is_tracked(pid)
                    {
                        seen_reaped.push(pid);
                    }
                }
            }
        });
        assert_eq!(seen_reaped, [], "tracked after they were reaped");
    }

    /// The join at exit waits for every detached child, even while another thread looks at
    /// them (a start's reap, which does not wait). A reap that took the list out to look at
    /// it without its lock left the join an empty list: it returned at once, and the
    /// children outlived their parent (or died with it).
    #[test]
    fn the_join_at_exit_waits_for_children_another_thread_looks_at() {
        let done = AtomicBool::new(false);
        let mut running = Vec::new();
        thread::scope(|s| {
            s.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    reap_detached(Block::No);
                }
            });
            for _ in 0..100 {
                let pids: Vec<Pid> = (0..4)
                    .map(|_| {
                        // SAFETY: the child only sleeps and calls `_exit`, both
                        // async-signal-safe, so forking beside the harness's threads is safe.
                        match unsafe { libc::fork() } {
                            // SAFETY: as above.
                            0 => unsafe {
                                libc::usleep(20_000);
                                libc::_exit(0)
                            },
                            pid => Pid::from_raw(pid),
                        }
                    })
                    .collect();
                for &pid in &pids {
                    detach(pid);
                }
                join_detached_at_exit();
                let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
                running.extend(
                    pids.into_iter()
                        .filter(|&pid| waitid(Id::Pid(pid), flags) == Ok(WaitStatus::StillAlive)),
                );
            }
            done.store(true, Ordering::Relaxed);
        });
        for &pid in &running {
            let _ = waitpid(pid, None);
        }
        assert_eq!(running, [], "running after the join at exit");
    }
}
