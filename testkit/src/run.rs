//! Running an example: in a session of its own, in an empty directory of its own, and
//! checked to leave nothing behind, neither a process of its session nor a file.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// How long one run may take before it is taken for a hang and killed.
pub const HANG: Duration = Duration::from_secs(60);

/// What a finished run printed and how it ended.
#[derive(Debug)]
pub struct Run {
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
    /// How the process ended.
    pub status: std::process::ExitStatus,
    /// Its process id, which was also its session's id.
    pub pid: u32,
}

impl Run {
    /// Panics, showing stderr, unless the run exited with status 0.
    pub fn success(self) -> Self {
        assert!(
            self.status.success(),
            "exited with {}; stderr:\n{}",
            self.status,
            self.stderr
        );
        self
    }
}

/// Runs `cmd` with [`run`] and returns its stdout, after checking that it exited with 0
/// and wrote nothing to stderr.
pub fn stdout_of(cmd: Command) -> String {
    let out = run(cmd).success();
    assert_eq!(out.stderr, "", "stderr of a successful run");
    out.stdout
}

/// Runs `cmd` to its end in a session of its own, with stdout and stderr captured. Unless
/// `cmd` names them, its working directory and its `TMPDIR` are a new empty directory.
///
/// Panics if it runs longer than [`HANG`] (its whole session is killed first), if any
/// process of its session is still there once it has exited (an orphan), or if it left a
/// file or directory in its working directory or its `TMPDIR`.
pub fn run(cmd: Command) -> Run {
    Session::start(cmd, Stdio::piped()).finish(Duration::ZERO)
}

/// A stdout that every write fails on.
#[derive(Clone, Copy, Debug)]
pub enum Unwritable {
    /// A pipe whose reader has already gone, as after `| head -0`: EPIPE.
    ClosedPipe,
    /// `/dev/full`, as a full disk: ENOSPC.
    FullDisk,
}

impl Unwritable {
    /// Both kinds.
    pub const ALL: [Unwritable; 2] = [Unwritable::ClosedPipe, Unwritable::FullDisk];

    /// How the OS names the failure of a write.
    pub fn cause(self) -> &'static str {
        match self {
            Unwritable::ClosedPipe => "Broken pipe",
            Unwritable::FullDisk => "No space left on device",
        }
    }

    fn stdio(self) -> Stdio {
        match self {
            Unwritable::ClosedPipe => {
                let mut ends = [-1; 2];
                // SAFETY: pipe2 writes two descriptors into `ends`, which outlives the call.
                let rc = unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) };
                assert_eq!(rc, 0, "pipe2");
                // SAFETY: pipe2 just made both ends, and nothing else owns them; the reader
                // is closed at once.
                let (reader, writer) =
                    unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) };
                drop(reader);
                Stdio::from(writer)
            }
            Unwritable::FullDisk => std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .expect("open /dev/full")
                .into(),
        }
    }
}

/// Makes `cmd`'s stderr `/dev/full`, on which every write fails (ENOSPC), in place of the
/// pipe that [`run`] captures it with: the run's `stderr` is then empty.
pub fn with_stderr_full(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec, after its stdio is set up,
    // and calls only open, dup2 and close, which are async-signal-safe, on a static path.
    unsafe {
        cmd.pre_exec(|| {
            let full = libc::open(c"/dev/full".as_ptr(), libc::O_WRONLY);
            if full < 0 || (full != 2 && libc::dup2(full, 2) < 0) {
                return Err(std::io::Error::last_os_error());
            }
            if full != 2 {
                libc::close(full);
            }
            Ok(())
        });
    }
}

/// Runs `cmd` as [`run`] does, with its stdout `unwritable` (its `stdout` field is empty).
pub fn run_unwritable(cmd: Command, unwritable: Unwritable) -> Run {
    Session::start(cmd, unwritable.stdio()).finish(Duration::ZERO)
}

/// Runs `make()` with [`run_unwritable`], once with each kind of stdout. Panics unless each
/// run ends with `status` and says why on stderr, in lines (one for each process or thread
/// that failed to print) that begin with `Error: ` and name the cause, and nothing else: no
/// panic report (Rust's `println!` panics when it cannot print).
pub fn assert_unprintable_is_clear(make: impl Fn() -> Command, status: i32) {
    for unwritable in Unwritable::ALL {
        let cmd = make();
        let cause = unwritable.cause();
        let shown = format!("{cmd:?}, whose stdout fails with {cause},");
        let run = run_unwritable(cmd, unwritable);
        assert_eq!(
            run.status.code(),
            Some(status),
            "{shown} ended with {}; stderr:\n{}",
            run.status,
            run.stderr
        );
        assert!(
            run.stderr
                .lines()
                .any(|l| l.starts_with("Error: ") && l.contains(cause)),
            "{shown} has no error line that names it; stderr:\n{}",
            run.stderr
        );
        assert!(
            !run.stderr.contains(" panicked at ") && !run.stderr.contains("RUST_BACKTRACE"),
            "{shown} printed a panic report:\n{}",
            run.stderr
        );
        assert!(
            run.stderr
                .lines()
                .all(|l| l.starts_with("Error: ") && l.contains(cause)),
            "{shown} printed more than its error lines:\n{:?}",
            run.stderr
        );
    }
}

