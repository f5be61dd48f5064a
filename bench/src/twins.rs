//! The bare twins: each of the workloads done again with direct libc calls, the same
//! work and nothing else. The same processes, forked at the same moments; the same messages,
//! byte for byte as long as the workspace's frames (a `u32` length, then bincode with
//! fixed-size integers); the same batching, the same waiting, the same contention. What a
//! twin leaves out is the workload's bookkeeping: no framing library, no decoding into
//! values, no checks but of the result at the end, no liveness checks, no robust-lock
//! recovery, no registry of children. So `Rust / twin`, in operations a second, is what the
//! workspace's types cost beyond the work they do, and a figure above 1 would mean a twin
//! does more than its workload, or differently.
//!
//! Every child forked here allocates nothing and takes no lock (its buffers are made before
//! the fork), ends with `_exit`, and is reaped. It closes the parent's ends of its pipes, so
//! its reads reach the end and its writes fail once the bench is gone, and the kernel kills
//! it when the bench dies (`PR_SET_PDEATHSIG`).

use std::collections::{HashMap, VecDeque};
use std::error::Error;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::time::{Duration, Instant};

use common::fd::{PIPE_SIZE, SPIN};
use os_pipe::{PipeReader, PipeWriter};

use crate::workloads::Timed;

mod forkserver;
pub use forkserver::forkserver;
pub(crate) use forkserver::{SERVER as FORK_SERVER, serve as serve_forks};

type Res<T> = Result<T, Box<dyn Error>>;

/// A frame's length prefix (`common/src/frame.rs`).
const PREFIX: usize = 4;
/// A pool task's header: task id, trampoline address, function address (`pool-map/src/worker.rs`).
const TASK_HEADER: usize = 24;
/// A pool result's header: task id, kind byte.
const RESULT_HEADER: usize = 9;
/// The kind byte of a result whose function returned.
const RETURNED: u8 = 0;
/// The twins' word in place of the pool's trampoline address, which tells its worker the
/// same thing: one call (`apply`'s `call_one`), or a chunk of them (`map`'s `call_chunk`).
const CALL_ONE: u64 = 1;
const CALL_CHUNK: u64 = 2;
/// `sq(i)` as a task frame, 4 + 24 + 8 bytes (the argument is one `i64`), and its result
/// frame, 4 + 9 + 8.
const ONE_TASK: usize = PREFIX + TASK_HEADER + 8;
#[cfg(test)]
const ONE_RESULT: usize = PREFIX + RESULT_HEADER + 8;
/// The benchmarks' pools have two workers.
const WORKERS: usize = 2;
/// The most tasks a pool keeps in flight per worker (`Engine::dispatch`).
const MOST_IN_FLIGHT: usize = 64;
/// What one read takes at most, where frames are small: `FrameBuf`'s buffer, and the queue's.
const READ_AHEAD: usize = 64 << 10;
/// How long a twin's wait spins before it sleeps: 50 µs, but not at all where this process
/// may run on one CPU only, where the workspace's waits do not spin either: there the spin
/// holds the CPU the writer needs. Asked once, when the twin starts (the bench lets a second
/// pass after it enters a condition, so the answer is the condition's).
fn spin() -> Duration {
    if common::fd::one_cpu() {
        Duration::ZERO
    } else {
        SPIN
    }
}

/// A reader's waits, as `common::fd::Spin` runs the workspace's: a wait looks again at
/// once for up to [`spin()`], then sleeps; but a spin that ends with nothing (the peer did
/// not answer in time) makes the next 2, 4, ... 1,024 waits skip theirs, and a spin that is
/// answered takes one step back. Spin keeps that count for its process; a twin keeps it for
/// its reader, the only one in its process (a count shared with the bench's own runs would
/// carry what one side learnt into the other's).
struct Backoff {
    spin: Duration,
    fails: u32,
    skip: u32,
}

/// Where one wait is.
#[derive(Clone, Copy, Default)]
enum Wait {
    /// Nothing found empty yet.
    #[default]
    Begun,
    /// Spinning until then.
    Until(Instant),
    /// Sleeping, or about to.
    Slept,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff {
            spin: spin(),
            fails: 0,
            skip: 0,
        }
    }

    /// Nothing has come yet in `wait`: true when the reader should look again at once,
    /// false when it should sleep.
    fn again(&mut self, wait: &mut Wait) -> bool {
        match *wait {
            Wait::Begun if self.spin.is_zero() => *wait = Wait::Slept,
            Wait::Begun if self.skip > 0 => {
                self.skip -= 1;
                *wait = Wait::Slept;
            }
            Wait::Begun => *wait = Wait::Until(Instant::now() + self.spin),
            Wait::Until(until) if Instant::now() >= until => {
                self.fails = (self.fails + 1).min(10);
                self.skip = 1 << self.fails;
                *wait = Wait::Slept;
            }
            Wait::Until(_) | Wait::Slept => {}
        }
        let spin = matches!(wait, Wait::Until(_));
        if spin {
            std::hint::spin_loop();
        }
        spin
    }

    /// Something came: `wait` is over, and the next one begins afresh.
    fn got(&mut self, wait: &mut Wait) {
        if let Wait::Until(_) = wait {
            self.fails = self.fails.saturating_sub(1);
        }
        *wait = Wait::Begun;
    }
}

/// How a twin's reader waits for bytes that have not come.
enum Reads {
    /// It sleeps in `read(2)` itself, on a blocking descriptor.
    Blocking,
    /// It reads its non-blocking descriptor again at once, and never sleeps.
    Polling,
    /// As `FrameBuf::read_frame`, the pool's worker's: while the wait may spin
    /// ([`Backoff`]), a read that does not wait (`preadv2` with `RWF_NOWAIT`), again and
    /// again; then a sleep in `read(2)` itself, on a blocking descriptor.
    Spinning(Backoff),
    /// As `Queue::get`: a look with `poll(2)` without waiting, and a read when there is
    /// something; while the wait may spin ([`Backoff`]), the look again at once; then a sleep
    /// in `poll(2)`, and the look again. On a non-blocking descriptor, as the queue's (a read
    /// comes only after `poll` has seen bytes, so it would not block either way).
    Looking(Backoff),
}

