//! Section 6's mechanism: [`Manager`], a server process that owns shared objects, and
//! proxies that reach them from any process, Python's `multiprocessing.Manager`. The
//! program, `src/main.rs`, is below; its Python original is `python/manager.py`.
//!
//! The server (`server.rs`) listens on a Unix socket with an abstract address. Each proxy
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

use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Duration;

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::unistd::Uid;

use common::frame::{self, FrameBuf, FrameError};
use common::{Error, Private, Process, PyValue};

pub use protocol::PyDict;
use protocol::{Id, Request, Response};

/// What a connection keeps of its request buffer between calls: more is given back to the
/// allocator, so that one big request (a list of a million items) does not stay allocated.
const REQUEST_KEPT: usize = 64 << 10;

/// What went wrong with a manager's call.
#[derive(thiserror::Error)]
pub enum ManagerError {
    /// The server refused the operation, as Python would raise: `KeyError: 1`.
    #[error("{0}")]
    Remote(String),
    /// The server will not serve this connection, and has closed it: it is out of file
    /// descriptors, or the request was malformed. The next call connects again. (A
    /// connection closed with its answer due, the server out of descriptors, says that the
    /// request may have run.)
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
/// - The server is forked by `new`. It listens on a Unix socket whose address is abstract
///   (Linux's `\0name`, which names no file): no file to leave behind, whatever ends the
///   program. Such an address has no permissions, so the server asks the kernel who each
///   client is (`SO_PEERCRED`), and refuses a process of another user
///   ([`ManagerError::Refused`]), as Python's manager refuses one without its `authkey`.
///   A proxy, in turn, talks only to the manager's own socket (the kernel names the process
///   that made a listening socket, here the manager's owner): once the server has ended,
///   anyone may take its name, and a proxy that finds another process there says
///   [`ManagerError::ServerGone`] without sending it anything.
/// - Every operation on a proxy is one request and one response, each a bincode frame on
///   the socket: shared, but each access is a round trip ("shared, but slow", the article
///   says). Every process uses a connection of its own: a proxy used in a child forked after
///   the proxy was made opens a new one there, as Python's proxies do.
/// - The server ends when the manager is dropped, or when its owner dies: Ctrl-C's handler
///   in the owner ends it, and a SIGKILL of the owner makes the kernel kill it (see
///   [`Process`]). It ignores Ctrl-C's SIGINT itself, as Python's does, so that it ends with
///   its owner, not before.
/// - A connection that sends garbage, a truncated frame, a length over the 16 MiB limit, or
///   a value that is not a `PyValue` (see there why it never nests) gets an error and is closed; the
///   server goes on serving every other connection.
/// - The server answers each connection's requests one at a time, and reads no more from a
///   connection until its last answer is written: a client that does not read its answers
///   holds up only itself. An answer over the 16 MiB limit is an error for that request.
/// - Out of file descriptors, the server accepts a new connection with a spare one it keeps,
///   tells it so ([`ManagerError::Refused`]) and closes it, and serves the connections it has.
///   Where even the spare is not enough (a limit lowered below its number from outside), a
///   new connection waits until a descriptor is free again, which the server asks every
///   100 ms. A limit lowered below the number of its connections makes it give some up:
///   idle ones first, each told so; then, if need be, ones whose answer was due, which
///   their proxy reports as [`ManagerError::Refused`] (the request may have run), not as
///   the server's end: a cut connection is taken for that only if the server answers no
///   new one.
/// - A call waits for its answer as long as the server takes: a server stopped (SIGSTOP,
///   or Ctrl-Z sent to it alone) holds every call until it is continued, as Python's does.
///   A call interrupted by a signal goes on, in its connect (a handler without
///   `SA_RESTART`, while the server's backlog is full) as in its reads and writes.
/// - A child that `Process::start` forks closes its parent's connections at once; one
///   forked by other code keeps them open, unused, until it ends.
/// - Proxies are `Send` and `Sync`: threads of a process share its connection, one call at
///   a time. A process forked by code that forks beside threads (`daemon`) while a thread
///   was in a call is not held up by that connection, which no thread of it will ever give
///   back: its calls make a connection each, for themselves alone.
/// - A shared object lives as long as the manager: dropping every proxy of it does not free
///   it. Python's manager counts each object's proxies, in every process, and frees it when
///   the last one goes; here the server keeps every object it made until it ends. It numbers
///   at most 2^32 objects; past that, [`dict`](Manager::dict) and [`list`](Manager::list)
///   return [`ManagerError::Remote`].
pub struct Manager {
    client: Arc<Client>,
    server: Process<ServerTarget>,
    /// The process that made it ([`common::process_key`]): only it ends the server.
    owner: u64,
}

impl Manager {
    /// Starts the server process: Python's `Manager()`.
    pub fn new() -> Result<Manager, ManagerError> {
        // Opened first: a process without a descriptor to spare fails here.
        let spare = server::spare()?;
        let (listener, address) = listen()?;
        let target: ServerTarget = Box::new(move || server::serve(listener, spare));
        let mut server = Process::new(target);
        server.start()?;
        Ok(Manager {
            client: Arc::new(Client {
                address,
                listener: std::process::id(),
                conn: Mutex::new(None),
                held_in: AtomicU64::new(0),
            }),
            server,
            owner: common::process_key(),
        })
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

    /// The server's socket address, abstract: Python's `manager.address`.
    pub fn address(&self) -> &SocketAddr {
        &self.client.address
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
    /// Python's `manager.shutdown()`: ends the server and reaps it. Its socket goes with it.
    fn drop(&mut self) {
        if common::process_key() != self.owner {
            return;
        }
        if self.server.pid().is_some() {
            // SIGKILL, not SIGTERM: the server has its owner's dispositions, copied at fork,
            // and an owner that ignores SIGTERM, or catches it to set a flag, would leave the
            // server running and this drop waiting for ever. The server has nothing to put
            // away: its objects are in its memory, its socket's name is abstract.
            let _ = self.server.kill();
            let _ = self.server.join();
        }
    }
}

/// A connection to the server, made by the process that uses it.
struct Client {
    address: SocketAddr,
    /// The process that made the listening socket (the kernel names it to whoever connects):
    /// the manager's owner, which made it before it forked the server. A process that
    /// answers at the address is taken for the server only if its socket is this one's, of
    /// this user: once the server has ended, anyone may take its name.
    listener: u32,
    conn: Mutex<Option<Conn>>,
    /// The process ([`common::process_key`]) whose thread holds `conn`'s lock, or 0 while
    /// none does (and for a moment after it is taken or before it is given back).
    held_in: AtomicU64,
}

/// `conn`'s lock, and the mark of the process holding it, taken out before it is unlocked.
struct Held<'a> {
    slot: MutexGuard<'a, Option<Conn>>,
    held_in: &'a AtomicU64,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.held_in.store(0, Ordering::Release);
    }
}

struct Conn {
    /// This process's own: a child that `Process::start` forks later closes it at once, and
    /// opens its own. (One forked by other code, `daemon` say, keeps it open, unused: see
    /// [`Private`].)
    stream: Private<UnixStream>,
    frames: FrameBuf,
    buf: Vec<u8>,
}

impl Client {
    /// Sends one request and waits for its response.
    fn call(&self, request: &Request) -> Result<Response, ManagerError> {
        let Some(mut held) = self.hold() else {
            return self.call_alone(request);
        };
        let slot = &mut held.slot;
        let conn = match &mut **slot {
            Some(conn) if conn.stream.get().is_some() => conn,
            // None yet, or the parent's, inherited through fork and closed in this process
            // (it carries the parent's conversation): this process opens its own.
            other => other.insert(Conn {
                stream: Private::new(self.connect()?)?,
                frames: FrameBuf::new(),
                buf: Vec::new(),
            }),
        };
        conn.buf.clear();
        let answer = frame::encode(&mut conn.buf, request).map(|()| conn.exchange());
        // Given back after every call, one whose request was too large to send too: the
        // limit is checked once the value is encoded.
        conn.buf.clear();
        conn.buf.shrink_to(REQUEST_KEPT);
        match answer? {
            Ok(Response::Error(e)) => Err(ManagerError::Remote(e)),
            Ok(response) => Ok(response),
            Err(e) => {
                // The conversation is out of step (an answer half read, or one still to come)
                // or over: the next call opens a new connection.
                **slot = None;
                Err(self.gone_or_cut(e))
            }
        }
    }

