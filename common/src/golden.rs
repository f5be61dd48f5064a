//! Test support for the examples (feature `test-support`, for dev-dependencies only):
//! running an example or its Python original, the normalisation both go through, and the
//! comparison with a golden file.
//!
//! Every run is made in a process group of its own and is checked to leave no process of
//! that group behind, so each golden or parity test is also an orphan test.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::LazyLock;
use std::thread;
use std::time::{Duration, Instant};

use regex::Regex;

/// How long one run may take before it is taken for a hang and killed.
pub const HANG: Duration = Duration::from_secs(60);

/// Set to `overwrite` to write the actual outputs into the golden files.
pub const UPDATE_ENV: &str = "SNAPSHOTS";

/// Set (to anything) to make a parity test fail, not skip, where `python3` is missing.
pub const REQUIRE_PYTHON_ENV: &str = "REQUIRE_PYTHON";

/// What a finished run printed and how it ended.
#[derive(Debug)]
pub struct Run {
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
    /// How the process ended.
    pub status: std::process::ExitStatus,
    /// Its process id, which was also its process group's id.
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

/// The lines of `text`, sorted: to compare outputs whose lines come in any order.
pub fn sorted_lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    lines
}

/// Runs `cmd` to its end in a new process group, with stdout and stderr captured.
///
/// Panics if it runs longer than [`HANG`] (the whole group is killed first), or if any
/// process of its group is still there once it has exited: an orphan.
pub fn run(mut cmd: Command) -> Run {
    let mut child = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let pid = child.id();
    let stdout = child.stdout.take().map(read_all);
    let stderr = child.stderr.take().map(read_all);
    let deadline = Instant::now() + HANG;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waitpid") {
            break status;
        }
        if Instant::now() > deadline {
            kill_group(pid);
            let _ = child.wait();
            panic!("{cmd:?} still ran after {HANG:?}: killed it and its process group");
        }
        thread::sleep(Duration::from_millis(5));
    };
    let left = group_members(pid);
    if !left.is_empty() {
        kill_group(pid);
        panic!("{cmd:?} exited but left these processes of its group running: {left:?}");
    }
    let text = |reader: Option<thread::JoinHandle<String>>| {
        reader.map_or_else(String::new, |r| r.join().expect("reader thread"))
    };
    Run {
        stdout: text(stdout),
        stderr: text(stderr),
        status,
        pid,
    }
}

fn read_all(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        pipe.read_to_end(&mut bytes).expect("read child output");
        String::from_utf8(bytes).expect("output is UTF-8")
    })
}

fn kill_group(pgid: u32) {
    // SAFETY: `kill` with a negative pid signals a process group; it touches no memory.
    unsafe { libc::kill(-(pgid as libc::pid_t), libc::SIGKILL) };
}

/// Runs `cmd` and checks that it refused its arguments as a usage error: exit status 2,
/// nothing on stdout, and each of `says` on stderr.
#[track_caller]
pub fn assert_usage_error(cmd: Command, says: &[&str]) {
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(2), "stderr: {}", out.stderr);
    assert_eq!(out.stdout, "");
    for text in says {
        assert!(
            out.stderr.contains(text),
            "no {text:?} in stderr: {}",
            out.stderr
        );
    }
}

/// The processes, zombies included, whose process group is `pgid`, read from `/proc`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| crate::process::stat_field(&stat, 5)?.parse::<u32>().ok())
                == Some(pgid)
        })
        .collect()
}

static PID_LINE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?m)^(parent process|process id): \d+$").expect("valid regex"));
static MODULE_LINE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?m)^module name: .*$").expect("valid regex"));

/// Process ids differ on every run: `process id: 4123` becomes `process id: [PID]`.
pub fn redact_pids(text: &str) -> String {
    PID_LINE.replace_all(text, "$1: [PID]").into_owned()
}

