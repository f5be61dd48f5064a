//! Forkserver: a server process, started by spawn while nothing else runs in it, that forks
//! a child for each request and reports how each ended.
//!
//! The owner and the server share one control socket (a socket pair, so no other process
//! can connect). A request carries the child's descriptors, and one more: the child's
//! *link*, a socket pair of its own, on which the server answers with the child's pid and a
//! pidfd of it, and later with how it ended. The server is the child's parent, so it reaps
//! it: it watches each child's pidfd, which becomes readable when the child has exited.
//!
//! The server ends:
//! - when its owner says it is done (`Q`), once its children have ended (Python joins its
//!   children at exit too);
//! - when the control socket closes without that (the owner died), or on SIGINT, SIGTERM or
//!   SIGHUP (Ctrl-C reaches the whole process group; the owner's handler sends SIGTERM):
//!   it ends and reaps its children first (SIGTERM, and SIGKILL after its grace, half its
//!   owner's), so none is left behind.

use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::socket::{self, MsgFlags};
use nix::unistd::Pid;

use super::{Entry, How, MAX_ARGS, REQUEST_HEADER, Received, Request, child, receive, send};
use crate::process::{Block, die_with_parent, wait};
use crate::{Error, ExitStatus, Private};

/// What the owner says when it is done.
const QUIT: &[u8] = b"Q";
/// Link messages: a tag, then a little-endian `i32`.
const LINK_MESSAGE: usize = 5;
/// The child's pid, with a pidfd of it.
const STARTED: u8 = b'P';
/// The server's `fork` failed with this errno.
const FORK_FAILED: u8 = b'F';
/// The child exited with this code.
const EXITED: u8 = b'X';
/// A signal of this number ended the child.
const SIGNALED: u8 = b'S';
/// From the owner: send the child this signal, unless it has been reaped.
const SIGNAL: u8 = b'K';

/// The owner's handle on a fork server. Dropping it tells the server to end once its
/// children have, and waits for that.
pub struct ForkServer {
    pid: Pid,
    control: Private<OwnedFd>,
    /// Set once this process has reaped the server (it was found dead): its pid may be
    /// another process's since, which must be neither waited for nor reaped. Behind a lock,
    /// so that two threads that ask at once cannot both wait for that pid: the second
    /// would reap whichever child of this process got it in the meantime.
    reaped: Mutex<bool>,
}

impl ForkServer {
    /// Starts a fork server, by spawn: it has one thread, whatever this process has.
    pub(super) fn start() -> Result<ForkServer, Error> {
        let (ours, theirs) = super::socket_pair()?;
        let pid = child::start_self(child::SERVER, theirs)?;
        let server = ForkServer {
            pid,
            control: Private::new(ours)?,
            reaped: Mutex::new(false),
        };
        // Its first message: whom it dies with, and its generation (one below this process's:
        // see `interrupt::grace_ns`).
        let mut first = child::parent_to_die_with().to_le_bytes().to_vec();
        first.extend_from_slice(&crate::interrupt::depth().saturating_add(1).to_le_bytes());
        send(server.control()?, &first, &[])?;
        Ok(server)
    }

    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.pid.as_raw() as u32
    }

    fn control(&self) -> Result<BorrowedFd<'_>, Error> {
        self.control.get().map(AsFd::as_fd).ok_or(Error::NotOwner)
    }

    /// Asks the server for a child that runs `entry(args, fds)`.
    pub(super) fn start_child(
        self: &Arc<Self>,
        entry: Entry,
        args: &[u8],
        fds: Vec<OwnedFd>,
    ) -> Result<(Pid, How), Error> {
        let control = self.control()?;
        let request = Request::new(entry, args, fds.len())?;
        let (link, theirs) = super::socket_pair()?;
        let mut raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        raw.push(theirs.as_raw_fd());
        send(control, &request.encode(), &raw).map_err(|_| Error::ForkServerGone)?;
        // The server has its own copies now.
        drop((fds, theirs));
        let mut answer = [0; LINK_MESSAGE];
        let (tag, value, mut fds) = match receive(link.as_fd(), &mut answer, true)? {
            Received::Message(LINK_MESSAGE, fds) => (answer[0], message_value(&answer), fds),
            // The child started, but its pidfd found no room in this process: signals to
            // it go through the server then (see `signal`). Reported as a failure, the
            // start would leave the child running, and a caller that tried again would run
            // its work twice.
            Received::Truncated(LINK_MESSAGE) => (answer[0], message_value(&answer), Vec::new()),
            // The server dropped the request without a word, the link with it: it could
            // not take the request's descriptors, having run out of them, if it still runs.
            Received::End if self.still_runs() => {
                return Err(Error::os("recvmsg (in the fork server)", Errno::EMFILE));
            }
            _ => return Err(Error::ForkServerGone),
        };
        match (tag, fds.pop()) {
            (STARTED, pidfd) if fds.is_empty() => Ok((
                Pid::from_raw(value),
                How::Served {
                    link: Private::new(link)?,
                    pidfd: pidfd.map(Private::new).transpose()?,
                    _server: Arc::clone(self),
                },
            )),
            (FORK_FAILED, None) => Err(Error::os(
                "fork (in the fork server)",
                Errno::from_raw(value),
            )),
            _ => Err(Error::ForkServerGone),
        }
    }
}

