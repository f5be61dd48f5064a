//! Section 3's mechanism: [`Queue`], values from any process to any process over one pipe,
//! Python's `multiprocessing.Queue`. The program, `src/main.rs`, is below; its Python
//! original is `python/queue_demo.py`.
//!
//! An item travels as one bincode frame (a length, then the bytes) written into the pipe
//! under a write lock, so that two writers' frames never mix; readers take turns under a
//! read lock, and read ahead into a buffer in shared memory, so that a frame read by one
//! reader but not taken is there for the next. Both locks are `lock`'s [`Lock`], as Python's
//! `Queue` uses its `Lock`; what happens when a writer or reader dies half-way is on
//! [`Queue`].
//!
//! # The program
//!
//! `cargo run -p queue` runs `src/main.rs`:
//!
#![doc = concat!("```rust,ignore\n", include_str!("main.rs"), "```")]

use std::fmt;
use std::io::{self, Read, Write};
use std::marker::PhantomData;
use std::os::fd::AsFd;
use std::sync::atomic::{
    AtomicU32, AtomicU64,
    Ordering::{Acquire, Relaxed, Release, SeqCst},
    fence,
};
use std::time::{Duration, Instant};

use common::fd::{self, Spin};
use common::frame::{self, FrameError, PREFIX};
use common::{Error, Mapping, current_pid};
use lock::{Acquired, Lock, LockError, LockGuard};
use os_pipe::{PipeReader, PipeWriter};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The read-ahead buffer's size: one `read(2)` takes up to this much of the pipe.
const BUF: usize = 64 << 10;

