//! Section 6's mechanism: [`Manager`], a server process that owns shared objects, and
//! proxies that reach them from any process, Python's `multiprocessing.Manager`. The
//! program, `src/main.rs`, is below; its Python original is `python/manager.py`.
//!
//! The server (`server.rs`) listens on a Unix socket in a directory of its own. Each proxy
//! call sends one request frame (`protocol.rs`: the object's number, the method, the
//! arguments as Python-like values) and waits for one answer frame; the server serves its
//! connections in turn, one request each a round. What a dead client, a dead server or a
//! hostile frame does is on [`Manager`].
//!
//! # The program
//!
//! `cargo run -p manager` runs `src/main.rs`:
//!
#![doc = concat!("```rust,ignore\n", include_str!("main.rs"), "```")]

mod protocol;
mod server;

use std::ffi::CString;
use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use common::frame::{self, FrameBuf, FrameError};
use common::interrupt::{self, RemoveOnSignal};
use common::{Error, Private, Process, PyValue};

pub use protocol::PyDict;
use protocol::{Id, Request, Response};

/// The socket's name in the manager's private directory.
const SOCKET: &str = "socket";

/// What went wrong with a manager's call.
#[derive(thiserror::Error)]
pub enum ManagerError {
    /// The server refused the operation, as Python would raise: `KeyError: 1`.
    #[error("{0}")]
    Remote(String),
    /// The server will not serve this connection, and has closed it: it is out of file
    /// descriptors, or the request was malformed. The next call connects again.
    #[error("{0}")]
    Refused(String),
    /// The server process has ended.
    #[error("the manager's server process has ended")]
    ServerGone,
    /// A request or response could not be sent.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// An OS call failed.
    #[error(transparent)]
    Os(#[from] Error),
}

/// The same text as `Display`, so that `main` returning this error prints the message.
impl fmt::Debug for ManagerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

type ServerTarget = Box<dyn FnOnce() -> Result<(), Error> + Send>;

/// A server process that owns dicts and lists, which every process of the program reaches
/// through proxies: Python's `Manager()`.
///
/// - The server is forked by `new`. It listens on a Unix socket in a directory of its own
///   that only this user may enter (mode 0700, made by `mkdtemp`), so no other local user
///   can connect.
/// - Every operation on a proxy is one request and one response, each a bincode frame on
///   the socket: shared, but each access is a round trip ("shared, but slow", the article
///   says). Every process uses a connection of its own: a proxy used in a child forked after
///   the proxy was made opens a new one there, as Python's proxies do.
/// - The server ends, and removes its socket and directory, when the manager is dropped, or
///   within 100 ms of its owner's death (even by SIGKILL): it is never left as an orphan.
///   It ignores Ctrl-C's SIGINT, as Python's does, and ends with its owner instead: the
///   owner's handler (see [`common::interrupt`]) ends the server, then removes the socket and
///   the directory, before the owner itself ends.
/// - A connection that sends garbage, a truncated frame, a length over the 16 MiB limit, or
///   a value that is not a `PyValue` (see there why it never nests) gets an error and is closed; the
///   server goes on serving every other connection.
/// - The server answers each connection's requests one at a time, and reads no more from a
///   connection until its last answer is written: a client that does not read its answers
///   holds up only itself. An answer over the 16 MiB limit is an error for that request.
/// - Out of file descriptors, the server accepts a new connection with a spare one it keeps,
///   tells it so ([`ManagerError::Refused`]) and closes it, and serves the connections it has.
/// - Proxies are `Send` and `Sync`: threads of a process share its connection, one call at
///   a time.
pub struct Manager {
    client: Arc<Client>,
    server: Process<ServerTarget>,
    dir: PathBuf,
    /// The process that made it ([`common::process_key`]): only it ends the server.
    owner: u64,
    /// The socket and the directory, for the handler that ends this process on Ctrl-C.
    _remove_on_signal: [RemoveOnSignal; 2],
}

impl Manager {
    /// Starts the server process: Python's `Manager()`.
    pub fn new() -> Result<Manager, ManagerError> {
        // Made and registered with no signal in between, so that Ctrl-C at any moment
        // leaves neither the directory nor the socket behind.
        let held = interrupt::Held::new();
        let dir = private_dir()?;
        let path = dir.join(SOCKET);
        let made = (|| {
            let remove_on_signal = [RemoveOnSignal::new(&path)?, RemoveOnSignal::new(&dir)?];
            drop(held);
            // Opened first: a process without a descriptor to spare fails here, and leaves
            // no socket behind.
            let spare = server::spare()?;
            let listener = UnixListener::bind(&path).map_err(|e| Error::os("bind", e))?;
            Ok::<_, Error>((remove_on_signal, listener, spare))
        })();
        let (remove_on_signal, listener, spare) = match made {
            Ok(made) => made,
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                return Err(e.into());
            }
        };
        let owner = std::process::id();
        let server_dir = dir.clone();
        let target: ServerTarget =
            Box::new(move || server::serve(listener, spare, owner, &server_dir));
        let mut manager = Manager {
            client: Arc::new(Client {
                path,
                conn: Mutex::new(None),
            }),
            server: Process::new(target),
            dir,
            owner: common::process_key(),
            _remove_on_signal: remove_on_signal,
        };
        // If fork fails, dropping `manager` removes the directory.
        manager.server.start()?;
        Ok(manager)
    }