impl ForkServer {
    /// Whether the server still runs, for an owner that saw it close a link. A server that
    /// is being killed closes its descriptors a moment before it can be reaped: it is
    /// asked again for up to 50 ms before it is taken to be alive. One found dead is
    /// reaped, and marked so.
    fn still_runs(&self) -> bool {
        let deadline = Instant::now() + Duration::from_millis(50);
        loop {
            {
                let mut reaped = self.reaped.lock().unwrap_or_else(PoisonError::into_inner);
                if *reaped {
                    return false;
                }
                match wait(self.pid, Block::No) {
                    Ok(None) => {}
                    Ok(Some(_)) => {
                        *reaped = true;
                        return false;
                    }
                    Err(_) => return false,
                }
            }
            if Instant::now() >= deadline {
                return true;
            }
            thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for ForkServer {
    fn drop(&mut self) {
        // Only in the process that started it: a forked copy of this handle is not its owner.
        if let Ok(control) = self.control() {
            let _ = send(control, QUIT, &[]);
            if !*self
                .reaped
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner)
            {
                let _ = wait(self.pid, Block::Yes);
            }
        }
    }
}

/// Asks the server to send `signal` to the child whose link this is, for a child without a
/// pidfd. The server sends it unless it has reaped the child; one that has ended, and a
/// server that has (which killed its children first), are not errors.
pub(super) fn signal(link: &Private<OwnedFd>, signal: Signal) -> Result<(), Error> {
    let link = link.get().ok_or(Error::NotOwner)?;
    let message = link_message(SIGNAL, signal as i32);
    // Without waiting: a server that does not read (stopped) must not hold up the caller,
    // whose signal, like kill(2)'s, is sent, not delivered. A link full of requests not
    // read yet is one the server will act on; this one is dropped.
    let sent = socket::send(
        link.as_raw_fd(),
        &message,
        MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
    );
    match sent {
        Ok(_) | Err(Errno::EAGAIN | Errno::EPIPE | Errno::ECONNRESET) => Ok(()),
        Err(e) => Err(Error::os("send", e)),
    }
}

/// How a served child ended, from its link; `None` while it runs (with `Block::No`).
pub(super) fn status(link: &Private<OwnedFd>, block: Block) -> Result<Option<ExitStatus>, Error> {
    let link = link.get().ok_or(Error::NotOwner)?;
    let mut message = [0; LINK_MESSAGE];
    match receive(link.as_fd(), &mut message, matches!(block, Block::Yes))? {
        Received::Nothing => Ok(None),
        Received::Message(LINK_MESSAGE, _) if message[0] == EXITED => {
            Ok(Some(ExitStatus::Exited(message_value(&message))))
        }
        Received::Message(LINK_MESSAGE, _) if message[0] == SIGNALED => {
            let signal =
                Signal::try_from(message_value(&message)).map_err(|_| Error::ForkServerGone)?;
            Ok(Some(ExitStatus::Signaled(signal)))
        }
        _ => Err(Error::ForkServerGone),
    }
}

fn message_value(message: &[u8; LINK_MESSAGE]) -> i32 {
    i32::from_le_bytes([message[1], message[2], message[3], message[4]])
}

fn link_message(tag: u8, value: i32) -> [u8; LINK_MESSAGE] {
    let v = value.to_le_bytes();
    [tag, v[0], v[1], v[2], v[3]]
}

/// A child of the server.
struct Served {
    pid: Pid,
    /// Readable once the child has exited. `None` where the kernel has no pidfds (before
    /// Linux 5.3, or under valgrind), or the server had no descriptor left for one: the
    /// child is then asked after with `waitpid` every [`UNWATCHED_POLL_MS`].
    pidfd: Option<OwnedFd>,
    link: OwnedFd,
    /// Whether the owner's end of the link is open: it may ask for a signal on it.
    listening: bool,
}

/// How often children without a pidfd are asked after.
const UNWATCHED_POLL_MS: i32 = 20;

/// The server: runs before `main` in a process started by [`ForkServer::start`], which has
/// one thread. Returns its exit code.
pub(super) fn serve() -> i32 {
    match serve_requests() {
        Ok(code) => code,
        Err(e) => {
            crate::error_line(format_args!("fork server: {e}"));
            1
        }
    }
}

fn serve_requests() -> Result<i32, Error> {
    // The control socket came as stdin: move it, and give stdin to /dev/null, which the
    // children inherit.
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) touches no memory; the new descriptor is owned below.
    let control = unsafe { libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 3) };
    if control < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EBADF) {
            // Run by hand with stdin closed: refused as a spawned child is.
            return Ok(child::refuse(child::SERVER, "stdin is closed"));
        }
        return Err(Error::os("fcntl", e));
    }
    // SAFETY: `control` is a new descriptor that nothing else owns.
    let control = unsafe { OwnedFd::from_raw_fd(control) };
    child::quiet_stdin()?;
    if let Err(why) = super::check_sender(control.as_fd()) {
        return Ok(child::refuse_unless_orphaned(
            child::SERVER,
            &why,
            control.as_fd(),
        ));
    }
    let mut first = [0; 8];
    match receive(control.as_fd(), &mut first, true) {
        Ok(Received::Message(8, _)) => {
            let [o0, o1, o2, o3, d0, d1, d2, d3] = first;
            match i32::from_le_bytes([o0, o1, o2, o3]) {
                0 => {}
                owner => die_with_parent(owner),
            }
            // At most what a spawn request can say: a hostile number is no generation.
            let depth = u32::from_le_bytes([d0, d1, d2, d3]).min(u8::MAX.into());
            crate::interrupt::set_depth(depth);
        }
        Ok(Received::End) => return Ok(0), // The owner is gone already.
        // Not what an owner sends first (whom to die with, the generation: 8 bytes).
        Ok(Received::Message(n, _) | Received::Truncated(n)) => {
            return Ok(child::refuse_unless_orphaned(
                child::SERVER,
                &format!("a first message of {n} bytes, not 8"),
                control.as_fd(),
            ));
        }
        Ok(Received::Nothing) => return Ok(0), // Not when blocking.
        Err(e) => {
            let why = e.to_string();
            return Ok(child::refuse_unless_orphaned(
                child::SERVER,
                &why,
                control.as_fd(),
            ));
        }
    }
    // SAFETY: setting a disposition to SIG_IGN touches no memory. A child that has gone
    // away makes a write to its link fail (EPIPE) instead of killing the server.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let signals = Signals::block()?;
    // What every child would do first, done once here: its panic hook, the executable's
    // identity, stdout's buffer. A child that does it writes pages it shares with the server
    // after the fork, and each such page is copied for it (a fault, 3 to 4 us on the bench's
    // machine): 29 faults a child before, 22 after (getrusage of the server's children).
    // With the vector below, a start on one CPU went from 0.64-0.69 of the bench's bare
    // twin to 0.80-1.05 (three alternating runs of the two builds).
    crate::unprintable::explain();
    let _ = super::executable_id();
    let _ = io::stdout().flush();
    let mut children: Vec<Served> = Vec::new();
    let mut buf = vec![0; REQUEST_HEADER + MAX_ARGS];
    let mut quitting = false;
    loop {
        if quitting && children.is_empty() {
            return Ok(0);
        }
        let mut fds = vec![
            // Watched while quitting too: an owner killed while it waits for the server to
            // end closes it, and the children must not outlive it then either.
            crate::fd::pollfd(control.as_raw_fd(), libc::POLLIN),
            crate::fd::pollfd(signals.fd.as_raw_fd(), libc::POLLIN),
        ];
        // Two for each child: its pidfd, and its link while the owner may send on it.
        fds.extend(children.iter().flat_map(|c| {
            let pidfd = c.pidfd.as_ref().map_or(-1, AsRawFd::as_raw_fd);
            let link = if c.listening { c.link.as_raw_fd() } else { -1 };
            [
                crate::fd::pollfd(pidfd, libc::POLLIN),
                crate::fd::pollfd(link, libc::POLLIN),
            ]
        }));
        let unwatched = children.iter().any(|c| c.pidfd.is_none());
        crate::fd::poll_fds(&mut fds, if unwatched { UNWATCHED_POLL_MS } else { -1 })?;
        if fds[1].revents != 0 {
            let signal = signals.take();
            end_all(&mut children);
            signals.raise(signal);
        }
        // Signals asked for: sent before any child is reaped, so that each pid is still
        // its child's.
        for (i, child) in children.iter_mut().enumerate() {
            if fds[2 * i + 3].revents != 0 {
                signal_asked(child);
            }
        }
        // Children that have ended: reaped, and reported on their links.
        let ended: Vec<usize> = (0..children.len())
            .filter(|&i| {
                fds[2 * i + 2].revents != 0
                    || (children[i].pidfd.is_none() && has_exited(children[i].pid))
            })
            .collect();
        for &i in ended.iter().rev() {
            reap(children.swap_remove(i));
        }
        if fds[0].revents != 0 {
            match receive(control.as_fd(), &mut buf, true) {
                Ok(Received::Message(len, _)) if &buf[..len] == QUIT => quitting = true,
                Ok(Received::Message(len, fds)) => {
                    if let Some(child) = fork_child(&buf[..len], fds, &control, &signals, &children)
                    {
                        children.push(child);
                    }
                }
                Ok(Received::Nothing) => {}
                // Its descriptors could not all be taken (EMFILE): that request is dropped,
                // with what came of them (`receive` closed them). The link comes last, so it
                // did not come: its owner reads the end of its own, sees the server alive,
                // and says so. The other children run on.
                Ok(Received::Truncated(_)) => {}
                // The owner died without saying it was done: nothing of it may run on.
                Ok(Received::End) | Err(_) => {
                    end_all(&mut children);
                    return Ok(0);
                }
            }
        }
    }
}

