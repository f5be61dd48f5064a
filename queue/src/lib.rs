//! `Queue`: values from any process to any process, over one pipe: Python's
//! `multiprocessing.Queue`.

use std::cell::RefCell;
use std::fmt;
use std::io::{self, Read, Write};
use std::marker::PhantomData;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::{Duration, Instant};

use common::frame::{self, FrameError, PREFIX, SPIN};
use common::{Acquired, Error, Lock, Mapping};
use os_pipe::{PipeReader, PipeWriter};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The read-ahead buffer's size: one `read(2)` takes up to this much of the pipe.
const BUF: usize = 64 << 10;

/// While a get waits for the rest of a message, how often it checks that the process
/// writing it is still alive.
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// What went wrong with a queue's call.
pub enum QueueError {
    /// Nothing came within the timeout: Python's `queue.Empty`.
    Empty,
    /// A process died in the middle of writing or reading a message, so the bytes in the
    /// pipe no longer line up with messages. The queue cannot be used any more.
    Broken {
        /// The process that died.
        pid: u32,
    },
    /// An item could not be encoded, or what came is not an item of this queue's type.
    Frame(FrameError),
    /// An OS call failed.
    Os(Error),
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::Empty => f.write_str("the queue is empty"),
            QueueError::Broken { pid } => write!(
                f,
                "process {pid} died in the middle of a message; the queue is broken"
            ),
            QueueError::Frame(e) => write!(f, "{e}"),
            QueueError::Os(e) => write!(f, "{e}"),
        }
    }
}

/// The same text as `Display`, so that `main` returning this error prints the message.
impl fmt::Debug for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for QueueError {}

impl From<Error> for QueueError {
    fn from(e: Error) -> Self {
        QueueError::Os(e)
    }
}

impl From<FrameError> for QueueError {
    fn from(e: FrameError) -> Self {
        QueueError::Frame(e)
    }
}

/// A queue of `T` between processes: make it before `fork`, then any process may `put`
/// and any may `get`.
///
/// Each item travels as one bincode frame through one pipe. A `put` holds the queue's write
/// lock while it writes its frame, so frames of different writers never mix, however large
/// (a pipe keeps only writes of up to `PIPE_BUF`, 4096 bytes, whole). A `get` holds the read
/// lock, and reads the pipe into a read-ahead buffer in shared memory: one `read(2)` takes
/// many small frames, and what one process read ahead, any other can get.
///
/// # Joining a process that has put data
///
/// `put` writes straight into the pipe, and blocks while the pipe is full (64 KiB on Linux)
/// until some process gets. So a child that puts more than the pipe holds cannot finish
/// until its items are read: join it first, and the parent waits for the child while the
/// child waits for the parent, forever. This is the deadlock Python's documentation warns
/// of (there the child's feeder thread blocks at exit; here its `put` blocks). Get the
/// items, then join. In return, an item is in the pipe once `put` returns: a child that
/// exits, or is killed, right after `put` loses nothing.
///
/// # Processes that die
///
/// A process killed in the middle of a large `put` or of a `get` leaves the pipe holding
/// part of a message. The robust locks tell the next caller, which returns
/// [`QueueError::Broken`] rather than misreading the stream; a `get` waiting for the rest
/// of a dead writer's message finds out within 100 ms.
///
/// Layout: the pipe; two [`Lock`]s; one shared mapping holding five `u32` counters (read
/// position, end, and flags for a write or read in progress and for a broken queue), then
/// the 64 KiB read-ahead buffer.
pub struct Queue<T> {
    reader: PipeReader,
    writer: PipeWriter,
    write_lock: Lock,
    read_lock: Lock,
    shared: Mapping,
    /// This process's buffer for encoding an item.
    scratch: RefCell<Vec<u8>>,
    _items: PhantomData<fn(T) -> T>,
}

/// The head of the shared mapping. `start` and `end` bound the bytes read ahead and not yet
/// taken; they change only under the read lock.
#[repr(C)]
struct State {
    start: AtomicU32,
    end: AtomicU32,
    /// Non-zero while a put is writing a frame.
    writing: AtomicU32,
    /// Non-zero while a get is moving bytes from the pipe into the buffer.
    reading: AtomicU32,
    /// The pid of a process that died in the middle of a message, or 0.
    broken: AtomicU32,
}

