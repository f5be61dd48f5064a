//! Pipe and socket ends: made non-blocking, waited on with `poll(2)`, and how long to spin
//! before a wait sleeps.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::Error;

/// How long a reader spins on a descriptor before it sleeps (in `poll(2)`, or in a blocking
/// read). A reply that comes within this time is read about a microsecond after it is
/// written, where a sleeping reader would take tens of microseconds to be woken and
/// scheduled. What it bought on two idle cores, in an earlier run of the bench: a pipe round
/// trip 789,000 a second with polling reads against 21,800 with blocking ones, and
/// `Pool::apply` 527,000 calls a second. Where the peer needs the polling reader's core, it
/// costs instead: see [`Spin`].
pub const SPIN: Duration = Duration::from_micros(50);

/// One wait of a reader: it looks again at once for up to [`SPIN`], then sleeps; but it
/// spins only where spinning pays.
///
/// A spin pays when the peer answers on another CPU meanwhile. It cannot where this process
/// may run on one CPU only (the peer needs the very CPU the spinner holds), and it costs
/// where the peer is slow to answer. So a process does not spin when its affinity allows
/// one CPU, and it learns from its own waits: each spin that ends with nothing (the peer
/// did not answer in time) makes it skip the spin in the next 2, 4, ... 1,024 waits; each
/// spin that is answered takes one step back; and vain spins are forgotten once the skips
/// they asked for have lasted as long as the spins would have (at least 20 ms): what one
/// reader learnt must not stand, seconds later, for the next.
///
/// What it buys, measured with `Pool::apply` (5,000 calls, two workers, release build,
/// alternating runs): with every process on one CPU, 105 to 110 us a call when every wait
/// spun, 9.3 to 10.3 us with this (a blocking one-byte pipe round trip: 6.4 us); on two idle
/// cores, 2.6 to 3.7 us either way; beside two busy loops, 5 to 27 us either way (that
/// condition is as noisy as the scheduler). The bench measures all three conditions.
#[derive(Debug, Default)]
pub struct Spin {
    state: SpinState,
}

#[derive(Debug, Default)]
enum SpinState {
    /// Between waits.
    #[default]
    Idle,
    /// Spinning until then.
    Until(Instant),
    /// Sleeping in `poll`, or about to.
    Slept,
}

/// Spins that ended with nothing, recently, in this process (at most [`MAX_FAILS`]).
static FAILS: AtomicU32 = AtomicU32::new(0);
/// Waits still to skip the spin in.
static SKIP: AtomicU32 = AtomicU32::new(0);
const MAX_FAILS: u32 = 10;
/// Until when vain spins are remembered, in milliseconds of `CLOCK_MONOTONIC_COARSE`: as
/// long as the spins that the skips save would have taken (50 us each, 51 ms for 1,024),
/// but at least [`REMEMBER_MS`]. Counted in waits alone, the skips that a queue's reader
/// left beside busy loops stood until as many waits had come, however much later and in
/// whichever reader: in the bench, the next round's `Pool::apply` on idle cores skipped the
/// spin in its first 650 to 870 calls and ran 88,000 to 238,000 calls a second; with the
/// skips bounded so, 369,000 and 483,000 in the two rounds of a full run (its twins: 528,000
/// to 576,000).
static REMEMBER_UNTIL: AtomicU64 = AtomicU64::new(0);
/// The least time vain spins are remembered: a few ticks of the coarse clock, which moves 1
/// to 4 ms at a time.
const REMEMBER_MS: u64 = 20;

impl Spin {
    /// A new wait.
    pub fn new() -> Spin {
        Spin::default()
    }

    /// Nothing has come yet: true when the caller should look again at once, false when it
    /// should sleep (in `poll(2)`, or in a blocking read). The precise clock (`Instant`) is
    /// read only while a spin runs: a wait that sleeps at once (on one CPU) reads none.
    pub fn again(&mut self) -> bool {
        match self.state {
            SpinState::Idle if spin_pays() => {
                self.state = SpinState::Until(Instant::now() + SPIN);
            }
            SpinState::Idle => self.state = SpinState::Slept,
            SpinState::Until(until) if Instant::now() >= until => {
                let fails = (FAILS.load(Relaxed) + 1).min(MAX_FAILS);
                FAILS.store(fails, Relaxed);
                SKIP.store(1 << fails, Relaxed);
                let saved_ms = (SPIN.as_micros() as u64 * (1 << fails)).div_ceil(1000);
                let until = coarse_millis().saturating_add(saved_ms.max(REMEMBER_MS));
                REMEMBER_UNTIL.store(until, Relaxed);
                self.state = SpinState::Slept;
            }
            SpinState::Until(_) | SpinState::Slept => {}
        }
        let spin = matches!(self.state, SpinState::Until(_));
        if spin {
            std::hint::spin_loop();
        }
        spin
    }

    /// A read found something: the wait is over, and the next one starts afresh.
    pub fn got(&mut self) {
        if let SpinState::Until(_) = self.state {
            let _ = FAILS.fetch_update(Relaxed, Relaxed, |f| f.checked_sub(1));
        }
        self.state = SpinState::Idle;
    }
}

/// Forgets, in a child just forked by `Process::start`, what its parent learnt of its waits:
/// the child's peers are not its parent's. The process has one thread.
pub(crate) fn forget_waits() {
    FAILS.store(0, Relaxed);
    SKIP.store(0, Relaxed);
    REMEMBER_UNTIL.store(0, Relaxed);
    ASKED_AT.store(0, Relaxed);
}

