//! The worker's side of a pool: what travels on its two pipes, and the loop it runs.
//!
//! A task frame's payload is the task id (`u64`), the offsets in the executable of a
//! trampoline and of the user's function (`u64` each, little-endian; see
//! `common::start::code_offset`), then the bincode arguments. A result
//! frame's payload is the task id, a kind byte ([`RETURNED`] or [`PANICKED`]), then the
//! bincode result or panic message.

use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::panic::{self, AssertUnwindSafe};

use os_pipe::{PipeReader, PipeWriter};
use serde::Serialize;
use serde::de::DeserializeOwned;

use common::Private;
use common::frame::{self, FrameBuf, FrameError};
use common::start::code_address;

use crate::started::Started;

/// The result's kind byte: `f` returned; a bincode value follows.
pub(crate) const RETURNED: u8 = 0;
/// The result's kind byte: `f` panicked, or its arguments did not decode; a message follows.
pub(crate) const PANICKED: u8 = 1;

const HEADER: usize = 24;

/// Decodes the arguments, calls `f` on them, and appends the encoded result to `out`;
/// `Err` says why the arguments or the result would not go (a panic is caught around it).
/// One is made per argument and result type.
pub(crate) type Trampoline = fn(f: usize, args: &[u8], out: &mut Vec<u8>) -> Result<(), String>;

/// Appends a task frame for `call(f, args)` to `buf`.
pub(crate) fn encode_task<A: Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    id: u64,
    call: u64,
    f: u64,
    args: &A,
) -> Result<(), FrameError> {
    // Room for the arguments as large as they are in memory, and a length (an `i64` encodes
    // in its 8 bytes, a slice adds its length's 8), at most a frame's: a chunk of `map` grown
    // as it encoded was copied at each doubling, and its new pages faulted each time. With
    // this, `Pool::map` of 200,000 ints took 5% less CPU and ran 9% faster (medians of 100
    // maps, six runs of each build, alternating).
    buf.reserve(frame::PREFIX + HEADER + 8 + size_of_val(args).min(frame::MAX_FRAME));
    let start = frame::start_frame(buf);
    buf.extend_from_slice(&id.to_le_bytes());
    buf.extend_from_slice(&call.to_le_bytes());
    buf.extend_from_slice(&f.to_le_bytes());
    if let Err(e) = frame::encode_into(buf, args) {
        buf.truncate(start);
        return Err(e);
    }
    frame::end_frame(buf, start)?;
    // A value can be far larger in memory than encoded (an empty fixed-capacity buffer, an
    // enum with one large variant): the room it left unused is given back, so that a task
    // waiting in the queue holds no more than its frame.
    if buf.capacity() - buf.len() > buf.len() / 4 {
        buf.shrink_to_fit();
    }
    Ok(())
}

/// Splits a result payload into (task id, kind, value bytes).
pub(crate) fn parse_result(payload: &[u8]) -> Result<(u64, u8, &[u8]), FrameError> {
    let (id, rest) = payload
        .split_first_chunk::<8>()
        .ok_or_else(|| FrameError::Decode("result frame shorter than its header".into()))?;
    let (&kind, value) = rest
        .split_first()
        .ok_or_else(|| FrameError::Decode("result frame without a kind".into()))?;
    Ok((u64::from_le_bytes(*id), kind, value))
}

/// Calls one `f(A) -> R`: `apply` and `apply_async` send this.
pub(crate) fn call_one<A: DeserializeOwned, R: Serialize>(
    f: usize,
    args: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let arg: A = frame::decode(args).map_err(|e| format!("arguments: {e}"))?;
    // SAFETY: `f` is the address, in this process, of an `fn(A) -> R`: the pool took its
    // offset in the executable (`code_offset`) and sent it with this very trampoline, made
    // for A and R, and `run` turned it back into an address with `code_address`. This worker
    // runs the same executable file as the pool (forked from it, or started from it by
    // spawn or the fork server, which checked the file), so the offset names the same
    // function here.
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> R>(f) };
    frame::encode_into(out, &f(arg)).map_err(|e| format!("result: {e}"))
}

/// Calls `f` on each item of a chunk, in order: `map` sends this. The results go back as
/// one `Vec<R>`.
pub(crate) fn call_chunk<A: DeserializeOwned, R: Serialize>(
    f: usize,
    args: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let items: Vec<A> = frame::decode(args).map_err(|e| format!("arguments: {e}"))?;
    // SAFETY: as in `call_one`: the address of an `fn(A) -> R` of the pool's executable.
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> R>(f) };
    let results: Vec<R> = items.into_iter().map(f).collect();
    frame::encode_into(out, &results).map_err(|e| format!("result: {e}"))
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-string payload".to_string());
    // Dropping a payload can panic again; the message is all that is needed.
    std::mem::forget(payload);
    message
}