    /// The connection's lock, from a call that panicked half-way: its answer may still come
    /// on the connection, which is closed, and this call opens another.
    fn afresh<'a>(
        &'a self,
        poisoned: PoisonError<MutexGuard<'a, Option<Conn>>>,
    ) -> MutexGuard<'a, Option<Conn>> {
        self.conn.clear_poison();
        let mut slot = poisoned.into_inner();
        *slot = None;
        slot
    }

    /// Takes the connection's lock; `None` where its holder is a thread of the process this
    /// one was forked from (by code that forks beside threads, such as `daemon`), which will
    /// never give it back here: the call then has a connection of its own, for this one
    /// request. (Waiting hung the forked process for ever.) A thread of this process that
    /// holds it is waited for, as a connection per colliding call cost 20-30 times the time
    /// with 2 to 64 threads, and failed at the descriptor limit.
    fn hold(&self) -> Option<Held<'_>> {
        let me = common::process_key();
        let mut tries = 0;
        let slot = loop {
            match self.conn.try_lock() {
                Ok(slot) => break slot,
                Err(TryLockError::Poisoned(poisoned)) => break self.afresh(poisoned),
                Err(TryLockError::WouldBlock) => match self.held_in.load(Ordering::Acquire) {
                    holder if holder == me => {
                        break self
                            .conn
                            .lock()
                            .unwrap_or_else(|poisoned| self.afresh(poisoned));
                    }
                    // Taken or given back this moment, or held since a fork made then.
                    0 if tries < 100 => {
                        tries += 1;
                        std::thread::yield_now();
                    }
                    _ => return None,
                },
            }
        };
        self.held_in.store(me, Ordering::Release);
        Some(Held {
            slot,
            held_in: &self.held_in,
        })
    }
}