/// Whether this process's affinity allowed one CPU only, when last asked (see [`one_cpu`]).
static ONE_CPU: AtomicBool = AtomicBool::new(false);
/// When that was, in milliseconds of `CLOCK_MONOTONIC_COARSE`, plus 1; 0: not asked yet.
static ASKED_AT: AtomicU64 = AtomicU64::new(0);

/// Whether the next wait should spin: not where this process may use one CPU only, nor in
/// the waits a failed spin said to skip.
fn spin_pays() -> bool {
    if one_cpu() {
        return false;
    }
    // The coarse clock is read only while something is remembered.
    if (SKIP.load(Relaxed) | FAILS.load(Relaxed)) > 0
        && coarse_millis() >= REMEMBER_UNTIL.load(Relaxed)
    {
        FAILS.store(0, Relaxed);
        SKIP.store(0, Relaxed);
    }
    SKIP.fetch_update(Relaxed, Relaxed, |skip| skip.checked_sub(1))
        .is_err()
}

/// True when this process may run on one CPU only (its affinity), asked again each second:
/// an answer may be up to a second old.
///
/// Every wait asks this, so it reads two atomics and the coarse clock (no lock). With a
/// `Mutex` and `Instant` here, and the clock read before `Spin::again` knew whether it would
/// spin, a wait that slept at once read the time stamp counter three times (about 34 ns
/// each on the bench's machine); a `Pool::apply` round trip on one CPU ran 3,366
/// instructions in the pool's parent and worker, 3,136 without (callgrind).
pub fn one_cpu() -> bool {
    let now = coarse_millis().saturating_add(1);
    let at = ASKED_AT.load(Relaxed);
    if at != 0 && now < at.saturating_add(1000) {
        return ONE_CPU.load(Relaxed);
    }
    // SAFETY: a zeroed cpu_set_t is an empty set, which sched_getaffinity fills for the
    // calling thread; CPU_COUNT only reads it.
    let one = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0
            && libc::CPU_COUNT(&set) == 1
    };
    // Threads that ask at once may store their answers in either order (sched_getaffinity
    // tells the calling thread's affinity, and one asked before a change may store last):
    // a wrong answer then stands for up to a second. Only speed depends on it.
    ONE_CPU.store(one, Relaxed);
    ASKED_AT.store(now, Relaxed);
    one
}

/// Milliseconds of `CLOCK_MONOTONIC_COARSE`: the time of the last tick, read without the
/// time stamp counter (about 7 ns here, where `Instant::now` takes about 34).
fn coarse_millis() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `now`, which is alive. (It does not
    // fail on Linux since 2.6.32; were it to, the time would stay 0 and the first answer
    // would stand: only speed would change.)
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut now) };
    (now.tv_sec as u64)
        .saturating_mul(1000)
        .saturating_add(now.tv_nsec as u64 / 1_000_000)
}

/// Set once the kernel has refused a [`read_now`]: every later one is refused without asking.
static NO_READ_NOW: AtomicBool = AtomicBool::new(false);

/// Reads into `buf` what `fd` holds now, without waiting even where its reads block:
/// `Ok(None)` when it holds nothing yet, `Ok(Some(0))` at its end (or, as `read(2)`, when
/// `buf` is empty). One system call,
/// `preadv2(2)` with `RWF_NOWAIT`, where `poll(2)` and then a read made two. A round trip
/// between two spinning readers pays it on both sides: on two idle cores, `Pool::apply`
/// went from 179,000-246,000 calls a second to 262,000-340,000 (its pool's parent reads its
/// non-blocking pipes so too), and the manager from 0.66-0.75 of its bare twin to 0.78-0.86
/// (`bench --only apply,manager`, three alternating runs of each build).
///
/// A kernel that cannot read a descriptor so (an older kernel, a seccomp filter) gives
/// `ErrorKind::Unsupported`, from then on without asking: the caller waits in `poll(2)`
/// instead. (A descriptor of another kind that could have been read so is then polled too:
/// only speed changes.)
pub fn read_now(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<usize>> {
    if NO_READ_NOW.load(Relaxed) {
        return Err(io::ErrorKind::Unsupported.into());
    }
    let iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: `iov` describes `buf`, writable for its whole length while the call runs; the
    // descriptor is open while `fd` borrows it; offset -1 reads at the current position, as
    // read(2) does.
    let n = unsafe { libc::preadv2(fd.as_raw_fd(), &iov, 1, -1, libc::RWF_NOWAIT) };
    if n >= 0 {
        return Ok(Some(n as usize));
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) => Ok(None),
        // No RWF_NOWAIT for this kind of file (EOPNOTSUPP), no such flag (EINVAL), no
        // preadv2 at all (ENOSYS, which glibc tells as EOPNOTSUPP when flags are given), or
        // a seccomp filter that refuses it (EPERM, EACCES: a container's, say).
        Some(libc::EOPNOTSUPP | libc::EINVAL | libc::ENOSYS | libc::EPERM | libc::EACCES) => {
            NO_READ_NOW.store(true, Relaxed);
            Err(io::ErrorKind::Unsupported.into())
        }
        _ => Err(e),
    }
}

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