impl Reads {
    fn spinning() -> Reads {
        Reads::Spinning(Backoff::new())
    }

    fn looking() -> Reads {
        Reads::Looking(Backoff::new())
    }

    /// Whether its descriptor must be non-blocking.
    fn nonblocking(&self) -> bool {
        matches!(self, Reads::Polling | Reads::Looking(_))
    }
}

/// How both sides of a round-trip twin (`apply`, the manager) wait for the other's frame.
#[derive(Clone, Copy)]
pub enum Waits {
    /// They sleep in `read(2)`, and are woken when the frame comes.
    Block,
    /// They read non-blocking descriptors again and again, and never sleep: fastest where
    /// each has a core, slowest where they must share one.
    Poll,
    /// As the workspace's: a spin where it may pay, then a sleep ([`Reads::Spinning`]).
    Spin,
}

impl Waits {
    /// How a reader that waits so reads.
    fn reads(self) -> Reads {
        match self {
            Waits::Block => Reads::Blocking,
            Waits::Poll => Reads::Polling,
            Waits::Spin => Reads::spinning(),
        }
    }
}

/// fork, `_exit(0)` in the child, waitpid: `n` times. As the workload's `Process`, whose
/// child runs an empty target and exits, and whose `join` is a waitpid.
pub fn process(n: usize) -> Timed {
    let start = Instant::now();
    for _ in 0..n {
        let child = fork(|| 0)?;
        reap(child)?;
    }
    Ok(start.elapsed())
}

/// The first argument that makes the bench end at once: the spawn twin's child.
pub(crate) const EXIT_AT_ONCE: &str = "--exit-at-once";

/// Spawn: this program run again (`posix_spawn` of `/proc/self/exe`), which ends at once,
/// and waited for, `n` times.
pub fn spawn(n: usize) -> Timed {
    let exe = std::ffi::CString::new(
        std::env::current_exe()?
            .into_os_string()
            .into_encoded_bytes(),
    )?;
    let flag = std::ffi::CString::new(EXIT_AT_ONCE)?;
    let argv = [exe.as_ptr(), flag.as_ptr(), ptr::null()];
    // The child reads nothing of its environment: it ends at once.
    let envp: [*const libc::c_char; 1] = [ptr::null()];
    let start = Instant::now();
    for _ in 0..n {
        let mut pid = 0;
        // SAFETY: the path and the argument vector are NUL-terminated C strings alive for
        // the call, both vectors end with a null, and `pid` is written by the call.
        let error = unsafe {
            libc::posix_spawn(
                &mut pid,
                exe.as_ptr(),
                ptr::null(),
                ptr::null(),
                argv.as_ptr().cast(),
                envp.as_ptr().cast(),
            )
        };
        if error != 0 {
            return Err(io::Error::from_raw_os_error(error).into());
        }
        reap(pid)?;
    }
    Ok(start.elapsed())
}

/// `map` of `x * x` over `0..n` with two workers, as `Pool::map` does it: the workers are
/// forked before the timer, each with a task pipe and a result pipe of 1 MiB; the items go in
/// chunks of `n / 8` (rounded up), each one task frame (the 24-byte header, then the chunk
/// as bincode's `Vec<i64>`: a `u64` count and 8 bytes an item); the first chunk of each
/// worker goes as soon as it is encoded, the rest by the pool's rule (see [`Engine`]); a
/// worker squares each item and writes the chunk back as one result frame (its 9-byte
/// header, then the `Vec<i64>`). The parent puts each chunk in its place and checks them all.
pub fn map(n: usize) -> Timed {
    let chunk = n.div_ceil(4 * WORKERS).max(1);
    let (task, result) = (
        PREFIX + TASK_HEADER + 8 + 8 * chunk,
        PREFIX + RESULT_HEADER + 8 + 8 * chunk,
    );
    let mut engine = Engine::spawn(task + READ_AHEAD, result + READ_AHEAD)?;
    let items: Vec<i64> = (0..n as i64).collect();
    let start = Instant::now();
    let squares = (|| {
        let mut squares = vec![0; n];
        for (id, items) in items.chunks(chunk).enumerate() {
            engine.queue.push_back(chunk_task(id as u64, items));
            if id < WORKERS {
                engine.dispatch();
                engine.send()?;
            }
        }
        engine.run(&mut |payload| {
            let (header, values) = payload
                .split_at_checked(RESULT_HEADER + 8)
                .ok_or("a result frame shorter than its header")?;
            let at = word(header) as usize * chunk;
            let place = squares.get_mut(at..).ok_or("a result for no chunk")?;
            for (square, value) in place.iter_mut().zip(values.chunks_exact(8)) {
                *square = word(value);
            }
            Ok(())
        })?;
        Ok::<_, Box<dyn Error>>(squares)
    })();
    let elapsed = start.elapsed();
    engine.finish()?;
    let squares = squares?;
    check(
        squares.iter().zip(&items).all(|(&s, &x)| s == x * x),
        "map returned wrong squares",
    )?;
    Ok(elapsed)
}

