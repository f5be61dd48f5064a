//! The manager's server process: it owns the shared objects and answers every connection,
//! one request at a time, on one thread, waiting on them all with `poll(2)`.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::unistd::Uid;

use common::fd::{self, Spin, pollfd};
use common::frame::{self, FrameBuf};
use common::{Error, PyValue};

use crate::protocol::{Dict, Id, Request, Response, list_index};

enum Object {
    Dict(Dict),
    List(Vec<PyValue>),
}

/// How many connections the server accepts between two rounds of serving.
const ACCEPT_PER_ROUND: usize = 16;

/// How often a server without its spare descriptor asks for it again, in milliseconds.
const SPARE_AGAIN_MS: i32 = 100;

/// What a connection may hold of the answers to its requests, once they are written: more
/// is given back to the allocator, so that one big answer does not stay allocated.
const OUT_KEPT: usize = 64 << 10;

struct Conn {
    stream: UnixStream,
    frames: FrameBuf,
    /// The answer to one request, from `sent` on. Until it is written, nothing more of the
    /// connection is read or served: a client that sends requests and does not read the
    /// answers makes the server wait, not buffer answers without end.
    out: Vec<u8>,
    sent: usize,
    /// Set after a bad request: the error is written, then the connection is closed.
    closing: bool,
    /// The peer has gone, or the socket failed: the connection is dropped.
    closed: bool,
}

/// Serves until the owner ends the server (its Manager is dropped, or it dies: see
/// [`Manager`](crate::Manager)). `spare` is a descriptor kept for when the others run out.
pub(crate) fn serve(listener: UnixListener, spare: File) -> Result<(), Error> {
    // Ctrl-C signals every process of the terminal's group. Like Python's manager, the
    // server ignores it, and ends when its owner does.
    // SAFETY: SIG_IGN installs no handler code; nothing runs in signal context.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    serve_forever(&listener, Some(spare))
}

/// A descriptor to give up when the process has no other left (see [`accept`]).
pub(crate) fn spare() -> Result<File, Error> {
    File::open("/dev/null").map_err(|e| Error::os("open(/dev/null)", e))
}

fn serve_forever(listener: &UnixListener, mut spare: Option<File>) -> Result<(), Error> {
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::os("fcntl", e))?;
    let mut objects = Vec::new();
    let mut conns: Vec<Conn> = Vec::new();
    let mut pollfds = Vec::new();
    let mut spin = Spin::new();
    // Whether this wait has polled every socket yet: the listener, and connections with an
    // answer to write, are only ever looked at so.
    let mut polled = false;
    loop {
        if spare.is_none() {
            spare = self::spare().ok();
        }
        // Requests already read wait for their turn: look at the sockets without sleeping.
        let queued = conns.iter().any(|c| c.waiting() == Some(true));
        let spinning = !queued && spin.again();
        if spinning && polled {
            // A look is one read of each connection that waits for a request, where poll(2)
            // and then a read made two system calls (see `common::fd::read_now`).
            let mut any = false;
            for c in &mut conns {
                if c.sent >= c.out.len() && !c.closed && c.read() {
                    c.serve(&mut objects);
                    any = true;
                }
                any |= c.closed;
            }
            if any {
                spin.got();
                polled = false;
                conns.retain(|c| !c.closed);
            }
            continue;
        }
        pollfds.clear();
        // Without a spare descriptor, a connection could be neither served nor refused: it
        // waits in the listener's backlog until the spare is back, which is asked for again
        // every `SPARE_AGAIN_MS` (a connection that closes frees a descriptor, but so does a
        // limit raised from outside, which wakes no one).
        let listen = if spare.is_some() { libc::POLLIN } else { 0 };
        pollfds.push(pollfd(listener.as_raw_fd(), listen));
        for c in &conns {
            let events = if c.sent < c.out.len() {
                libc::POLLOUT
            } else {
                libc::POLLIN
            };
            pollfds.push(pollfd(c.stream.as_raw_fd(), events));
        }
        let timeout = if queued || spinning {
            0
        } else if spare.is_none() {
            SPARE_AGAIN_MS
        } else {
            -1
        };
        polled = true;
        let ready = match fd::poll_fds(&mut pollfds, timeout) {
            Ok(ready) => ready,
            // More sockets than RLIMIT_NOFILE (lowered from outside) are more than poll(2)
            // takes: connections are given up, as a new one would be refused at the limit,
            // rather than the server ending with every object it holds.
            Err(Error::Os { source, .. }) if source.raw_os_error() == Some(libc::EINVAL) => {
                let keep = descriptor_limit().saturating_sub(1);
                if conns.len() <= keep {
                    // The listener alone is over the limit (0): nothing to give up. Asked
                    // again later, as at the limit; looping at once spun a whole CPU.
                    std::thread::sleep(Duration::from_millis(SPARE_AGAIN_MS as u64));
                    continue;
                }
                // Connections with no answer pending go first, the newest first: told why,
                // they lose nothing (a request half read has not run).
                let mut over = conns.len() - keep;
                for i in (0..conns.len()).rev() {
                    if over > 0 && conns[i].out.is_empty() {
                        refuse(conns.remove(i).stream, OUT_OF_DESCRIPTORS);
                        over -= 1;
                    }
                }
                // Then, if need be, the newest of those whose request has run: their answer
                // is lost, and they are only closed, since a frame after half an answer
                // would be read as its end. The client then finds the server alive, and
                // says its request may have run (see `Client::call`).
                conns.truncate(keep);
                continue;
            }
            Err(e) => return Err(e),
        };
        if ready == 0 && !queued {
            continue;
        }
        spin.got();
        polled = false;
        for (c, p) in conns.iter_mut().zip(&pollfds[1..]) {
            if p.revents != 0 || c.waiting() == Some(true) {
                c.serve(&mut objects);
            }
        }
        conns.retain(|c| !c.closed);
        if pollfds[0].revents != 0 {
            accept(listener, &mut conns, &mut spare);
        }
    }
}