/// Where the read-ahead buffer starts in the mapping.
const BUF_AT: usize = 64;
const _: () = assert!(size_of::<State>() <= BUF_AT);

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// An empty queue: Python's `Queue()`.
    pub fn new() -> Result<Self, QueueError> {
        let (reader, writer) = os_pipe::pipe().map_err(|e| Error::os("pipe", e))?;
        // Shared by every process, so that a get can wait with poll and a timeout.
        frame::set_nonblocking(reader.as_fd())?;
        Ok(Queue {
            reader,
            writer,
            write_lock: Lock::new()?,
            read_lock: Lock::new()?,
            shared: Mapping::new(BUF_AT + BUF)?,
            scratch: RefCell::new(Vec::new()),
            _items: PhantomData,
        })
    }

    /// Puts `item` at the end of the queue: Python's `q.put(item)`. Blocks while the pipe
    /// is full.
    pub fn put(&self, item: &T) -> Result<(), QueueError> {
        let mut buf = self.scratch.borrow_mut();
        buf.clear();
        frame::encode(&mut buf, item)?;
        let held = self.write_lock.lock()?;
        let state = self.state();
        if let Acquired::OwnerDied { pid } = held.acquired() {
            if state.writing.load(Relaxed) != 0 {
                state.broken.store(pid, Relaxed);
            }
        }
        check(state)?;
        state.writing.store(1, Relaxed);
        (&self.writer)
            .write_all(&buf)
            .map_err(|e| Error::os("write", e))?;
        state.writing.store(0, Relaxed);
        Ok(())
    }

    /// Takes the item at the head of the queue, waiting as long as it takes: Python's
    /// `q.get()`.
    pub fn get(&self) -> Result<T, QueueError> {
        self.get_until(None)
    }

    /// Takes the item at the head of the queue, waiting at most `timeout`: Python's
    /// `q.get(timeout=...)`. [`QueueError::Empty`] when nothing came in time.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, QueueError> {
        self.get_until(Some(Instant::now() + timeout))
    }

    /// Takes the item at the head of the queue if one is there: Python's `q.get_nowait()`.
    pub fn get_nowait(&self) -> Result<T, QueueError> {
        self.get_until(Some(Instant::now()))
    }

    fn get_until(&self, deadline: Option<Instant>) -> Result<T, QueueError> {
        let held = match deadline {
            None => self.read_lock.lock()?,
            Some(d) => self
                .read_lock
                .lock_timeout(d.saturating_duration_since(Instant::now()))?
                .ok_or(QueueError::Empty)?,
        };
        let state = self.state();
        if let Acquired::OwnerDied { pid } = held.acquired() {
            if state.reading.load(Relaxed) != 0 {
                state.broken.store(pid, Relaxed);
            }
        }
        check(state)?;
        // SAFETY: the read lock is held until this function returns, and every access to the
        // buffer is made under it, so this is the only reference to the buffer's bytes. The
        // buffer is BUF bytes of the mapping from BUF_AT on, which `new` allocated.
        let buf = unsafe { std::slice::from_raw_parts_mut(self.shared.as_ptr().add(BUF_AT), BUF) };
        let mut spin_until = None;
        loop {
            let (start, end) = (
                state.start.load(Relaxed) as usize,
                state.end.load(Relaxed) as usize,
            );
            match frame::payload_len(&buf[start..end])? {
                Some(len) if PREFIX + len <= end - start => {
                    let at = start + PREFIX;
                    let (start, end) = if at + len == end {
                        (0, 0)
                    } else {
                        (at + len, end)
                    };
                    state.start.store(start as u32, Relaxed);
                    state.end.store(end as u32, Relaxed);
                    return Ok(frame::decode(&buf[at..at + len])?);
                }
                Some(len) if PREFIX + len > BUF => return self.get_large(state, buf, len),
                _ => {}
            }
            state.reading.store(1, Relaxed);
            if start > 0 {
                buf.copy_within(start..end, 0);
                state.start.store(0, Relaxed);
                state.end.store((end - start) as u32, Relaxed);
            }
            let end = end - start;
            let read = (&self.reader).read(&mut buf[end..]);
            if let Ok(n) = read {
                state.end.store((end + n) as u32, Relaxed);
            }
            state.reading.store(0, Relaxed);
            match read {
                Ok(0) => return Err(Error::os("read", io::ErrorKind::UnexpectedEof).into()),
                Ok(_) => spin_until = None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let now = Instant::now();
                    if deadline.is_some_and(|d| now >= d) {
                        return Err(QueueError::Empty);
                    }
                    if now < *spin_until.get_or_insert(now + SPIN) {
                        std::hint::spin_loop();
                        continue;
                    }
                    let wait = deadline.map_or(CHECK_EVERY, |d| (d - now).min(CHECK_EVERY));
                    if !frame::wait_readable(self.reader.as_fd(), Some(wait))? && end > 0 {
                        self.check_writer(state)?;
                    }
                }
                Err(e) => return Err(Error::os("read", e).into()),
            }
        }
    }

    /// Reads a message larger than the read-ahead buffer straight from the pipe: the part
    /// already in the buffer, then the rest, which its writer is writing now.
    fn get_large(&self, state: &State, buf: &[u8], len: usize) -> Result<T, QueueError> {
        state.reading.store(1, Relaxed);
        let (start, end) = (
            state.start.load(Relaxed) as usize,
            state.end.load(Relaxed) as usize,
        );
        let mut payload = Vec::with_capacity(len);
        payload.extend_from_slice(&buf[start + PREFIX..end]);
        state.start.store(0, Relaxed);
        state.end.store(0, Relaxed);
        let mut filled = payload.len();
        payload.resize(len, 0);
        while filled < len {
            match (&self.reader).read(&mut payload[filled..]) {
                Ok(0) => return Err(Error::os("read", io::ErrorKind::UnexpectedEof).into()),
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !frame::wait_readable(self.reader.as_fd(), Some(CHECK_EVERY))? {
                        self.check_writer(state)?;
                    }
                }
                Err(e) => return Err(Error::os("read", e).into()),
            }
        }
        state.reading.store(0, Relaxed);
        Ok(frame::decode(&payload)?)
    }

    /// Part of a message is here and the rest is late: fails if its writer died.
    fn check_writer(&self, state: &State) -> Result<(), QueueError> {
        if state.writing.load(Relaxed) != 0 {
            if let Some(pid) = self
                .write_lock
                .holder()
                .filter(|&pid| common::has_ended(pid))
            {
                state.broken.store(pid, Relaxed);
            }
        }
        check(state)
    }

    fn state(&self) -> &State {
        // SAFETY: the mapping starts with a State (all zeros is its initial value), lives as
        // long as `self`, and its fields are atomics, shared safely by every process.
        unsafe { &*self.shared.as_ptr().cast::<State>() }
    }
}

fn check(state: &State) -> Result<(), QueueError> {
    match state.broken.load(Relaxed) {
        0 => Ok(()),
        pid => Err(QueueError::Broken { pid }),
    }
}