    /// A new, empty dict in the server: Python's `manager.dict()`.
    pub fn dict(&self) -> Result<DictProxy, ManagerError> {
        Ok(DictProxy(self.new_object(&Request::NewDict)?))
    }

    /// A new list of `items` in the server: Python's `manager.list(range(10))`.
    pub fn list<T: Into<PyValue>>(
        &self,
        items: impl IntoIterator<Item = T>,
    ) -> Result<ListProxy, ManagerError> {
        let items = items.into_iter().map(Into::into).collect();
        Ok(ListProxy(self.new_object(&Request::NewList(items))?))
    }

    /// The server's socket: Python's `manager.address`.
    pub fn address(&self) -> &Path {
        &self.client.path
    }

    /// The server process's id.
    pub fn pid(&self) -> Option<u32> {
        self.server.pid().map(|pid| pid.as_raw() as u32)
    }

    fn new_object(&self, request: &Request) -> Result<Proxy, ManagerError> {
        match self.client.call(request)? {
            Response::New(id) => Ok(Proxy {
                client: Arc::clone(&self.client),
                id,
            }),
            _ => Err(unexpected()),
        }
    }
}

impl Drop for Manager {
    /// Python's `manager.shutdown()`: ends the server, reaps it, removes its socket.
    fn drop(&mut self) {
        if common::process_key() != self.owner {
            return;
        }
        if self.server.pid().is_some() {
            let _ = self.server.terminate();
            let _ = self.server.join();
        }
        let _ = std::fs::remove_file(self.dir.join(SOCKET));
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// A connection to the server, made by the process that uses it.
struct Client {
    path: PathBuf,
    conn: Mutex<Option<Conn>>,
}

struct Conn {
    /// This process's own: a child forked later closes it at once, and opens its own.
    stream: Private<UnixStream>,
    frames: FrameBuf,
    buf: Vec<u8>,
}

impl Client {
    /// Sends one request and waits for its response.
    fn call(&self, request: &Request) -> Result<Response, ManagerError> {
        let mut slot = self.conn.lock().unwrap_or_else(|poisoned| {
            // A call panicked half-way, and its answer may still come on this connection:
            // it is closed, and this call opens another.
            self.conn.clear_poison();
            let mut slot = PoisonError::into_inner(poisoned);
            *slot = None;
            slot
        });
        let conn = match &mut *slot {
            Some(conn) if conn.stream.get().is_some() => conn,
            // None yet, or the parent's, inherited through fork and closed in this process
            // (it carries the parent's conversation): this process opens its own.
            other => other.insert(Conn {
                stream: Private::new(UnixStream::connect(&self.path).map_err(|e| {
                    match e.kind() {
                        // No one listens any more: the server has ended.
                        io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound => {
                            ManagerError::ServerGone
                        }
                        _ => Error::os("connect", e).into(),
                    }
                })?)?,
                frames: FrameBuf::new(),
                buf: Vec::new(),
            }),
        };
        conn.buf.clear();
        frame::encode(&mut conn.buf, request)?;
        match conn.exchange() {
            Ok(Response::Error(e)) => Err(ManagerError::Remote(e)),
            Ok(response) => Ok(response),
            Err(e) => {
                // The conversation is out of step (an answer half read, or one still to come)
                // or over: the next call opens a new connection.
                *slot = None;
                Err(e)
            }
        }
    }
}

impl Conn {
    /// Writes the request in `buf` and reads its answer.
    fn exchange(&mut self) -> Result<Response, ManagerError> {
        let mut stream = self.stream.get().ok_or(ManagerError::ServerGone)?;
        let sent = match stream.write_all(&self.buf) {
            Ok(()) => true,
            // The server closed the connection; it may have said why before it did.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ) =>
            {
                false
            }
            Err(e) => return Err(Error::os("write", e).into()),
        };
        let payload = self
            .frames
            .read_frame(&mut DontWait(stream))?
            .ok_or(ManagerError::ServerGone)?;
        match frame::decode(payload)? {
            Response::Refused(e) => Err(ManagerError::Refused(e)),
            _ if !sent => Err(ManagerError::ServerGone),
            response => Ok(response),
        }
    }
}

/// Reads a socket without waiting (`MSG_DONTWAIT`), while its writes still block.
struct DontWait<'a>(&'a UnixStream);

impl Read for DontWait<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for writes of its length for the duration of the call, and
        // the descriptor is the stream's, open while `self` borrows it.
        let n = unsafe {
            libc::recv(
                self.0.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return match io::Error::last_os_error() {
                e if e.kind() == io::ErrorKind::ConnectionReset => Ok(0),
                e => Err(e),
            };
        }
        Ok(n as usize)
    }
}

