//! Test support for the sections, a dev-dependency only: running an example or its Python
//! original, the normalisation both go through, and the comparison with a golden file.
//!
//! Every run is made in a session of its own, in an empty directory of its own, and is
//! checked to leave no process of that session and no file behind: so each golden or parity
//! test is also an orphan and leftover test.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::LazyLock;
use std::time::Instant;

use regex::Regex;

mod run;
pub use run::{
    HANG, Run, Unwritable, assert_interrupts_are_clean, assert_unprintable_is_clear, ends_within,
    has_ended, process_state, run, run_python_program, run_unwritable, stdout_of, until_asleep,
    with_stderr_full,
};

/// Set to `overwrite` to write the actual outputs into the golden files.
pub const UPDATE_ENV: &str = "SNAPSHOTS";

/// Set (to anything) to make a parity test fail, not skip, where `python3` is missing.
pub const REQUIRE_PYTHON_ENV: &str = "REQUIRE_PYTHON";

/// Set to a number to make each golden check of an example run that many times: the stress
/// run (`scripts/stress`).
pub const STRESS_ENV: &str = "STRESS_RUNS";

/// Runs `check` once, or `STRESS_RUNS` times, stopping at the first failure, which is told
/// with its run's number.
pub fn repeat(mut check: impl FnMut()) {
    let runs = match std::env::var(STRESS_ENV) {
        Ok(n) => n
            .parse::<u32>()
            .unwrap_or_else(|_| panic!("{STRESS_ENV}={n:?} is not a number of runs")),
        Err(_) => 1,
    };
    for n in 1..=runs {
        if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut check)) {
            let _ = writeln!(std::io::stderr(), "failed at run {n} of {runs}");
            std::panic::resume_unwind(panic);
        }
    }
}

/// The lines of `text`, sorted: to compare outputs whose lines come in any order.
pub fn sorted_lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    lines
}