/// Forks a child for one request. `None` if the request is malformed (its descriptors are
/// closed) or fork failed (the link says so).
fn fork_child(
    bytes: &[u8],
    mut fds: Vec<OwnedFd>,
    control: &OwnedFd,
    signals: &Signals,
    children: &[Served],
) -> Option<Served> {
    let link = fds.pop()?;
    let request = Request::decode(bytes)?;
    if usize::from(request.fds) != fds.len() {
        return None;
    }
    // The child drops its descriptors' vector: one without an allocation frees nothing, where
    // freeing writes malloc's pages (22 faults a child, 19 without).
    if fds.is_empty() {
        fds = Vec::new();
    }
    // The child asks to die with the server, named here: the child's own `getppid` would
    // name whoever adopted it, were the server killed between the fork and that call.
    // SAFETY: getpid touches no memory.
    let server = unsafe { libc::getpid() };
    // SAFETY: this process has one thread (it was started by exec and runs before `main`,
    // which starts none), so nothing is held or half-changed in the child.
    match unsafe { libc::fork() } {
        0 => {
            // The child: it keeps its request's descriptors and nothing of the server's.
            // SAFETY: each of these descriptors belongs to the server's copy of memory,
            // whose owners never run in this process: it ends by `_exit` below.
            unsafe {
                libc::close(control.as_raw_fd());
                libc::close(link.as_raw_fd());
                for other in children {
                    if let Some(pidfd) = &other.pidfd {
                        libc::close(pidfd.as_raw_fd());
                    }
                    libc::close(other.link.as_raw_fd());
                }
            }
            signals.unblock_in_child();
            let request = Request {
                die_with: server,
                ..request
            };
            let code = child::run(&request, fds);
            let code = if io::stdout().flush().is_err() && code == 0 {
                1
            } else {
                code
            };
            // SAFETY: `_exit` ends the child at once, running none of the server's code.
            unsafe { libc::_exit(code) }
        }
        -1 => {
            let errno = Errno::last_raw();
            let _ = send(link.as_fd(), &link_message(FORK_FAILED, errno), &[]);
            None
        }
        pid => {
            drop(fds);
            // SAFETY: pidfd_open takes two integers and touches no memory. The child is
            // not reaped until it is seen to have exited, so its pid is still its own.
            let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
            // SAFETY: a new descriptor that nothing else owns.
            let pidfd = (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) });
            // An owner that went away meanwhile will not read this; the child runs anyway.
            let attached: Vec<RawFd> = pidfd.iter().map(AsRawFd::as_raw_fd).collect();
            let _ = send(link.as_fd(), &link_message(STARTED, pid), &attached);
            Some(Served {
                pid: Pid::from_raw(pid),
                pidfd,
                link,
                listening: true,
            })
        }
    }
}