/// [`run`] for a Python program: its helper processes (the fork server, the resource
/// tracker) end on their own once they see the end of the main process's pipe, just after
/// it. They have up to five seconds (on a loaded machine) before they are taken for orphans.
pub fn run_python_program(cmd: Command) -> Run {
    Session::start(cmd, Stdio::piped()).finish(Duration::from_secs(5))
}

/// A command started by [`Session::start`], not yet finished.
struct Session {
    cmd: String,
    child: Child,
    stdout: Option<thread::JoinHandle<String>>,
    stderr: Option<thread::JoinHandle<String>>,
    scratch: Scratch,
}

impl Session {
    /// Starts `cmd` as [`run`] does, with SIGINT, SIGTERM and SIGHUP at their defaults
    /// (a shell may have left them ignored), and its stdout to `stdout` (captured if piped).
    fn start(mut cmd: Command, stdout: Stdio) -> Session {
        let scratch = Scratch::new();
        if cmd.get_current_dir().is_none() {
            cmd.current_dir(&scratch.0);
        }
        if !cmd.get_envs().any(|(name, _)| name == "TMPDIR") {
            cmd.env("TMPDIR", &scratch.0);
        }
        // SAFETY: the closure runs in the forked child before exec and calls only setsid and
        // signal, which are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                    libc::signal(signal, libc::SIG_DFL);
                }
                Ok(())
            });
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        Session {
            cmd: format!("{cmd:?}"),
            stdout: child.stdout.take().map(read_all),
            stderr: child.stderr.take().map(read_all),
            child,
            scratch,
        }
    }

    /// The started process's id, which is also its session's and its process group's.
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the end, then makes the checks [`run`] describes; processes of the
    /// session left behind have `grace` to end on their own.
    fn finish(mut self, grace: Duration) -> Run {
        let pid = self.pid();
        let cmd = &self.cmd;
        let deadline = Instant::now() + HANG;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("waitpid") {
                break status;
            }
            if Instant::now() > deadline {
                kill_session(pid);
                let _ = self.child.wait();
                panic!("{cmd} still ran after {HANG:?}: killed it and its session");
            }
            thread::sleep(Duration::from_millis(2));
        };
        let grace_ends = Instant::now() + grace;
        let mut left = session_members(pid);
        while !left.is_empty() && Instant::now() < grace_ends {
            thread::sleep(Duration::from_millis(10));
            left = session_members(pid);
        }
        if !left.is_empty() {
            kill_session(pid);
            panic!("{cmd} ended ({status}) but left these processes of its session: {left:?}");
        }
        let files = self.scratch.leftovers();
        assert!(
            files.is_empty(),
            "{cmd} ended ({status}) but left these in its directory: {files:?}"
        );
        let text = |reader: Option<thread::JoinHandle<String>>| {
            reader.map_or_else(String::new, |r| r.join().expect("reader thread"))
        };
        Run {
            stdout: text(self.stdout.take()),
            stderr: text(self.stderr.take()),
            status,
            pid,
        }
    }
}

/// An empty directory for one run, removed when dropped.
pub(crate) struct Scratch(pub(crate) PathBuf);

impl Scratch {
    pub(crate) fn new() -> Scratch {
        static RUNS: AtomicU32 = AtomicU32::new(0);
        let n = RUNS.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("example-run-{}-{n}", std::process::id()));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        Scratch(dir)
    }

    fn leftovers(&self) -> Vec<PathBuf> {
        let entries = std::fs::read_dir(&self.0).expect("read the run's directory");
        entries.filter_map(|e| Some(e.ok()?.path())).collect()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn read_all(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        pipe.read_to_end(&mut bytes).expect("read child output");
        String::from_utf8(bytes).expect("output is UTF-8")
    })
}

/// SIGKILL to every process of session `sid`.
fn kill_session(sid: u32) {
    for pid in session_members(sid) {
        // SAFETY: kill touches no memory.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    }
}

/// The processes, zombies included, whose session is `sid`, read from `/proc`.
fn session_members(sid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| stat(pid, 6).and_then(|s| s.parse().ok()) == Some(sid))
        .collect()
}

/// The state of process `pid` as `/proc/<pid>/stat` gives it (`R` running, `S` sleeping,
/// `Z` zombie, ...), or `None` when there is no such process.
pub fn process_state(pid: u32) -> Option<char> {
    stat(pid, 3)?.chars().next()
}

