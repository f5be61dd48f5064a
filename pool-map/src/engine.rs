//! The parent's side of a pool: tasks waiting, tasks on each worker, results, deaths.
//!
//! Everything happens on the caller's thread, inside the pool's calls. The parent never
//! blocks on a pipe: its ends are non-blocking and one `poll(2)` waits on them all, so a
//! worker busy writing results can never deadlock a parent busy writing tasks.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::{Duration, Instant};

use os_pipe::{PipeReader, PipeWriter};
use serde::Serialize;

use crate::PoolError;
use crate::started::Started;
use crate::worker::{self, PANICKED, RETURNED, Trampoline};
use common::fd::{self, Spin, pollfd, set_nonblocking};
use common::frame::{self, FrameBuf, FrameError};
use std::os::fd::OwnedFd;

use common::start::{Child, Context, code_offset};
use common::{Error, ExitStatus, Private};

/// A finished task.
pub(crate) enum Done {
    Value(Vec<u8>),
    Panicked {
        pid: u32,
        task: u64,
        message: String,
    },
    Died {
        pid: u32,
        task: u64,
        status: ExitStatus,
    },
    /// Run, or begun, by a worker whose results pipe then carried bytes outside the
    /// protocol: its result could not be read. The message says so.
    Lost(String),
    /// Not run: workers died one after another before they began a task.
    DiedAtStart {
        pid: u32,
        status: ExitStatus,
    },
    Closed,
}

struct Task {
    id: u64,
    frame: Vec<u8>,
    /// How many workers died reading it (the first task in their pipe, ready, running no
    /// task, not ended by the pool): see `Engine::bury`.
    deaths: usize,
}

/// How the pool hashes task numbers: it draws them itself, one after another, and std's
/// SipHash (made for keys an attacker may choose) is not needed. A caller can still choose
/// which numbers stay in the table (results it leaves unread), so every bit of a number
/// reaches every bit of its hash (SplitMix64's finaliser): numbers that differ only in
/// their high bits, such as every 1,024th, do not share a few buckets, as they did with a
/// plain multiply. A `Pool::apply` looks its task up four times: with SipHash, its round
/// trip on one CPU ran 2,554 instructions in the parent; so, 2,229 (callgrind).
#[derive(Clone, Copy, Default)]
struct TaskIds;

impl BuildHasher for TaskIds {
    type Hasher = TaskHasher;

    fn build_hasher(&self) -> TaskHasher {
        TaskHasher(0)
    }
}

struct TaskHasher(u64);

