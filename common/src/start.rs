//! Start methods: how a child process comes to be. Python's `multiprocessing` has three, and
//! Python 3.14 made the third its default on Linux:
//!
//! - **fork**: [`Process`] copies the parent, which goes on from `fork` in both. Fast, and
//!   the child sees the parent's variables; but refused while other threads run, since the
//!   child would inherit locks that only they can release.
//! - **spawn**: a fresh run of this same executable (`posix_spawn` of its path, read from
//!   `/proc/self/exe`), whose first argument is `--multiprocessing-fork`. It runs nothing of
//!   `main`: a function that the loader runs before `main` (`start/child.rs`) sees that
//!   argument, reads what to run from its stdin, runs it and exits. It works from a program
//!   with threads: `exec` replaces everything, locks included. It costs an `exec` and a
//!   program's start.
//! - **forkserver**: a server process, itself started by spawn (so it has one thread),
//!   forks a child for each request (`start/server.rs`). It works from a program with
//!   threads; a child costs a fork of the small server, and the server is its parent.
//!
//! # How a function is named in another process
//!
//! A forked child runs the same program at the same addresses, so a function's address names
//! it there. An exec'd child runs the same executable file mapped at another address (the
//! kernel places it anew on each run), so what travels is the function's *offset* from the
//! start of the executable ([`code_offset`]), which is the same in every run of one file.
//! The file must be the same one: a request carries the executable's device and inode, and
//! a child that runs another file (the program was rebuilt while it ran) refuses it. (A
//! running executable cannot be written in place, `ETXTBSY`, so the same inode is the same
//! code.) Python sends the function's name instead, for the child to import.
//!
//! A request comes only from the process that started the child (its stdin, a socket pair
//! nobody else holds) or from the server's owner (the server's control socket, likewise);
//! a child trusts it as a forked child trusts the memory it was copied from. Started by
//! hand with `--multiprocessing-fork` or `--multiprocessing-forkserver`, a program would
//! run whatever its stdin names: so a spawned child, and a fork server, first check that
//! their stdin is a socket pair made by a process that runs this same executable file, and
//! refuse (exit status 2) anything else.
//!
//! # Why this is plumbing, here
//!
//! The start-methods section teaches these three, with Python's `get_context`. But the pool
//! of section 1 starts its workers by any of them, and a section may use only `common` and
//! earlier sections: so the mechanism lives here, beside `Process`, and the section shapes
//! it as Python's API.

use std::ffi::{c_int, c_void};
use std::fmt;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::socket::{
    self, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType,
};
use nix::unistd::Pid;

use crate::process::{Block, detach, wait};
use crate::{Error, ExitStatus, Private, Process};

mod child;
mod server;

#[cfg(not(target_env = "gnu"))]
compile_error!(
    "start methods need glibc: it passes argc and argv to the functions that run before main"
);

pub use server::ForkServer;

/// What a started child runs: given the bytes and the descriptors sent with the request, it
/// returns the child's exit code. It must be a function of this executable (not of a shared
/// library), as [`code_offset`] checks.
pub type Entry = fn(args: &[u8], fds: Vec<OwnedFd>) -> i32;

/// The most descriptors one request carries.
pub const MAX_FDS: usize = 8;
/// The most bytes of arguments one request carries: a request is one datagram of a Unix
/// socket. Send more through a pipe or a queue, as one would in Python.
pub const MAX_ARGS: usize = 64 << 10;

/// How children are started: Python's `multiprocessing` start methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// A copy of this process: `fork`.
    Fork,
    /// A fresh run of this executable.
    Spawn,
    /// A fork of a server process, started by spawn.
    ForkServer,
}

impl Method {
    /// The three, in Python's order.
    pub const ALL: [Method; 3] = [Method::Fork, Method::Spawn, Method::ForkServer];

