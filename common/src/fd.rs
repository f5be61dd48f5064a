//! Pipe and socket ends: made non-blocking, and waited on with `poll(2)`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use crate::Error;

/// How long a reader polls a non-blocking descriptor before it sleeps in `poll(2)`. A reply
/// that comes within this time is read about a microsecond after it is written, where a
/// sleeping reader would take tens of microseconds to be woken and scheduled. What it buys,
/// on two idle cores (`bench/results/bench.md`): a pipe round trip 789,000 a second with
/// polling reads against 21,800 with blocking ones, and `Pool::apply` 527,000 calls a
/// second. Where the peer needs the polling reader's core, it costs instead.
pub const SPIN: Duration = Duration::from_micros(50);

/// A write of at most this many bytes to a pipe is atomic: all of it goes in, or none.
pub const PIPE_BUF: usize = libc::PIPE_BUF;

/// A pipe's buffer, where the system allows it: 1 MiB, the most Linux gives an unprivileged
/// process by default, instead of 64 KiB.
pub const PIPE_SIZE: usize = 1 << 20;

/// Asks for a [`PIPE_SIZE`] buffer for the pipe `fd` belongs to, so that a big frame crosses
/// in a few writes and reads instead of one per 64 KiB, each waking the other side. Where the
/// system refuses (another limit), the pipe keeps its size: only speed changes.
pub fn enlarge_pipe(fd: BorrowedFd<'_>) {
    // SAFETY: F_SETPIPE_SZ on a descriptor the caller holds; it touches no memory.
    unsafe {
        libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE as libc::c_int);
    }
}

/// Makes `fd` non-blocking: a read with nothing to read returns `WouldBlock`.
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> Result<(), Error> {
    // SAFETY: F_GETFL reads the flags of a descriptor that `fd` keeps open for the call;
    // no memory is passed.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(Error::os("fcntl", io::Error::last_os_error()));
    }
    // SAFETY: as above; F_SETFL sets the flags read just before, plus O_NONBLOCK.
    let set = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) };
    if set < 0 {
        return Err(Error::os("fcntl", io::Error::last_os_error()));
    }
    Ok(())
}

/// Sleeps until `fd` is readable (or at its end, or in error), or `timeout` has passed.
/// Returns whether it is ready.
pub fn wait_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> Result<bool, Error> {
    let timeout_ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as i32);
    let mut fds = [pollfd(fd.as_raw_fd(), libc::POLLIN)];
    Ok(poll_fds(&mut fds, timeout_ms)? > 0)
}

/// Sleeps until `fd` has room to write (or is at its end, or in error), or `timeout` has
/// passed. Returns whether it is ready.
pub fn wait_writable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> Result<bool, Error> {
    let timeout_ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as i32);
    let mut fds = [pollfd(fd.as_raw_fd(), libc::POLLOUT)];
    Ok(poll_fds(&mut fds, timeout_ms)? > 0)
}

/// A `pollfd` asking for `events` on `fd`.
pub fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// `poll(2)` on `fds` for at most `timeout_ms` (-1: no limit). Returns how many are ready;
/// 0 also when a signal interrupted the wait, which callers treat as a wait to retry.
pub fn poll_fds(fds: &mut [libc::pollfd], timeout_ms: i32) -> Result<usize, Error> {
    // SAFETY: `fds` is a valid, writable array of `fds.len()` pollfd structs for the call;
    // poll only writes their `revents`.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    match n {
        0.. => Ok(n as usize),
        _ => match io::Error::last_os_error() {
            e if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            e => Err(Error::os("poll", e)),
        },
    }
}