/// `n` calls of `sq(i)`, one after another, as `Pool::apply`: two workers forked before
/// the timer (the pool gives every call to the first, which is idle each time); each call
/// writes one task frame (4 + 24 + 8 bytes) and reads one result frame (4 + 9 + 8). The
/// parent and the first worker wait as `waits` says; the idle second worker, as the pool's
/// does, spins where it may pay and then sleeps (blocks, with `Waits::Block`).
pub fn apply(n: usize, waits: Waits) -> Timed {
    let first = spawn_worker(&[], READ_AHEAD, READ_AHEAD, waits.reads(), waits.reads())?;
    let idle = match waits {
        Waits::Block => Reads::Blocking,
        Waits::Poll | Waits::Spin => Reads::spinning(),
    };
    let second = spawn_worker(&[&first], READ_AHEAD, READ_AHEAD, idle, waits.reads());
    let mut workers = match second {
        Ok(second) => vec![first, second],
        Err(e) => return finish(vec![first]).and(Err(e)),
    };
    let w = &mut workers[0];
    let (tasks, results) = (w.tasks_fd(), w.results.as_raw_fd());
    let start = Instant::now();
    let result = (0..n as u64).try_for_each(|i| {
        write_all(tasks, &one_task(i, i as i64))
            .then_some(())
            .ok_or("a worker ended")?;
        let result = w.frames.next(results).ok_or("a worker ended")?;
        check(
            word(result) == i as i64 && word_at(result, RESULT_HEADER) == (i * i) as i64,
            "apply returned a wrong square",
        )
    });
    let elapsed = start.elapsed();
    finish(workers)?;
    result?;
    Ok(elapsed)
}

/// `n` calls of `sq(i)` sent at once, then every result read, as `Pool::apply_async` and
/// `get`: two workers forked before the timer; each call queues one task frame (4 + 24 + 8
/// bytes) and does one round of the pool's work without waiting (hand out, write, read what
/// has come); then the parent waits for the rest. Tasks go to the workers by the pool's rule,
/// at most 64 in flight each, and each result (4 + 9 + 8 bytes) is written by its own write.
pub fn apply_async(n: usize) -> Timed {
    let mut engine = Engine::spawn(READ_AHEAD, READ_AHEAD)?;
    let start = Instant::now();
    let squares = (|| {
        let mut squares = vec![0; n];
        let mut record = |payload: &[u8]| {
            let square = squares
                .get_mut(word(payload) as usize)
                .ok_or("a result for no task")?;
            *square = word_at(payload, RESULT_HEADER);
            Ok(())
        };
        for i in 0..n as u64 {
            engine.queue.push_back(one_task(i, i as i64).to_vec());
            engine.dispatch();
            engine.send()?;
            engine.step(false, &mut record)?;
        }
        engine.run(&mut record)?;
        Ok::<_, Box<dyn Error>>(squares)
    })();
    let elapsed = start.elapsed();
    engine.finish()?;
    let squares = squares?;
    check(
        squares
            .iter()
            .enumerate()
            .all(|(i, &s)| s == (i * i) as i64),
        "apply_async returned wrong squares",
    )?;
    Ok(elapsed)
}

/// One producer, forked inside the timer, writes `n` frames of `(i, "hello")` into a
/// pipe, one write each; the parent reads them 64 KiB at a time and takes the frames one by
/// one, checking each. As `Queue`: a frame is 4 + 8 + 8 + 5 bytes (the `i64`, then the
/// `String` as a `u64` length and its bytes); the pipe keeps its 64 KiB and both its ends
/// are non-blocking; the writer sleeps in `poll` while the pipe is full; before each read,
/// the bytes of a frame not yet whole are moved to the front of the buffer. With `looking`,
/// the reader waits as `Queue::get` does ([`Reads::Looking`]: a `poll` that does not wait,
/// then a read); without, it sleeps in a blocking read. The producer is joined inside the
/// timer.
pub fn queue(n: usize, looking: bool) -> Timed {
    let (reader, writer) = os_pipe::pipe()?;
    set_nonblocking(writer.as_raw_fd())?;
    let reads = if looking {
        Reads::looking()
    } else {
        Reads::Blocking
    };
    if reads.nonblocking() {
        set_nonblocking(reader.as_raw_fd())?;
    }
    let (r, w) = (reader.as_raw_fd(), writer.as_raw_fd());
    let mut frames = Frames::new(READ_AHEAD, reads);
    frames.compact = true;
    let start = Instant::now();
    let producer = fork(move || {
        close([r]);
        for i in 0..n as i64 {
            if !write_all(w, &queue_item(i)) {
                return 0;
            }
        }
        0
    })?;
    drop(writer);
    let result = (0..n as i64).try_for_each(|i| {
        let item = frames.next(r).ok_or("the producer stopped early")?;
        check(
            item.len() == 21 && word(item) == i && word_at(item, 8) == 5 && &item[16..] == b"hello",
            "the queue lost or reordered a message",
        )
    });
    drop(reader);
    reap(producer)?;
    let elapsed = start.elapsed();
    result?;
    Ok(elapsed)
}

/// Two processes, forked inside the timer, each lock and unlock one mutex `n` times, and
/// are joined. As `Lock`: a robust, error-checking, process-shared pthread mutex at the start
/// of a `MAP_SHARED` mapping, made before the timer.
pub fn lock(n: usize) -> Timed {
    let shared = Shared::new(0)?;
    let mutex = shared.mutex();
    let start = Instant::now();
    start_and_join(2, || {
        for _ in 0..n {
            // SAFETY: `mutex` is initialised, in a mapping this child shares and never unmaps;
            // this thread takes it, then releases it.
            if unsafe {
                libc::pthread_mutex_lock(mutex) != 0 || libc::pthread_mutex_unlock(mutex) != 0
            } {
                return 1;
            }
        }
        0
    })?;
    Ok(start.elapsed())
}

/// As [`lock()`], but under the mutex each process adds 1 to an `i64` in shared memory; the
/// total must be `2n`. As `Value`: the `i64` is on a page of its own (a `Value` keeps it in
/// a mapping apart from its lock's), so the two share no cache line.
pub fn value(n: usize) -> Timed {
    let shared = Shared::new(8)?;
    let (mutex, counter) = (shared.mutex(), shared.data().cast::<i64>());
    let start = Instant::now();
    start_and_join(2, || {
        for _ in 0..n {
            // SAFETY: as in `lock`; the counter is 8 aligned bytes of the same shared mapping,
            // changed only by the thread that holds the mutex.
            unsafe {
                if libc::pthread_mutex_lock(mutex) != 0 {
                    return 1;
                }
                *counter += 1;
                if libc::pthread_mutex_unlock(mutex) != 0 {
                    return 1;
                }
            }
        }
        0
    })?;
    let elapsed = start.elapsed();
    // SAFETY: both children have ended; the counter is in the mapping `shared` keeps.
    let total = unsafe { counter.read() };
    check(
        total == 2 * n as i64,
        format!("the total is {total}, not {}", 2 * n),
    )?;
    Ok(elapsed)
}