    /// Python's name for it: `fork`, `spawn`, `forkserver`.
    pub fn name(self) -> &'static str {
        match self {
            Method::Fork => "fork",
            Method::Spawn => "spawn",
            Method::ForkServer => "forkserver",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where children are started from: Python's `multiprocessing.get_context(method)`. Clones
/// share one fork server. When the last clone and the last child handle it started are
/// dropped, the server is told to end, and the drop waits until it has: until the
/// children it started have ended, as Python waits for its children at exit. (A server
/// told to end that the owner then stops watching would kill its children.)
#[derive(Clone)]
pub struct Context {
    method: Method,
    server: Option<Arc<ForkServer>>,
}

impl Context {
    /// A context for `method`; for [`Method::ForkServer`], this starts the server.
    pub fn new(method: Method) -> Result<Context, Error> {
        let server = match method {
            Method::ForkServer => Some(Arc::new(ForkServer::start()?)),
            Method::Fork | Method::Spawn => None,
        };
        Ok(Context { method, server })
    }

    /// The error a start by this context would end in now, for other threads of this
    /// process ([`Error::ThreadsRunning`]), waiting only `patience` where a start waits a
    /// second for them to end: only fork is refused so. A caller that has a deadline, or
    /// other work to do (a pool whose other workers run the tasks), tries later rather than
    /// wait. (A thread just joined is still counted for a moment: read once, the count still
    /// had it in about 1 of 100 reads.)
    pub fn refused_for_threads(&self, patience: Duration) -> Option<Error> {
        if self.method != Method::Fork {
            return None;
        }
        match crate::process::threads_after(patience) {
            Ok(threads) if threads > 1 => Some(Error::ThreadsRunning { threads }),
            _ => None,
        }
    }

    /// The fork server's pid, under [`Method::ForkServer`].
    pub fn server_pid(&self) -> Option<u32> {
        self.server.as_ref().map(|server| server.pid())
    }

    /// Starts a child that runs `entry(args, fds)` and exits with the code it returns. The
    /// descriptors go to the child; this process's copies are closed.
    pub fn start(&self, entry: Entry, args: Vec<u8>, fds: Vec<OwnedFd>) -> Result<Child, Error> {
        if args.len() > MAX_ARGS || fds.len() > MAX_FDS {
            return Err(Error::RequestTooLarge {
                bytes: args.len(),
                fds: fds.len(),
            });
        }
        let (pid, how) = match &self.server {
            None if self.method == Method::Fork => {
                let target: Box<dyn FnOnce() -> Code + Send> =
                    Box::new(move || Code(entry(&args, fds)));
                let mut process = Process::new(target);
                process.start()?;
                let pid = process.pid().ok_or(Error::NotStarted)?;
                (pid, How::Forked(process))
            }
            None => (child::spawn(entry, &args, fds)?, How::Spawned),
            Some(server) => server.start_child(entry, &args, fds)?,
        };
        Ok(Child {
            pid,
            how,
            status: None,
            owner: crate::process_key(),
        })
    }
}

/// An entry's exit code, as a forked child's outcome.
struct Code(i32);

impl crate::Outcome for Code {
    fn exit_code(self) -> i32 {
        self.0
    }
}

/// A child started by a [`Context`]: its pid, and how it ended.
pub struct Child {
    pid: Pid,
    how: How,
    status: Option<ExitStatus>,
    /// The process that started it ([`crate::process_key`]): only there is the pid surely
    /// this child's (a copy of the handle in a process forked later could outlive its reaping).
    owner: u64,
}

enum How {
    /// Forked by this process: a `Process` waits for it.
    Forked(Process<Box<dyn FnOnce() -> Code + Send>>),
    /// Spawned by this process, its parent, which reaps it.
    Spawned,
    /// Forked by the server, which reaps it and reports how it ended on `link`. `pidfd`
    /// names it for signals, even once its pid is given to another process. Without one
    /// (the kernel has no pidfds, or the server or this process had no descriptor left for
    /// it), a signal goes by the link to the server, which sends it unless it has reaped
    /// the child: the pid alone could name another process by then.
    Served {
        link: Private<OwnedFd>,
        pidfd: Option<Private<OwnedFd>>,
        /// The server lives while a child it started does.
        _server: Arc<ForkServer>,
    },
}

impl Child {
    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.pid.as_raw() as u32
    }

    /// How it ended, without waiting; `None` while it runs.
    pub fn poll(&mut self) -> Result<Option<ExitStatus>, Error> {
        self.check_owner()?;
        if self.status.is_none() {
            self.status = match &mut self.how {
                How::Forked(process) => process.poll()?,
                How::Spawned => wait(self.pid, Block::No)?,
                How::Served { link, .. } => server::status(link, Block::No)?,
            };
        }
        Ok(self.status)
    }

    /// Waits for it to end: Python's `p.join()`.
    pub fn join(&mut self) -> Result<ExitStatus, Error> {
        self.check_owner()?;
        if let Some(status) = self.status {
            return Ok(status);
        }
        let status = match &mut self.how {
            How::Forked(process) => process.join()?,
            How::Spawned => {
                wait(self.pid, Block::Yes)?.ok_or(Error::os("waitid", Errno::ECHILD))?
            }
            How::Served { link, .. } => {
                server::status(link, Block::Yes)?.ok_or(Error::ForkServerGone)?
            }
        };
        self.status = Some(status);
        Ok(status)
    }

    /// Sends SIGTERM, unless it has been reaped: Python's `p.terminate()`.
    pub fn terminate(&mut self) -> Result<(), Error> {
        self.signal(Signal::SIGTERM)
    }

    /// Sends SIGKILL, unless it has been reaped: Python's `p.kill()`.
    pub fn kill(&mut self) -> Result<(), Error> {
        self.signal(Signal::SIGKILL)
    }

    /// Sends SIGCONT, unless it has been reaped: a stopped child (SIGSTOP) acts on the
    /// SIGTERM sent to it only once continued.
    pub fn resume(&mut self) -> Result<(), Error> {
        self.signal(Signal::SIGCONT)
    }

    fn check_owner(&self) -> Result<(), Error> {
        if self.owner != crate::process_key() {
            return Err(Error::NotOwner);
        }
        Ok(())
    }

    fn signal(&mut self, signal: Signal) -> Result<(), Error> {
        self.check_owner()?;
        if self.status.is_some() {
            return Ok(());
        }
        match &self.how {
            How::Forked(process) => process.signal(signal),
            // Not reaped yet (only `poll`, `join`, and the interrupt handler reap it).
            How::Spawned => crate::interrupt::signal_child(self.pid, signal),
            How::Served {
                pidfd: None, link, ..
            } => server::signal(link, signal),
            How::Served {
                pidfd: Some(pidfd), ..
            } => {
                let Some(pidfd) = pidfd.get() else {
                    return Err(Error::NotOwner);
                };
                // SAFETY: pidfd_send_signal takes a descriptor, a signal number, a null
                // siginfo (allowed: the kernel fills it) and flags 0; it touches no memory.
                let sent = unsafe {
                    libc::syscall(
                        libc::SYS_pidfd_send_signal,
                        pidfd.as_raw_fd(),
                        signal as libc::c_int,
                        std::ptr::null::<c_void>(),
                        0,
                    )
                };
                match sent {
                    0 => Ok(()),
                    // It has ended; the server will report how.
                    _ if Errno::last() == Errno::ESRCH => Ok(()),
                    _ => Err(Error::os("pidfd_send_signal", Errno::last())),
                }
            }
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.owner != crate::process_key() {
            return;
        }
        if let (How::Spawned, None) = (&self.how, self.status) {
            // As a dropped `Process`: reaped now if it has ended, else by a later start or at
            // exit. (A forked one is its `Process`'s to reap; a served one, the server's.)
            if let Ok(None) = wait(self.pid, Block::No) {
                detach(self.pid);
            }
        }
    }
}

/// The offset of `function` from where this executable is loaded: the same in every run of
/// the same file, where the function's address is not. Fails for a function of a shared
/// library (a Rust dylib, say), which another run may load elsewhere.
pub fn code_offset(function: usize) -> Result<u64, Error> {
    let (base, end) = executable_range();
    if function < base || function >= end {
        return Err(Error::NotInExecutable { address: function });
    }
    Ok((function - base) as u64)
}

/// The address, in this process, of the function at `offset` in this executable, as
/// [`code_offset`] gave it in another run of the same file.
pub fn code_address(offset: u64) -> usize {
    executable_range().0.wrapping_add(offset as usize)
}

/// Where this executable is loaded (the offset its addresses are moved by), and the end of
/// its last loaded segment. Asked once of `dl_iterate_phdr`, whose first object is always
/// the executable: a range check a call, where `dladdr` would search symbols.
fn executable_range() -> (usize, usize) {
    static RANGE: OnceLock<(usize, usize)> = OnceLock::new();
    *RANGE.get_or_init(|| {
        let mut range = (0usize, 0usize);
        // SAFETY: the callback gets `range` back as `data`, and is called before
        // dl_iterate_phdr returns, while `range` is alive.
        unsafe { libc::dl_iterate_phdr(Some(first_object), (&raw mut range).cast()) };
        range
    })
}

extern "C" fn first_object(info: *mut libc::dl_phdr_info, _: usize, data: *mut c_void) -> c_int {
    // SAFETY: dl_iterate_phdr passes a valid dl_phdr_info, whose `dlpi_phdr` points to
    // `dlpi_phnum` program headers, and our `data`, a live `(usize, usize)`.
    unsafe {
        let info = &*info;
        let headers = std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum));
        let end = headers
            .iter()
            .filter(|h| h.p_type == libc::PT_LOAD)
            .map(|h| (h.p_vaddr + h.p_memsz) as usize)
            .max()
            .unwrap_or(0);
        let base = info.dlpi_addr as usize;
        *data.cast::<(usize, usize)>() = (base, base + end);
    }
    1 // The first object is the executable: stop.
}

