//! Starting a job with MPI's launcher from a test, and checking that none of its processes
//! outlives it. Where the crate is built without MPI, or `mpiexec` is missing, a check says
//! `SKIPPED`; with `REQUIRE_MPI` set (as CI sets it) it fails instead.
//!
//! MPICH's launcher starts each host's ranks under a proxy in a session of its own, so the
//! session check of `testkit::run` does not see them: every job here carries a mark in its
//! environment, which the launcher passes on to every process it starts, and no process with
//! that mark may be left once the job has ended.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::testkit::{self, Run};

/// Set (to anything) to make a check that needs MPI or mpi4py fail, not skip, without them.
pub const REQUIRE_MPI_ENV: &str = "REQUIRE_MPI";

/// The environment variable that marks a test's job.
const MARK: &str = "MPI_MAP_TEST_JOB";

/// Says that `what` is not checked, and why; panics instead where `REQUIRE_MPI` is set.
pub fn skip(why: &str, what: &str) {
    assert!(
        std::env::var_os(REQUIRE_MPI_ENV).is_none(),
        "{why}, and {REQUIRE_MPI_ENV} is set: {what} cannot be checked"
    );
    // The stderr handle itself, which the test harness does not capture.
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}; {what} not checked");
}

/// `mpiexec -n ranks`, with what Open MPI needs to run as root and more ranks than cores,
/// or `None` (having said `SKIPPED`) where there is no MPI to run.
pub fn mpiexec(ranks: u32, what: &str) -> Option<Command> {
    if !cfg!(feature = "mpi") {
        skip("built without the feature `mpi`", what);
        return None;
    }
    let version = Command::new("mpiexec")
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    let Ok(version) = version.map(|v| String::from_utf8_lossy(&v.stdout).into_owned()) else {
        skip("mpiexec not found", what);
        return None;
    };
    let mut cmd = Command::new("mpiexec");
    cmd.args(["-n", &ranks.to_string()]);
    if version.contains("Open MPI") || version.contains("OpenRTE") {
        cmd.arg("--oversubscribe")
            .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    }
    Some(cmd)
}

/// Runs a job with `testkit::run` (a session of its own, an empty directory, a time limit),
/// then checks that no process it started is left, a rank or a proxy.
pub fn run_job(mut cmd: Command) -> Run {
    let mark = new_mark();
    cmd.env(MARK, &mark);
    let run = testkit::run(cmd);
    assert_nothing_left(&mark);
    run
}

/// A mark no other job of this test binary has.
pub fn new_mark() -> String {
    static JOBS: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        JOBS.fetch_add(1, Ordering::Relaxed)
    )
}

/// Sets the mark on `cmd`, for [`assert_nothing_left`].
pub fn mark(cmd: &mut Command, mark: &str) {
    cmd.env(MARK, mark);
}

/// Panics if a process marked `mark` is still there a second after its job ended (a rank
/// killed last may be reaped a moment later by whoever adopts it).
pub fn assert_nothing_left(mark: &str) {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let left = marked(mark);
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            for &(pid, _) in &left {
                // SAFETY: kill touches no memory; these processes carry this job's mark.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
            panic!("the job ended, but left these processes: {left:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The processes whose environment holds `MARK=mark`: (pid, command line).
fn marked(mark: &str) -> Vec<(u32, String)> {
    let needle = format!("{MARK}={mark}\0");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
        .map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            (pid, String::from_utf8_lossy(&cmd).replace('\0', " "))
        })
        .collect()
}
