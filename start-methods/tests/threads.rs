//! Start methods in a program with threads: libtest runs each test in a thread of its own,
//! with other tests running beside it, which is where fork is refused and spawn and
//! forkserver must work. (The pool started by each method: `pool-map/tests/start_methods.rs`.)

// The workspace's test harness, included by path rather than named as a dependency.
#[path = "../../testkit/src/lib.rs"]
#[allow(dead_code, unused_imports)]
mod testkit;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{Error, ExitStatus};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use start_methods::{Context, Method, Process, get_context};
use testkit::{beside_a_thread, has_ended};

const THREADED: [Method; 2] = [Method::Spawn, Method::ForkServer];

fn quiet(_: i64) {}

fn sleep_for(seconds: u64) {
    thread::sleep(Duration::from_secs(seconds));
}

fn fails(why: String) -> Result<(), String> {
    Err(why)
}

fn panics(why: String) {
    panic!("{why}");
}

/// Waits (to catch a hang, not to time it) until `pid` has ended.
fn assert_ends(pid: u32, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !has_ended(pid) {
        assert!(Instant::now() < deadline, "{what} ({pid}) still runs");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_process_reports_how_its_target_ended_by_every_method() {
    beside_a_thread(|| {
        // Fork is refused here (libtest's threads run); it is tested in `common`.
        for method in THREADED {
            let ctx = get_context(method).expect("context");
            let run = |mut p: Process| {
                p.start().expect("start");
                p.join().expect("join")
            };
            let ok = Process::new(&ctx, quiet, 3).expect("process");
            assert_eq!(run(ok), ExitStatus::Exited(0), "{method}: returned");
            let err = Process::new(&ctx, fails, "on purpose".to_string()).expect("process");
            assert_eq!(run(err), ExitStatus::Exited(1), "{method}: Err");
            let panic = Process::new(&ctx, panics, "on purpose".to_string()).expect("process");
            assert_eq!(run(panic), ExitStatus::Exited(101), "{method}: panicked");
            let mut sleeper = Process::new(&ctx, sleep_for, 30).expect("process");
            sleeper.start().expect("start");
            assert!(sleeper.is_alive().expect("is_alive"), "{method}: alive");
            sleeper.terminate().expect("terminate");
            let status = sleeper.join().expect("join");
            assert_eq!(
                status,
                ExitStatus::Signaled(Signal::SIGTERM),
                "{method}: terminated"
            );
            assert!(!sleeper.is_alive().expect("is_alive"), "{method}: ended");
            assert!(has_ended(sleeper.pid().expect("pid")), "{method}: reaped");
        }
    });
}

#[test]
fn a_request_too_large_for_one_message_is_refused() {
    let ctx = get_context(Method::Spawn).expect("context");
    let mut p = Process::new(&ctx, |v: Vec<u8>| drop(v), vec![7u8; 100_000]).expect("process");
    assert!(matches!(p.start(), Err(Error::RequestTooLarge { .. })));
}

/// Not a test of its own: the owner that the tests below start, as a second run of this
/// test binary, in the mode `START_METHODS_OWNER` names. Outside that, it returns at once.
/// - `kill`: starts a child by a fork server, says `server <pid> child <pid>`, and sleeps;
/// - `drop`: the same, then drops the child's handle and the context, which waits for the
///   child to end;
/// - `hup`: starts a child that sleeps half a second, says so, and prints how it ended;
/// - `interrupt`: as `kill`, and a child by spawn too (`spawned <pid>`).
#[test]
fn owner_of_a_fork_server() {
    let Some(mode) = std::env::var_os("START_METHODS_OWNER") else {
        return;
    };
    let ctx: Context = get_context(Method::ForkServer).expect("context");
    if mode == "interrupt" {
        let spawn = get_context(Method::Spawn).expect("context");
        let mut spawned = Process::new(&spawn, sleep_for, 60).expect("process");
        spawned.start().expect("start");
        let mut served = Process::new(&ctx, sleep_for, 60).expect("process");
        served.start().expect("start");
        println!(
            "server {} child {} spawned {}",
            ctx.server_pid().expect("server"),
            served.pid().expect("pid"),
            spawned.pid().expect("pid")
        );
        sleep_for(60);
        return;
    }
    if mode == "hup" {
        let mut p = Process::new(&ctx, sleep_ms, 500).expect("process");
        p.start().expect("start");
        println!(
            "server {} child {}",
            ctx.server_pid().expect("server"),
            p.pid().expect("pid")
        );
        println!("ended {:?}", p.join());
        return;
    }
    let mut p = Process::new(&ctx, sleep_for, 60).expect("process");
    p.start().expect("start");
    println!(
        "server {} child {}",
        ctx.server_pid().expect("server"),
        p.pid().expect("pid")
    );
    if mode == "drop" {
        drop(p);
        drop(ctx);
    }
    sleep_for(60);
}

fn sleep_ms(ms: u64) {
    thread::sleep(Duration::from_millis(ms));
}

/// Starts `owner_of_a_fork_server` in `mode`, in a process group of its own, with SIGHUP
/// ignored (as `nohup` leaves it); returns it, its stdout, and the pids it names: the
/// server's, its child's, and in mode `interrupt` the spawned child's.
fn owner(
    mode: &str,
) -> (
    std::process::Child,
    BufReader<std::process::ChildStdout>,
    Vec<u32>,
) {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args([
        "--exact",
        "owner_of_a_fork_server",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("START_METHODS_OWNER", mode)
    .stdout(Stdio::piped())
    .process_group(0);
    // SAFETY: the closure runs in the forked child before exec and only sets a signal's
    // disposition, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            Ok(())
        });
    }
    let mut owner = cmd.spawn().expect("owner");
    let mut stdout = BufReader::new(owner.stdout.take().expect("stdout"));
    let mut line = String::new();
    while stdout.read_line(&mut line).expect("read") > 0 {
        // libtest prints `test owner_of_a_fork_server ... ` first, on the same line.
        if let Some(at) = line.find("server ") {
            let words: Vec<u32> = line[at..]
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            if words.len() >= 2 {
                return (owner, stdout, words);
            }
        }
        line.clear();
    }
    let _ = owner.kill();
    let _ = owner.wait();
    panic!("the owner did not say its server and child");
}

#[test]
fn the_fork_server_and_its_children_end_with_a_killed_owner() {
    // Killed while it runs, and killed while its dropped context waits for the server.
    for mode in ["kill", "drop"] {
        let (mut owner, _, pids) = owner(mode);
        let (server, child) = (pids[0], pids[1]);
        if mode == "drop" {
            // Until the owner waits in the drop: the child is all the server has then.
            thread::sleep(Duration::from_millis(300));
        }
        owner.kill().expect("SIGKILL the owner");
        owner.wait().expect("reap the owner");
        assert_ends(child, &format!("{mode}: the fork server's child"));
        assert_ends(server, &format!("{mode}: the fork server"));
    }
}

#[test]
fn an_interrupt_ends_the_owners_children_by_every_method() {
    use std::os::unix::process::ExitStatusExt;
    // SIGTERM to the owner alone, and SIGINT to its whole group, as Ctrl-C sends it.
    for (signal, group) in [(Signal::SIGTERM, false), (Signal::SIGINT, true)] {
        let (mut owner, _, pids) = owner("interrupt");
        assert_eq!(pids.len(), 3, "server, served child, spawned child");
        let pid = owner.id() as i32;
        kill(Pid::from_raw(if group { -pid } else { pid }), signal).expect("signal");
        let status = owner.wait().expect("reap the owner");
        assert_eq!(
            status.signal(),
            Some(signal as i32),
            "{signal}: the owner's end"
        );
        for (pid, what) in pids
            .into_iter()
            .zip(["the fork server", "its child", "a spawned child"])
        {
            assert_ends(pid, &format!("{signal}: {what}"));
        }
    }
}

#[test]
fn a_signal_the_owner_ignores_does_not_end_the_fork_servers_children() {
    let (mut owner, mut stdout, _) = owner("hup");
    // SIGHUP to the whole group, as a closing terminal sends it: the owner ignores it
    // (`nohup`), and so must the server, which would otherwise kill its children.
    kill(Pid::from_raw(-(owner.id() as i32)), Signal::SIGHUP).expect("SIGHUP the group");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).expect("read");
    assert!(owner.wait().expect("reap the owner").success(), "{rest}");
    assert!(
        rest.contains("ended Ok(Exited(0))"),
        "the child ran to its end: {rest}"
    );
}