/// A child, forked inside the timer, sets `n` items of a dict in a server process, one
/// request and one answer each, as `Manager`'s dict: the server is forked before the timer
/// and keeps the dict in a `HashMap`; a request is `Request::SetItem(0, Int(i), Int(i))`,
/// 4 + 32 bytes (three `u32` variant tags, the `u32` object id, two `i64`s), its answer
/// `Response::Done`, 4 + 4. The parent joins the child, then asks the server the dict's
/// length (`Request::Len(0)`, answered `Response::Len(n)`). The connection is a socketpair
/// the child inherits, where the workload's child connects to the server's socket: one
/// connect and accept fewer, in a run of thousands of round trips. Both sides wait as `waits`
/// says (the workload's client waits as [`Waits::Spin`]; its server spins on non-blocking
/// reads likewise, then sleeps in `poll` and reads).
/// The map is made for `n` items before the fork, so that the server never allocates: the
/// workload's dict grows as it fills, a few rehashes more.
pub fn manager(n: usize, waits: Waits) -> Timed {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two descriptors into `fds`, which owns them from here on.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } < 0
    {
        return Err(io::Error::last_os_error().into());
    }
    // SAFETY: the two descriptors are new and owned by nothing else.
    let (server_end, client_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let (s, c) = (server_end.as_raw_fd(), client_end.as_raw_fd());
    if waits.reads().nonblocking() {
        set_nonblocking(s)?;
        set_nonblocking(c)?;
    }
    let (mut server_frames, mut dict) = (
        Frames::new(READ_AHEAD, waits.reads()),
        HashMap::with_capacity(n),
    );
    let server = fork(move || {
        close([c]);
        while let Some(request) = server_frames.next(s) {
            let answered = match (word(request) as u32, request.len()) {
                (SET_ITEM, 32) => {
                    dict.insert(word_at(request, 12), word_at(request, 24));
                    write_all(s, &DONE)
                }
                (LEN, 8) => write_all(s, &len_answer(dict.len() as u64)),
                _ => return 1,
            };
            if !answered {
                return 0;
            }
        }
        0
    })?;
    drop(server_end);
    let mut frames = Frames::new(READ_AHEAD, waits.reads());
    let start = Instant::now();
    let result = start_and_join(1, || {
        for i in 0..n as i64 {
            if !write_all(c, &set_item(i)) || frames.next(c) != Some(&DONE[PREFIX..]) {
                return 1;
            }
        }
        0
    });
    let elapsed = start.elapsed();
    let len = result.and_then(|()| {
        write_all(c, &LEN_REQUEST)
            .then_some(())
            .ok_or("the server ended")?;
        let answer = frames.next(c).ok_or("the server ended")?;
        Ok(word_at(answer, 4))
    });
    drop(client_end);
    reap(server)?;
    let len = len?;
    check(
        len == n as i64,
        format!("the dict holds {len} items, not {n}"),
    )?;
    Ok(elapsed)
}

// The twins' messages, as the workspace encodes them (the tests below check that they are).

/// Copies `parts` one after another into `buf`; returns how many bytes that is.
fn put(buf: &mut [u8], parts: &[&[u8]]) -> usize {
    parts.iter().fold(0, |at, part| {
        buf[at..at + part.len()].copy_from_slice(part);
        at + part.len()
    })
}

/// The pool's task frame for `sq(x)`.
fn one_task(id: u64, x: i64) -> [u8; ONE_TASK] {
    let mut frame = [0; ONE_TASK];
    let len = (ONE_TASK - PREFIX) as u32;
    put(
        &mut frame,
        &[
            &len.to_le_bytes(),
            &id.to_le_bytes(),
            &CALL_ONE.to_le_bytes(),
            &[0; 8],
            &x.to_le_bytes(),
        ],
    );
    frame
}

/// The pool's task frame for a `map` chunk: `items` as a bincode `Vec<i64>`.
fn chunk_task(id: u64, items: &[i64]) -> Vec<u8> {
    let len = TASK_HEADER + 8 + 8 * items.len();
    let mut frame = vec![0; PREFIX + len];
    let count = items.len() as u64;
    let at = put(
        &mut frame,
        &[
            &(len as u32).to_le_bytes(),
            &id.to_le_bytes(),
            &CALL_CHUNK.to_le_bytes(),
            &[0; 8],
            &count.to_le_bytes(),
        ],
    );
    for (slot, x) in frame[at..].chunks_exact_mut(8).zip(items) {
        slot.copy_from_slice(&x.to_le_bytes());
    }
    frame
}

/// The queue's frame for `(i, "hello")`.
fn queue_item(i: i64) -> [u8; 25] {
    let mut frame = [0; 25];
    put(
        &mut frame,
        &[
            &21u32.to_le_bytes(),
            &i.to_le_bytes(),
            &5u64.to_le_bytes(),
            b"hello",
        ],
    );
    frame
}

/// The variant tags of `manager/src/protocol.rs`: `Request::SetItem` and `Request::Len`
/// (the third and fifth variants), `PyValue::Int` (the third).
const SET_ITEM: u32 = 2;
const LEN: u32 = 4;
const INT: u32 = 2;
/// `Response::Done` (the first variant), as a frame.
const DONE: [u8; 8] = [4, 0, 0, 0, 0, 0, 0, 0];
/// `Request::Len(0)`, as a frame.
const LEN_REQUEST: [u8; 12] = [8, 0, 0, 0, LEN as u8, 0, 0, 0, 0, 0, 0, 0];