/// While a get waits for the rest of a message, how often it checks that the process
/// writing it is still alive.
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// What went wrong with a queue's call.
#[derive(thiserror::Error)]
pub enum QueueError {
    /// Nothing came within the timeout: Python's `queue.Empty`.
    #[error("the queue is empty")]
    Empty,
    /// A process died (or a reader or writer failed, or a reader found a length prefix over
    /// the limit, or part of a message that no put was writing) in the middle of a message,
    /// so the bytes in the pipe no longer line up with messages; or one died holding a lock of the queue that can never be taken again
    /// ([`LockError::LockAbandoned`]). The queue cannot be used any more.
    #[error(
        "process {pid} died or failed in the middle of a message, or left a lock of the queue \
         that no one can take again; the queue is broken"
    )]
    Broken {
        /// The process that died, or the reader that failed.
        pid: u32,
    },
    /// An item could not be encoded, or what came is not an item of this queue's type.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// One of the queue's locks failed: this process has no descriptor left to ask whether
    /// a dead holder has ended, say. (An abandoned lock breaks the queue: [`Broken`].)
    ///
    /// [`Broken`]: QueueError::Broken
    #[error(transparent)]
    Lock(#[from] LockError),
    /// An OS call failed.
    #[error(transparent)]
    Os(#[from] Error),
}

/// The same text as `Display`, so that `main` returning this error prints the message.
impl fmt::Debug for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
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
/// A process may be killed at any instruction of a `put` or a `get`, and no item is then
/// taken twice or out of order. A reader killed while it takes an item from the read-ahead
/// buffer has taken it or not, in one store: at worst its item is lost with it. A process
/// killed while it moves bytes through the pipe or the buffer (writing a frame of more than
/// `PIPE_BUF` bytes, reading ahead) may leave part of a message behind; the robust locks tell
/// the next caller, which marks the queue broken and returns [`QueueError::Broken`] rather
/// than misreading the stream. A frame of at most `PIPE_BUF` bytes is written whole or not
/// at all. A `get` waiting for the rest of a dead writer's message, and a `put` waiting on
/// a full pipe whose reader died in the middle of a message, find out within 100 ms (and
/// the lock's wait for the dead process to finish exiting). A reader killed while it waits
/// for data, outside those moves, breaks nothing: a `put` waiting on a full pipe then waits
/// for the next `get`, as it waits for a slow reader, since any process that holds the
/// queue may still get. Unless the lock it held is abandoned: where the kernel cannot tell
/// that its holder's process has ended (without pidfds, before Linux 5.3 or under a seccomp
/// filter; a pid given to another process; see [`Lock`]), the lock is never given again,
/// so no get (or, for a dead writer's, no put) can ever come. A dead reader's breaks the
/// queue: every `put` and `get`, a put waiting on a full pipe included (within 100 ms),
/// returns [`QueueError::Broken`]. A dead
/// writer's refuses every `put` (`Broken`), and a `get` takes the whole messages left, then
/// is told so (within 100 ms of finding the queue empty). A get or put that finds the
/// other side's lock held by a process that died is waited for while that process
/// finishes exiting, past its timeout, as for its own lock (at most [`lock::EXIT_WAIT`]).
///
/// Layout: the pipe; two [`Lock`]s; one shared mapping holding the read-ahead span (start
/// and end, in one `u64`) and three `u32` flags (a write or a read in progress, a broken
/// queue), then the 64 KiB read-ahead buffer.
pub struct Queue<T> {
    reader: PipeReader,
    writer: PipeWriter,
    write_lock: Lock,
    read_lock: Lock,
    shared: Mapping,
    _items: PhantomData<fn(T) -> T>,
}

/// The head of the shared mapping.
#[repr(C)]
struct State {
    /// The bytes read ahead and not yet taken, `buf[start..end]`, as `start << 32 | end`:
    /// one word, so that taking a frame is one store (see [`State::set_span`]). Changes only
    /// under the read lock.
    span: AtomicU64,
    /// Non-zero while a put is writing a frame into the pipe.
    writing: AtomicU32,
    /// Non-zero while a get moves bytes within the buffer or out of the pipe.
    reading: AtomicU32,
    /// The pid of a process that died in the middle of a message, or 0.
    broken: AtomicU32,
}

impl State {
    /// `(start, end)`: the bytes read ahead and not yet taken are `buf[start..end]`.
    fn span(&self) -> (usize, usize) {
        let span = self.span.load(Relaxed);
        ((span >> 32) as usize, span as u32 as usize)
    }

    /// Both ends in one store. With two, a reader killed between them left a span that
    /// covered items already taken, and the next reader got them again.
    fn set_span(&self, start: usize, end: usize) {
        self.span.store((start as u64) << 32 | end as u64, Relaxed);
    }
}

/// Raises `flag` (`writing` or `reading`) for a change of the pipe or the buffer that takes
/// more than one step: a process that dies before [`lower`] leaves the flag up, and the next
/// holder of the lock marks the queue broken (see [`after_lock`]).
fn raise(flag: &AtomicU32) {
    // Release: a process that sees the flag up (Acquire, in `check_peer`) sees the record
    // that the lock's holder wrote before it, so blames this holder, not an earlier one.
    flag.store(1, Release);
    // Neither the compiler nor the CPU may move the change's reads and writes before the
    // flag: whatever instruction of the change a process is killed at, the flag is up.
    fence(SeqCst);
}

/// Ends a change begun with [`raise`].
fn lower(flag: &AtomicU32) {
    // Release: every write of the change is made before the flag is seen down.
    flag.store(0, Release);
}

/// Run by whoever has just taken a lock: if the previous holder died with `flag` raised, in
/// the middle of a change, the queue is broken for good. Fails if the queue is broken.
fn after_lock(state: &State, held: &LockGuard<'_>, flag: &AtomicU32) -> Result<(), QueueError> {
    if let Acquired::OwnerDied { pid } = held.acquired() {
        if flag.load(Relaxed) != 0 {
            mark_broken(state, pid);
        }
    }
    check(state)
}

/// What a lock's error means for the queue: one of its locks abandoned (its holder died and
/// cannot be told dead, see `lock`'s docs) is never taken again, so no get, or no put, can
/// come any more: [`QueueError::Broken`], by that holder. With `mark`, the queue is marked
/// broken for every process; without (the write lock, abandoned between messages), only
/// puts are refused, and gets take the whole messages left, then are told, by their wait
/// ([`Queue::check_peer`]). Other errors are passed on.
fn broken_if_abandoned(state: &State, e: LockError, mark: bool) -> QueueError {
    match e {
        LockError::LockAbandoned { pid } => {
            let pid = if pid == 0 { current_pid() } else { pid };
            if mark {
                mark_broken(state, pid);
            }
            // The first to break it is named: this holder, or one before it.
            QueueError::Broken {
                pid: match state.broken.load(Relaxed) {
                    0 => pid,
                    first => first,
                },
            }
        }
        e => e.into(),
    }
}

/// Marks the queue broken by process `pid`, unless it is already: the first to break the
/// queue is the one named.
fn mark_broken(state: &State, pid: u32) {
    let _ = state.broken.compare_exchange(0, pid, Relaxed, Relaxed);
}

/// Where the read-ahead buffer starts in the mapping.
const BUF_AT: usize = 64;
const _: () = assert!(size_of::<State>() <= BUF_AT);

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// An empty queue: Python's `Queue()`.
    pub fn new() -> Result<Self, QueueError> {
        let (reader, writer) = os_pipe::pipe().map_err(|e| Error::os("pipe", e))?;
        // Shared by every process, so that a get and a put can wait with poll and a timeout.
        fd::set_nonblocking(reader.as_fd())?;
        fd::set_nonblocking(writer.as_fd())?;
        Ok(Queue {
            reader,
            writer,
            write_lock: Lock::new()?,
            read_lock: Lock::new()?,
            shared: Mapping::new(BUF_AT + BUF)?,
            _items: PhantomData,
        })
    }

    /// Puts `item` at the end of the queue: Python's `q.put(item)`. Blocks while the pipe
    /// is full.
    pub fn put(&self, item: &T) -> Result<(), QueueError> {
        // Room for a small item up front: a buffer that grows as the item encodes made a
        // put of `(i, "hello")` 18% slower (1,170 against 990 ns a message, 200,000 of them
        // between two processes); with this, a new buffer each put is as fast as a reused one.
        let mut buf = Vec::with_capacity(256);
        frame::encode(&mut buf, item)?;
        let state = self.state();
        // The write lock is waited for a while at a time: a queue that breaks meanwhile is
        // read no more, and its writers would wait forever.
        let held = loop {
            check(state)?;
            let held = self.write_lock.lock_timeout(CHECK_EVERY);
            // Abandoned in the middle of a message, the stream is cut: broken for all.
            let mid_message = state.writing.load(Acquire) != 0;
            if let Some(held) = held.map_err(|e| broken_if_abandoned(state, e, mid_message))? {
                break held;
            }
        };
        after_lock(state, &held, &state.writing)?;
        // A frame of at most PIPE_BUF bytes goes into the pipe in one write, whole or not at
        // all: a writer killed at any instruction leaves none of it. A longer one goes in
        // pieces, under the flag; a writer killed before its first byte is in the pipe, or
        // after its last, breaks the queue then too: the flag cannot tell those deaths from
        // one in the middle.
        let in_pieces = buf.len() > fd::PIPE_BUF;
        if in_pieces {
            raise(&state.writing);
        }
        let mut rest = buf.as_slice();
        let written = self.write(state, &mut rest);
        if written.is_err() && rest.len() < buf.len() {
            // Part of the frame is in the pipe and the rest never comes: the next writer's
            // frame would be read as its end. (Only a frame in pieces can be cut so.)
            mark_broken(state, current_pid());
        }
        if in_pieces {
            lower(&state.writing);
        }
        written
    }

    /// Writes `bytes` into the pipe, waiting while it is full; fails if the queue breaks
    /// meanwhile, or its reader died in the middle of a message, since no one reads it any
    /// more. On failure, `bytes` is what was not written.
    fn write(&self, state: &State, bytes: &mut &[u8]) -> Result<(), QueueError> {
        while !bytes.is_empty() {
            match (&self.writer).write(bytes) {
                Ok(n) => *bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !fd::wait_writable(self.writer.as_fd(), Some(CHECK_EVERY))? {
                        self.check_peer(state, &self.read_lock, &state.reading)?;
                    }
                }
                Err(e) => return Err(Error::os("write", e).into()),
            }
        }
        Ok(())
    }

    /// Takes the item at the head of the queue, waiting as long as it takes: Python's
    /// `q.get()`.
    pub fn get(&self) -> Result<T, QueueError> {
        self.get_until(None)
    }

    /// Takes the item at the head of the queue, waiting at most `timeout`: Python's
    /// `q.get(timeout=...)`. [`QueueError::Empty`] when nothing came in time. A message
    /// larger than the read-ahead buffer (64 KiB), once begun, is read to its end, past the
    /// timeout (the bytes taken from the pipe cannot go back). A reader that
    /// died holding the read lock is waited for past the timeout, while its process
    /// finishes exiting, at most [`lock::EXIT_WAIT`]. A timeout too long for the clock
    /// (`Duration::MAX`) is no timeout.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, QueueError> {
        self.get_until(Instant::now().checked_add(timeout))
    }

    /// Takes the item at the head of the queue if one is there: Python's `q.get_nowait()`.
    /// As for [`get_timeout`](Queue::get_timeout), a dead reader's exit may be waited for,
    /// and so may a dead writer's, if it died holding the write lock and the queue is empty
    /// (at most [`lock::EXIT_WAIT`]): only then can it tell whether a put may still come.
    pub fn get_nowait(&self) -> Result<T, QueueError> {
        self.get_until(Some(Instant::now()))
    }

    fn get_until(&self, deadline: Option<Instant>) -> Result<T, QueueError> {
        let state = self.state();
        let held = match deadline {
            None => self.read_lock.lock().map(Some),
            Some(d) => self
                .read_lock
                .lock_timeout(d.saturating_duration_since(Instant::now())),
        };
        let held = held
            .map_err(|e| broken_if_abandoned(state, e, true))?
            .ok_or(QueueError::Empty)?;
        after_lock(state, &held, &state.reading)?;
        // SAFETY: the read lock is held until this function returns, and every access to the
        // buffer is made under it, so this is the only reference to the buffer's bytes (no
        // code of the caller's runs while it lives: an item is decoded from a copy). The
        // buffer is BUF bytes of the mapping from BUF_AT on, which `new` allocated.
        let buf = unsafe { std::slice::from_raw_parts_mut(self.shared.as_ptr().add(BUF_AT), BUF) };
        let mut spin = Spin::new();
        loop {
            let (start, end) = state.span();
            let len = frame::payload_len(&buf[start..end]).inspect_err(|_| {
                // Not a frame's prefix: where the next frame begins cannot be told any more.
                mark_broken(state, current_pid());
            })?;
            match len {
                Some(len) if PREFIX + len <= end - start => {
                    // Taking the frame is this one store: a reader killed before it has not
                    // taken the frame, one killed after it has (and the frame is lost).
                    let at = start + PREFIX;
                    if at + len == end {
                        state.set_span(0, 0);
                    } else {
                        state.set_span(at + len, end);
                    }
                    // Decoded from a copy: the item's `Deserialize` is the caller's code, and
                    // were it to fork (`daemon`), the child would keep any reference it was
                    // given into the shared buffer, without the lock. (A `SharedBorrow`
                    // instead ended every child forked meanwhile by any thread, `Command`'s
                    // included.) And after the lock is let go, as Python unpickles outside
                    // its lock: a `Deserialize` that gets or puts on this queue (the pipe
                    // full) would otherwise wait for ever.
                    let frame = buf[at..at + len].to_vec();
                    drop(held);
                    return Ok(frame::decode(&frame)?);
                }
                Some(len) if PREFIX + len > BUF => {
                    // Decoded once `buf` is no longer used and the lock is let go, as a small
                    // item is.
                    let payload = self.take_large(state, buf, len)?;
                    drop(held);
                    return Ok(frame::decode(&payload)?);
                }
                _ => {}
            }
            // Only this process reads the pipe while it holds the read lock, so a pipe seen
            // readable is read without waiting, and one seen empty moves nothing: the flag
            // below goes up only to take bytes, and a reader killed while it waits for data
            // breaks nothing.
            let read = if fd::wait_readable(self.reader.as_fd(), Some(Duration::ZERO))? {
                // Moving the waiting bytes to the front, and reading the pipe after them,
                // take many steps: a reader killed in the middle leaves bytes half moved, or
                // gone from the pipe and not yet in the span.
                raise(&state.reading);
                if start > 0 {
                    buf.copy_within(start..end, 0);
                }
                let end = end - start;
                let read = (&self.reader).read(&mut buf[end..]);
                state.set_span(0, end + read.as_ref().map_or(0, |&n| n));
                lower(&state.reading);
                read
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
            match read {
                Ok(0) => return Err(Error::os("read", io::ErrorKind::UnexpectedEof).into()),
                Ok(_) => spin.got(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let now = Instant::now();
                    if deadline.is_some_and(|d| now >= d) {
                        // Before `Empty`, one look at the writers' side, as a wait makes:
                        // with their lock abandoned, no put comes any more, and a
                        // `get_nowait` that polls would be told `Empty` for ever.
                        self.check_writers(state)?;
                        return Err(QueueError::Empty);
                    }
                    if spin.again() {
                        continue;
                    }
                    let wait = deadline.map_or(CHECK_EVERY, |d| (d - now).min(CHECK_EVERY));
                    if !fd::wait_readable(self.reader.as_fd(), Some(wait))? {
                        // A writer that died in the middle of a message, or holding the write
                        // lock for good, or the queue broken meanwhile: no put comes any more.
                        self.check_writers(state)?;
                    }
                }
                Err(e) => return Err(Error::os("read", e).into()),
            }
        }
    }

    /// Reads a message larger than the read-ahead buffer straight from the pipe: the part
    /// already in the buffer, then the rest, which its writer is writing now. Returns its
    /// payload, for the caller to decode.
    fn take_large(&self, state: &State, buf: &[u8], len: usize) -> Result<Vec<u8>, QueueError> {
        // From here until the whole message is read, a reader killed leaves the rest of the
        // message in the pipe, where the next reader would take it for a frame.
        raise(&state.reading);
        let payload = self.read_rest(state, buf, len).inspect_err(|_| {
            // Part of the message is taken, and the rest would be read as frames.
            mark_broken(state, current_pid());
        })?;
        lower(&state.reading);
        Ok(payload)
    }

    /// The rest of a message of `len` bytes, the first of which are in the buffer.
    fn read_rest(&self, state: &State, buf: &[u8], len: usize) -> Result<Vec<u8>, QueueError> {
        let (start, end) = state.span();
        let mut payload = Vec::with_capacity(len);
        payload.extend_from_slice(&buf[start + PREFIX..end]);
        state.set_span(0, 0);
        let mut filled = payload.len();
        payload.resize(len, 0);
        while filled < len {
            match (&self.reader).read(&mut payload[filled..]) {
                Ok(0) => return Err(Error::os("read", io::ErrorKind::UnexpectedEof).into()),
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !fd::wait_readable(self.reader.as_fd(), Some(CHECK_EVERY))? {
                        self.check_peer(state, &self.write_lock, &state.writing)?;
                        self.check_cut(state)?;
                    }
                }
                Err(e) => return Err(Error::os("read", e).into()),
            }
        }
        Ok(payload)
    }

    /// A get found the pipe empty for a while: [`check_peer`](Queue::check_peer) on the
    /// writers' side, and, where part of a message is in the buffer, [`check_cut`].
    fn check_writers(&self, state: &State) -> Result<(), QueueError> {
        self.check_peer(state, &self.write_lock, &state.writing)?;
        let (start, end) = state.span();
        if end > start {
            self.check_cut(state)?;
        }
        Ok(())
    }

    /// Part of a message has come, and the pipe has stayed empty: fails (the queue broken)
    /// if no put is writing the rest. Every put writes under the write lock, and a message
    /// of at most PIPE_BUF bytes goes into the pipe whole: so the rest can come only from
    /// the lock's holder. The lock is taken without waiting; if it is free, and the pipe is
    /// still empty once it is held, the bytes came from no put (a process wrote into the
    /// pipe outside the queue, through `/proc/self/fd`, say), and where the next message
    /// begins cannot be told. Without this, a get waited for ever for the rest.
    fn check_cut(&self, state: &State) -> Result<(), QueueError> {
        if let Ok(Some(held)) = self.write_lock.lock_timeout(Duration::ZERO) {
            after_lock(state, &held, &state.writing)?;
            if !fd::wait_readable(self.reader.as_fd(), Some(Duration::ZERO))? {
                mark_broken(state, current_pid());
            }
        }
        check(state)
    }

    /// The other side is late (a get waits for a message or the rest of one, or a put waits
    /// on a full pipe): fails if the queue is broken, or if the process on the other side,
    /// the holder of `lock` (the write or the read lock), died in the middle of a change
    /// with `flag` (`writing` or `reading`) up, or left `lock` abandoned: then no one on
    /// that side can take it again, and what this side waits for never comes.
    fn check_peer(&self, state: &State, lock: &Lock, flag: &AtomicU32) -> Result<(), QueueError> {
        // Taken without waiting, as its next holder would take it, to look at the flag under
        // it: the robust mutex itself says whether its holder died (`after_lock` then marks
        // the queue broken if the flag is still up), which a pid cannot once it is given to
        // another process. A live holder holds it: then nothing is done.
        let flag_up = flag.load(Acquire) != 0;
        // Only where something may be wrong: the flag is up, or the lock has a holder (an
        // abandoned lock keeps its dead holder's record). A free lock is not taken to look:
        // a `get_nowait` that found it taken so, by a put waiting on a full pipe, said
        // `Empty` with items queued.
        if !flag_up && lock.holder().is_none() {
            return check(state);
        }
        let dead = match lock.lock_timeout(Duration::ZERO) {
            Ok(Some(held)) => return after_lock(state, &held, flag),
            Ok(None) => None,
            // Its holder died and is taken for alive (its pid names another process now, or
            // the kernel cannot tell, see `lock`'s docs): no one takes it again. (0 if it is
            // not known whose it was: this process is named instead, never "not broken".)
            Err(LockError::LockAbandoned { pid }) => {
                Some(if pid == 0 { current_pid() } else { pid })
            }
            // This process has no descriptor left to ask whether the holder has ended (a
            // dead holder that is no child of this process cannot be told from a live one
            // without one): in the middle of a change, said, rather than waited on for
            // ever; outside one, nothing is lost while it is not known, and the wait goes on.
            Err(e @ LockError::Os(_)) if flag_up => return Err(e.into()),
            // It cannot be taken to look (this thread holds too many locks, say): a holder
            // that has ended, with the flag up, is taken for one that died in the middle.
            Err(_) if flag_up => lock.dead_holder(),
            Err(_) => None,
        };
        if let Some(pid) = dead {
            mark_broken(state, pid);
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