/// The number of descriptors this process has above stderr, as its exit code.
fn count_descriptors(_: ()) -> Result<(), String> {
    let listed = std::fs::read_dir("/proc/self/fd").map_err(|e| e.to_string())?;
    // The listing's own descriptor is one of them.
    let extra = listed
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
                .is_some_and(|fd| fd > 2)
        })
        .count()
        - 1;
    if extra == 0 {
        Ok(())
    } else {
        Err(format!("{extra} descriptors inherited"))
    }
}

#[test]
fn a_spawned_or_served_child_holds_only_what_it_is_sent() {
    // A descriptor without close-on-exec, as one inherited from a parent would be.
    // SAFETY: dup of stderr touches no memory; the copy is closed below.
    let loose = unsafe { libc::dup(2) };
    assert!(loose > 2, "dup");
    for method in THREADED {
        let ctx = get_context(method).expect("context");
        let mut p = Process::new(&ctx, count_descriptors, ()).expect("process");
        p.start().expect("start");
        assert_eq!(p.join().expect("join"), ExitStatus::Exited(0), "{method}");
    }
    // SAFETY: closes only the copy made above.
    unsafe { libc::close(loose) };
}

fn exit_0(_: &[u8], _: Vec<std::os::fd::OwnedFd>) -> i32 {
    0
}

