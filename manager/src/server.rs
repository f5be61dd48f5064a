//! The manager's server process: it owns the shared objects and answers every connection,
//! one request at a time, on one thread, waiting on them all with `poll(2)`.

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::frame::{self, FrameBuf, SPIN, pollfd};
use common::{Error, PyValue};

use crate::protocol::{Dict, Request, Response, list_index};

/// How often the server checks that the process that made it is still alive.
const OWNER_CHECK: Duration = Duration::from_millis(100);

enum Object {
    Dict(Dict),
    List(Vec<PyValue>),
}

struct Conn {
    stream: UnixStream,
    frames: FrameBuf,
    /// Responses not yet written, from `sent` on.
    out: Vec<u8>,
    sent: usize,
    /// Set after a bad request: the error is sent, then the connection is closed.
    closing: bool,
}

/// Serves until the owner ends (its Manager is dropped, or it dies), then removes the
/// socket and its directory.
pub(crate) fn serve(listener: UnixListener, owner: u32, dir: &Path) -> Result<(), Error> {
    // Ctrl-C signals every process of the terminal's group. Like Python's manager, the
    // server ignores it, and ends when its owner does.
    // SAFETY: SIG_IGN installs no handler code; nothing runs in signal context.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    let served = serve_until_orphaned(&listener, owner);
    let _ = std::fs::remove_file(dir.join(crate::SOCKET));
    let _ = std::fs::remove_dir(dir);
    served
}

fn serve_until_orphaned(listener: &UnixListener, owner: u32) -> Result<(), Error> {
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::os("fcntl", e))?;
    let mut objects = Vec::new();
    let mut conns: Vec<Conn> = Vec::new();
    let mut pollfds = Vec::new();
    let mut spin_until = Instant::now() + SPIN;
    let mut checked = Instant::now();
    loop {
        if checked.elapsed() >= OWNER_CHECK {
            // An orphan is adopted by another process: its owner has died.
            if std::os::unix::process::parent_id() != owner {
                return Ok(());
            }
            checked = Instant::now();
        }
        pollfds.clear();
        pollfds.push(pollfd(listener.as_raw_fd(), libc::POLLIN));
        for c in &conns {
            let out = if c.sent < c.out.len() {
                libc::POLLOUT
            } else {
                0
            };
            pollfds.push(pollfd(c.stream.as_raw_fd(), libc::POLLIN | out));
        }
        let timeout = if Instant::now() < spin_until {
            0
        } else {
            OWNER_CHECK.as_millis() as i32
        };
        if frame::poll_fds(&mut pollfds, timeout)? == 0 {
            if timeout == 0 {
                std::hint::spin_loop();
            }
            continue;
        }
        spin_until = Instant::now() + SPIN;
        for (c, p) in conns.iter_mut().zip(&pollfds[1..]) {
            if p.revents != 0 {
                c.serve(&mut objects);
            }
        }
        conns.retain(|c| !c.closing);
        if pollfds[0].revents != 0 {
            accept(listener, &mut conns);
        }
    }
}

fn accept(listener: &UnixListener, conns: &mut Vec<Conn>) {
    while let Ok((stream, _)) = listener.accept() {
        if stream.set_nonblocking(true).is_ok() {
            conns.push(Conn {
                stream,
                frames: FrameBuf::new(),
                out: Vec::new(),
                sent: 0,
                closing: false,
            });
        }
    }
}

impl Conn {
    /// Reads what came, answers every whole request, and writes what it can.
    fn serve(&mut self, objects: &mut Vec<Object>) {
        match self.frames.fill(&mut self.stream) {
            Ok(0) => self.closing = true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => self.closing = true,
        }
        while !self.closing {
            let response = match self.frames.next_frame() {
                Ok(None) => break,
                Ok(Some(payload)) => match frame::decode::<Request>(payload) {
                    Ok(request) => handle(request, objects),
                    Err(e) => self.refuse(format!("bad request: {e}")),
                },
                // A length over the limit: refused before any of it is read.
                Err(e) => self.refuse(format!("bad request: {e}")),
            };
            if frame::encode(&mut self.out, &response).is_err() {
                self.out.clear();
                let _ = frame::encode(&mut self.out, &Response::Error("response too large".into()));
            }
        }
        self.flush();
    }

    fn refuse(&mut self, why: String) -> Response {
        self.closing = true;
        Response::Error(why)
    }

    fn flush(&mut self) {
        while self.sent < self.out.len() {
            match self.stream.write(&self.out[self.sent..]) {
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && !self.closing => return,
                Err(_) => {
                    self.closing = true;
                    return;
                }
            }
        }
        self.out.clear();
        self.sent = 0;
    }
}

fn handle(request: Request, objects: &mut Vec<Object>) -> Response {
    let new = |objects: &mut Vec<Object>, object| {
        objects.push(object);
        Response::New((objects.len() - 1) as u32)
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
        (Object::Dict(d), Request::SetItem(_, k, v)) => d.set(k, v).map(|()| Response::Done),
        (Object::List(l), Request::SetItem(_, i, v)) => list_index(l, &i).map(|at| {
            l[at] = v;
            Response::Done
        }),
        (Object::Dict(d), Request::GetItem(_, k)) => d.get(&k).map(Response::Value),
        (Object::List(l), Request::GetItem(_, i)) => {
            list_index(l, &i).map(|at| Response::Value(l[at].clone()))
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