/// A connected pair of sockets that keep message boundaries (`SOCK_SEQPACKET`): each send
/// arrives as one message, whole, even when several threads send at once.
fn socket_pair() -> Result<(OwnedFd, OwnedFd), Error> {
    socket::socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| Error::os("socketpair", e))
}

/// Whether the process that made `socket` (as the kernel recorded it, `SO_PEERCRED`) has
/// ended: no such process, or a zombie. (Its pid could name another process by now only
/// after it was reaped and the pids went round, while this one started.)
fn maker_has_ended(socket: BorrowedFd<'_>) -> bool {
    let Ok(peer) = socket::getsockopt(&socket, socket::sockopt::PeerCredentials) else {
        return false;
    };
    match std::fs::read_to_string(format!("/proc/{}/stat", peer.pid())) {
        // The state follows the command's closing parenthesis.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| matches!(rest.trim_start().chars().next(), Some('Z' | 'X'))),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// Checks that requests on `socket` can come only from this program's own start code: it
/// must be a socket pair's end ([`socket_pair`]: a Unix socket of datagrams) whose other end
/// was made by this process's parent, which runs this same executable file (the kernel
/// records who made a socket, `SO_PEERCRED`, and names the file a process runs,
/// `/proc/<pid>/exe`), and not by this process itself before it ran this program (the
/// kernel names the maker by pid, which `exec` keeps). A process of this program sends
/// nothing on such a socket but the requests its start code makes, unless the program
/// itself sets out to forge one: to start itself with the flag and a socket pair on stdin,
/// and to write on it the request's bytes, offsets included. The check cannot tell that
/// from the start code, as no check can tell a program's own code from that code writing
/// its memory through `/proc/self/mem`. Nor can it keep out another program of the same
/// user set on forging one, by making the pair and writing the request, starting this
/// program with the flag on one end, and then running this program itself (`exec`), to be
/// the parent it checks: such a program could as well write this one's memory (`ptrace`,
/// `/proc/<pid>/mem`). It keeps out a run by hand, and a program that hands it a socket of
/// its own. (Nor, run by hand through the dynamic loader, `ld.so prog`, can it tell two
/// programs apart: `/proc/<pid>/exe` names the loader for both.)
///
/// Where the kernel hides the other process's executable (it is not dumpable), that process
/// must be this one's parent, of its user and group: the process that started it.
///
/// Both files are asked of the kernel the same way, by `stat` of the link: under valgrind
/// both then name valgrind's tool (which any program run under it shares), where an `open`
/// of this process's own link, which valgrind answers itself, would name this program.
fn check_sender(socket: BorrowedFd<'_>) -> Result<(), String> {
    use nix::sys::socket::SockaddrLike;
    use std::os::unix::fs::MetadataExt;
    let not_ours = |what: &str| Err(format!("stdin is {what}, not a request from this program"));
    let family = socket::getsockname::<socket::SockaddrStorage>(socket.as_raw_fd())
        .map(|address| address.family());
    let kind = socket::getsockopt(&socket, socket::sockopt::SockType);
    if family != Ok(Some(AddressFamily::Unix)) || kind != Ok(SockType::SeqPacket) {
        return not_ours("not a Unix socket of datagrams");
    }
    let peer = socket::getsockopt(&socket, socket::sockopt::PeerCredentials)
        .map_err(|e| format!("getsockopt(SO_PEERCRED): {e}"))?;
    // SAFETY: getpid and getppid take nothing and touch no memory.
    let (me, parent) = unsafe { (libc::getpid(), libc::getppid()) };
    // The kernel names the process that made the pair, and a process that made it and then
    // ran this program (`exec`) is that process still, now running this file: the check
    // below would take it for this program's own start code.
    if peer.pid() == me {
        return not_ours("a socket this process made itself, before it ran this program");
    }
    let file = |link: &str| {
        std::fs::metadata(link).map(|meta| FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    };
    let ours = file("/proc/self/exe").map_err(|e| format!("stat(/proc/self/exe): {e}"))?;
    match file(&format!("/proc/{}/exe", peer.pid())) {
        // Its starter made the pair, and is its parent (spawned, it has not been adopted
        // yet: a starter that has ended fails the `stat` above, or is found by
        // `maker_has_ended`).
        Ok(theirs) if theirs == ours && peer.pid() == parent => Ok(()),
        Ok(theirs) if theirs == ours => not_ours(&format!(
            "a socket made by process {}, which did not start this one",
            peer.pid()
        )),
        Ok(_) => not_ours(&format!(
            "a socket made by process {}, which runs another program",
            peer.pid()
        )),
        // The kernel hides what a process runs from others when it is not dumpable (it
        // changed its user, or asked for it: `PR_SET_DUMPABLE`). Such an owner's children
        // and fork server can still tell their starter: the process that made the socket is
        // their parent, of their user and group. (A process that starts this program by
        // hand, and can so make it run any of its code, could run any code as that user.)
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            // SAFETY: getuid and getgid take nothing and touch no memory.
            let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
            if peer.pid() == parent && peer.uid() == uid && peer.gid() == gid {
                Ok(())
            } else {
                not_ours(&format!(
                    "a socket made by process {}, which is not this one's parent, and whose \
                     executable cannot be read ({e})",
                    peer.pid()
                ))
            }
        }
        Err(e) => not_ours(&format!(
            "a socket made by process {}, whose executable cannot be read ({e})",
            peer.pid()
        )),
    }
}

/// Sends one message, with `fds` attached.
fn send(socket: BorrowedFd<'_>, bytes: &[u8], fds: &[RawFd]) -> Result<(), Error> {
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    loop {
        match socket::sendmsg::<()>(
            socket.as_raw_fd(),
            &[IoSlice::new(bytes)],
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(Error::os("sendmsg", errno)),
        }
    }
}

/// What [`receive`] got.
enum Received {
    /// A message of this many bytes, with these descriptors.
    Message(usize, Vec<OwnedFd>),
    /// Nothing yet (when not blocking).
    Nothing,
    /// The other end is closed.
    End,
    /// A message of this many bytes whose descriptors did not all fit in this process
    /// (`MSG_CTRUNC`: EMFILE, say); those that did are closed.
    Truncated(usize),
}

/// Receives one message into `buf`, and the descriptors attached to it. A message longer
/// than `buf` is an error (`EMSGSIZE`), its descriptors closed.
fn receive(socket: BorrowedFd<'_>, buf: &mut [u8], block: bool) -> Result<Received, Error> {
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS + 1]);
    let flags = if block {
        MsgFlags::MSG_CMSG_CLOEXEC
    } else {
        MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT
    };
    let (bytes, truncated, fds) = loop {
        let mut iov = [IoSliceMut::new(buf)];
        match socket::recvmsg::<()>(socket.as_raw_fd(), &mut iov, Some(&mut space), flags) {
            Ok(msg) => {
                let mut fds = Vec::new();
                let Ok(cmsgs) = msg.cmsgs() else {
                    // nix refuses to parse a control buffer cut short (`MSG_CTRUNC`), but the
                    // descriptors that did arrive are in it, and this process's now.
                    let bytes = msg.bytes;
                    close_cut_rights(&space);
                    return Ok(Received::Truncated(bytes));
                };
                for cmsg in cmsgs {
                    if let ControlMessageOwned::ScmRights(received) = cmsg {
                        // SAFETY: the kernel just installed these descriptors in this process
                        // for this message; nothing else owns them.
                        fds.extend(
                            received
                                .into_iter()
                                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                        );
                    }
                }
                break (msg.bytes, msg.flags.contains(MsgFlags::MSG_TRUNC), fds);
            }
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) if !block => return Ok(Received::Nothing),
            Err(errno) => return Err(Error::os("recvmsg", errno)),
        }
    };
    if truncated {
        return Err(Error::os("recvmsg", Errno::EMSGSIZE));
    }
    // Nothing here sends an empty message: an empty one is the end.
    if bytes == 0 && fds.is_empty() {
        return Ok(Received::End);
    }
    Ok(Received::Message(bytes, fds))
}