/// A fork server out of descriptors cannot take a request's: it drops the request, closes
/// what came of it (here, the write end of a pipe, whose reader must then see its end), and
/// serves on; its owner is told why, not that the server has ended.
#[test]
fn a_fork_server_out_of_descriptors_drops_the_request_and_serves_on() {
    use std::io::Read;
    let ctx = common::start::Context::new(Method::ForkServer).expect("a fork server");
    let server = ctx.server_pid().expect("its pid");
    let mut warm = ctx.start(exit_0, Vec::new(), Vec::new()).expect("a child");
    assert_eq!(warm.join().expect("join"), ExitStatus::Exited(0));
    // The server's descriptors, by number: once the warm-up child's link is closed, its
    // only socket is its control socket.
    let fds = || -> Vec<(i32, String)> {
        let dir = std::fs::read_dir(format!("/proc/{server}/fd")).expect("its fds");
        dir.filter_map(|e| {
            let e = e.ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some((
                e.file_name().to_str()?.parse().ok()?,
                target.display().to_string(),
            ))
        })
        .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while fds()
        .iter()
        .filter(|(_, t)| t.starts_with("socket:"))
        .count()
        > 1
    {
        assert!(
            Instant::now() < deadline,
            "the server kept a served child's link"
        );
        thread::sleep(Duration::from_millis(10));
    }
    let numbers: Vec<i32> = fds().into_iter().map(|(n, _)| n).collect();
    let lowest_free = (0..).find(|n| !numbers.contains(n)).expect("a free number") as usize;
    // A limit just above the lowest free number: the pipe's end comes in, the link does not.
    let limit = |n: usize| libc::rlimit {
        rlim_cur: n as libc::rlim_t,
        rlim_max: 1024,
    };
    let set = |n: usize| {
        // SAFETY: prlimit reads the limit given and writes nothing (no old limit asked).
        let rc = unsafe {
            libc::prlimit(
                server as libc::pid_t,
                libc::RLIMIT_NOFILE,
                &limit(n),
                std::ptr::null_mut(),
            )
        };
        assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    };
    set(lowest_free + 1);
    let (mut reader, writer) = std::io::pipe().expect("a pipe");
    let refused = ctx.start(exit_0, Vec::new(), vec![writer.into()]);
    let Err(Error::Os { call, source }) = refused else {
        panic!(
            "a start at the server's limit gave {:?}",
            refused.map(|c| c.pid())
        );
    };
    assert_eq!(
        (call, source.raw_os_error()),
        ("recvmsg (in the fork server)", Some(libc::EMFILE))
    );
    // The pipe's only write end went to the server, which closed it: the reader ends.
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || tx.send(reader.read(&mut [0; 1]).map_err(|e| e.to_string())));
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)),
        Ok(Ok(0)),
        "the server kept the request's descriptor"
    );
    set(1024);
    let mut after = ctx
        .start(exit_0, Vec::new(), Vec::new())
        .expect("a child after");
    assert_eq!(after.join().expect("join"), ExitStatus::Exited(0));
}