impl Client {
    /// [`call`](Client::call) on a connection made for this request alone, and closed after.
    fn call_alone(&self, request: &Request) -> Result<Response, ManagerError> {
        let mut conn = Conn {
            stream: Private::new(self.connect()?)?,
            frames: FrameBuf::new(),
            buf: Vec::new(),
        };
        frame::encode(&mut conn.buf, request)?;
        let answer = conn.exchange();
        // Closed before a probe asks: at the descriptor limit it needs this one.
        drop(conn);
        match answer.map_err(|e| self.gone_or_cut(e))? {
            Response::Error(e) => Err(ManagerError::Remote(e)),
            response => Ok(response),
        }
    }

    /// What a connection that ended before its answer was whole means: the server's end
    /// ([`ManagerError::ServerGone`]) only if it answers no new connection. One that does
    /// lives, and closed this connection itself: out of file descriptors, it gives some up,
    /// and one whose answer was due loses it (the request ran). Taken for the server's end,
    /// that made a caller stop while the server went on serving everyone else.
    fn gone_or_cut(&self, e: ManagerError) -> ManagerError {
        match e {
            ManagerError::ServerGone => match self.server_lives() {
                Ok(true) => ManagerError::Refused(
                    "the manager's server closed the connection before its answer was whole \
                     (it is out of file descriptors); the request may have run"
                        .into(),
                ),
                Ok(false) => ManagerError::ServerGone,
                // No telling (this process has no descriptor left to ask with): said so.
                Err(e) => e,
            },
            e => e,
        }
    }

    /// Whether the server answers a new connection. A server that is ending may not have
    /// closed its listener yet when a connection of its reads as ended: then the connection
    /// waiting for it is reset as the listener closes, a moment later, and that reads as
    /// its end at once; a server that lives says nothing until it is asked (or, out of
    /// descriptors, refuses it).
    fn server_lives(&self) -> Result<bool, ManagerError> {
        let probe = match self.connect() {
            Ok(probe) => probe,
            Err(ManagerError::ServerGone) => return Ok(false),
            Err(e) => return Err(e),
        };
        probe
            .set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| Error::os("setsockopt(SO_RCVTIMEO)", e))?;
        loop {
            match (&probe).read(&mut [0]) {
                Ok(n) => return Ok(n > 0),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Ok(matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ));
                }
            }
        }
    }

    /// A new connection to the server, checked to be the server's: the kernel says which
    /// process accepted it (`SO_PEERCRED`).
    fn connect(&self) -> Result<UnixStream, ManagerError> {
        let stream = loop {
            match UnixStream::connect_addr(&self.address) {
                Ok(stream) => break stream,
                // A signal came while the server's backlog was full (its handler without
                // SA_RESTART): the socket was not connected, and a new one is tried, as
                // Python's proxy retries (PEP 475).
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // No one listens any more: the server has ended.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound
                    ) =>
                {
                    return Err(ManagerError::ServerGone);
                }
                Err(e) => return Err(Error::os("connect", e).into()),
            }
        };
        let peer = getsockopt(&stream, PeerCredentials).map_err(|e| Error::os("getsockopt", e))?;
        let ours = peer.pid() as u32 == self.listener && peer.uid() == Uid::effective().as_raw();
        // Another process has the server's name: the server has ended.
        if !ours {
            return Err(ManagerError::ServerGone);
        }
        Ok(stream)
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
        let payload = match self.frames.read_frame(&mut Replies(stream)) {
            Ok(Some(payload)) => payload,
            // The server writes every answer whole unless it dies while it writes: a stream
            // that ends (or is reset) before an answer, or inside one, is the server's end.
            Ok(None) | Err(FrameError::Truncated { .. }) => return Err(ManagerError::ServerGone),
            Err(e) => return Err(e.into()),
        };
        match frame::decode(payload)? {
            Response::Refused(e) => Err(ManagerError::Refused(e)),
            _ if !sent => Err(ManagerError::ServerGone),
            response => Ok(response),
        }
    }
}

