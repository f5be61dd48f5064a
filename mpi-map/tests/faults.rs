//! Faults: a panic on any rank, or a rank killed with SIGKILL, ends the whole job, with a
//! non-zero status and no process left, instead of a hang; so does Ctrl-C.
//!
//! This binary is also the MPI program of these tests: with `MPI_MAP_FAULT` set, each rank
//! runs that scenario (below) instead of the tests. A `harness = false` binary, so that
//! `main` can be either.

#[path = "../../testkit/src/lib.rs"]
#[allow(dead_code, unused_imports)]
mod testkit;

#[allow(dead_code)]
mod mpiexec;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::thread;
use std::time::{Duration, Instant};

use mpiexec::{assert_nothing_left, mark, mpiexec, new_mark};

/// Which scenario a rank runs.
const FAULT: &str = "MPI_MAP_FAULT";

fn main() {
    match std::env::var(FAULT) {
        Ok(scenario) => rank(&scenario),
        Err(_) => testkit::run_tests(&[
            (
                "a_panic_on_one_rank_ends_the_job_within_2_s",
                a_panic_on_one_rank_ends_the_job_within_2_s,
            ),
            (
                "a_panic_on_rank_0_or_in_a_thread_ends_the_job_within_2_s",
                a_panic_on_rank_0_or_in_a_thread_ends_the_job_within_2_s,
            ),
            (
                "without_the_hook_a_panic_hangs_the_job",
                without_the_hook_a_panic_hangs_the_job,
            ),
            ("a_killed_rank_ends_the_job", a_killed_rank_ends_the_job),
            (
                "ctrl_c_ends_the_job_and_leaves_nothing",
                ctrl_c_ends_the_job_and_leaves_nothing,
            ),
        ]),
    }
}

/// One rank of a scenario's job of four ranks. Items 0 to 7 are shared two a rank, so item 5
/// is rank 2's.
#[cfg(feature = "mpi")]
fn rank(scenario: &str) {
    let p = mpi_map::MpiPoolExecutor::new().expect("MPI starts");
    let items: Vec<i32> = (0..8).collect();
    match scenario {
        // `f` panics on item 5, on rank 2; the others wait for its result.
        "panic" => {
            let _ = p.map(panics_on_5, &items);
        }
        // `f` panics on item 0, on rank 0, the root, which the others wait for in the gather.
        "panic-root" => {
            let _ = p.map(
                |x: i32| {
                    if x == 0 {
                        eprintln!("rank 0 panics");
                        panic!("f panics on item 0");
                    }
                    x
                },
                &items,
            );
        }
        // A thread of rank 2 panics while its main thread, and every other rank, is in `map`.
        "panic-thread" => {
            if p.rank() == 2 {
                thread::spawn(|| {
                    thread::sleep(Duration::from_millis(200));
                    eprintln!("rank 2 panics");
                    panic!("a thread of rank 2 panics");
                });
            }
            let _ = p.map(
                |x: i32| {
                    thread::sleep(Duration::from_secs(60));
                    x
                },
                &items,
            );
        }
        // The same, with Rust's own panic hook put back: the trap the executor's hook avoids.
        "panic-unhooked" => {
            let _ = std::panic::take_hook();
            let _ = p.map(panics_on_5, &items);
        }
        // Every rank says who it is, then works for a minute.
        "sleep" => {
            println!("rank {} pid {}", p.rank(), std::process::id());
            let _ = p.map(
                |x: i32| {
                    thread::sleep(Duration::from_secs(60));
                    x
                },
                &items,
            );
        }
        _ => panic!("no scenario {scenario:?}"),
    }
}

#[cfg(feature = "mpi")]
fn panics_on_5(x: i32) -> i32 {
    if x == 5 {
        eprintln!("rank 2 panics");
        panic!("f panics on item 5");
    }
    x
}

#[cfg(not(feature = "mpi"))]
fn rank(_: &str) {
    unreachable!("scenarios run only where the tests do, with MPI");
}

/// A job of four ranks running `scenario`, its output read as it comes, line by line.
struct Job {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    mark: String,
}

impl Job {
    fn start(scenario: &str) -> Option<Job> {
        let mut cmd = mpiexec(4, &format!("the fault scenario {scenario}"))?;
        let mark_ = new_mark();
        mark(&mut cmd, &mark_);
        cmd.arg(std::env::current_exe().expect("this test's path"))
            .env(FAULT, scenario)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: the closure runs in the forked child before exec and calls only setsid,
        // which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("mpiexec starts");
        let (send, lines) = channel();
        let out: Box<dyn Read + Send> = Box::new(child.stdout.take().expect("stdout"));
        let err: Box<dyn Read + Send> = Box::new(child.stderr.take().expect("stderr"));
        for pipe in [out, err] {
            let send = send.clone();
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let _ = send.send(line);
                }
            });
        }
        Some(Job {
            child,
            lines,
            seen: Vec::new(),
            mark: mark_,
        })
    }

    /// Waits up to 10 s for a line that `wanted` accepts.
    fn line(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if let Ok(line) = self.lines.recv_timeout(left) {
                self.seen.push(line.clone());
                if wanted(&line) {
                    return line;
                }
            }
        }
        panic!("no such line in 10 s; the job printed: {:#?}", self.seen);
    }

    /// How the job ended, if it does within `limit`.
    fn ends_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("waitpid") {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(5));
        }
        None
    }
}