impl AsFd for DontWait<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// A directory only this user can enter: `mkdtemp` makes it with mode 0700.
fn private_dir() -> Result<PathBuf, Error> {
    let template = std::env::temp_dir().join("py-multiprocess-manager-XXXXXX");
    let template = CString::new(template.into_os_string().into_vec())
        .map_err(|_| Error::os("mkdtemp", io::ErrorKind::InvalidInput))?;
    let mut bytes = template.into_bytes_with_nul();
    // SAFETY: `bytes` is a writable, NUL-terminated template ending in XXXXXX, which mkdtemp
    // overwrites in place; it returns NULL on failure, checked below.
    let made = unsafe { libc::mkdtemp(bytes.as_mut_ptr().cast()) };
    if made.is_null() {
        return Err(Error::os("mkdtemp", io::Error::last_os_error()));
    }
    bytes.pop();
    Ok(PathBuf::from(std::ffi::OsStr::from_bytes(&bytes)))
}

fn unexpected() -> ManagerError {
    FrameError::Decode("a response of the wrong kind".into()).into()
}

/// A shared object's number, and the connection to reach it.
struct Proxy {
    client: Arc<Client>,
    id: Id,
}

impl Proxy {
    fn call(&self, request: Request) -> Result<Response, ManagerError> {
        self.client.call(&request)
    }

    fn done(&self, request: Request) -> Result<(), ManagerError> {
        match self.call(request)? {
            Response::Done => Ok(()),
            _ => Err(unexpected()),
        }
    }

    fn value(&self, request: Request) -> Result<PyValue, ManagerError> {
        match self.call(request)? {
            Response::Value(v) => Ok(v),
            _ => Err(unexpected()),
        }
    }

    fn len(&self) -> Result<usize, ManagerError> {
        match self.call(Request::Len(self.id))? {
            Response::Len(n) => Ok(n as usize),
            _ => Err(unexpected()),
        }
    }
}

/// A dict that lives in the manager's server: Python's `DictProxy`. Keys and values are
/// `PyValue`s (int, float, str, None, ...), compared as Python compares keys, and kept in
/// insertion order, as Python 3.7+ keeps them.
pub struct DictProxy(Proxy);

impl DictProxy {
    /// `d[key] = value`
    pub fn set(
        &self,
        key: impl Into<PyValue>,
        value: impl Into<PyValue>,
    ) -> Result<(), ManagerError> {
        self.0
            .done(Request::SetItem(self.0.id, key.into(), value.into()))
    }

    /// `d[key]`; `KeyError` when it is not there.
    pub fn get(&self, key: impl Into<PyValue>) -> Result<PyValue, ManagerError> {
        self.0.value(Request::GetItem(self.0.id, key.into()))
    }

    /// `len(d)`
    pub fn len(&self) -> Result<usize, ManagerError> {
        self.0.len()
    }

    /// True when the dict holds nothing.
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }

    /// A copy of the dict, here: Python's `d.copy()`. It prints as `print(d)` does.
    pub fn copy(&self) -> Result<PyDict, ManagerError> {
        match self.0.call(Request::Copy(self.0.id))? {
            Response::Dict(items) => Ok(PyDict(items)),
            _ => Err(unexpected()),
        }
    }
}

/// A list that lives in the manager's server: Python's `ListProxy`.
pub struct ListProxy(Proxy);

impl ListProxy {
    /// `l.reverse()`
    pub fn reverse(&self) -> Result<(), ManagerError> {
        self.0.done(Request::Reverse(self.0.id))
    }

    /// `l.append(value)`
    pub fn append(&self, value: impl Into<PyValue>) -> Result<(), ManagerError> {
        self.0.done(Request::Append(self.0.id, value.into()))
    }

    /// `l[index]`; negative counts from the end; `IndexError` when out of range.
    pub fn get(&self, index: i64) -> Result<PyValue, ManagerError> {
        self.0.value(Request::GetItem(self.0.id, index.into()))
    }

    /// `l[index] = value`
    pub fn set(&self, index: i64, value: impl Into<PyValue>) -> Result<(), ManagerError> {
        self.0
            .done(Request::SetItem(self.0.id, index.into(), value.into()))
    }

    /// `len(l)`
    pub fn len(&self) -> Result<usize, ManagerError> {
        self.0.len()
    }

    /// True when the list holds nothing.
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }

    /// A copy of the list, here: Python's `l[:]`. It prints as `print(l)` does.
    pub fn to_vec(&self) -> Result<Vec<PyValue>, ManagerError> {
        match self.0.call(Request::Copy(self.0.id))? {
            Response::List(items) => Ok(items),
            _ => Err(unexpected()),
        }
    }
}
