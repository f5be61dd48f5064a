//! Beyond the article: Python's three start methods, and a [`Process`] that runs a function
//! by any of them. The program, `src/main.rs`, is below; its Python original is
//! `python/start_methods.py`.
//!
//! # The three methods
//!
//! - **fork**: the child is a copy of the parent, made by `fork(2)`. It sees the parent's
//!   variables as they were, starts at once, and is the default on Linux up to Python 3.13.
//!   Its trap: a program with threads. A thread may hold a lock (malloc's, stdout's, any
//!   `Mutex`) at the instant of `fork`; the child gets the lock held, and no thread to
//!   release it, so it may hang on its first `println!`. So [`common::Process`] refuses to
//!   fork while other threads run, and Python 3.12 warns.
//! - **spawn**: the child is a fresh run of the same executable. It inherits no lock and no
//!   variable: what it needs travels to it, serialized. Python re-imports the main module
//!   (as `__mp_main__`) and calls the function by name; here, the child is told by its first
//!   argument, `--multiprocessing-fork`, to run a function before `main`, which it reads from
//!   its stdin: the function's offset in the executable and the arguments, as bincode.
//! - **forkserver**: a server process is spawned once, while nothing else runs in it, and
//!   forks a child for each request. The children are forks of a process with one thread,
//!   so they are safe, and cheaper than a spawn; their parent is the server, not the
//!   program. Python 3.14 made this the default on Linux.
//!
//! spawn and forkserver work in a program with threads: a pool in a test (libtest runs each
//! test in a thread), or beside an async runtime. See `tests/threads.rs`.
//!
//! # Where the mechanism lives
//!
//! In `common/src/start.rs` (with `start/child.rs`, what runs before `main`, and
//! `start/server.rs`, the fork server): the pool of section 1 starts its workers by any of
//! these methods (`Pool::with_context`), and a section may use only `common` and earlier
//! sections, never a later one. This crate gives them Python's shape: [`get_context`], and
//! a [`Process`] whose target is a function and its arguments.
//!
//! # The program
//!
//! `cargo run -p start-methods` runs `src/main.rs`:
//!
#![doc = concat!("```rust,ignore\n", include_str!("main.rs"), "```")]

use std::os::fd::OwnedFd;

use serde::Serialize;
use serde::de::DeserializeOwned;

use common::start::{Child, code_address, code_offset};
pub use common::start::{Context, Method};
use common::{Error, ExitStatus, Outcome, frame};

/// Python's `multiprocessing.get_context(method)`: where [`Process`]es are started from.
/// For forkserver, this starts the server; it ends when the context, its clones and the
/// processes started from them are dropped.
pub fn get_context(method: Method) -> Result<Context, Error> {
    Context::new(method)
}

/// The three methods in Python's order (`fork`, `spawn`, `forkserver`), or only the one
/// named.
pub fn methods(only: Option<&str>) -> impl Iterator<Item = Method> {
    Method::ALL
        .into_iter()
        .filter(move |m| only.is_none_or(|name| name == m.name()))
}

/// A process that will run `target(args)`: Python's `ctx.Process(target=f, args=(...))`.
///
/// The target is a function, not a closure: under spawn and forkserver, nothing of this
/// process's memory reaches the child but the arguments, which go as bincode. For several
/// arguments, pass a tuple. The child's exit code is the target's [`Outcome`]: 0 for `()`,
/// 1 for an `Err`, 101 after a panic.
pub struct Process {
    context: Context,
    entry: common::start::Entry,
    request: Option<Vec<u8>>,
    child: Option<Child>,
}

impl Process {
    /// A process that will run `target(args)`, started from `context`.
    pub fn new<A, R>(context: &Context, target: fn(A) -> R, args: A) -> Result<Process, Error>
    where
        A: Serialize + DeserializeOwned,
        R: Outcome,
    {
        let mut request = code_offset(target as usize)?.to_le_bytes().to_vec();
        frame::encode_into(&mut request, &args)
            .map_err(|e| Error::os("encode(args)", std::io::Error::other(e)))?;
        Ok(Process {
            context: context.clone(),
            entry: run_target::<A, R>,
            request: Some(request),
            child: None,
        })
    }

    /// Starts the child: Python's `p.start()`.
    pub fn start(&mut self) -> Result<(), Error> {
        let request = self.request.take().ok_or(Error::AlreadyStarted)?;
        self.child = Some(self.context.start(self.entry, request, Vec::new())?);
        Ok(())
    }

    /// Waits for the child to end: Python's `p.join()`.
    pub fn join(&mut self) -> Result<ExitStatus, Error> {
        self.child.as_mut().ok_or(Error::NotStarted)?.join()
    }

    /// The child's pid, once started: Python's `p.pid`.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::pid)
    }

    /// True from `start` until the child has ended: Python's `p.is_alive()`.
    pub fn is_alive(&mut self) -> Result<bool, Error> {
        match &mut self.child {
            Some(child) => Ok(child.poll()?.is_none()),
            None => Ok(false),
        }
    }

    /// Sends SIGTERM to the child: Python's `p.terminate()`.
    pub fn terminate(&mut self) -> Result<(), Error> {
        self.child.as_mut().ok_or(Error::NotStarted)?.terminate()
    }
}

/// What the child runs: decodes the target and its arguments, and calls it.
fn run_target<A: DeserializeOwned, R: Outcome>(request: &[u8], _: Vec<OwnedFd>) -> i32 {
    let Some((target, args)) = request.split_first_chunk::<8>() else {
        common::error_line(format_args!(
            "a process's request is shorter than its header"
        ));
        return 2;
    };
    let args: A = match frame::decode(args) {
        Ok(args) => args,
        Err(e) => {
            common::error_line(format_args!("a process's arguments: {e}"));
            return 2;
        }
    };
    // SAFETY: `Process::new` took this offset from a `fn(A) -> R` with `code_offset`, and
    // sent it with this very function, made for the same A and R. This process runs the
    // same executable file (forked, or spawned and checked to run the same file), so the
    // address at that offset is that function.
    let target = unsafe {
        std::mem::transmute::<usize, fn(A) -> R>(code_address(u64::from_le_bytes(*target)))
    };
    target(args).exit_code()
}