impl Drop for Job {
    /// Ends what is left of the job, as Ctrl-C does (the launcher then ends its proxies and
    /// ranks and waits for them), by SIGKILL to the launcher's group if that takes over 5 s;
    /// then checks that nothing is left.
    fn drop(&mut self) {
        let group = -(self.child.id() as libc::pid_t);
        for signal in [libc::SIGINT, libc::SIGKILL] {
            if self.child.try_wait().ok().flatten().is_some() {
                break;
            }
            // SAFETY: kill touches no memory; the group is the job's own, made by setsid.
            unsafe { libc::kill(group, signal) };
            self.ends_within(Duration::from_secs(5));
        }
        let _ = self.child.wait();
        if !thread::panicking() {
            assert_nothing_left(&self.mark);
        }
    }
}

fn a_panic_on_one_rank_ends_the_job_within_2_s() {
    let Some(mut job) = Job::start("panic") else {
        return;
    };
    job.line(|l| l == "rank 2 panics");
    let panicked = Instant::now();
    let status = job.ends_within(Duration::from_secs(10));
    let took = panicked.elapsed();
    let status = status.expect("the job ends after a panic");
    assert!(took < Duration::from_secs(2), "it took {took:?}");
    assert!(!status.success(), "{status}");
    job.line(|l| l.contains("f panics on item 5"));
}

fn a_panic_on_rank_0_or_in_a_thread_ends_the_job_within_2_s() {
    for (scenario, said, message) in [
        ("panic-root", "rank 0 panics", "f panics on item 0"),
        ("panic-thread", "rank 2 panics", "a thread of rank 2 panics"),
    ] {
        let Some(mut job) = Job::start(scenario) else {
            return;
        };
        job.line(|l| l == said);
        let panicked = Instant::now();
        let status = job.ends_within(Duration::from_secs(10));
        let took = panicked.elapsed();
        let status = status.unwrap_or_else(|| panic!("{scenario}: the job goes on"));
        assert!(
            took < Duration::from_secs(2),
            "{scenario}: it took {took:?}"
        );
        assert!(!status.success(), "{scenario}: {status}");
        job.line(|l| l.contains(message));
    }
}

fn without_the_hook_a_panic_hangs_the_job() {
    let Some(mut job) = Job::start("panic-unhooked") else {
        return;
    };
    job.line(|l| l == "rank 2 panics");
    assert_eq!(
        job.ends_within(Duration::from_secs(3)),
        None,
        "without the hook, the job was expected to hang (rsmpi issue 197)"
    );
}

fn a_killed_rank_ends_the_job() {
    for victim in ["0", "2"] {
        let Some(mut job) = Job::start("sleep") else {
            return;
        };
        let ranks: Vec<String> = (0..4)
            .map(|_| job.line(|l| l.starts_with("rank ")))
            .collect();
        let said = format!("rank {victim} pid ");
        let pid: libc::pid_t = ranks
            .iter()
            .find_map(|l| l.strip_prefix(&said)?.parse().ok())
            .unwrap_or_else(|| panic!("no pid of rank {victim} in {ranks:?}"));
        // SAFETY: kill touches no memory; `pid` is a rank of this job, which works for a minute.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let status = job.ends_within(Duration::from_secs(5));
        let status = status.unwrap_or_else(|| panic!("rank {victim} killed, the job goes on"));
        assert!(
            !status.success(),
            "rank {victim} killed, the job ended with {status}"
        );
    }
}

fn ctrl_c_ends_the_job_and_leaves_nothing() {
    let Some(mut job) = Job::start("sleep") else {
        return;
    };
    for _ in 0..4 {
        job.line(|l| l.starts_with("rank "));
    }
    // What Ctrl-C in a terminal does: SIGINT to the foreground group, the launcher's (its
    // proxies and the ranks are in sessions of their own, and hear it from the launcher).
    // SAFETY: kill touches no memory; the group is the job's own, made by setsid.
    unsafe { libc::kill(-(job.child.id() as libc::pid_t), libc::SIGINT) };
    let status = job.ends_within(Duration::from_secs(5));
    assert!(status.is_some(), "Ctrl-C, and the job goes on");
}