/// What a worker process runs, by any start method: its two pipes, and the word where it
/// says which task it began (`started.rs`), come as `fds`.
pub(crate) fn entry(_: &[u8], fds: Vec<OwnedFd>) -> i32 {
    let Ok([tasks, results, started]) = <[OwnedFd; 3]>::try_from(fds) else {
        let _ = writeln!(
            io::stderr(),
            "Error: a pool worker starts with its two pipes and a shared word"
        );
        return 2;
    };
    // Mapped, the file's descriptor is needed no more: closed, so that processes the tasks
    // start do not inherit it.
    let started = match Started::map(&started) {
        Ok(mapped) => {
            drop(started);
            mapped
        }
        Err(e) => {
            common::error_line(format_args!("{e}"));
            return 1;
        }
    };
    match run(PipeReader::from(tasks), PipeWriter::from(results), &started) {
        Ok(()) => 0,
        Err(e) => {
            common::error_line(format_args!("{e:?}"));
            1
        }
    }
}

/// The worker process: runs tasks until its task pipe ends, then returns.
///
/// Each result is written as soon as its task returns, before the next task starts: a
/// worker that dies (killed, or `f` exits) loses no result of a task that returned. Before
/// any code of the caller's runs for a task, the worker says it began it (`started`): the
/// pool then knows whether the first task whose result did not come was running.
pub(crate) fn run(
    tasks: PipeReader,
    results: PipeWriter,
    started: &Started,
) -> Result<(), FrameError> {
    // Its own ends, so that a process `f` starts does not keep them open: the pool would
    // not see this worker's end while that process lives.
    let (tasks, results) = (Private::new(tasks)?, Private::new(results)?);
    let (Some(mut tasks), Some(mut results)) = (tasks.get(), results.get()) else {
        return Ok(());
    };
    let mut frames = FrameBuf::new();
    let mut out = Vec::new();
    let mut told_stdout = false;
    started.ready();
    loop {
        let Some(payload) = frames.read_frame(&mut tasks)? else {
            return Ok(());
        };
        let (header, args) = payload
            .split_first_chunk::<HEADER>()
            .ok_or_else(|| FrameError::Decode("task frame shorter than its header".into()))?;
        let word = |i: usize| {
            let mut bytes = [0; 8];
            bytes.copy_from_slice(&header[i * 8..i * 8 + 8]);
            u64::from_le_bytes(bytes)
        };
        let (id, call, f) = (word(0), code_address(word(1)), code_address(word(2)));
        // SAFETY: `call` is the address of a `Trampoline`: its offset was written by
        // `encode_task`, in the process that started this worker, on a pipe only the pool
        // writes (its ends are the pool's own, `Private`; code of the program that opens it
        // again through `/proc/self/fd` and writes a frame of its making could name any
        // address here, as code that writes `/proc/self/mem` can change any: both are
        // outside what Rust's guarantees cover); the same executable file, as in `call_one`.
        let call = unsafe { std::mem::transmute::<usize, Trampoline>(call) };
        let start = frame::start_frame(&mut out);
        out.extend_from_slice(&id.to_le_bytes());
        let kind_at = out.len();
        out.push(RETURNED);
        // A panic anywhere in the task (in `f`, or in decoding its arguments or encoding its
        // result, which serde impls of the caller's types do) fails the task only.
        started.begin(id);
        let called = panic::catch_unwind(AssertUnwindSafe(|| call(f, args, &mut out)));
        if let Err(message) = called.unwrap_or_else(|panic| Err(panic_message(panic))) {
            out.truncate(kind_at);
            out.push(PANICKED);
            frame::encode_into(&mut out, &message)?;
        }
        if let Err(too_large) = frame::end_frame(&mut out, start) {
            // end_frame took the frame out again; the caller learns why instead.
            let start = frame::start_frame(&mut out);
            out.extend_from_slice(&id.to_le_bytes());
            out.push(PANICKED);
            frame::encode_into(&mut out, &format!("result: {too_large}"))?;
            frame::end_frame(&mut out, start)?;
        }
        // What f printed is on its way before its result is. A stdout that takes nothing
        // (a full disk, a closed pipe) loses that output, not the result: it is said once.
        if let Err(e) = io::stdout().flush() {
            if !told_stdout {
                told_stdout = true;
                common::error_line(format_args!("write(stdout) in a pool worker: {e}"));
            }
        }
        match results.write_all(&out) {
            Ok(()) => {}
            // The pool's end is closed: its owner has ended (and this worker is about to be
            // killed with it), or dropped the pool. No one is left to tell.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(common::Error::os("write", e).into()),
        }
        out.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serializer;

    /// 64 KiB in memory, one byte encoded: a fixed-capacity buffer with nothing in it.
    struct Empty(#[allow(dead_code)] [u8; 64 << 10]);

    impl Serialize for Empty {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_u8(0)
        }
    }

    #[test]
    fn a_task_frame_keeps_no_room_its_arguments_took_in_memory() {
        let items: Vec<Empty> = (0..16).map(|_| Empty([0; 64 << 10])).collect();
        let mut frame = Vec::new();
        encode_task(&mut frame, 1, 2, 3, &items[..]).unwrap();
        assert_eq!(frame.len(), frame::PREFIX + HEADER + 8 + 16);
        assert!(
            frame.capacity() <= frame.len() + frame.len() / 4,
            "a frame of {} bytes keeps {} (its arguments take {} in memory)",
            frame.len(),
            frame.capacity(),
            size_of_val(&items[..])
        );
    }
}