/// `Request::SetItem(0, PyValue::Int(i), PyValue::Int(i))`, as a frame.
fn set_item(i: i64) -> [u8; 36] {
    let mut frame = [0; 36];
    let (tag, int) = (SET_ITEM.to_le_bytes(), INT.to_le_bytes());
    put(
        &mut frame,
        &[
            &32u32.to_le_bytes(),
            &tag,
            &0u32.to_le_bytes(),
            &int,
            &i.to_le_bytes(),
            &int,
            &i.to_le_bytes(),
        ],
    );
    frame
}

/// `Response::Len(len)` (the fourth variant), as a frame.
fn len_answer(len: u64) -> [u8; 16] {
    let mut frame = [0; 16];
    put(
        &mut frame,
        &[
            &12u32.to_le_bytes(),
            &3u32.to_le_bytes(),
            &len.to_le_bytes(),
        ],
    );
    frame
}

/// The little-endian `i64` at the start of `bytes` (0 if there are fewer than 8).
fn word(bytes: &[u8]) -> i64 {
    bytes
        .first_chunk::<8>()
        .map_or(0, |w| i64::from_le_bytes(*w))
}

/// The little-endian `i64` at `bytes[at..]` (0 if there are fewer than 8 there).
fn word_at(bytes: &[u8], at: usize) -> i64 {
    bytes.get(at..).map_or(0, word)
}

// The pool's two sides.

/// A pool worker, in its child: takes each task frame from `tasks` as it comes, squares its
/// argument (or each item of its chunk), and writes the result frame with one write, until
/// its task pipe ends. As `pool-map/src/worker.rs`'s `run`, without the trampoline.
fn worker(tasks: RawFd, results: RawFd, mut frames: Frames, mut out: Vec<u8>) -> i32 {
    while let Some(task) = frames.next(tasks) {
        let Some((header, args)) = task.split_first_chunk::<TASK_HEADER>() else {
            return 1;
        };
        let id = &header[..8];
        let len = match word(&header[8..]) as u64 {
            CALL_ONE => put(&mut out, &[&[0; 4], id, &[RETURNED], &square(args)]),
            CALL_CHUNK => {
                let start = put(&mut out, &[&[0; 4], id, &[RETURNED], &args[..8]]);
                let items = args[8..].chunks_exact(8);
                let squares = out[start..start + items.len() * 8].chunks_exact_mut(8);
                squares
                    .zip(items)
                    .for_each(|(s, x)| s.copy_from_slice(&square(x)));
                start + args.len() - 8
            }
            _ => return 1,
        };
        out[..PREFIX].copy_from_slice(&((len - PREFIX) as u32).to_le_bytes());
        if !write_all(results, &out[..len]) {
            return 0;
        }
    }
    0
}

fn square(x: &[u8]) -> [u8; 8] {
    let x = word(x);
    x.wrapping_mul(x).to_le_bytes()
}

/// The parent's ends of a worker's pipes, and what the parent knows of it.
struct Worker {
    pid: libc::pid_t,
    tasks: PipeWriter,
    results: PipeReader,
    frames: Frames,
    /// Task frames given to it and not written whole yet; `offset` bytes of the first are.
    unsent: VecDeque<Vec<u8>>,
    offset: usize,
    /// Tasks given to it whose result has not come.
    in_flight: usize,
}

impl Worker {
    fn tasks_fd(&self) -> RawFd {
        self.tasks.as_raw_fd()
    }

    /// Writes as much of the unsent tasks as its non-blocking pipe takes now.
    fn send(&mut self) -> Res<()> {
        let fd = self.tasks_fd();
        while let Some(task) = self.unsent.front() {
            let rest = &task[self.offset..];
            // SAFETY: writes at most `rest.len()` bytes from `rest`, which is alive.
            let wrote = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
            if wrote < 0 {
                match errno() {
                    libc::EAGAIN => return Ok(()),
                    libc::EINTR => continue,
                    _ => return Err(io::Error::last_os_error().into()),
                }
            }
            self.offset += wrote as usize;
            if self.offset == task.len() {
                self.unsent.pop_front();
                self.offset = 0;
            }
        }
        Ok(())
    }

    /// Reads once what the worker sent, and hands each whole result frame's payload to
    /// `result`: false when nothing was there yet.
    fn receive(&mut self, result: &mut impl FnMut(&[u8]) -> Res<()>) -> Res<bool> {
        match self.frames.fill(self.results.as_raw_fd()) {
            0 => return Err("a worker ended".into()),
            1.. => {}
            _ if matches!(errno(), libc::EAGAIN | libc::EINTR) => return Ok(false),
            _ => return Err(io::Error::last_os_error().into()),
        }
        while let Some(payload) = self.frames.take() {
            result(payload)?;
            self.in_flight = self
                .in_flight
                .checked_sub(1)
                .ok_or("a result for no task")?;
        }
        Ok(true)
    }
}

/// Forks a pool worker with a task pipe and a result pipe, enlarged as the pool's are, whose
/// buffers are `task_buf` and `result_buf` bytes: the worker reads its tasks as
/// `worker_reads` says, and the parent its results as `parent_reads` does (each end made non-blocking where its
/// reader needs it). The child closes the parent's ends of its pipes and of `others`'.
fn spawn_worker(
    others: &[&Worker],
    task_buf: usize,
    result_buf: usize,
    worker_reads: Reads,
    parent_reads: Reads,
) -> Res<Worker> {
    let (tasks_r, tasks_w) = os_pipe::pipe()?;
    let (results_r, results_w) = os_pipe::pipe()?;
    let (tr, rw) = (tasks_r.as_raw_fd(), results_w.as_raw_fd());
    for fd in [tasks_w.as_raw_fd(), rw] {
        // SAFETY: F_SETPIPE_SZ on a descriptor this process owns; it touches no memory, and
        // where it fails the pipe keeps its size, as the pool's does.
        unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, PIPE_SIZE as libc::c_int) };
    }
    set_nonblocking(tasks_w.as_raw_fd())?;
    if worker_reads.nonblocking() {
        set_nonblocking(tr)?;
    }
    if parent_reads.nonblocking() {
        set_nonblocking(results_r.as_raw_fd())?;
    }
    let mut parents_ends = vec![tasks_w.as_raw_fd(), results_r.as_raw_fd()];
    parents_ends.extend(
        others
            .iter()
            .flat_map(|w| [w.tasks_fd(), w.results.as_raw_fd()]),
    );
    let (frames, out) = (Frames::new(task_buf, worker_reads), vec![0; result_buf]);
    let pid = fork(move || {
        parents_ends.iter().for_each(|&fd| close([fd]));
        worker(tr, rw, frames, out)
    })?;
    Ok(Worker {
        pid,
        tasks: tasks_w,
        results: results_r,
        frames: Frames::new(result_buf, parent_reads),
        unsent: VecDeque::new(),
        offset: 0,
        in_flight: 0,
    })
}