/// Reads what the owner sent on a child's link, and sends the signal it asks for. The child
/// has not been reaped, so its pid is its own. A closed link, or anything else on it, ends
/// the listening.
fn signal_asked(child: &mut Served) {
    let mut message = [0; LINK_MESSAGE];
    match receive(child.link.as_fd(), &mut message, false) {
        Ok(Received::Nothing) => {}
        Ok(Received::Message(LINK_MESSAGE, _)) if message[0] == SIGNAL => {
            if let Ok(signal) = Signal::try_from(message_value(&message)) {
                let _ = nix::sys::signal::kill(child.pid, signal);
            }
        }
        _ => child.listening = false,
    }
}

/// Reaps a child that has exited and tells its owner how it ended.
fn reap(child: Served) {
    let message = match nix::sys::wait::waitpid(child.pid, None) {
        Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => link_message(EXITED, code),
        Ok(nix::sys::wait::WaitStatus::Signaled(_, signal, _)) => {
            link_message(SIGNALED, signal as i32)
        }
        // Stopped or continued are not asked for; anything else is not an ending.
        _ => return,
    };
    let _ = send(child.link.as_fd(), &message, &[]);
}

/// Whether a child has exited, without reaping it.
fn has_exited(pid: Pid) -> bool {
    use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    !matches!(
        waitid(Id::Pid(pid), flags),
        Ok(WaitStatus::StillAlive) | Err(Errno::EINTR)
    )
}