/// Runs `cmd` and checks that it refused its arguments as a usage error: exit status 2,
/// nothing on stdout, and each of `says` on stderr. Then runs it again with a stderr that
/// cannot be written ([`with_stderr_full`]): still status 2 (`eprintln!` would panic: 101).
#[track_caller]
pub fn assert_usage_error(cmd: Command, says: &[&str]) {
    let mut again = Command::new(cmd.get_program());
    again.args(cmd.get_args());
    for (name, value) in cmd.get_envs() {
        match value {
            Some(value) => again.env(name, value),
            None => again.env_remove(name),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        again.current_dir(dir);
    }
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
    with_stderr_full(&mut again);
    let unheard = run(again);
    assert_eq!(
        (unheard.status.code(), unheard.stdout.as_str()),
        (Some(2), ""),
        "with stderr unwritable"
    );
}

/// Runs `cmd` with `--help` and checks that it says what the example shows (its section,
/// `says`) and how to run it, on stdout, and exits 0.
#[track_caller]
pub fn assert_help(mut cmd: Command, says: &str) {
    cmd.arg("--help");
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", out.stderr);
    assert_eq!(out.stderr, "");
    assert!(out.stdout.starts_with(says), "--help says: {}", out.stdout);
    assert!(
        out.stdout.contains("\nusage: cargo run -p "),
        "--help says: {}",
        out.stdout
    );
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

/// The variable that makes a check this machine cannot make (no root or no capability for
/// it, no kernel support) a failure instead of a skip. CI sets it, where every check can be
/// made, so that no regression hides behind a `SKIPPED`.
pub const REQUIRE_ALL_CHECKS_ENV: &str = "REQUIRE_ALL_CHECKS";

/// Says on the terminal that a check is skipped, and why; or panics, where
/// `REQUIRE_ALL_CHECKS` is set.
pub fn skipped(why: &str) {
    assert!(
        std::env::var_os(REQUIRE_ALL_CHECKS_ENV).is_none(),
        "{why}, and {REQUIRE_ALL_CHECKS_ENV} is set"
    );
    // Written to the stderr handle itself, which the test harness does not capture.
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}

/// `program` (with its arguments), to be run as the first process of a pid namespace of its
/// own (util-linux's `unshare --pid --fork`): there it is pid 1, its parent outside is 0 to
/// it, and the processes it makes are numbered 2, 3, ... in the order it makes them, so a
/// test knows each child's ids before it runs. `None`, having called [`skipped`], where
/// no namespace can be made (no `unshare`, or no CAP_SYS_ADMIN).
pub fn in_new_pid_namespace(program: &Path) -> Option<Command> {
    let works = Command::new("unshare")
        .args(["--pid", "--fork", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !works {
        skipped("no new pid namespace (`unshare --pid --fork` needs util-linux and CAP_SYS_ADMIN)");
        return None;
    }
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--"]).arg(program);
    Some(cmd)
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
    run_python_as(script, args, StartDefault::Installed)
}

/// The start method that `multiprocessing` uses where a program names none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartDefault {
    /// The installed Python's own: `fork` on Linux up to Python 3.13.
    Installed,
    /// `forkserver`, as Python 3.14 made it on Linux; simulated on the installed Python.
    Forkserver,
}

impl StartDefault {
    /// Both, the installed default first.
    pub const ALL: [StartDefault; 2] = [StartDefault::Installed, StartDefault::Forkserver];

    /// How a failure names it.
    pub fn name(self) -> &'static str {
        match self {
            StartDefault::Installed => "the installed Python's",
            StartDefault::Forkserver => "forkserver (Python 3.14's on Linux)",
        }
    }
}

/// Put first on `PYTHONPATH`, it makes `forkserver` the default start method, as Python 3.14
/// does on Linux. 3.14 builds its `DefaultContext` with forkserver; here the one the installed
/// Python built is changed in place, not replaced, since `multiprocessing.set_start_method`,
/// `Lock`, `Pool` and the rest are bound to that object when the package is imported, while
/// `Process.start` looks it up again: a replaced one would ignore `set_start_method`.
const FORKSERVER_DEFAULT: &str = "\
# Written by the workspace's testkit: forkserver as the default start method, as in Python 3.14.
import multiprocessing.context as context

assert context._default_context._actual_context is None, 'a start method was fixed already'
context._default_context._default_context = context._concrete_contexts['forkserver']
";

/// A [`python3`] command that starts processes with `default` where the program names no
/// start method, or `None` as [`python3`] gives it. The second value is the directory that
/// makes the default (or nothing): keep it until the command has ended, it is removed when
/// dropped.
pub fn python3_as(what: &str, default: StartDefault) -> Option<(Command, impl Sized + use<>)> {
    let mut cmd = python3(what)?;
    let site = run::Scratch::new();
    if default == StartDefault::Forkserver {
        std::fs::write(site.0.join("sitecustomize.py"), FORKSERVER_DEFAULT)
            .expect("write sitecustomize.py");
        let mut path = std::ffi::OsString::from(&site.0);
        if let Some(old) = std::env::var_os("PYTHONPATH").filter(|p| !p.is_empty()) {
            path.push(":");
            path.push(old);
        }
        cmd.env("PYTHONPATH", path);
    }
    Some((cmd, site))
}

/// Runs a Python original as [`run_python`] does, with `default` as the start method where
/// the program names none; or returns `None` where there is no `python3`.
pub fn run_python_as(script: &Path, args: &[&str], default: StartDefault) -> Option<Run> {
    let (mut cmd, _site) = python3_as(&format!("parity with {}", script.display()), default)?;
    cmd.arg(script).args(args);
    Some(run_python_program(cmd).success())
}

/// Runs the Python original `script` under each [`StartDefault`], and `check` on each run;
/// a failure, of the run (see [`run`]) or of `check`, says which default it came under.
/// Where there is no `python3`, it says `SKIPPED` (or panics, with `REQUIRE_PYTHON` set) and
/// checks nothing.
pub fn check_python(script: &Path, args: &[&str], mut check: impl FnMut(Run)) {
    for default in StartDefault::ALL {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_python_as(script, args, default).map(&mut check)
        }));
        match result {
            Ok(Some(())) => {}
            Ok(None) => return,
            Err(panic) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "failed with {} as the default start method: {}",
                    default.name(),
                    script.display()
                );
                std::panic::resume_unwind(panic);
            }
        }
    }
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

/// Runs `check` with one more thread of this process running beside it: where `fork` is
/// refused, and spawn and a fork server must work.
pub fn beside_a_thread<T>(check: impl FnOnce() -> T) -> T {
    use std::sync::atomic::{AtomicBool, Ordering};
    /// Stops the thread when dropped: when `check` returns, and when it panics.
    struct Stop<'a>(&'a AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        });
        let _stop = Stop(&stop);
        check()
    })
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

/// Makes system call `nr` answer `action` (a `SECCOMP_RET_*` value) in this process and the
/// children it starts from now on, by a seccomp filter, and lets every other call through:
/// how a test makes a worker die at its next `read(2)`, or hides pidfds as a container may.
pub fn filter_syscall(nr: libc::c_long, action: u32) {
    let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let filter = [
        // The call's number, at offset 0 of seccomp_data.
        op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 0),
        op(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, 0, 1, nr as u32),
        op(libc::BPF_RET | libc::BPF_K, 0, 0, action),
        op(libc::BPF_RET | libc::BPF_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integers; PR_SET_SECCOMP reads `prog` and the
    // filter it points to, both alive for the call.
    let rc = unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog)
    };
    assert_eq!(rc, 0, "seccomp: {}", std::io::Error::last_os_error());
}