/// Accepts the waiting connections, [`ACCEPT_PER_ROUND`] at most. At the descriptor limit
/// (EMFILE, ENFILE) a waiting connection would keep the listener readable while `accept`
/// fails, and the server would spin; so the server gives up its spare descriptor, accepts
/// the connection with it, tells the client why it cannot be served, closes it, and takes
/// the spare back.
fn accept(listener: &UnixListener, conns: &mut Vec<Conn>, spare: &mut Option<File>) {
    // At most this many a round: a flood of connections (which anyone on the machine can
    // send to an abstract address, refused or not) must not keep the server from serving
    // the connections it has.
    for _ in 0..ACCEPT_PER_ROUND {
        match listener.accept() {
            Ok((stream, _)) if !same_user(&stream) => {
                let why = "the manager's server serves only its own user's processes";
                refuse(stream, why);
            }
            Ok((stream, _)) => {
                if stream.set_nonblocking(true).is_ok() {
                    conns.push(Conn::new(stream));
                }
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                if spare.take().is_none() {
                    return;
                }
                let why = format!("{OUT_OF_DESCRIPTORS} (accept: {e})");
                let refused = listener.accept().map(|(stream, _)| refuse(stream, &why));
                *spare = self::spare().ok();
                if refused.is_err() {
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                ) => {}
            // WouldBlock: none waits any more.
            Err(_) => return,
        }
    }
}

/// This process's soft RLIMIT_NOFILE, or `usize::MAX` if it cannot be read.
fn descriptor_limit() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct passed, which is alive for the call.
    match unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } {
        0 => usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX),
        _ => usize::MAX,
    }
}

/// True when the process at the other end runs as this process's user, as the kernel says
/// (`SO_PEERCRED`, recorded at `connect`). An abstract address has no permissions: anyone on
/// the machine can connect to it.
fn same_user(stream: &UnixStream) -> bool {
    getsockopt(stream, PeerCredentials).is_ok_and(|peer| peer.uid() == Uid::effective().as_raw())
}

/// Why a connection is refused when the server is out of descriptors.
const OUT_OF_DESCRIPTORS: &str = "the manager's server is out of file descriptors";

/// Tells a connection why the server will not serve it, and closes it.
fn refuse(mut stream: UnixStream, why: &str) {
    let mut buf = Vec::new();
    if frame::encode(&mut buf, &Response::Refused(why.to_string())).is_ok() {
        // A new socket has room for these few bytes: the write does not block.
        let _ = stream.write_all(&buf);
    }
}

impl Conn {
    fn new(stream: UnixStream) -> Self {
        Conn {
            stream,
            frames: FrameBuf::new(),
            out: Vec::new(),
            sent: 0,
            closing: false,
            closed: false,
        }
    }