/// Ends every child and reaps it: SIGTERM, and SIGKILL to those still there after the
/// server's grace, half its owner's (`interrupt::grace_ns`), so that a child that started
/// children of its own has ended and reaped them by then, and its owner's SIGKILL comes
/// after. (Killed at once, a child left its own to whoever adopted them.)
fn end_all(children: &mut Vec<Served>) {
    // Not reaped yet, so each pid is still this child's.
    for child in children.iter() {
        let _ = nix::sys::signal::kill(child.pid, Signal::SIGTERM);
        // A stopped child acts on SIGTERM only once continued.
        let _ = nix::sys::signal::kill(child.pid, Signal::SIGCONT);
    }
    let grace_ends = Instant::now() + Duration::from_nanos(crate::interrupt::grace_ns() as u64);
    while Instant::now() < grace_ends && !children.iter().all(|c| has_exited(c.pid)) {
        std::thread::sleep(Duration::from_millis(1));
    }
    for child in children.iter() {
        if !has_exited(child.pid) {
            let _ = nix::sys::signal::kill(child.pid, Signal::SIGKILL);
        }
    }
    for child in children.drain(..) {
        reap(child);
    }
}

/// The signals that end the server, blocked and read from a signalfd, so that the server
/// ends its children before it ends.
struct Signals {
    fd: OwnedFd,
    set: libc::sigset_t,
}