/// Closes the parent's ends of every worker's pipes, so that they all exit (their task
/// pipes end, or their writes fail), and reaps them.
fn finish(workers: Vec<Worker>) -> Res<()> {
    let pids: Vec<_> = workers.iter().map(|w| w.pid).collect();
    drop(workers);
    pids.into_iter().map(reap).fold(Ok(()), Result::and)
}

/// The parent's side of a pool, as `pool-map/src/engine.rs` works it: task frames wait in a
/// queue and go to the workers by the pool's rule, are written as far as the non-blocking
/// pipes take them, and results are read as they come: a wait spins where that may pay
/// ([`Backoff`]), reading each worker that owes results, or polling while tasks wait to be
/// written, then sleeps in `poll`. No task ids are kept, no deaths looked for.
struct Engine {
    workers: Vec<Worker>,
    queue: VecDeque<Vec<u8>>,
    pollfds: Vec<libc::pollfd>,
    backoff: Backoff,
}

impl Engine {
    /// Forks two workers, their buffers `task_buf` and `result_buf` bytes, which wait for
    /// tasks as the pool's do ([`Reads::Spinning`]).
    fn spawn(task_buf: usize, result_buf: usize) -> Res<Engine> {
        let first = spawn_worker(&[], task_buf, result_buf, Reads::spinning(), Reads::Polling)?;
        let second = spawn_worker(
            &[&first],
            task_buf,
            result_buf,
            Reads::spinning(),
            Reads::Polling,
        );
        let workers = match second {
            Ok(second) => vec![first, second],
            Err(e) => return finish(vec![first]).and(Err(e)),
        };
        Ok(Engine {
            workers,
            queue: VecDeque::new(),
            pollfds: Vec::new(),
            backoff: Backoff::new(),
        })
    }

    /// Gives queued tasks to the workers: one each while few wait, up to
    /// `1 + queued / (2 x workers)` each (at most 64) while many do, in rounds.
    fn dispatch(&mut self) {
        let most = (1 + self.queue.len() / (2 * self.workers.len())).min(MOST_IN_FLIGHT);
        for round in 1..=most {
            for w in &mut self.workers {
                if w.in_flight < round {
                    let Some(task) = self.queue.pop_front() else {
                        return;
                    };
                    w.unsent.push_back(task);
                    w.in_flight += 1;
                }
            }
        }
    }

    fn send(&mut self) -> Res<()> {
        self.workers.iter_mut().try_for_each(Worker::send)
    }

    /// One round: `poll` the result pipes, and the task pipes with bytes to go (without
    /// sleeping if not `wait`; else spinning for a while where that may pay, then sleeping),
    /// then write where there is room and read where results are. While nothing waits to
    /// be written, the spin reads each worker that owes results instead of polling, as the
    /// pool's parent does (a read, where a `poll` and then a read made two system calls).
    /// As the pool's, a round that does not wait still looks once as a spin would.
    fn step(&mut self, wait: bool, result: &mut impl FnMut(&[u8]) -> Res<()>) -> Res<()> {
        let all_sent = self.workers.iter().all(|w| w.unsent.is_empty());
        self.pollfds.clear();
        for w in &self.workers {
            self.pollfds
                .push(pollfd(w.results.as_raw_fd(), libc::POLLIN));
            if !w.unsent.is_empty() {
                self.pollfds.push(pollfd(w.tasks_fd(), libc::POLLOUT));
            }
        }
        let mut this = Wait::Begun;
        loop {
            let spinning = self.backoff.again(&mut this);
            if spinning && all_sent {
                let mut got = false;
                for w in self.workers.iter_mut().filter(|w| w.in_flight > 0) {
                    got |= w.receive(result)?;
                }
                if got {
                    self.backoff.got(&mut this);
                    return Ok(());
                }
            } else {
                let timeout = if wait && !spinning { -1 } else { 0 };
                if poll(&mut self.pollfds, timeout)? > 0 {
                    self.backoff.got(&mut this);
                    break;
                }
            }
            if !wait {
                return Ok(());
            }
        }
        for p in &self.pollfds {
            let Some(w) = self.workers.iter_mut().find(|w| {
                p.revents != 0 && (p.fd == w.tasks_fd() || p.fd == w.results.as_raw_fd())
            }) else {
                continue;
            };
            if p.events == libc::POLLOUT {
                w.send()?;
            } else {
                w.receive(result)?;
            }
        }
        Ok(())
    }

    /// Runs until every task is done.
    fn run(&mut self, result: &mut impl FnMut(&[u8]) -> Res<()>) -> Res<()> {
        while !self.queue.is_empty() || self.workers.iter().any(|w| w.in_flight > 0) {
            self.dispatch();
            self.send()?;
            self.step(true, result)?;
        }
        Ok(())
    }

    fn finish(self) -> Res<()> {
        finish(self.workers)
    }
}

// Frames from a descriptor.

/// Bytes read from a descriptor and not yet taken as frames, as `FrameBuf` keeps them, in a
/// buffer made once (before a fork, for a child), large enough for the largest frame.
struct Frames {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// How its reader waits for bytes that have not come.
    reads: Reads,
    /// Whether each read first moves the bytes waiting to the front of the buffer, as the
    /// queue's does; otherwise, as `FrameBuf`'s, only when the buffer's end is reached.
    compact: bool,
}