/// Closes the descriptors of a control buffer that `recvmsg` cut short (`MSG_CTRUNC`: this
/// process ran out of descriptors while the kernel installed them). The kernel then writes
/// one `SCM_RIGHTS` header for the descriptors it did install, and none if it installed
/// none: the buffer was zeroed before the call, so its length then reads 0.
fn close_cut_rights(space: &[u8]) {
    let header = size_of::<libc::cmsghdr>();
    if space.len() < header {
        return;
    }
    // SAFETY: `space` holds at least one header's bytes; read unaligned, as a byte buffer
    // may be.
    let cmsg = unsafe { std::ptr::read_unaligned(space.as_ptr().cast::<libc::cmsghdr>()) };
    // SAFETY: CMSG_LEN only computes a length.
    let data = unsafe { libc::CMSG_LEN(0) } as usize;
    let len = cmsg.cmsg_len as usize;
    if cmsg.cmsg_level != libc::SOL_SOCKET
        || cmsg.cmsg_type != libc::SCM_RIGHTS
        || len < data
        || len > space.len()
    {
        return;
    }
    for fd in space[data..len].chunks_exact(size_of::<RawFd>()) {
        let mut bytes = [0; size_of::<RawFd>()];
        bytes.copy_from_slice(fd);
        let fd = RawFd::from_ne_bytes(bytes);
        // SAFETY: the kernel just installed this descriptor in this process for the message
        // it cut short, which is dropped: nothing else knows of it.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
}

/// A request, as it travels: the executable it is for, the entry's offset, the pid of the
/// process the child must die with (0: none), how many descriptors came for the entry, then
/// the arguments.
struct Request<'a> {
    executable: FileId,
    entry: u64,
    die_with: i32,
    /// The child's generation: one below the process that asks (see `interrupt::DEPTH`).
    depth: u8,
    fds: u8,
    args: &'a [u8],
}