impl Signals {
    fn block() -> Result<Signals, Error> {
        // SAFETY: the set is initialised by sigemptyset before use; sigprocmask and
        // signalfd read it; sigaction only writes `old`, a zeroed (valid) C struct that is
        // alive; the descriptor signalfd returns is owned below.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                // One the owner ignores (as under `nohup`, or in a shell's background job)
                // stays ignored, as `interrupt` leaves it: a blocked signal is queued even
                // when ignored, and would end the server and its children.
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(signal, std::ptr::null(), &mut old) == 0
                    && old.sa_sigaction == libc::SIG_IGN
                {
                    continue;
                }
                libc::sigaddset(&mut set, signal);
            }
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
            if fd < 0 {
                return Err(Error::os("signalfd", io::Error::last_os_error()));
            }
            Ok(Signals {
                fd: OwnedFd::from_raw_fd(fd),
                set,
            })
        }
    }

    /// The signal that came (SIGTERM if none can be read).
    fn take(&self) -> libc::c_int {
        let mut info: libc::signalfd_siginfo = unsafe_zeroed();
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: `info` is a writable signalfd_siginfo of `size` bytes.
        let read = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&mut info as *mut libc::signalfd_siginfo).cast(),
                size,
            )
        };
        if read == size as isize {
            info.ssi_signo as libc::c_int
        } else {
            libc::SIGTERM
        }
    }

    /// Ends the server by `signal`, as its default would: the status a shell expects.
    fn raise(&self, signal: libc::c_int) -> ! {
        // SAFETY: resetting a disposition and unblocking a set touch no memory but the set,
        // which is alive; the signal then ends the process.
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
            libc::sigprocmask(libc::SIG_UNBLOCK, &self.set, std::ptr::null_mut());
            libc::raise(signal);
            libc::_exit(128 + signal)
        }
    }

    /// In a child just forked: the signals reach it again, and the signalfd is closed.
    fn unblock_in_child(&self) {
        // SAFETY: as in `raise`; the descriptor is the server's, never used in the child.
        unsafe {
            libc::sigprocmask(libc::SIG_UNBLOCK, &self.set, std::ptr::null_mut());
            libc::close(self.fd.as_raw_fd());
        }
    }
}

fn unsafe_zeroed() -> libc::signalfd_siginfo {
    // SAFETY: signalfd_siginfo is a C struct of integers, for which all zeroes is valid.
    unsafe { std::mem::zeroed() }
}