/// The server's replies on a connection: a connection the server reset reads as its end.
struct Replies<'a>(&'a UnixStream);

impl Read for Replies<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.0.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(0),
            read => read,
        }
    }
}

impl AsFd for Replies<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// A listening socket at a new abstract address. The name says whose it is; a name that
/// is taken (by another manager of this process's pid before it, say) is passed over.
fn listen() -> Result<(UnixListener, SocketAddr), Error> {
    static MADE: AtomicU32 = AtomicU32::new(0);
    loop {
        let n = MADE.fetch_add(1, Ordering::Relaxed);
        let name = format!("py-multiprocess-manager-{}-{n}", std::process::id());
        let address = SocketAddr::from_abstract_name(name).map_err(|e| Error::os("bind", e))?;
        match UnixListener::bind_addr(&address) {
            Ok(listener) => return Ok((listener, address)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && n < u32::MAX => {}
            Err(e) => return Err(Error::os("socket, bind or listen", e)),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's end of a connection, with `request` to send.
    fn conn(client: UnixStream, request: &Request) -> Conn {
        let mut buf = Vec::new();
        frame::encode(&mut buf, request).unwrap();
        Conn {
            stream: Private::new(client).unwrap(),
            frames: FrameBuf::new(),
            buf,
        }
    }

    #[test]
    fn a_server_that_dies_inside_its_answer_is_gone() {
        let (client, mut server) = UnixStream::pair().unwrap();
        let mut answer = Vec::new();
        frame::encode(&mut answer, &Response::List(vec![7.into(); 1000])).unwrap();
        // Half the answer is written, then the server's end closes, as when it dies.
        server.write_all(&answer[..answer.len() / 2]).unwrap();
        drop(server);
        let mut conn = conn(client, &Request::Copy(0));
        assert!(matches!(conn.exchange(), Err(ManagerError::ServerGone)));
    }

    /// A client of a listener that this process made, as a manager's owner makes it.
    fn client_of(address: SocketAddr) -> Client {
        Client {
            address,
            listener: std::process::id(),
            conn: Mutex::new(None),
            held_in: AtomicU64::new(0),
        }
    }

    #[test]
    fn a_connection_cut_while_the_server_lives_is_refused_not_gone() {
        let (listener, address) = listen().unwrap();
        let client = client_of(address);
        // A server that lives, out of descriptors, closed the connection in the middle of
        // an answer: the call says so, and that the request may have run.
        match client.gone_or_cut(ManagerError::ServerGone) {
            ManagerError::Refused(why) => assert!(why.contains("may have run"), "{why}"),
            other => panic!("{other:?}"),
        }
        // Its listener gone, the server is.
        drop(listener);
        assert!(matches!(
            client.gone_or_cut(ManagerError::ServerGone),
            ManagerError::ServerGone
        ));
        // Other errors are left as they are.
        assert!(matches!(
            client.gone_or_cut(ManagerError::Remote("KeyError: 1".into())),
            ManagerError::Remote(_)
        ));
    }

    #[test]
    fn a_server_that_dies_before_its_answer_is_gone() {
        let (client, server) = UnixStream::pair().unwrap();
        drop(server);
        let mut conn = conn(client, &Request::Len(0));
        assert!(matches!(conn.exchange(), Err(ManagerError::ServerGone)));
    }
}