impl Frames {
    fn new(size: usize, reads: Reads) -> Frames {
        Frames {
            buf: vec![0; size],
            start: 0,
            end: 0,
            reads,
            compact: false,
        }
    }

    /// The payload length of the next frame, if all of it is here.
    fn whole(&self) -> Option<usize> {
        let have = &self.buf[self.start..self.end];
        let len = u32::from_le_bytes(*have.first_chunk::<PREFIX>()?) as usize;
        (have.len() >= PREFIX + len).then_some(len)
    }

    /// The next frame's payload, if all of it is here.
    fn take(&mut self) -> Option<&[u8]> {
        let len = self.whole()?;
        let at = self.start + PREFIX;
        self.start = at + len;
        Some(&self.buf[at..at + len])
    }

    /// One read into the buffer, after the bytes waiting: what read(2) returned. With
    /// `now`, a read that does not wait even on a blocking descriptor (`preadv2` with
    /// `RWF_NOWAIT`, as `common::fd::read_now`).
    fn fill_with(&mut self, fd: RawFd, now: bool) -> isize {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        } else if self.end == self.buf.len() || (self.compact && self.start > 0) {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        let room = &mut self.buf[self.end..];
        let got = if now {
            let iov = libc::iovec {
                iov_base: room.as_mut_ptr().cast(),
                iov_len: room.len(),
            };
            // SAFETY: `iov` describes `room`, writable for its whole length while the call
            // runs; offset -1 reads at the current position, as read(2) does.
            unsafe { libc::preadv2(fd, &iov, 1, -1, libc::RWF_NOWAIT) }
        } else {
            // SAFETY: reads at most `room.len()` bytes into `room`, which is alive.
            unsafe { libc::read(fd, room.as_mut_ptr().cast(), room.len()) }
        };
        self.end += got.max(0) as usize;
        got
    }

    /// One read into the buffer, after the bytes waiting: what read(2) returned.
    fn fill(&mut self, fd: RawFd) -> isize {
        self.fill_with(fd, false)
    }

    /// Waits for the next frame and returns its payload: `None` at the end of the stream, or
    /// if reading fails.
    fn next(&mut self, fd: RawFd) -> Option<&[u8]> {
        let mut wait = Wait::Begun;
        while self.whole().is_none() {
            let mut now = false;
            let got = match &mut self.reads {
                Reads::Blocking | Reads::Polling => self.fill(fd),
                Reads::Spinning(backoff) => {
                    now = backoff.again(&mut wait);
                    self.fill_with(fd, now)
                }
                // A look without waiting, and a read only if something is there; when the
                // wait may not spin, a sleep until something is, and the look again.
                Reads::Looking(backoff) => match poll(&mut [pollfd(fd, libc::POLLIN)], 0) {
                    Ok(0) => {
                        if !backoff.again(&mut wait)
                            && poll(&mut [pollfd(fd, libc::POLLIN)], -1).is_err()
                        {
                            return None;
                        }
                        continue;
                    }
                    Ok(_) => self.fill(fd),
                    Err(_) => return None,
                },
            };
            match got {
                0 => return None,
                1.. => {
                    if let Reads::Spinning(backoff) | Reads::Looking(backoff) = &mut self.reads {
                        backoff.got(&mut wait);
                    }
                }
                _ => match errno() {
                    libc::EINTR => {}
                    // Nothing yet, on a non-blocking descriptor or a read that did not wait.
                    libc::EAGAIN => std::hint::spin_loop(),
                    // No reads that do not wait here (as `common::fd::read_now` finds them
                    // refused): the reader blocks from now on, as the workspace's then polls.
                    libc::EOPNOTSUPP | libc::EINVAL | libc::ENOSYS | libc::EPERM | libc::EACCES
                        if now =>
                    {
                        self.reads = Reads::Blocking;
                    }
                    _ => return None,
                },
            }
        }
        self.take()
    }
}

// Processes, descriptors, shared memory.

/// Forks a child that runs `child` and then `_exit`s with what it returned (101 if it
/// panicked: a twin's child never unwinds into its parent's code).
fn fork(child: impl FnOnce() -> i32) -> Res<libc::pid_t> {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the bench runs no other thread when it forks (a test runs one twin at a
    // time, but beside libtest's threads: there, glibc's fork takes malloc's locks across
    // the fork, so the child may still free what it owns). The child takes no other lock,
    // allocates nothing, and ends with `_exit`.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error().into()),
        0 => {
            // SAFETY: prctl and getppid take integers: the kernel kills the child when the
            // bench dies (a manager's client or a lock's child would otherwise run on), and
            // a bench already gone (it is no longer the parent) ends it at once.
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
            }
            let code = panic::catch_unwind(AssertUnwindSafe(child)).unwrap_or(101);
            // SAFETY: ends the child at once, running none of the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        pid => Ok(pid),
    }
}

/// waitpid for `pid`, which must have exited with 0.
fn reap(pid: libc::pid_t) -> Res<()> {
    let mut status = 0;
    // SAFETY: waitpid writes only `status`.
    while unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        if errno() != libc::EINTR {
            return Err(io::Error::last_os_error().into());
        }
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        Err(format!("a twin's child ended with status {status:#x}").into())
    }
}

/// Forks `processes` children that each run `child`, and reaps them all: the workload's
/// `start_and_join`.
fn start_and_join(processes: usize, mut child: impl FnMut() -> i32) -> Res<()> {
    let mut pids = Vec::with_capacity(processes);
    let forked = (0..processes).try_for_each(|_| fork(&mut child).map(|pid| pids.push(pid)));
    pids.into_iter().map(reap).fold(forked, Result::and)
}

/// In a child: closes the parent's ends of its pipes, so that its reads reach the end and
/// its writes fail once the parent is gone.
fn close<const N: usize>(fds: [RawFd; N]) {
    for fd in fds {
        // SAFETY: the descriptor is this child's copy of one the parent owns; the child
        // never uses it, and closing it affects only the child.
        unsafe { libc::close(fd) };
    }
}