    /// One round of this connection: writes what it can of the pending answer; once that is
    /// written, answers one request, reading the socket once if no request has come whole.
    /// One request a round, so that a client that sends many at once (or never reads its
    /// answers) takes its turn with the others instead of holding them up.
    fn serve(&mut self, objects: &mut Vec<Object>) {
        if !self.flush() {
            return;
        }
        if self.closing {
            self.closed = true;
            return;
        }
        if self.waiting().is_none() && !self.read() {
            return;
        }
        let response = match self.frames.next_frame() {
            Ok(Some(payload)) => match frame::decode::<Request>(payload) {
                Ok(request) => handle(request, objects),
                Err(e) => self.refuse(format!("bad request: {e}")),
            },
            // A length over the limit: refused before any of it is read.
            Err(e) => self.refuse(format!("bad request: {e}")),
            Ok(None) => return,
        };
        if let Err(e) = frame::encode(&mut self.out, &response) {
            // `encode` has left `out` as it was (empty): this request alone fails.
            let why = format!("cannot send the answer: {e}");
            let _ = frame::encode(&mut self.out, &Response::Error(why));
        }
        if self.flush() && self.closing {
            self.closed = true;
        }
    }

    /// Whether a request (or a frame to refuse) has come whole: `Some(true)` when it can be
    /// answered now, its connection's last answer written.
    fn waiting(&self) -> Option<bool> {
        match self.frames.ready() {
            Ok(None) => None,
            Ok(Some(_)) | Err(_) => Some(self.sent >= self.out.len() && !self.closed),
        }
    }

    /// Reads once from the socket: true when bytes came. At the end of the stream, or on an
    /// error, the connection is closed.
    fn read(&mut self) -> bool {
        match self.frames.fill(&mut self.stream) {
            Ok(0) => self.closed = true,
            Ok(_) => return true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => self.closed = true,
        }
        false
    }

    fn refuse(&mut self, why: String) -> Response {
        self.closing = true;
        Response::Refused(why)
    }

    /// Writes what it can of `out`. True once all of it is written; false while some waits
    /// for room in the socket, or when the connection is closed.
    fn flush(&mut self) -> bool {
        while self.sent < self.out.len() {
            match self.stream.write(&self.out[self.sent..]) {
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(_) => {
                    self.closed = true;
                    return false;
                }
            }
        }
        self.out.clear();
        self.out.shrink_to(OUT_KEPT);
        self.sent = 0;
        !self.closed
    }
}

fn handle(request: Request, objects: &mut Vec<Object>) -> Response {
    // Objects are never freed, so each one's number is where it is in `objects`; past the
    // last number an `Id` holds, a new object is refused rather than given one already used.
    let new = |objects: &mut Vec<Object>, object| match Id::try_from(objects.len()) {
        Ok(id) => {
            objects.push(object);
            Response::New(id)
        }
        Err(_) => Response::Error(format!(
            "MemoryError: the manager holds {} objects, as many as it can number",
            objects.len()
        )),
    };
    let id = match request {
        Request::NewDict => return new(objects, Object::Dict(Dict::default())),
        Request::NewList(items) => return new(objects, Object::List(items)),
        Request::SetItem(id, ..)
        | Request::GetItem(id, _)
        | Request::Len(id)
        | Request::Copy(id)
        | Request::Append(id, _)
        | Request::Reverse(id) => id,
    };
    let Some(object) = objects.get_mut(id as usize) else {
        return Response::Error(format!("no shared object {id}"));
    };
    let answer = match (object, request) {
        (Object::Dict(d), Request::SetItem(_, k, v)) => {
            d.set(k, v);
            Ok(Response::Done)
        }
        (Object::List(l), Request::SetItem(_, i, v)) => list_index(l, &i, true).map(|at| {
            l[at] = v;
            Response::Done
        }),
        (Object::Dict(d), Request::GetItem(_, k)) => d.get(&k).map(Response::Value),
        (Object::List(l), Request::GetItem(_, i)) => {
            list_index(l, &i, false).map(|at| Response::Value(l[at].clone()))
        }
        (Object::Dict(d), Request::Len(_)) => Ok(Response::Len(d.len() as u64)),
        (Object::List(l), Request::Len(_)) => Ok(Response::Len(l.len() as u64)),
        (Object::Dict(d), Request::Copy(_)) => Ok(Response::Dict(d.items())),
        (Object::List(l), Request::Copy(_)) => Ok(Response::List(l.clone())),
        (Object::List(l), Request::Append(_, v)) => {
            l.push(v);
            Ok(Response::Done)
        }
        (Object::List(l), Request::Reverse(_)) => {
            l.reverse();
            Ok(Response::Done)
        }
        (Object::Dict(_), _) => Err("AttributeError: 'dict' object has no such method".into()),
        (Object::List(_), _) => Err("AttributeError: 'list' object has no such method".into()),
    };
    answer.unwrap_or_else(Response::Error)
}