const REQUEST_HEADER: usize = 16 + 8 + 4 + 1 + 1;

impl<'a> Request<'a> {
    fn new(entry: Entry, args: &'a [u8], fds: usize) -> Result<Request<'a>, Error> {
        Ok(Request {
            executable: executable_id()?,
            entry: code_offset(entry as usize)?,
            die_with: child::parent_to_die_with(),
            depth: crate::interrupt::depth()
                .saturating_add(1)
                .min(u8::MAX.into()) as u8,
            fds: fds as u8,
            args,
        })
    }

    fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(REQUEST_HEADER + self.args.len());
        bytes.extend_from_slice(&self.executable.to_bytes());
        bytes.extend_from_slice(&self.entry.to_le_bytes());
        bytes.extend_from_slice(&self.die_with.to_le_bytes());
        bytes.push(self.depth);
        bytes.push(self.fds);
        bytes.extend_from_slice(self.args);
        bytes
    }

    fn decode(bytes: &'a [u8]) -> Option<Request<'a>> {
        let (executable, rest) = bytes.split_first_chunk::<16>()?;
        let (entry, rest) = rest.split_first_chunk::<8>()?;
        let (die_with, rest) = rest.split_first_chunk::<4>()?;
        let (&depth, rest) = rest.split_first()?;
        let (&fds, args) = rest.split_first()?;
        Some(Request {
            executable: FileId::from_bytes(executable),
            entry: u64::from_le_bytes(*entry),
            die_with: i32::from_le_bytes(*die_with),
            depth,
            fds,
            args,
        })
    }

    /// The entry, in this process; `None` if this process runs another executable file
    /// than the one the request was made in.
    fn entry(&self) -> Option<Entry> {
        if executable_id().ok()? != self.executable {
            return None;
        }
        let address = code_address(self.entry);
        // SAFETY: the request came from this program's own start code (`check_sender`: the
        // socket it came on was made by this process's parent, which runs this executable,
        // and such a process sends nothing else on it, unless it, or a program of the same
        // user that ran this executable to be that parent, forges a request on purpose, which
        // `check_sender` names as outside what it keeps out, as `/proc/<pid>/mem` is; or a
        // fork server so started forked this child; or, where the kernel hides the maker's
        // executable, it is this process's parent, of its user, which started it with this
        // request as a forked child's parent gives it its memory), which took this offset
        // from an `Entry` with `code_offset`, in a run of the executable file that this
        // process runs too (same device and inode, just checked), so the address at that
        // offset is that function's.
        Some(unsafe { std::mem::transmute::<usize, Entry>(address) })
    }
}

/// Which file: device and inode.
#[derive(Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn to_bytes(self) -> [u8; 16] {
        let mut bytes = [0; 16];
        bytes[..8].copy_from_slice(&self.dev.to_le_bytes());
        bytes[8..].copy_from_slice(&self.ino.to_le_bytes());
        bytes
    }

    fn from_bytes(bytes: &[u8; 16]) -> FileId {
        let (dev, ino) = bytes.split_at(8);
        FileId {
            dev: u64::from_le_bytes(dev.try_into().unwrap_or_default()),
            ino: u64::from_le_bytes(ino.try_into().unwrap_or_default()),
        }
    }
}

/// The file this process runs. Asked of an open `/proc/self/exe`, which names the running
/// file even once its path names another (and which valgrind, running the program under
/// it, opens as the program's file, not its own).
fn executable_id() -> Result<FileId, Error> {
    use std::os::unix::fs::MetadataExt;
    static ID: OnceLock<FileId> = OnceLock::new();
    if let Some(id) = ID.get() {
        return Ok(*id);
    }
    let meta = std::fs::File::open("/proc/self/exe")
        .and_then(|file| file.metadata())
        .map_err(|e| Error::os("open(/proc/self/exe)", e))?;
    Ok(*ID.get_or_init(|| FileId {
        dev: meta.dev(),
        ino: meta.ino(),
    }))
}