/// Writes all of `bytes`: false if the descriptor failed (its reader has gone). On a
/// non-blocking descriptor that is full, sleeps in `poll` until there is room.
fn write_all(fd: RawFd, mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        // SAFETY: writes at most `bytes.len()` bytes from `bytes`, which is alive.
        let wrote = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if wrote >= 0 {
            bytes = &bytes[wrote as usize..];
        } else if errno() == libc::EAGAIN {
            if poll(&mut [pollfd(fd, libc::POLLOUT)], -1).is_err() {
                return false;
            }
        } else if errno() != libc::EINTR {
            return false;
        }
    }
    true
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor this process owns; it touches no memory.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// poll(2): how many of `fds` are ready (0 also when a signal came).
fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    // SAFETY: `fds` is a writable array of `fds.len()` pollfds, alive for the call.
    match unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) } {
        n @ 0.. => Ok(n as usize),
        _ if errno() == libc::EINTR => Ok(0),
        _ => Err(io::Error::last_os_error()),
    }
}

/// A `MAP_SHARED` anonymous mapping holding a mutex made as `Lock::new` makes it (robust,
/// error-checking, process-shared), and, a page further on, `data` bytes.
struct Shared {
    memory: *mut libc::c_void,
    size: usize,
    page: usize,
}

impl Shared {
    fn new(data: usize) -> Res<Shared> {
        // SAFETY: sysconf reads a constant of the system.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let size = page + data;
        // SAFETY: a new anonymous shared mapping of `size` bytes, where the kernel chooses;
        // failure is checked below.
        let memory = unsafe {
            libc::mmap(
                ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if memory == libc::MAP_FAILED {
            return Err(io::Error::last_os_error().into());
        }
        let shared = Shared { memory, size, page };
        // SAFETY: the mapping is new, zeroed, page-aligned and larger than a mutex, and no
        // one else uses it yet; `attr` is initialised before it is used and destroyed after.
        let rc = unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            libc::pthread_mutexattr_init(&mut attr);
            libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
            libc::pthread_mutexattr_settype(&mut attr, libc::PTHREAD_MUTEX_ERRORCHECK);
            libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST);
            let rc = libc::pthread_mutex_init(shared.mutex(), &attr);
            libc::pthread_mutexattr_destroy(&mut attr);
            rc
        };
        match rc {
            0 => Ok(shared),
            rc => Err(io::Error::from_raw_os_error(rc).into()),
        }
    }

    fn mutex(&self) -> *mut libc::pthread_mutex_t {
        self.memory.cast()
    }

    /// The `data` bytes, on the page after the mutex's.
    fn data(&self) -> *mut u8 {
        // SAFETY: the mapping is `page + data` bytes long.
        unsafe { self.memory.cast::<u8>().add(self.page) }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: the mapping is this value's, and no child that used it is left (each twin
        // reaps its children first); like `Lock`, the mutex is unmapped, not destroyed.
        unsafe { libc::munmap(self.memory, self.size) };
    }
}

fn check(ok: bool, what: impl Into<String>) -> Res<()> {
    if ok { Ok(()) } else { Err(what.into().into()) }
}

#[cfg(test)]
mod tests {
    use std::sync::{Mutex, PoisonError};

    use common::PyValue;
    use common::frame::encode;

    use super::*;

    /// One twin at a time: a child forked by one would keep another's pipes open.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

    fn run(twin: impl FnOnce() -> Timed) {
        let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
        twin().unwrap();
    }

    /// The workspace's frame for a value.
    macro_rules! encoded {
        ($value:expr) => {{
            let mut buf = Vec::new();
            encode(&mut buf, $value).unwrap();
            buf
        }};
    }

    #[test]
    fn messages_are_the_workspaces() {
        assert_eq!(
            queue_item(7).to_vec(),
            encoded!(&(7i64, "hello".to_string()))
        );
        // A task frame's arguments, and a result frame's value, are bincode after a header.
        assert_eq!(
            one_task(3, -5)[PREFIX + TASK_HEADER..],
            encoded!(&-5i64)[PREFIX..]
        );
        assert_eq!(
            ONE_RESULT,
            PREFIX + RESULT_HEADER + encoded!(&25i64).len() - PREFIX
        );
        let items = [1i64, 2, 3];
        assert_eq!(
            chunk_task(0, &items)[PREFIX + TASK_HEADER..],
            encoded!(&items.to_vec())[PREFIX..]
        );
        // A variant's tag is a u32, as the tags these tuples begin with are.
        let set = (SET_ITEM, 0u32, PyValue::Int(9), PyValue::Int(9));
        assert_eq!(set_item(9).to_vec(), encoded!(&set));
        assert_eq!(LEN_REQUEST.to_vec(), encoded!(&(LEN, 0u32)));
        assert_eq!(DONE.to_vec(), encoded!(&0u32));
        assert_eq!(len_answer(5).to_vec(), encoded!(&(3u32, 5u64)));
    }

    #[test]
    fn process_forks_and_reaps() {
        run(|| process(20));
    }

    #[test]
    fn map_squares_every_item() {
        run(|| map(2_000));
        run(|| map(3));
        run(|| map(0));
    }

    #[test]
    fn apply_squares_each_call() {
        for waits in [Waits::Block, Waits::Poll, Waits::Spin] {
            run(|| apply(200, waits));
        }
    }

    #[test]
    fn apply_async_squares_every_call() {
        run(|| apply_async(2_000));
    }

    #[test]
    fn queue_passes_every_message_in_order() {
        run(|| queue(20_000, false));
        run(|| queue(20_000, true));
    }

    #[test]
    fn lock_and_value_count_every_turn() {
        run(|| lock(2_000));
        run(|| value(2_000));
    }

    #[test]
    fn manager_sets_every_item() {
        for waits in [Waits::Block, Waits::Poll, Waits::Spin] {
            run(|| manager(200, waits));
        }
    }
}