/// Waits until process `pid` has ended (see [`has_ended`]), for up to `limit`: false if it
/// still runs then. What a test that must not hang waits with.
pub fn ends_within(pid: u32, limit: std::time::Duration) -> bool {
    let started = std::time::Instant::now();
    while !has_ended(pid) {
        if started.elapsed() > limit {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    true
}

/// Waits until process `pid` sleeps (in a read, a write, a wait for a lock): what a test
/// needs before it kills a process "while it waits". Panics after 10 seconds.
pub fn until_asleep(pid: u32) {
    let started = std::time::Instant::now();
    while process_state(pid) != Some('S') {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{pid} never slept"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Field `n` of `/proc/<pid>/stat`.
fn stat(pid: u32, n: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, field 2, is in parentheses and may hold spaces: count after it.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace()
        .nth(n.checked_sub(3)?)
        .map(str::to_owned)
}

/// True once process `pid` has ended, every thread of it (its pidfd is readable then), or
/// there is no such process.
pub fn has_ended(pid: u32) -> bool {
    // SAFETY: pidfd_open takes two integers and touches no memory; the descriptor it
    // returns is owned by `pidfd`.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    let pidfd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as RawFd) };
    let mut ready = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll reads and writes the one pollfd, which outlives the call.
    unsafe { libc::poll(&mut ready, 1, 0) == 1 }
}

/// `assert_interrupt_is_clean` three ways: SIGINT to the example, SIGTERM to it, and
/// SIGINT to its whole process group, which is what Ctrl-C in a terminal sends.
pub fn assert_interrupts_are_clean(make: impl Fn() -> Command) {
    assert_interrupt_is_clean(&make, libc::SIGINT, false);
    assert_interrupt_is_clean(&make, libc::SIGTERM, false);
    assert_interrupt_is_clean(&make, libc::SIGINT, true);
}

/// How many runs are interrupted with children running before [`assert_interrupt_is_clean`]
/// is satisfied, and how many it tries at most.
const CAUGHT: usize = 3;
const ATTEMPTS: u32 = 400;

/// Interrupts runs of `make()` at moments spread over their first 20 ms, and as soon as
/// they have a child, and checks each:
/// whatever it was doing, it ends, by `signal` or (if it had finished) with status 0, within
/// [`HANG`]; with nothing on stderr; leaving no process of its session and no file behind.
///
/// At each moment the whole session is stopped (SIGSTOP), `signal` is sent to the example
/// alone (or, with `whole_group`, to its process group, as Ctrl-C in a terminal does), and
/// the session is continued. Panics unless, in at least three runs, the example still had
/// children running when the signal came: those are the runs that test its handler.
fn assert_interrupt_is_clean(make: impl Fn() -> Command, signal: i32, whole_group: bool) {
    let mut caught = 0;
    for attempt in 0..ATTEMPTS {
        let session = Session::start(make(), Stdio::piped());
        let pid = session.pid() as i32;
        if attempt % 2 == 0 {
            thread::sleep(Duration::from_micros(u64::from(attempt % 200) * 100));
        } else {
            first_child(session.pid());
        }
        // SAFETY: kill touches no memory; the group is the session's, made by setsid.
        unsafe { libc::kill(-pid, libc::SIGSTOP) };
        let children = wait_stopped(pid as u32);
        // SAFETY: as above.
        unsafe {
            libc::kill(if whole_group { -pid } else { pid }, signal);
            libc::kill(-pid, libc::SIGCONT);
        }
        let cmd = session.cmd.clone();
        let run = session.finish(Duration::ZERO);
        let interrupted = run.status.signal() == Some(signal);
        assert!(
            interrupted || run.status.success(),
            "{cmd}, sent signal {signal} with {children} children running, ended with {}; \
             stderr:\n{}",
            run.status,
            run.stderr
        );
        assert_eq!(
            run.stderr, "",
            "stderr of {cmd}, sent signal {signal} with {children} children running"
        );
        if interrupted && children > 0 {
            caught += 1;
            if caught == CAUGHT {
                return;
            }
        }
    }
    panic!("in {ATTEMPTS} runs, only {caught} were interrupted while children ran");
}

/// Waits (for up to a second) until `pid` has a child, or has ended: some children live for a few hundred
/// microseconds only, too short to be caught by chance.
fn first_child(pid: u32) {
    let children = format!("/proc/{pid}/task/{pid}/children");
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        match std::fs::read_to_string(&children) {
            Ok(list) if list.trim().is_empty() => {}
            _ => return,
        }
        if has_ended(pid) {
            return;
        }
    }
}

/// Waits until every process of the session is stopped or has ended; returns how many
/// children of `pid` are stopped, that is, still running when the signal comes.
fn wait_stopped(pid: u32) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let states: Vec<(u32, String)> = session_members(pid)
            .into_iter()
            .filter_map(|p| Some((p, stat(p, 3)?)))
            .collect();
        let settled = states
            .iter()
            .all(|(_, s)| matches!(s.as_str(), "T" | "Z" | "X"));
        if settled || Instant::now() > deadline {
            return states
                .iter()
                .filter(|(p, s)| {
                    s == "T" && stat(*p, 4).and_then(|ppid| ppid.parse().ok()) == Some(pid)
                })
                .count();
        }
        thread::sleep(Duration::from_micros(100));
    }
}