/// What a parity test compares: [`redact_pids`], and the module name (`__main__` in Python,
/// the Rust module path in Rust) becomes `[MODULE]`.
pub fn normalise(text: &str) -> String {
    MODULE_LINE
        .replace_all(&redact_pids(text), "module name: [MODULE]")
        .into_owned()
}

/// Compares `actual` with a golden file (`snapbox::file!["golden/x.stdout"]`, or with
/// `.unordered()` where lines may come in any order), showing a diff when they differ.
/// With `SNAPSHOTS=overwrite`, writes `actual` into the golden file instead.
#[track_caller]
pub fn assert_golden(actual: &str, golden: snapbox::Data) {
    snapbox::Assert::new()
        .action_env(UPDATE_ENV)
        .eq(actual.to_owned(), golden);
}

/// Compares `actual` with a golden file as [`assert_golden`] does, but only reports: it
/// never writes the file, whatever `SNAPSHOTS` says. For tests that show a wrong output fails.
pub fn check_golden(actual: &str, golden: snapbox::Data) -> Result<(), String> {
    snapbox::Assert::new()
        .try_eq(None, actual.to_owned().into(), golden)
        .map_err(|e| e.to_string())
}

/// A `python3` command, or `None`, having said so on the terminal, where there is none
/// (and `REQUIRE_PYTHON` is not set, else it panics). `what` names the check that is skipped.
pub fn python3(what: &str) -> Option<Command> {
    let found = Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os(REQUIRE_PYTHON_ENV).is_none(),
            "python3 not found, and {REQUIRE_PYTHON_ENV} is set"
        );
        // Written to the stderr handle itself, which the test harness does not capture,
        // so that a skipped check is seen.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: python3 not found; {what} not checked"
        );
        return None;
    }
    let mut cmd = Command::new("python3");
    cmd.env("PYTHONIOENCODING", "utf-8");
    Some(cmd)
}

/// Runs a Python original with [`python3`], or returns `None` where there is none.
pub fn run_python(script: &Path, args: &[&str]) -> Option<Run> {
    let mut cmd = python3(&format!("parity with {}", script.display()))?;
    cmd.arg(script).args(args);
    Some(run(cmd).success())
}

/// Runs `tests` one by one on the main thread and exits with status 1 if any failed, printing
/// what libtest prints. For `harness = false` test binaries: their tests fork, and `fork` is
/// refused while libtest's threads run. A hang fails too: SIGALRM ends the binary after two
/// minutes.
pub fn run_tests(tests: &[(&str, fn())]) {
    // SAFETY: alarm only arms a timer; no memory is touched.
    unsafe { libc::alarm(120) };
    let started = Instant::now();
    let mut failed = Vec::new();
    println!("\nrunning {} tests", tests.len());
    for (name, test) in tests {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(test));
        println!(
            "test {name} ... {}",
            if result.is_ok() { "ok" } else { "FAILED" }
        );
        if result.is_err() {
            failed.push(*name);
        }
    }
    let verdict = if failed.is_empty() { "ok" } else { "FAILED" };
    println!(
        "\ntest result: {verdict}. {} passed; {} failed; 0 ignored; 0 measured; 0 filtered out; finished in {:.2}s\n",
        tests.len() - failed.len(),
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    if !failed.is_empty() {
        std::process::exit(1);
    }
}

/// Panics unless this process has no child left to reap: none running, no zombie.
pub fn assert_no_children() {
    assert_eq!(
        nix::sys::wait::waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG)),
        Err(nix::errno::Errno::ECHILD)
    );
}

/// This process's open file descriptors, each as `fd -> what it refers to`, in fd order:
/// compare a list taken before with one taken after to see what leaked.
pub fn open_fds() -> Vec<String> {
    let mut fds: Vec<(u32, String)> = std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let fd = entry.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(entry.path()).ok()?;
            Some((fd, target.display().to_string()))
        })
        .collect();
    fds.sort();
    fds.into_iter()
        .map(|(fd, target)| format!("{fd} -> {target}"))
        .collect()
}
