//! The fork server's twin: the messages of `common/src/start/server.rs`, and nothing else.
//!
//! The workspace's fork server is the program run again (spawn), with its control socket as
//! stdin. For each start the owner makes the child's *link* (a socket pair), sends a request
//! on the control socket with the link attached; the server forks, answers on the link with
//! the child's pid and a pidfd of it, watches the pidfd, reaps the child once it is readable,
//! and sends how it ended; `join` reads that. The twin sends the same messages (a request of
//! the same size, the same link messages, the same descriptors attached) over the same kind
//! of sockets, from a server started the same way. What it leaves out is the bookkeeping:
//! no check of who sent the request or of the executable, no code offset to look up, no
//! arguments to decode, no signals watched, no table of children the owner may signal.

use std::ffi::CString;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::time::Instant;

use super::{Res, check, errno, poll, pollfd, reap};
use crate::workloads::Timed;

/// The first argument that makes the bench this twin's server.
pub(crate) const SERVER: &str = "--bare-fork-server";

/// A request, as the workspace's with empty arguments: the executable's device and inode,
/// the entry's offset, the pid to die with, the count of descriptors (`REQUEST_HEADER`),
/// and the arguments: the target's offset (`start_methods::Process`).
const REQUEST: usize = 16 + 8 + 4 + 1 + 8;
/// A link message: a tag, then a little-endian `i32`.
const LINK_MESSAGE: usize = 5;
/// The child's pid, with a pidfd of it attached.
const STARTED: u8 = b'P';
/// The child exited with this code.
const EXITED: u8 = b'X';
/// A signal ended the child.
const SIGNALED: u8 = b'S';

/// Start and join `n` children by a fork server. The server is started, and has started
/// one child, before the timer, as the workload's.
pub fn forkserver(n: usize) -> Timed {
    let [control, theirs] = socket_pair()?;
    let server = start_server(&theirs);
    drop(theirs);
    let server = server?;
    let timed = start_and_join(&control, 1).and_then(|()| {
        let start = Instant::now();
        start_and_join(&control, n)?;
        Ok(start.elapsed())
    });
    // The server ends when its control socket closes.
    drop(control);
    reap(server)?;
    timed
}

/// `n` times: a link, a request with it, the started child's pid and pidfd, how it ended.
fn start_and_join(control: &OwnedFd, n: usize) -> Res<()> {
    let request = [0; REQUEST];
    let mut message = [0; LINK_MESSAGE];
    for _ in 0..n {
        let [link, theirs] = socket_pair()?;
        send(control, &request, Some(&theirs))?;
        drop(theirs);
        let (len, pidfd) = receive(&link, &mut message)?;
        check(
            len == LINK_MESSAGE && message[0] == STARTED && pidfd.is_some(),
            "the bare fork server did not start a child",
        )?;
        let (len, _) = receive(&link, &mut message)?;
        check(
            len == LINK_MESSAGE && message == [EXITED, 0, 0, 0, 0],
            "a bare fork server's child did not exit with 0",
        )?;
    }
    Ok(())
}

/// This program run again as the server, with `control` as its stdin.
fn start_server(control: &OwnedFd) -> Res<libc::pid_t> {
    let exe = CString::new(
        std::env::current_exe()?
            .into_os_string()
            .into_encoded_bytes(),
    )?;
    let flag = CString::new(SERVER)?;
    let argv = [exe.as_ptr(), flag.as_ptr(), ptr::null()];
    let envp: [*const libc::c_char; 1] = [ptr::null()];
    let mut actions = std::mem::MaybeUninit::<libc::posix_spawn_file_actions_t>::uninit();
    // SAFETY: init writes the actions that `actions` has room for; destroyed below.
    if unsafe { libc::posix_spawn_file_actions_init(actions.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error().into());
    }
    let mut pid = 0;
    // SAFETY: the actions were initialised above; in the child, dup2 makes the control
    // socket its stdin, without close-on-exec. The path and the arguments are NUL-terminated
    // C strings alive for the call, both vectors end with a null, and `pid` is written.
    let error = unsafe {
        match libc::posix_spawn_file_actions_adddup2(actions.as_mut_ptr(), control.as_raw_fd(), 0) {
            0 => libc::posix_spawn(
                &mut pid,
                exe.as_ptr(),
                actions.as_ptr(),
                ptr::null(),
                argv.as_ptr().cast(),
                envp.as_ptr().cast(),
            ),
            error => error,
        }
    };
    // SAFETY: the actions were initialised above and are not used again.
    unsafe { libc::posix_spawn_file_actions_destroy(actions.as_mut_ptr()) };
    if error != 0 {
        return Err(io::Error::from_raw_os_error(error).into());
    }
    Ok(pid)
}

/// A child of the server.
struct Served {
    pid: libc::pid_t,
    pidfd: OwnedFd,
    link: OwnedFd,
}