impl Hasher for TaskHasher {
    fn write_u64(&mut self, n: u64) {
        let mut x = self.0 ^ n;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        self.0 = x ^ (x >> 31);
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// How often a waiting pool checks that its workers are alive, beside watching their pipes:
/// a worker whose pipe a process it started still holds open never shows its end there.
const LIVENESS: Duration = Duration::from_millis(100);

struct Worker {
    process: Child,
    pid: u32,
    /// Where tasks go; `None` once the worker cannot take more. Both ends are the parent's
    /// own ([`Private`]): no other child keeps them open, so the worker sees its task pipe
    /// end when the pool closes it, and the pool sees the results end when the worker dies.
    tasks: Option<Private<PipeWriter>>,
    results: Private<PipeReader>,
    frames: FrameBuf,
    /// Tasks given to this worker, oldest first: it runs them in this order.
    in_flight: VecDeque<Task>,
    /// How many of `in_flight` have been written whole; `offset` bytes of the next have.
    unsent: usize,
    offset: usize,
    /// The task it began last, which it writes in memory shared with the pool.
    started: Started,
    /// Ended by the pool itself (`Engine::garbled`), not by anything a task did.
    ended_by_pool: bool,
    /// Whether its death has been accounted for (`Engine::bury`).
    buried: bool,
}

pub(crate) struct Engine {
    /// How workers are started: fork, spawn or forkserver.
    context: Context,
    workers: Vec<Worker>,
    queue: VecDeque<Task>,
    done: HashMap<u64, Done, TaskIds>,
    /// Tasks in flight whose result no one will read.
    abandoned: HashSet<u64, TaskIds>,
    next_task: u64,
    closed: bool,
    /// The process that made the pool ([`common::process_key`]), and its pid.
    owner: u64,
    owner_pid: u32,
    /// How many workers the pool was made with.
    processes: usize,
    pollfds: Vec<libc::pollfd>,
    /// When the workers were last checked to be alive.
    checked: Instant,
    /// How many workers in a row died as they started, before they were ready for tasks:
    /// see [`DEATHS_AT_START`].
    deaths_at_start: usize,
    /// How many workers in a row died ready for tasks, before they began one (see `bury`).
    deaths_ready: usize,
    /// When a dead worker whose replacement could not be started is tried again, while
    /// other workers run the tasks; and how long the next failure waits (see `replace`).
    replace_at: Instant,
    replace_wait: Duration,
}

impl Engine {
    pub(crate) fn new(processes: usize, context: &Context) -> Result<Engine, PoolError> {
        if processes == 0 {
            return Err(PoolError::NoProcesses);
        }
        let mut engine = Engine {
            context: context.clone(),
            // Grown as workers start: `processes` is the caller's number, and room for a
            // number no system could start (`usize::MAX / 2`) overflowed or aborted.
            workers: Vec::new(),
            queue: VecDeque::new(),
            done: HashMap::default(),
            abandoned: HashSet::default(),
            next_task: 0,
            closed: false,
            owner: common::process_key(),
            owner_pid: common::current_pid(),
            processes,
            pollfds: Vec::new(),
            checked: Instant::now(),
            deaths_at_start: 0,
            deaths_ready: 0,
            replace_at: Instant::now(),
            replace_wait: LIVENESS,
        };
        for _ in 0..processes {
            let worker = spawn(&engine.context)?;
            engine.workers.push(worker);
        }
        Ok(engine)
    }

    /// Fails unless this is the process that made the pool: a child forked from it has a
    /// copy of the pool, but not its pipes, and must change nothing of its parent's.
    pub(crate) fn check_owner(&self) -> Result<(), PoolError> {
        if self.owner != common::process_key() {
            return Err(PoolError::NotOwner {
                owner: self.owner_pid,
            });
        }
        Ok(())
    }

    pub(crate) fn processes(&self) -> usize {
        self.processes
    }

    pub(crate) fn pids(&self) -> Vec<u32> {
        // Not a dead worker waiting for its replacement.
        self.workers
            .iter()
            .filter(|w| !w.buried)
            .map(|w| w.pid)
            .collect()
    }

    /// Queues `call(f, args)`; returns the task's number.
    pub(crate) fn submit<A: Serialize + ?Sized>(
        &mut self,
        call: Trampoline,
        f: usize,
        args: &A,
    ) -> Result<u64, PoolError> {
        self.check_owner()?;
        if self.closed {
            return Err(PoolError::Closed);
        }
        let id = self.next_task;
        // Offsets in the executable, not addresses: a spawned worker runs the same file
        // at another address (see `common::start`).
        let call = code_offset(call as usize)?;
        let f = code_offset(f)?;
        let mut frame = Vec::new();
        worker::encode_task(&mut frame, id, call, f, args)?;
        self.next_task += 1;
        self.queue.push_back(Task {
            id,
            frame,
            deaths: 0,
        });
        Ok(id)
    }

    pub(crate) fn is_done(&self, task: u64) -> bool {
        self.done.contains_key(&task)
    }

    /// Runs the pool until `task` is done, or until `deadline`.
    pub(crate) fn wait(&mut self, task: u64, deadline: Option<Instant>) -> Result<(), PoolError> {
        self.check_owner()?;
        while !self.done.contains_key(&task) {
            if self.workers.is_empty() {
                return Err(PoolError::Closed);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                // No time left (`get_timeout(0)`, or it ran out during a round that read
                // nothing, such as a liveness check): one last round that does not wait, so
                // that a result already in comes back even so. Only here: a round of its own
                // before each wait was one more `poll(2)` a call of `apply`.
                self.progress()?;
                if self.done.contains_key(&task) {
                    break;
                }
                return Err(PoolError::Timeout(Duration::ZERO));
            }
            self.step(deadline)?;
        }
        Ok(())
    }

    pub(crate) fn peek(&self, task: u64) -> Result<&Done, PoolError> {
        self.done.get(&task).ok_or(PoolError::Closed)
    }

    pub(crate) fn take(&mut self, task: u64) -> Result<Done, PoolError> {
        self.done.remove(&task).ok_or(PoolError::Closed)
    }

    /// Forgets `task`: its result is dropped now, or when it comes.
    pub(crate) fn abandon(&mut self, task: u64) {
        if self.check_owner().is_err() {
            return;
        }
        if self.done.remove(&task).is_some() {
            return;
        }
        if let Some(at) = self.queue.iter().position(|t| t.id == task) {
            self.queue.remove(at);
        } else if self
            .workers
            .iter()
            .any(|w| w.in_flight.iter().any(|t| t.id == task))
        {
            self.abandoned.insert(task);
        }
    }

    /// Hands queued tasks to workers and writes what the pipes take now.
    pub(crate) fn send(&mut self) {
        self.dispatch();
        self.send_all();
    }

    /// Sends what can be sent and reads what has come, without waiting.
    pub(crate) fn progress(&mut self) -> Result<(), PoolError> {
        self.check_owner()?;
        self.send();
        if self.poll(0)? > 0 {
            self.handle_events()?;
        }
        let now = Instant::now();
        if now >= self.checked + LIVENESS {
            self.checked = now;
            self.check_alive()?;
        }
        Ok(())
    }

    pub(crate) fn close(&mut self) -> Result<(), PoolError> {
        self.check_owner()?;
        self.closed = true;
        Ok(())
    }

    /// Closes the pool, lets the workers finish every task, and reaps them.
    pub(crate) fn join(&mut self) -> Result<(), PoolError> {
        self.check_owner()?;
        self.closed = true;
        while !self.queue.is_empty() || self.workers.iter().any(|w| !w.in_flight.is_empty()) {
            self.step(None)?;
        }
        for w in &mut self.workers {
            // The end of its task pipe tells the worker to exit.
            w.tasks = None;
        }
        for mut w in self.workers.drain(..) {
            w.process.join()?;
        }
        Ok(())
    }

    /// Stops every worker now; tasks not finished are done as `Closed`.
    pub(crate) fn terminate(&mut self) -> Result<(), PoolError> {
        self.check_owner()?;
        self.closed = true;
        for w in &mut self.workers {
            w.tasks = None;
            w.process.terminate()?;
            // A stopped worker (SIGSTOP) acts on SIGTERM only once continued.
            w.process.resume()?;
        }
        let mut unfinished: Vec<u64> = self.queue.drain(..).map(|t| t.id).collect();
        let grace_ends = Instant::now() + GRACE;
        for mut w in self.workers.drain(..) {
            reap(&mut w.process, grace_ends)?;
            unfinished.extend(w.in_flight.iter().map(|t| t.id));
        }
        for task in unfinished {
            self.settle(task, Done::Closed);
        }
        Ok(())
    }

    /// One round: hand out tasks, write them, wait for something to happen (spinning for a
    /// while first where that pays, see `Spin`: reads of the pipes that owe results, or
    /// `poll` without sleeping while tasks wait to be written; then sleeping in `poll` until
    /// `deadline`), and handle it. Every [`LIVENESS`] the workers are also checked to be
    /// alive.
    fn step(&mut self, deadline: Option<Instant>) -> Result<(), PoolError> {
        self.dispatch();
        self.send_all();
        let mut spin = Spin::new();
        loop {
            let now = Instant::now();
            if now >= self.checked + LIVENESS {
                self.checked = now;
                return self.check_alive();
            }
            let spinning = spin.again();
            if spinning && self.all_sent() {
                // Nothing to write: a look is a read of each pipe that owes results, where
                // `poll(2)` and then a read made two system calls (what that bought: at
                // `common::fd::read_now`).
                if self.look()? {
                    spin.got();
                    return Ok(());
                }
            } else {
                let timeout = if spinning {
                    0
                } else {
                    let check = self.checked + LIVENESS;
                    let until = deadline.map_or(check, |d| d.min(check));
                    // Rounded up, so a wait does not end just before its deadline.
                    let left = until.saturating_duration_since(now);
                    left.as_micros().div_ceil(1000) as i32
                };
                if self.poll(timeout)? > 0 {
                    spin.got();
                    return self.handle_events();
                }
                if timeout != 0 {
                    return Ok(());
                }
            }
            if deadline.is_some_and(|d| now >= d) {
                return Ok(());
            }
        }
    }

    /// Whether every task handed to a worker that takes tasks has been written whole.
    fn all_sent(&self) -> bool {
        self.workers
            .iter()
            .all(|w| w.tasks.is_none() || w.unsent == w.in_flight.len())
    }

    /// One read, without waiting, of each worker that owes results (every one, so that a
    /// worker early in the list cannot keep the others' results waiting): true when one of
    /// them sent something, or ended.
    fn look(&mut self) -> Result<bool, PoolError> {
        let mut any = false;
        for i in 0..self.workers.len() {
            if !self.workers[i].in_flight.is_empty() {
                any |= self.receive(i, Drain::Once)? != Received::Nothing;
            }
        }
        Ok(any)
    }

    /// Finds workers that have ended though their results pipe has not (a process they
    /// started holds it open): takes what they wrote before they died, then replaces them.
    /// Tries again to replace those whose replacement could not be started, when it is time.
    fn check_alive(&mut self) -> Result<(), PoolError> {
        for i in 0..self.workers.len() {
            if self.workers[i].buried {
                if Instant::now() >= self.replace_at || self.none_alive() {
                    self.replace(i)?;
                }
                continue;
            }
            // Unless what it wrote was garbled: then `receive` has replaced it already, and
            // worker `i` is the replacement, alive.
            if self.workers[i].process.poll()?.is_some()
                && self.receive(i, Drain::UntilEmpty)? != Received::Replaced
            {
                self.died(i)?;
            }
        }
        Ok(())
    }

    /// Gives queued tasks to workers: one each to idle workers first, then more each
    /// while many wait, so a worker need not wait for the parent between tasks.
    fn dispatch(&mut self) {
        let n = self.workers.len();
        if n == 0 {
            return;
        }
        let most = (1 + self.queue.len() / (2 * n)).min(64);
        for round in 1..=most {
            for w in &mut self.workers {
                if w.tasks.is_some() && w.in_flight.len() < round {
                    match self.queue.pop_front() {
                        Some(task) => w.in_flight.push_back(task),
                        None => return,
                    }
                }
            }
        }
    }

    fn send_all(&mut self) {
        for w in &mut self.workers {
            w.send();
        }
    }

    /// `poll(2)` on every worker's results, and on the task pipes that have bytes to go.
    /// Not on the pipe of a dead worker waiting for its replacement: it reads as its end,
    /// again and again.
    fn poll(&mut self, timeout_ms: i32) -> Result<usize, PoolError> {
        self.pollfds.clear();
        for w in self.workers.iter().filter(|w| !w.buried) {
            self.pollfds.push(pollfd(w.results_fd(), libc::POLLIN));
            if let (Some(tasks), true) = (w.tasks_fd(), w.unsent < w.in_flight.len()) {
                self.pollfds.push(pollfd(tasks, libc::POLLOUT));
            }
        }
        Ok(fd::poll_fds(&mut self.pollfds, timeout_ms)?)
    }

    /// Writes where `poll` found room, then reads where it found data (a read may replace
    /// a dead worker, whose descriptors are then no longer the ones polled).
    fn handle_events(&mut self) -> Result<(), PoolError> {
        for k in 0..self.pollfds.len() {
            let p = self.pollfds[k];
            if p.revents != 0 && p.events == libc::POLLOUT {
                if let Some(w) = self.workers.iter_mut().find(|w| w.tasks_fd() == Some(p.fd)) {
                    w.send();
                }
            }
        }
        for k in 0..self.pollfds.len() {
            let p = self.pollfds[k];
            if p.revents != 0 && p.events == libc::POLLIN {
                if let Some(i) = self.workers.iter().position(|w| w.results_fd() == p.fd) {
                    self.receive(i, Drain::Once)?;
                }
            }
        }
        Ok(())
    }

    /// Reads what worker `i` sent: results, or the end of its pipe when it died. With
    /// `Drain::UntilEmpty`, reads until nothing more is there (for a worker known dead,
    /// which the caller then buries).
    fn receive(&mut self, i: usize, drain: Drain) -> Result<Received, PoolError> {
        loop {
            let w = &mut self.workers[i];
            let Some(mut results) = w.results.get() else {
                return Err(PoolError::NotOwner {
                    owner: self.owner_pid,
                });
            };
            match w.frames.fill(&mut results) {
                Ok(0) if matches!(drain, Drain::Once) => {
                    return self.died(i).map(|()| Received::Replaced);
                }
                Ok(0) => return Ok(Received::Something),
                Ok(_) => {
                    if let Err(e) = self.take_results(i) {
                        self.garbled(i, &e)?;
                        return Ok(Received::Replaced);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Received::Nothing),
                Err(e) => return Err(Error::os("read", e).into()),
            }
            if matches!(drain, Drain::Once) {
                return Ok(Received::Something);
            }
        }
    }

    /// Takes every whole result frame that worker `i` has sent. A frame that is not a result
    /// of its oldest task is an error, and leaves that task in flight.
    fn take_results(&mut self, i: usize) -> Result<(), PoolError> {
        loop {
            let w = &mut self.workers[i];
            let Some(payload) = w.frames.next_frame()? else {
                return Ok(());
            };
            let (task, kind, value) = worker::parse_result(payload)?;
            if w.unsent == 0 || w.in_flight.front().map(|t| t.id) != Some(task) {
                return Err(FrameError::Decode(format!("result for task {task}, not sent")).into());
            }
            let done = match kind {
                RETURNED => Done::Value(value.to_vec()),
                PANICKED => Done::Panicked {
                    pid: w.pid,
                    task,
                    message: frame::decode(value)?,
                },
                _ => return Err(FrameError::Decode(format!("result kind {kind}")).into()),
            };
            w.in_flight.pop_front();
            w.unsent -= 1;
            (self.deaths_at_start, self.deaths_ready) = (0, 0);
            self.settle(task, done);
        }
    }

    /// Worker `i` sent bytes that are not a result frame (only code that writes into its
    /// pipe outside the pool can send them: a task that opens the pipe through
    /// `/proc/self/fd`, say). Nothing after them is sure to begin where a frame does, so its
    /// results can never be read right again: it is ended and replaced as a dead worker is.
    /// Its tasks are settled by the word it shares with the pool: those up to the one it
    /// began last ran, or began, and their results are lost behind the bytes (they fail,
    /// rather than run twice); those after it go back to the queue.
    fn garbled(&mut self, i: usize, why: &PoolError) -> Result<(), PoolError> {
        let w = &mut self.workers[i];
        // Ended before its word is read: it begins no task after.
        let _ = w.process.kill();
        w.process.join()?;
        // Its death is the pool's doing: no task in its pipe is blamed (`bury`).
        w.ended_by_pool = true;
        let pid = w.pid;
        for task in self.take_begun(i) {
            let lost = format!(
                "the result of task {} was lost: worker {pid} sent bytes that are not a result \
                 ({why}), and was ended",
                task.id
            );
            self.settle(task.id, Done::Lost(lost));
        }
        self.died(i)
    }

    /// Takes out of worker `i`'s tasks, which it ran in their order, those up to the one it
    /// began last, as it said in the word it shares with the pool (`started.rs`): none, if it
    /// began none of them. Having read a task is not enough to have begun it: a worker
    /// killed while it waits still reads what comes in that moment. Read only once the
    /// worker has ended, so that it begins no task after.
    fn take_begun(&mut self, i: usize) -> Vec<Task> {
        let w = &mut self.workers[i];
        match w.in_flight.iter().position(|t| w.started.began(t.id)) {
            Some(last) => {
                // A task begun was written whole: the first `unsent` of them were, and
                // `offset` is of the one after them, which stays the one after them.
                w.unsent = w.unsent.saturating_sub(last + 1);
                w.in_flight.drain(..=last).collect()
            }
            None => Vec::new(),
        }
    }

    /// Task `task` has ended as `done`, which is kept for its caller, unless no one will
    /// read it.
    fn settle(&mut self, task: u64, done: Done) {
        if !self.abandoned.remove(&task) {
            self.done.insert(task, done);
        }
    }

    /// Worker `i` died: the task it was running fails, the tasks it had not begun go back
    /// to the queue, and a new worker takes its place.
    fn died(&mut self, i: usize) -> Result<(), PoolError> {
        if !self.workers[i].buried {
            self.bury(i)?;
        }
        self.replace(i)
    }

    /// Starts a worker in the place of dead worker `i`. One that cannot be started now (a
    /// guard held or a thread running, so fork is refused; no descriptor or process left)
    /// leaves the dead one in its place, buried: it takes no task, and `check_alive` tries
    /// again, waiting twice as long after each failure, up to [`REPLACE_WAIT_MOST`] (while
    /// a thread runs, a fork is not even tried: see `Context::refused_for_threads`).
    /// Meanwhile the other workers run the tasks, and the calls go on. (Every call failed
    /// with why, even one whose task another worker had run: its result was lost, and a
    /// caller that asked again ran the task twice.) Only where no worker is left does the
    /// call fail, with why; its tasks wait for a later call.
    fn replace(&mut self, i: usize) -> Result<(), PoolError> {
        // With no worker left, a thread just joined (still counted for a moment) is given
        // 10 ms to go, rather than fail the call.
        let patience = if self.none_alive() {
            Duration::from_millis(10)
        } else {
            Duration::ZERO
        };
        // While threads run, a fork is refused after up to a second's wait for them, inside
        // whichever call came here (a `get_timeout` of 50 ms took 1.01 s): not tried.
        let started = match self.context.refused_for_threads(patience) {
            Some(refused) => Err(refused.into()),
            None => spawn(&self.context),
        };
        match started {
            Ok(worker) => {
                self.workers[i] = worker;
                self.replace_wait = LIVENESS;
                Ok(())
            }
            Err(e) => {
                self.replace_later();
                if self.none_alive() { Err(e) } else { Ok(()) }
            }
        }
    }

    /// A replacement could not be started: the next try waits twice as long as the last.
    fn replace_later(&mut self) {
        self.replace_at = Instant::now() + self.replace_wait;
        self.replace_wait = (self.replace_wait * 2).min(REPLACE_WAIT_MOST);
    }

    /// Whether every worker is dead, waiting for a replacement that could not be started.
    fn none_alive(&self) -> bool {
        self.workers.iter().all(|w| w.buried)
    }

    /// What the death of worker `i` means for its tasks, and for the count of deaths at
    /// start: worked out once per worker.
    fn bury(&mut self, i: usize) -> Result<(), PoolError> {
        let status = self.workers[i].process.join()?;
        let pid = self.workers[i].pid;
        // The task it began last was running when it died. Any before it ran, and their
        // results are not in: only bytes written into its pipe outside the pool (a length
        // whose frame never came whole) can hide a result so. They fail, rather than run
        // twice.
        let mut begun = self.take_begun(i);
        let running = !begun.is_empty();
        if let Some(last) = begun.pop() {
            for task in begun {
                let lost = format!(
                    "the result of task {} was lost: worker {pid} ran it, but sent no whole \
                     result for it (bytes that are not a result came first), and then {}",
                    task.id,
                    crate::died(&status)
                );
                self.settle(task.id, Done::Lost(lost));
            }
            let task = last.id;
            self.settle(task, Done::Died { pid, task, status });
        }
        let w = &mut self.workers[i];
        let mut in_flight = std::mem::take(&mut w.in_flight);
        let (began, got_ready) = (w.started.began_any(), w.started.got_ready());
        let in_pipe = w.unsent > 0 || w.offset > 0;
        if !running && got_ready && in_pipe && !w.ended_by_pool {
            // Ready, it died running no task, maybe as it read the first of those in its
            // pipe (it reads a task whole and begins it before it reads the next): one too
            // large for its memory kills every worker that reads it. It is tried on other
            // workers; one that three workers died so with fails, however many results other
            // tasks bring meanwhile (counted per worker, a task like that was tried until
            // every other task was done: 13 workers forked for it among 100 other tasks, 82
            // among 1,000). The tasks behind it are not blamed: counted too, they failed
            // with it.
            if let Some(task) = in_flight.front_mut() {
                task.deaths += 1;
            }
        }
        w.unsent = 0;
        w.offset = 0;
        w.tasks = None;
        w.buried = true;
        for task in in_flight.into_iter().rev() {
            if self.abandoned.remove(&task.id) {
                continue;
            }
            if task.deaths >= DEATHS_AT_START {
                self.settle(task.id, Done::DiedAtStart { pid, status });
            } else {
                self.queue.push_front(task);
            }
        }
        if began {
            (self.deaths_at_start, self.deaths_ready) = (0, 0);
        } else if !got_ready {
            // It died as it started: the next worker may die so too.
            self.deaths_at_start += 1;
        } else {
            // It died ready, before it began a task: killed while it waited (by the OOM
            // killer, or from outside), which says nothing of the next worker; or as it read
            // a task (one too large for its memory, say), which would kill the next too. So
            // every worker of the pool may die so once (idle workers killed together, as
            // Python's pool replaces them), and three more in a row. Counted as deaths at
            // start, three idle workers killed at once made the next call fail.
            self.deaths_ready += 1;
        }
        if self.deaths_at_start >= DEATHS_AT_START
            || self.deaths_ready >= self.processes + DEATHS_AT_START
        {
            // Whatever kills them at start would kill the next one too: forking more, for
            // tasks none of them would run, could go on forever. The tasks waiting fail; a
            // replacement is still forked, for the next calls, in case the cause has gone.
            for task in self.queue.drain(..) {
                self.done.insert(task.id, Done::DiedAtStart { pid, status });
            }
        }
        Ok(())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if !self.workers.is_empty() && self.owner == common::process_key() {
            let _ = self.terminate();
        }
    }
}

/// After how many workers in a row died as they started, the tasks waiting fail
/// ([`Done::DiedAtStart`]) rather than wait for yet another worker; after how many more
/// than the pool's size died ready for tasks, before they began one.
const DEATHS_AT_START: usize = 3;

/// The longest wait before a dead worker whose replacement could not be started is tried
/// again, while other workers run the tasks (see `Engine::replace`).
const REPLACE_WAIT_MOST: Duration = Duration::from_secs(5);

/// How long `terminate` gives its workers to end on SIGTERM before it sends SIGKILL (a
/// worker that ignores SIGTERM, or blocks it, would otherwise be waited for forever).
const GRACE: Duration = Duration::from_secs(2);

/// Waits for `process` to end until `grace_ends`, then kills it and waits for it.
fn reap(process: &mut Child, grace_ends: Instant) -> Result<(), PoolError> {
    while process.poll()?.is_none() {
        if Instant::now() >= grace_ends {
            process.kill()?;
            process.join()?;
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// What `receive` found.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Received {
    /// Nothing yet.
    Nothing,
    /// Results, or the end of the pipe of a worker being drained.
    Something,
    /// The worker's end, or bytes that are not results: it has been replaced.
    Replaced,
}

/// How much `receive` reads.
#[derive(Clone, Copy)]
enum Drain {
    /// One read: what `poll` found.
    Once,
    /// Until the pipe is empty: a dead worker's last results.
    UntilEmpty,
}

impl Worker {
    fn tasks_fd(&self) -> Option<RawFd> {
        self.tasks
            .as_ref()
            .and_then(Private::get)
            .map(AsRawFd::as_raw_fd)
    }

    fn results_fd(&self) -> RawFd {
        self.results.get().map_or(-1, AsRawFd::as_raw_fd)
    }

    /// Writes as much of the unsent tasks as the pipe takes now.
    fn send(&mut self) {
        let Worker {
            tasks,
            in_flight,
            unsent,
            offset,
            ..
        } = self;
        let Some(mut pipe) = tasks.as_ref().and_then(Private::get) else {
            return;
        };
        while let Some(task) = in_flight.get(*unsent) {
            match pipe.write(&task.frame[*offset..]) {
                Ok(n) => {
                    *offset += n;
                    if *offset == task.frame.len() {
                        *unsent += 1;
                        *offset = 0;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // The worker is gone (EPIPE); the end of its result pipe will say how.
                Err(_) => {
                    *tasks = None;
                    return;
                }
            }
        }
    }
}

/// Starts a worker, by the context's method, with two new pipes: tasks in, results out. The
/// parent's ends are [`Private`], so this worker, later workers, and every other child close
/// them at fork (a spawned child never has them: they close on exec).
fn spawn(context: &Context) -> Result<Worker, PoolError> {
    let (tasks_r, tasks_w) = os_pipe::pipe().map_err(|e| Error::os("pipe", e))?;
    let (results_r, results_w) = os_pipe::pipe().map_err(|e| Error::os("pipe", e))?;
    fd::enlarge_pipe(tasks_w.as_fd());
    fd::enlarge_pipe(results_w.as_fd());
    set_nonblocking(tasks_w.as_fd())?;
    set_nonblocking(results_r.as_fd())?;
    let (tasks_w, results_r) = (Private::new(tasks_w)?, Private::new(results_r)?);
    let (started, started_fd) = Started::new()?;
    let fds = vec![OwnedFd::from(tasks_r), OwnedFd::from(results_w), started_fd];
    let process = context.start(worker::entry, Vec::new(), fds)?;
    let pid = process.pid();
    Ok(Worker {
        process,
        pid,
        tasks: Some(tasks_w),
        results: results_r,
        frames: FrameBuf::new(),
        in_flight: VecDeque::new(),
        unsent: 0,
        offset: 0,
        started,
        ended_by_pool: false,
        buried: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many of 1,024 buckets (the hash's low 10 bits) the keys `i << shift` reach.
    fn buckets(shift: u32) -> usize {
        let keys = (0..1024u64).map(|i| TaskIds.hash_one(i << shift) & 1023);
        keys.collect::<HashSet<u64>>().len()
    }

    /// As many as random hashes would (about 647 of 1,024), whichever bits the keys differ
    /// in: a plain multiply reached all 1,024 with consecutive keys, but 16 with `i << 6`.
    #[test]
    fn task_numbers_spread_over_the_buckets_whichever_bits_differ() {
        for shift in 0..=54 {
            let reached = buckets(shift);
            assert!(
                reached > 580,
                "keys i << {shift} reach {reached} of 1,024 buckets"
            );
        }
    }
}
