//! A fork server's pids, once reused: a child without a pidfd, signalled after the server
//! has reaped it, and a server found dead, are never taken for the process that has their
//! pid since. In a test binary of their own, so that no other test's processes take the
//! pids these tests hand on.

// The workspace's test harness, included by path rather than named as a dependency.
#[path = "../../testkit/src/lib.rs"]
#[allow(dead_code, unused_imports)]
mod testkit;

use std::io::Write;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::{Error, ExitStatus};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use start_methods::Method;
use testkit::has_ended;

fn exit_0(_: &[u8], _: Vec<std::os::fd::OwnedFd>) -> i32 {
    0
}

fn sleep_10(_: &[u8], _: Vec<std::os::fd::OwnedFd>) -> i32 {
    thread::sleep(Duration::from_secs(10));
    0
}

/// The fork server's descriptor numbers; the lowest free one.
fn lowest_free_descriptor(pid: u32) -> usize {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("its fds");
    let numbers: Vec<usize> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    (0..).find(|n| !numbers.contains(n)).expect("a free number")
}

/// Sets process `pid`'s soft RLIMIT_NOFILE to `n`.
fn set_descriptor_limit(pid: u32, n: usize) {
    let limit = libc::rlimit {
        rlim_cur: n as libc::rlim_t,
        rlim_max: 1024,
    };
    // SAFETY: prlimit reads the limit given and writes nothing (no old limit asked).
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &limit,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

/// A child of this process (`sleep seconds`) with the pid `pid`, which no process has now:
/// made by asking the kernel for the pid after `pid - 1` next (`ns_last_pid`, which only root
/// may set). `None`, having said SKIPPED, where that cannot be done.
fn a_process_with_pid(pid: u32, seconds: u32) -> Option<std::process::Child> {
    for _ in 0..50 {
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!(
                "SKIPPED: pid {pid} was taken by another process: a reused pid is not checked"
            );
            return None;
        }
        let asked = std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string());
        if let Err(e) = asked {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: cannot set ns_last_pid ({e}): a reused pid is not checked"
            );
            return None;
        }
        let child = Command::new("sleep")
            .arg(seconds.to_string())
            .spawn()
            .expect("sleep");
        if child.id() == pid {
            return Some(child);
        }
        // Another process took the pid first: this one goes.
        let mut child = child;
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("pid {pid} never came back");
}

/// A fork server with no descriptor left for a child's pidfd starts it all the same, and a
/// signal to that child goes through the server, which knows whether it has reaped it:
/// sent by pid, it could reach another process that has the pid since.
#[test]
fn a_served_child_without_a_pidfd_is_signalled_through_its_server() {
    let ctx = common::start::Context::new(Method::ForkServer).expect("a fork server");
    let server = ctx.server_pid().expect("its pid");
    let mut warm = ctx.start(exit_0, Vec::new(), Vec::new()).expect("a child");
    assert_eq!(warm.join().expect("join"), ExitStatus::Exited(0));
    let deadline = Instant::now() + Duration::from_secs(10);
    // Room for one descriptor: the link of the next request comes, its pidfd does not.
    let start_without_pidfd = |entry| {
        let lowest = loop {
            // Until the warm-up child's link is closed, and the number it had is free.
            let lowest = lowest_free_descriptor(server);
            let other_links = std::fs::read_dir(format!("/proc/{server}/fd"))
                .expect("its fds")
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|t| t.display().to_string().starts_with("socket:"))
                .count();
            if other_links == 1 || Instant::now() > deadline {
                break lowest;
            }
            thread::sleep(Duration::from_millis(10));
        };
        set_descriptor_limit(server, lowest + 1);
        let child = ctx.start(entry, Vec::new(), Vec::new());
        set_descriptor_limit(server, 1024);
        child.expect("a child started without a pidfd")
    };
    // Signalled while it runs: killed.
    let mut running = start_without_pidfd(sleep_10);
    running.kill().expect("kill");
    assert_eq!(
        running.join().expect("join"),
        ExitStatus::Signaled(Signal::SIGKILL)
    );
    // Signalled once the server has reaped it and its pid is another process's: nothing.
    let mut ended = start_without_pidfd(exit_0);
    let pid = ended.pid();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !has_ended(pid) {
        assert!(Instant::now() < deadline, "the child never ended");
        thread::sleep(Duration::from_millis(5));
    }
    let Some(mut other) = a_process_with_pid(pid, 5) else {
        return;
    };
    ended.kill().expect("kill");
    assert_eq!(ended.join().expect("join"), ExitStatus::Exited(0));
    thread::sleep(Duration::from_millis(100));
    let reached = other.try_wait().expect("try_wait");
    let _ = other.kill();
    let _ = other.wait();
    assert_eq!(
        reached, None,
        "the kill reached another process with the child's pid"
    );
}

/// An owner that finds its fork server dead reaps it, and does not wait for its pid again
/// when the context goes: another child of the owner may have that pid by then.
#[test]
fn a_dead_fork_server_is_reaped_once() {
    let ctx = common::start::Context::new(Method::ForkServer).expect("a fork server");
    let server = ctx.server_pid().expect("its pid");
    kill(Pid::from_raw(server as i32), Signal::SIGSTOP).expect("SIGSTOP");
    let started = thread::scope(|s| {
        let start = s.spawn(|| ctx.start(exit_0, Vec::new(), Vec::new()).map(|c| c.pid()));
        // The request waits in the stopped server's socket; then the server dies.
        thread::sleep(Duration::from_millis(100));
        kill(Pid::from_raw(server as i32), Signal::SIGKILL).expect("SIGKILL");
        start.join().expect("the start's thread")
    });
    assert!(
        matches!(started, Err(Error::ForkServerGone)),
        "a start as the server died gave {started:?}"
    );
    let Some(mut other) = a_process_with_pid(server, 1) else {
        return;
    };
    drop(ctx);
    assert!(
        other.wait().expect("the other child's end").success(),
        "the context's end took the other child's status"
    );
}