/// The server, in this program run again: returns its exit code. It has one thread, and
/// its children only `_exit`. It ends when the bench closes the control socket, which is
/// its stdin (the bench's end is its only other).
pub(crate) fn serve() -> u8 {
    // SAFETY: descriptor 0 is the control socket (`start_server`), which nothing else here
    // owns.
    let control = unsafe { OwnedFd::from_raw_fd(0) };
    // SAFETY: signal takes integers and touches no memory: a write to a link whose owner
    // has gone fails instead of killing the server.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let mut request = [0; REQUEST];
    let mut children: Vec<Served> = Vec::new();
    let mut fds = Vec::new();
    loop {
        fds.clear();
        fds.push(pollfd(control.as_raw_fd(), libc::POLLIN));
        // The workspace's server watches each child's link too, for signals asked.
        fds.extend(children.iter().flat_map(|c| {
            [
                pollfd(c.pidfd.as_raw_fd(), libc::POLLIN),
                pollfd(c.link.as_raw_fd(), libc::POLLIN),
            ]
        }));
        if poll(&mut fds, -1).is_err() {
            return 1;
        }
        for i in (0..children.len()).rev() {
            if fds[2 * i + 1].revents != 0 {
                let child = children.swap_remove(i);
                let tag = if reap(child.pid).is_ok() {
                    EXITED
                } else {
                    SIGNALED
                };
                let _ = send(&child.link, &[tag, 0, 0, 0, 0], None);
            }
        }
        if fds[0].revents == 0 {
            continue;
        }
        let link = match receive(&control, &mut request) {
            Ok((REQUEST, Some(link))) => link,
            Ok((0, None)) => return 0, // The bench closed it.
            _ => return 1,
        };
        // SAFETY: this process has one thread, so nothing is held or half-changed in the
        // child, which makes two system calls that touch no memory and ends with `_exit`.
        match unsafe { libc::fork() } {
            0 => {
                // SAFETY: as the workspace's child: it dies with the server; the descriptors
                // it inherited close at `_exit`.
                unsafe {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    libc::getppid();
                    libc::_exit(0)
                }
            }
            -1 => return 1,
            pid => {
                // SAFETY: pidfd_open takes two integers; the child is not reaped yet.
                let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as RawFd;
                if pidfd < 0 {
                    return 1;
                }
                // SAFETY: a new descriptor that nothing else owns.
                let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
                if send(&link, &started(pid), Some(&pidfd)).is_err() {
                    return 1;
                }
                children.push(Served { pid, pidfd, link });
            }
        }
    }
}

fn started(pid: libc::pid_t) -> [u8; LINK_MESSAGE] {
    let p = pid.to_le_bytes();
    [STARTED, p[0], p[1], p[2], p[3]]
}

/// A pair of connected sequenced-packet sockets, close-on-exec, as the workspace's.
fn socket_pair() -> io::Result<[OwnedFd; 2]> {
    let mut pair = [-1; 2];
    // SAFETY: socketpair writes two descriptors into `pair`.
    let made = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            pair.as_mut_ptr(),
        )
    };
    if made < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: two new descriptors that nothing else owns.
    Ok(pair.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Room for one descriptor's control message, aligned as `cmsghdr`.
#[repr(C)]
struct Control {
    header: libc::cmsghdr,
    fd: [u8; 8],
}

/// sendmsg: `bytes`, and `fd` attached if there is one.
fn send(socket: &OwnedFd, bytes: &[u8], fd: Option<&OwnedFd>) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: an all-zero msghdr and cmsghdr are valid (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut control: Control = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        // SAFETY: CMSG_LEN and CMSG_SPACE compute lengths only.
        let (len, space) = unsafe {
            (
                libc::CMSG_LEN(size_of::<RawFd>() as u32),
                libc::CMSG_SPACE(size_of::<RawFd>() as u32),
            )
        };
        control.header.cmsg_level = libc::SOL_SOCKET;
        control.header.cmsg_type = libc::SCM_RIGHTS;
        control.header.cmsg_len = len as _;
        control.fd[..4].copy_from_slice(&fd.as_raw_fd().to_ne_bytes());
        msg.msg_control = (&raw mut control).cast();
        msg.msg_controllen = space as _;
    }
    loop {
        // SAFETY: `msg` points at `iov` and `control`, alive for the call; the kernel reads
        // `bytes.len()` bytes from `bytes` and the control message's length from it.
        if unsafe { libc::sendmsg(socket.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) } >= 0 {
            return Ok(());
        }
        if errno() != libc::EINTR {
            return Err(io::Error::last_os_error());
        }
    }
}

/// recvmsg, waiting: the message's length (0 at the end) and the descriptor attached.
fn receive(socket: &OwnedFd, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: as in `send`.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut control: Control = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = (&raw mut control).cast();
    msg.msg_controllen = size_of::<Control>() as _;
    let len = loop {
        // SAFETY: `msg` points at `iov` (`buf`, writable for its length) and `control`
        // (writable for `msg_controllen` bytes), alive for the call.
        let got = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if got >= 0 {
            break got as usize;
        }
        if errno() != libc::EINTR {
            return Err(io::Error::last_os_error());
        }
    };
    // Every message here carries at most one descriptor, which fits.
    let attached = msg.msg_controllen > 0
        && control.header.cmsg_level == libc::SOL_SOCKET
        && control.header.cmsg_type == libc::SCM_RIGHTS;
    let fd = attached.then(|| {
        let [a, b, c, d, ..] = control.fd;
        // SAFETY: the kernel just installed this descriptor in this process for this
        // message; nothing else owns it.
        unsafe { OwnedFd::from_raw_fd(RawFd::from_ne_bytes([a, b, c, d])) }
    });
    Ok((len, fd))
}
