//! Tests of `Process`. This is a `harness = false` binary: `fork` is refused while other
//! threads run, and libtest runs tests on threads, so these run one by one on the main thread.

// A failed unwrap is a failed test here, as in #[test] functions.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::time::Duration;

use common::{Error, ExitStatus, Process};
use nix::sys::signal::{Signal, kill, raise};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use testkit::{assert_no_children, open_fds};

fn main() {
    let tests: &[(&str, fn())] = &[
        (
            "a_sigchld_handler_of_the_programs_own_is_left_alone",
            a_sigchld_handler_of_the_programs_own_is_left_alone,
        ),
        (
            "child_changes_only_its_own_copy",
            child_changes_only_its_own_copy,
        ),
        (
            "exit_status_of_return_panic_and_signal",
            exit_status_of_return_panic_and_signal,
        ),
        ("panic_message_goes_to_stderr", panic_message_goes_to_stderr),
        (
            "a_fork_server_told_a_hostile_generation_still_runs_its_children",
            a_fork_server_told_a_hostile_generation_still_runs_its_children,
        ),
        (
            "a_fork_server_refuses_a_first_message_of_the_wrong_length",
            a_fork_server_refuses_a_first_message_of_the_wrong_length,
        ),
        (
            "a_signal_ends_three_generations_by_every_start_method",
            a_signal_ends_three_generations_by_every_start_method,
        ),
        (
            "a_signal_ends_three_generations_leaving_nothing_to_adopt",
            a_signal_ends_three_generations_leaving_nothing_to_adopt,
        ),
        (
            "a_thread_joining_as_the_handler_runs_goes_no_further",
            a_thread_joining_as_the_handler_runs_goes_no_further,
        ),
        (
            "a_target_whose_error_panics_as_it_is_told_exits_101",
            a_target_whose_error_panics_as_it_is_told_exits_101,
        ),
        (
            "an_err_target_exits_1_with_its_error",
            an_err_target_exits_1_with_its_error,
        ),
        (
            "child_never_runs_the_parents_code",
            child_never_runs_the_parents_code,
        ),
        (
            "stdout_is_flushed_before_fork",
            stdout_is_flushed_before_fork,
        ),
        (
            "start_twice_and_join_unstarted_are_errors",
            start_twice_and_join_unstarted_are_errors,
        ),
        (
            "fork_is_refused_while_threads_run",
            fork_is_refused_while_threads_run,
        ),
        (
            "dropped_handles_leave_no_zombie",
            dropped_handles_leave_no_zombie,
        ),
        (
            "child_joins_its_own_dropped_children",
            child_joins_its_own_dropped_children,
        ),
        ("no_descriptor_leaks", no_descriptor_leaks),
        (
            "current_pid_is_each_process_own",
            current_pid_is_each_process_own,
        ),
        (
            "is_alive_poll_terminate_and_kill",
            is_alive_poll_terminate_and_kill,
        ),
        (
            "a_signal_ends_even_a_child_that_ignores_sigterm",
            a_signal_ends_even_a_child_that_ignores_sigterm,
        ),
        (
            "an_ignored_sigint_stays_ignored",
            an_ignored_sigint_stays_ignored,
        ),
        (
            "a_signal_ends_any_number_of_children",
            a_signal_ends_any_number_of_children,
        ),
        (
            "a_signal_ends_a_process_whose_thread_keeps_starting_children",
            a_signal_ends_a_process_whose_thread_keeps_starting_children,
        ),
        (
            "a_signal_during_the_first_start_ends_that_child",
            a_signal_during_the_first_start_ends_that_child,
        ),
        (
            "a_process_forked_while_the_handler_runs_ends_its_own_children",
            a_process_forked_while_the_handler_runs_ends_its_own_children,
        ),
        (
            "a_parent_killed_by_sigkill_takes_its_children",
            a_parent_killed_by_sigkill_takes_its_children,
        ),
        (
            "a_wait_spins_only_where_it_pays",
            a_wait_spins_only_where_it_pays,
        ),
        (
            "a_read_that_does_not_wait_and_its_fallback",
            a_read_that_does_not_wait_and_its_fallback,
        ),
        (
            "a_private_descriptor_carried_into_a_child_reaches_nothing",
            a_private_descriptor_carried_into_a_child_reaches_nothing,
        ),
        (
            "a_child_lets_go_of_a_private_descriptor_past_a_lowered_limit",
            a_child_lets_go_of_a_private_descriptor_past_a_lowered_limit,
        ),
        (
            "a_descendant_with_a_dead_ancestors_pid_owns_nothing",
            a_descendant_with_a_dead_ancestors_pid_owns_nothing,
        ),
        (
            "borrows_are_counted_in_every_thread",
            borrows_are_counted_in_every_thread,
        ),
    ];
    testkit::run_tests(tests);
}

fn child_changes_only_its_own_copy() {
    let (mut r, w) = os_pipe::pipe().unwrap();
    let mut list = vec![0];
    let mut p = Process::new(|| {
        list.push(1);
        write!(&w, "{list:?}").unwrap();
    });
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), ExitStatus::Exited(0));
    drop(p);
    drop(w);
    let mut seen = String::new();
    r.read_to_string(&mut seen).unwrap();
    assert_eq!(seen, "[0, 1]");
    assert_eq!(list, [0]);
    assert_no_children();
}

fn exit_status_of_return_panic_and_signal() {
    let quiet = |f: fn()| {
        move || {
            silence_stderr();
            f()
        }
    };
    let mut ok = Process::new(|| {});
    let mut panics = Process::new(quiet(|| panic!("boom")));
    let mut killed = Process::new(|| {
        raise(Signal::SIGKILL).unwrap();
    });
    ok.start().unwrap();
    panics.start().unwrap();
    killed.start().unwrap();
    assert_eq!(ok.join().unwrap(), ExitStatus::Exited(0));
    assert_eq!(panics.join().unwrap(), ExitStatus::Exited(101));
    let status = killed.join().unwrap();
    assert_eq!(status, ExitStatus::Signaled(Signal::SIGKILL));
    assert_eq!(
        (status.code(), status.to_string()),
        (-9, "killed by SIGKILL".to_string())
    );
    // Joining again gives the same answer and waits for nothing.
    assert_eq!(panics.join().unwrap().code(), 101);
    assert_no_children();
}

/// Sends the child's stderr to /dev/null, for tests whose children panic on purpose.
fn silence_stderr() {
    let null = std::fs::File::create("/dev/null").unwrap();
    // SAFETY: dup2 onto fd 2 replaces the child's own stderr; both descriptors are open.
    unsafe { libc::dup2(null.as_raw_fd(), 2) };
}

fn panic_message_goes_to_stderr() {
    let (mut r, w) = os_pipe::pipe().unwrap();
    // A named fn: a closure that only panics would return `!`, which is no Outcome.
    fn fail(stderr: &os_pipe::PipeWriter) {
        // SAFETY: dup2 onto fd 2 replaces the child's own stderr; both descriptors are open.
        unsafe { libc::dup2(stderr.as_raw_fd(), 2) };
        panic!("worker failed: {}", 42);
    }
    let mut p = Process::new(|| fail(&w));
    p.start().unwrap();
    assert_eq!(p.join().unwrap().code(), 101);
    drop(p);
    drop(w);
    let mut stderr = String::new();
    r.read_to_string(&mut stderr).unwrap();
    assert!(stderr.contains("worker failed: 42"), "stderr was: {stderr}");
}

fn an_err_target_exits_1_with_its_error() {
    let (mut r, w) = os_pipe::pipe().unwrap();
    let mut p = Process::new(|| -> Result<(), Error> {
        // SAFETY: dup2 onto fd 2 replaces the child's own stderr; both descriptors are open.
        unsafe { libc::dup2(w.as_raw_fd(), 2) };
        Err(Error::NotStarted)
    });
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), ExitStatus::Exited(1));
    drop(p);
    drop(w);
    let mut stderr = String::new();
    r.read_to_string(&mut stderr).unwrap();
    assert_eq!(stderr, "Error: can only join a started process\n");
}

/// An error whose `Debug` panics as the child prints it (or whose `Drop` panics): the child
/// exits as a panicking child does, 101, and never unwinds out of `start` into the parent's
/// code (it returned from `start`, wrote a P, and its parent was told it exited with 0).
fn a_target_whose_error_panics_as_it_is_told_exits_101() {
    struct Unprintable;
    impl std::fmt::Debug for Unprintable {
        fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            panic!("cannot say it")
        }
    }
    struct Undroppable;
    impl std::fmt::Debug for Undroppable {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("undroppable")
        }
    }
    impl Drop for Undroppable {
        fn drop(&mut self) {
            panic!("cannot drop it")
        }
    }
    let (mut r, w) = os_pipe::pipe().unwrap();
    let mut debug = Process::new(|| -> Result<(), Unprintable> {
        silence_stderr();
        Err(Unprintable)
    });
    debug.start().unwrap();
    (&w).write_all(b"P").unwrap();
    let mut dropped = Process::new(|| -> Result<(), Undroppable> {
        silence_stderr();
        Err(Undroppable)
    });
    dropped.start().unwrap();
    (&w).write_all(b"Q").unwrap();
    assert_eq!(debug.join().unwrap(), ExitStatus::Exited(101));
    assert_eq!(dropped.join().unwrap(), ExitStatus::Exited(101));
    drop((debug, dropped, w));
    let mut seen = String::new();
    r.read_to_string(&mut seen).unwrap();
    assert_eq!(seen, "PQ", "a child ran its parent's code");
}

fn child_never_runs_the_parents_code() {
    let (mut r, w) = os_pipe::pipe().unwrap();
    let mut p = Process::new(|| (&w).write_all(b"C").unwrap());
    p.start().unwrap();
    // Were the child to return from start, it would write a P too.
    (&w).write_all(b"P").unwrap();
    p.join().unwrap();
    drop(p);
    drop(w);
    let mut seen = String::new();
    r.read_to_string(&mut seen).unwrap();
    let mut seen: Vec<char> = seen.chars().collect();
    seen.sort();
    assert_eq!(seen, ['C', 'P']);
}

fn stdout_is_flushed_before_fork() {
    let (mut r, w) = os_pipe::pipe().unwrap();
    std::io::stdout().flush().unwrap();
    // SAFETY: dup and dup2 on descriptors this test owns; fd 1 is put back below.
    let saved = unsafe { libc::dup(1) };
    // SAFETY: as above.
    unsafe { libc::dup2(w.as_raw_fd(), 1) };
    print!("half, ");
    let mut p = Process::new(|| println!("child"));
    p.start().unwrap();
    p.join().unwrap();
    println!("parent");
    std::io::stdout().flush().unwrap();
    // SAFETY: as above.
    unsafe {
        libc::dup2(saved, 1);
        libc::close(saved);
    }
    drop(w);
    let mut seen = String::new();
    r.read_to_string(&mut seen).unwrap();
    assert_eq!(seen, "half, child\nparent\n");
}

fn start_twice_and_join_unstarted_are_errors() {
    let mut p = Process::new(|| {});
    assert!(matches!(p.join(), Err(Error::NotStarted)));
    assert_eq!(p.pid(), None);
    p.start().unwrap();
    assert!(p.pid().is_some());
    assert!(matches!(p.start(), Err(Error::AlreadyStarted)));
    p.join().unwrap();
}

fn fork_is_refused_while_threads_run() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let other = std::thread::spawn(move || rx.recv());
    let mut p = Process::new(|| {});
    match p.start() {
        Err(Error::ThreadsRunning { threads }) => assert_eq!(threads, 2),
        Err(e) => panic!("wrong error: {e}"),
        Ok(()) => panic!("forked while another thread ran"),
    }
    drop(tx);
    other.join().unwrap().unwrap_err();
    // Once the thread is joined, fork is allowed again at once.
    p.start().unwrap();
    p.join().unwrap();
}

/// Waits until the child has exited, without reaping it: it stays a zombie until reaped.
fn wait_until_exited(pid: nix::unistd::Pid) {
    waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT).unwrap();
}

fn dropped_handles_leave_no_zombie() {
    // A handle dropped after its child ended reaps it.
    let mut p = Process::new(|| {});
    p.start().unwrap();
    wait_until_exited(p.pid().unwrap());
    drop(p);
    assert_no_children();
    // A handle dropped while its child runs leaves it running; the next start reaps it.
    let mut slow = Process::new(|| std::thread::sleep(Duration::from_secs(60)));
    slow.start().unwrap();
    let slow_pid = slow.pid().unwrap();
    drop(slow);
    assert_eq!(
        waitpid(slow_pid, Some(WaitPidFlag::WNOHANG)),
        Ok(WaitStatus::StillAlive)
    );
    kill(slow_pid, Signal::SIGKILL).unwrap();
    wait_until_exited(slow_pid);
    let mut next = Process::new(|| {});
    next.start().unwrap();
    next.join().unwrap();
    assert_no_children();
}

fn child_joins_its_own_dropped_children() {
    let (mut r, w) = os_pipe::pipe().unwrap();
    let mut child = Process::new(|| {
        let mut grandchild = Process::new(|| {
            std::thread::sleep(Duration::from_millis(200));
            (&w).write_all(b"G").unwrap();
        });
        grandchild.start().unwrap();
    });
    child.start().unwrap();
    child.join().unwrap();
    // The grandchild must have written before the child ended: had the child left it
    // running, this read, which does not wait, would find the pipe empty.
    // SAFETY: fcntl on a descriptor this test owns.
    unsafe { libc::fcntl(r.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    let mut seen = [0u8; 8];
    let n = r
        .read(&mut seen)
        .expect("the grandchild wrote before the child ended");
    assert_eq!(&seen[..n], b"G");
}

fn no_descriptor_leaks() {
    let before = open_fds();
    for _ in 0..20 {
        let mut p = Process::new(|| {});
        p.start().unwrap();
        p.join().unwrap();
    }
    let mut p = Process::new(|| {});
    p.start().unwrap();
    wait_until_exited(p.pid().unwrap());
    drop(p);
    assert_eq!(open_fds(), before);
    assert_no_children();
}

fn is_alive_poll_terminate_and_kill() {
    let mut p = Process::new(|| std::thread::sleep(Duration::from_secs(60)));
    assert!(!p.is_alive().unwrap());
    assert!(matches!(p.terminate(), Err(Error::NotStarted)));
    p.start().unwrap();
    assert!(p.is_alive().unwrap());
    assert_eq!(p.poll().unwrap(), None);
    p.terminate().unwrap();
    assert_eq!(p.join().unwrap(), ExitStatus::Signaled(Signal::SIGTERM));
    assert!(!p.is_alive().unwrap());
    assert_eq!(p.poll().unwrap().map(ExitStatus::code), Some(-15));
    // Once reaped, its pid may belong to another process: no signal is sent.
    p.kill().unwrap();

    let mut q = Process::new(|| std::thread::sleep(Duration::from_secs(60)));
    q.start().unwrap();
    q.kill().unwrap();
    wait_until_exited(q.pid().unwrap());
    assert_eq!(
        q.poll().unwrap(),
        Some(ExitStatus::Signaled(Signal::SIGKILL))
    );
    assert!(!q.is_alive().unwrap());
    assert_no_children();
}

/// The cached pid is the child's own after fork, whether the fork was Process's or not.
fn current_pid_is_each_process_own() {
    assert_eq!(common::current_pid(), std::process::id());
    let mut p = Process::new(|| {
        assert_eq!(common::current_pid(), std::process::id());
    });
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), ExitStatus::Exited(0));
    // SAFETY: this test binary runs one thread; the child only compares two numbers and
    // calls _exit.
    match unsafe { libc::fork() } {
        0 => {
            let code = i32::from(common::current_pid() != std::process::id());
            // SAFETY: ends the child at once, running nothing of the parent's.
            unsafe { libc::_exit(code) };
        }
        child => {
            let status = waitpid(nix::unistd::Pid::from_raw(child), None).unwrap();
            assert!(matches!(status, WaitStatus::Exited(_, 0)), "{status:?}");
        }
    }
    assert_eq!(common::current_pid(), std::process::id());
}

/// A parent that starts a child which ignores SIGTERM and then waits; the child's pid comes
/// back through `pids` once it ignores SIGTERM. Returns the parent and that pid.
fn parent_of_a_stubborn_child(before: fn()) -> (Process<impl FnOnce()>, i32) {
    let (mut pids, w) = os_pipe::pipe().unwrap();
    let mut parent = Process::new(move || {
        before();
        let mut stubborn = Process::new(|| {
            // SAFETY: SIG_IGN for SIGTERM is a valid disposition; no handler runs.
            unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
            (&w).write_all(&std::process::id().to_ne_bytes()).unwrap();
            std::thread::sleep(Duration::from_secs(60));
        });
        stubborn.start().unwrap();
        std::thread::sleep(Duration::from_secs(60));
    });
    parent.start().unwrap();
    let mut pid = [0; 4];
    pids.read_exact(&mut pid).unwrap();
    (parent, i32::from_ne_bytes(pid))
}

/// The handler (common/src/interrupt.rs) ends a child that ignores SIGTERM with SIGKILL after its
/// grace period, and only then ends its own process, by the signal it got.
fn a_signal_ends_even_a_child_that_ignores_sigterm() {
    let (mut parent, stubborn) = parent_of_a_stubborn_child(|| {});
    let sent = std::time::Instant::now();
    parent.terminate().unwrap();
    assert_eq!(
        parent.join().unwrap(),
        ExitStatus::Signaled(Signal::SIGTERM)
    );
    // The parent is a child of this program: its grace is half of 2 s.
    assert!(
        sent.elapsed() >= Duration::from_millis(900),
        "{:?}",
        sent.elapsed()
    );
    assert!(
        testkit::has_ended(stubborn as u32),
        "{stubborn} outlived its parent"
    );
    assert_no_children();
}

/// Three generations, the last ignoring SIGTERM: a signal to the first ends the second,
/// whose handler ends the third with SIGKILL after its grace, and reaps it, before the
/// first's SIGKILL comes (each generation's grace is half its parent's). With one grace for
/// all, the second was killed first, and the third, killed by its parent's death, was left
/// a zombie to whoever adopted it (10 of 10 runs of a review).
fn a_signal_ends_three_generations_leaving_nothing_to_adopt() {
    ends_by_sigterm_leaving_no_child(|w| {
        let (mut ready, tell) = os_pipe::pipe().unwrap();
        let mut middle = Process::new(|| {
            let mut stubborn = Process::new(|| {
                // SAFETY: SIG_IGN for SIGTERM is a valid disposition; no handler runs.
                unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
                (&w).write_all(&std::process::id().to_ne_bytes()).unwrap();
                (&tell).write_all(b"s").unwrap();
                std::thread::sleep(Duration::from_secs(60));
            });
            stubborn.start().unwrap();
            (&w).write_all(&std::process::id().to_ne_bytes()).unwrap();
            (&tell).write_all(b"m").unwrap();
            std::thread::sleep(Duration::from_secs(60));
        });
        middle.start().unwrap();
        // Both said they are there: the stubborn one once it ignores SIGTERM, the middle one
        // once its handler is in place (its first start installs it).
        ready.read_exact(&mut [0; 2]).unwrap();
        raise(Signal::SIGTERM).unwrap();
    });
}

/// What a child started by spawn or a fork server runs in the next test: it starts a child
/// that ignores SIGTERM; each writes its pid into the first pipe, and a byte into the
/// second once it is ready.
fn start_a_stubborn_child(_: &[u8], fds: Vec<std::os::fd::OwnedFd>) -> i32 {
    let mut fds = fds.into_iter().map(std::fs::File::from);
    let (pids, ready) = (fds.next().unwrap(), fds.next().unwrap());
    let mut stubborn = Process::new(|| {
        // SAFETY: SIG_IGN for SIGTERM is a valid disposition; no handler runs.
        unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
        (&pids)
            .write_all(&std::process::id().to_ne_bytes())
            .unwrap();
        (&ready).write_all(b"s").unwrap();
        std::thread::sleep(Duration::from_secs(60));
    });
    stubborn.start().unwrap();
    (&pids)
        .write_all(&std::process::id().to_ne_bytes())
        .unwrap();
    (&ready).write_all(b"m").unwrap();
    std::thread::sleep(Duration::from_secs(60));
    0
}

/// As above, with the middle generation started by spawn, then by a fork server: a spawned
/// child is told its generation in its request (it took itself for the first below the
/// program, gave its child as long as its parent gave it, and was killed first), and a
/// fork server gives its children a grace too (it killed them at once).
fn a_signal_ends_three_generations_by_every_start_method() {
    use common::start::{Context, Method};
    for method in [Method::Spawn, Method::ForkServer] {
        ends_by_sigterm_leaving_no_child(move |w| {
            let (mut ready, tell) = os_pipe::pipe().unwrap();
            let ctx = Context::new(method).unwrap();
            let fds = vec![w.into(), tell.into()];
            let _middle = ctx.start(start_a_stubborn_child, Vec::new(), fds).unwrap();
            ready.read_exact(&mut [0; 2]).unwrap();
            raise(Signal::SIGTERM).unwrap();
        });
    }
}

/// What the fork server's child runs in the next test.
fn exit_7(_: &[u8], _: Vec<std::os::fd::OwnedFd>) -> i32 {
    7
}

/// A fork server of this test's own executable, started as a spawned program would start
/// one, with stderr piped: the server and the end of its control socket the test speaks on.
fn a_fork_server_of_this_program() -> (std::process::Child, std::os::fd::OwnedFd) {
    let (control, theirs) = seqpacket_pair();
    let server = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--multiprocessing-forkserver")
        .stdin(std::process::Stdio::from(theirs))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    (server, control)
}

fn seqpacket_pair() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .unwrap()
}

/// Sends one message, with descriptors `fds`, on `socket`.
fn send_message(socket: &std::os::fd::OwnedFd, bytes: &[u8], fds: &[i32]) {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    sendmsg::<()>(
        socket.as_raw_fd(),
        &[std::io::IoSlice::new(bytes)],
        cmsgs,
        MsgFlags::empty(),
        None,
    )
    .unwrap();
}

/// A fork server told a generation past any a spawn request can carry (its first message
/// comes from its owner, here this test, of the same executable) still runs its children:
/// a child one generation below `u32::MAX` overflowed, panicked outside any catch, and
/// aborted. The test speaks the server's protocol itself: its first message (whom to die
/// with, the generation), then a request (executable, entry, die-with, generation, no
/// descriptor, no argument) with the link it answers on.
fn a_fork_server_told_a_hostile_generation_still_runs_its_children() {
    use std::os::unix::fs::MetadataExt;
    let (mut server, control) = a_fork_server_of_this_program();
    let mut first = 0i32.to_le_bytes().to_vec();
    first.extend_from_slice(&u32::MAX.to_le_bytes());
    send_message(&control, &first, &[]);
    let exe = std::fs::metadata("/proc/self/exe").unwrap();
    let entry = common::start::code_offset(exit_7 as *const () as usize).unwrap();
    let mut request = Vec::new();
    request.extend_from_slice(&exe.dev().to_le_bytes());
    request.extend_from_slice(&exe.ino().to_le_bytes());
    request.extend_from_slice(&entry.to_le_bytes());
    request.extend_from_slice(&0i32.to_le_bytes());
    request.extend_from_slice(&[1, 0]);
    let (link, served) = seqpacket_pair();
    send_message(&control, &request, &[served.as_raw_fd()]);
    drop(served);
    // Link messages (a tag, then an i32) until the child's end: 'X' and its exit code, or
    // 'S' and the signal that ended it. Bounded, to catch a hang.
    let link = std::fs::File::from(link);
    // SAFETY: alarm touches no memory; it ends this test if the server never answers.
    unsafe { libc::alarm(20) };
    let ended = loop {
        let mut message = [0u8; 5];
        let n = (&link).read(&mut message).unwrap();
        assert_eq!(n, 5, "the link ended early");
        if matches!(message[0], b'X' | b'S') {
            break (
                message[0],
                i32::from_le_bytes(message[1..].try_into().unwrap()),
            );
        }
    };
    // SAFETY: as above; cancels it.
    unsafe { libc::alarm(0) };
    drop(control);
    let status = server.wait().unwrap();
    assert_eq!(ended, (b'X', 7), "the child ended so ('S', 6: SIGABRT)");
    assert!(status.success(), "{status:?}");
}

/// A fork server whose first message is not what an owner sends (here 4 bytes, the form
/// before the generation was added) refuses, with status 2 and why, as for any request not
/// from this program. (It ended with status 0, without a word.)
fn a_fork_server_refuses_a_first_message_of_the_wrong_length() {
    let (server, control) = a_fork_server_of_this_program();
    send_message(&control, &0i32.to_le_bytes(), &[]);
    let out = server.wait_with_output().unwrap();
    drop(control);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("a first message of 4 bytes, not 8"),
        "{stderr}"
    );
}

/// A SIGINT that the program ignores (as `nohup` or a background job arranges) stays ignored
/// when it starts children: the handler is installed only over a default disposition.
fn an_ignored_sigint_stays_ignored() {
    let (mut parent, stubborn) = parent_of_a_stubborn_child(|| {
        // SAFETY: SIG_IGN for SIGINT is a valid disposition; no handler runs.
        unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    });
    kill(parent.pid().unwrap(), Signal::SIGINT).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        parent.is_alive().unwrap(),
        "an ignored SIGINT ended the parent"
    );
    parent.kill().unwrap();
    assert_eq!(
        parent.join().unwrap(),
        ExitStatus::Signaled(Signal::SIGKILL)
    );
    // SIGKILL runs no handler; the kernel ends the child with its parent.
    let started = std::time::Instant::now();
    while !testkit::has_ended(stubborn as u32) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{stubborn} outlived its parent"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_no_children();
}

/// No table limits what the handler ends: a parent with 1,100 children, sent SIGTERM, ends
/// every one of them before it ends.
fn a_signal_ends_any_number_of_children() {
    const CHILDREN: usize = 1100;
    let (mut pids, w) = os_pipe::pipe().unwrap();
    let mut parent = Process::new(move || {
        let mut children = Vec::new();
        for _ in 0..CHILDREN {
            let mut child = Process::new(|| std::thread::sleep(Duration::from_secs(60)));
            child.start().unwrap();
            (&w).write_all(&child.pid().unwrap().as_raw().to_ne_bytes())
                .unwrap();
            children.push(child);
        }
        std::thread::sleep(Duration::from_secs(60));
    });
    parent.start().unwrap();
    let mut children = Vec::new();
    for _ in 0..CHILDREN {
        let mut pid = [0; 4];
        pids.read_exact(&mut pid).unwrap();
        children.push(i32::from_ne_bytes(pid));
    }
    parent.terminate().unwrap();
    assert_eq!(
        parent.join().unwrap(),
        ExitStatus::Signaled(Signal::SIGTERM)
    );
    let left: Vec<_> = children
        .iter()
        .filter(|&&pid| !testkit::has_ended(pid as u32))
        .collect();
    // Clean up after a failure, so the next tests do not run beside a thousand orphans.
    for &&pid in &left {
        // SAFETY: kill touches no memory; these are this test's grandchildren.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    assert!(
        left.is_empty(),
        "{} of {CHILDREN} children outlived their parent",
        left.len()
    );
    assert_no_children();
}

/// What a spawned child of the next test runs: it writes its pid into the pipe it is
/// given, then sleeps for a minute.
fn report_then_sleep(_: &[u8], fds: Vec<std::os::fd::OwnedFd>) -> i32 {
    let pipe = std::fs::File::from(fds.into_iter().next().unwrap());
    (&pipe)
        .write_all(&std::process::id().to_ne_bytes())
        .unwrap();
    drop(pipe);
    std::thread::sleep(Duration::from_secs(60));
    0
}

/// What a spawned child of the next test runs: it writes its pid into the pipe it is
/// given, and exits.
fn report_then_exit(_: &[u8], fds: Vec<std::os::fd::OwnedFd>) -> i32 {
    let pipe = std::fs::File::from(fds.into_iter().next().unwrap());
    (&pipe)
        .write_all(&std::process::id().to_ne_bytes())
        .unwrap();
    0
}

/// A thread that keeps starting children (by spawn, which works beside threads) when the
/// signal comes, and another that keeps starting children that exit at once and joining
/// them: the process still ends, by the signal, and none of its children is left running or
/// unreaped, not even one being started at that moment, or being reaped. (Its handler used
/// to wait for ever newer children, and children made or reaped while it ended the process
/// were left, running or as zombies.) Three rounds: the moment the signal comes varies.
fn a_signal_ends_a_process_whose_thread_keeps_starting_children() {
    use common::start::{Context, Method};
    use std::sync::atomic::{AtomicUsize, Ordering};
    for _ in 0..3 {
        ends_by_sigterm_leaving_no_child(|w| {
            let ctx = Context::new(Method::Spawn).unwrap();
            let started = AtomicUsize::new(0);
            std::thread::scope(|s| {
                s.spawn(|| {
                    while let Ok(fd) = w.try_clone() {
                        match ctx.start(report_then_exit, Vec::new(), vec![fd.into()]) {
                            Ok(mut child) => drop(child.join()),
                            Err(_) => return,
                        }
                    }
                });
                let starter = s.spawn(|| {
                    let mut children = Vec::new();
                    loop {
                        let fd = w.try_clone().map_err(|e| e.to_string())?;
                        // Until a start fails: once the signal has come, none begins.
                        match ctx.start(report_then_sleep, Vec::new(), vec![fd.into()]) {
                            Ok(child) => children.push(child),
                            Err(common::Error::Ending) => return Ok(()),
                            Err(e) => return Err(e.to_string()),
                        }
                        started.fetch_add(1, Ordering::Relaxed);
                    }
                });
                while started.load(Ordering::Relaxed) < 5 {
                    if starter.is_finished() {
                        panic!("the starter ended: {:?}", starter.join());
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                // Most of the other thread's time goes into starting a child: the signal
                // comes in one.
                raise(Signal::SIGTERM).unwrap();
            });
        });
    }
}

/// The signal comes while a thread starts the first child of its process (by spawn), at
/// moments from 0 to 3 ms after it begins: that child is ended too. (The handler used to
/// be installed only once the first child was recorded: the process died at once, and its
/// child, started from a thread that is not the first, was left an orphan.)
fn a_signal_during_the_first_start_ends_that_child() {
    use common::start::{Context, Method};
    for round in 0..20u64 {
        ends_by_sigterm_leaving_no_child(move |w| {
            let ctx = Context::new(Method::Spawn).unwrap();
            std::thread::scope(|s| {
                s.spawn(|| {
                    let fd = w.try_clone().unwrap();
                    let _child = ctx.start(report_then_sleep, Vec::new(), vec![fd.into()]);
                    std::thread::sleep(Duration::from_secs(60));
                });
                std::thread::sleep(Duration::from_micros(round * 150));
                raise(Signal::SIGTERM).unwrap();
            });
        });
    }
}

/// Runs `parent` in a child process, with the write end of a pipe where its children write
/// their pids (`report_then_sleep`); it must end by SIGTERM (which it raises) within 20 s,
/// leaving none of its children running, and none unreaped. This test process takes in
/// orphans meanwhile (`PR_SET_CHILD_SUBREAPER`), so that any left come to it, and counts
/// them.
fn ends_by_sigterm_leaving_no_child(parent: impl FnOnce(os_pipe::PipeWriter) + Send) {
    let _subreaper = Subreaper::new();
    let (mut pids, w) = os_pipe::pipe().unwrap();
    let mut parent = Process::new(move || parent(w));
    parent.start().unwrap();
    let ended = testkit::ends_within(
        parent.pid().unwrap().as_raw() as u32,
        Duration::from_secs(20),
    );
    if !ended {
        parent.kill().unwrap();
    }
    let status = parent.join().unwrap();
    // Every child that ran has written its pid by now, or never will: read what is there.
    common::fd::set_nonblocking(std::os::fd::AsFd::as_fd(&pids)).unwrap();
    let mut reported = Vec::new();
    let _ = pids.read_to_end(&mut reported);
    let children: Vec<u32> = reported
        .chunks_exact(4)
        .map(|pid| u32::from_ne_bytes(pid.try_into().unwrap()))
        .collect();
    // Children still running are this process's now, adopted: killed (only those, whose
    // pids cannot have gone to another process), and then every orphan is reaped, and counted.
    let me = std::process::id();
    let left: Vec<u32> = children
        .iter()
        .copied()
        .filter(|&pid| !testkit::has_ended(pid) && parent_of(pid) == Some(me))
        .collect();
    for &pid in &left {
        // SAFETY: kill touches no memory; this is a child of this process, not yet reaped.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    // Those that never reported (orphaned before they could) too: every child this process
    // has now is an adopted one.
    for pid in children_of_this_process() {
        // SAFETY: as above.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    let mut orphans = 0;
    loop {
        match waitpid(None, None) {
            Ok(_) => orphans += 1,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break, // ECHILD: none left.
        }
    }
    assert!(ended, "the parent did not end within 20 s of SIGTERM");
    assert_eq!(status, ExitStatus::Signaled(Signal::SIGTERM));
    assert!(
        left.is_empty(),
        "{left:?} of {} children outlived their parent",
        children.len()
    );
    assert_eq!(
        orphans, 0,
        "children left to this process (running or unreaped)"
    );
    assert_no_children();
}

/// A thread that was joining a child when the handler ran on another thread, and ended that
/// child, does not go on with the program: it waits for the handler to end the process.
/// (Its `join` returned, and it wrote what came next, in 18 of 20 runs of a review.)
fn a_thread_joining_as_the_handler_runs_goes_no_further() {
    for round in 0..5 {
        let (mut said, tell) = os_pipe::pipe().unwrap();
        let mut test = Process::new(move || {
            let mut child = Process::new(|| std::thread::sleep(Duration::from_secs(30)));
            child.start().unwrap();
            std::thread::scope(|s| {
                s.spawn(|| {
                    // The handler runs on the other thread.
                    let mut blocked = nix::sys::signal::SigSet::empty();
                    blocked.add(Signal::SIGTERM);
                    blocked.thread_block().unwrap();
                    let joined = child.join();
                    let _ = (&tell).write_all(format!("went on after {joined:?}").as_bytes());
                });
                std::thread::sleep(Duration::from_millis(100));
                raise(Signal::SIGTERM).unwrap();
            });
        });
        test.start().unwrap();
        assert_eq!(
            test.join().unwrap(),
            ExitStatus::Signaled(Signal::SIGTERM),
            "round {round}"
        );
        drop(test);
        let mut went_on = String::new();
        said.read_to_string(&mut went_on).unwrap();
        assert_eq!(went_on, "", "round {round}");
    }
    assert_no_children();
}

/// A process forked (by other code than `Process`) from a thread of a process whose handler
/// is running on another thread does not inherit the handler's mark: there it can still
/// signal and reap its own children. (It inherited it: its `terminate` sent nothing, and a
/// signal to it hung in the second-handler wait.)
fn a_process_forked_while_the_handler_runs_ends_its_own_children() {
    let _subreaper = Subreaper::new();
    let (mut r, w) = os_pipe::pipe().unwrap();
    let mut parent = Process::new(move || {
        // Its handler then runs for the 2 s grace: the stubborn child ignores SIGTERM.
        let mut stubborn = Process::new(|| {
            // SAFETY: SIG_IGN for SIGTERM is a valid disposition.
            unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
            std::thread::sleep(Duration::from_secs(10));
        });
        stubborn.start().unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut set = nix::sys::signal::SigSet::empty();
                set.add(Signal::SIGTERM);
                set.thread_block().unwrap();
                std::thread::sleep(Duration::from_millis(300));
                // SAFETY: the child, the one thread of a copy of this process made while
                // the main thread runs the handler (which holds no lock), uses `Process`
                // and writes to a pipe, then `_exit`s.
                if unsafe { libc::fork() } == 0 {
                    set.thread_unblock().unwrap();
                    let mut child = Process::new(|| std::thread::sleep(Duration::from_secs(10)));
                    child.start().unwrap();
                    child.terminate().unwrap();
                    let ended = child.join().unwrap() == ExitStatus::Signaled(Signal::SIGTERM);
                    (&w).write_all(&[u8::from(ended)]).unwrap();
                    // SAFETY: `_exit` ends this copy at once.
                    unsafe { libc::_exit(0) };
                }
            });
            std::thread::sleep(Duration::from_millis(100));
            raise(Signal::SIGTERM).unwrap();
        });
    });
    parent.start().unwrap();
    let mut ended = [0];
    r.read_exact(&mut ended).unwrap();
    assert_eq!(
        parent.join().unwrap(),
        ExitStatus::Signaled(Signal::SIGTERM)
    );
    while waitpid(None, None).is_ok() {}
    assert_eq!(ended, [1], "the copy's terminate did not end its child");
    assert_no_children();
}

/// This process takes in the orphans of its descendants (`PR_SET_CHILD_SUBREAPER`) while
/// this lives, and not after, even when the test that made it fails.
struct Subreaper;

impl Subreaper {
    fn new() -> Subreaper {
        // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes integers and touches no memory.
        assert_eq!(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) }, 0);
        Subreaper
    }
}

impl Drop for Subreaper {
    fn drop(&mut self) {
        // SAFETY: as above; 0 turns it off.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 0) };
    }
}

/// The children of this process, not yet reaped, from `/proc/self/task/*/children`.
fn children_of_this_process() -> Vec<u32> {
    let mut children = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        children.extend(
            list.split_whitespace()
                .filter_map(|pid| pid.parse::<u32>().ok()),
        );
    }
    children
}

/// The parent of process `pid`, from `/proc/<pid>/stat`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// SIGKILL runs no handler, so the kernel ends the children instead: each asked, at fork,
/// to be killed when its parent dies (`PR_SET_PDEATHSIG`). A grandchild goes with its
/// parent in turn.
fn a_parent_killed_by_sigkill_takes_its_children() {
    let (mut pids, w) = os_pipe::pipe().unwrap();
    let mut parent = Process::new(move || {
        let mut child = Process::new(|| {
            let mut grandchild = Process::new(|| std::thread::sleep(Duration::from_secs(60)));
            grandchild.start().unwrap();
            (&w).write_all(&std::process::id().to_ne_bytes()).unwrap();
            (&w).write_all(&grandchild.pid().unwrap().as_raw().to_ne_bytes())
                .unwrap();
            std::thread::sleep(Duration::from_secs(60));
        });
        child.start().unwrap();
        std::thread::sleep(Duration::from_secs(60));
    });
    parent.start().unwrap();
    let mut pid = [0; 4];
    pids.read_exact(&mut pid).unwrap();
    let child = i32::from_ne_bytes(pid);
    pids.read_exact(&mut pid).unwrap();
    let grandchild = i32::from_ne_bytes(pid);
    parent.kill().unwrap();
    parent.join().unwrap();
    let started = std::time::Instant::now();
    while !(testkit::has_ended(child as u32) && testkit::has_ended(grandchild as u32)) {
        if started.elapsed() > Duration::from_secs(5) {
            for pid in [child, grandchild] {
                // SAFETY: kill touches no memory; these are this test's own descendants.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            panic!("{child} or {grandchild} outlived its parent's SIGKILL");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_no_children();
}

/// `fd::Spin`: a wait spins at first (where the process may use two CPUs), skips the spin
/// in the next two waits after one that spun in vain, then spins again; forgets vain spins
/// soon after the last (the skips they asked for too); and never spins in
/// a process that may run on one CPU only (asked again each second). Each part runs in a
/// fresh child: `start` clears what the parent learnt of its waits. The parent spins in
/// vain first, to show that.
fn a_wait_spins_only_where_it_pays() {
    use common::fd::Spin;
    let two_cpus = std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
    let mut vain = Spin::new();
    while vain.again() {}
    let mut learns = Process::new(move || {
        if !two_cpus {
            return;
        }
        let mut wait = Spin::new();
        assert!(wait.again(), "the first wait does not spin");
        while wait.again() {}
        for _ in 0..2 {
            assert!(!Spin::new().again(), "a wait after a vain spin spins");
        }
        let mut wait = Spin::new();
        assert!(
            wait.again(),
            "the third wait after a vain spin does not spin"
        );
        wait.got();
        // (The answered spin took the count back to 0.) Vain spins one after another
        // double the skips: 2, then 4; one more asks for 8. Once the spins those would have
        // saved have passed (0.4 ms, but at least 20), all is forgotten: the next wait
        // spins, and a vain spin then asks for 2 again, not 16.
        for skips in [2, 4] {
            let mut wait = Spin::new();
            while wait.again() {}
            for _ in 0..skips {
                assert!(!Spin::new().again(), "a wait after vain spins spins");
            }
        }
        let mut wait = Spin::new();
        while wait.again() {}
        assert!(!Spin::new().again(), "a wait after vain spins spins");
        std::thread::sleep(Duration::from_millis(100));
        let mut wait = Spin::new();
        assert!(wait.again(), "vain spins 100 ms old still skip a spin");
        while wait.again() {}
        for _ in 0..2 {
            assert!(!Spin::new().again(), "a wait after a vain spin spins");
        }
        assert!(Spin::new().again(), "vain spins 100 ms old still count");
    });
    learns.start().unwrap();
    assert_eq!(learns.join().unwrap(), ExitStatus::Exited(0));
    let mut one_cpu = Process::new(move || {
        // Asked once while it may use two CPUs: the answer is kept for a second.
        let mut wait = Spin::new();
        assert_eq!(wait.again(), two_cpus, "the first wait");
        wait.got();
        // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET adds CPU 0, and
        // sched_setaffinity reads the set, which is alive.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(0, &mut set);
            assert_eq!(
                libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set),
                0
            );
        }
        // Within the second, the kept answer may still say two CPUs; after it, it is asked
        // again.
        std::thread::sleep(Duration::from_millis(1100));
        assert!(!Spin::new().again(), "a wait spins on one CPU");
    });
    one_cpu.start().unwrap();
    assert_eq!(one_cpu.join().unwrap(), ExitStatus::Exited(0));
}

/// `fd::read_now` reads a blocking pipe without waiting: nothing yet, bytes, its end. In a
/// child where a seccomp filter refuses `preadv2` (ENOSYS, as a kernel without it; glibc
/// then says EOPNOTSUPP), it says `Unsupported`, and `FrameBuf::read_frame`, which spins
/// with it, still reads every frame, written late by a thread (so that the `poll` it falls
/// back on finds nothing at first), spinning (on two CPUs) or not.
fn a_read_that_does_not_wait_and_its_fallback() {
    use common::fd::read_now;
    use common::frame::{FrameBuf, decode, encode};
    use std::io::{ErrorKind, Write};
    use std::os::fd::AsFd;
    let (r, mut w) = os_pipe::pipe().unwrap();
    let mut buf = [0u8; 8];
    match read_now(r.as_fd(), &mut buf) {
        Err(e) if e.kind() == ErrorKind::Unsupported => {
            testkit::skipped(
                "this kernel cannot read a pipe without waiting (preadv2, RWF_NOWAIT)",
            );
            return;
        }
        got => assert_eq!(got.unwrap(), None),
    }
    w.write_all(b"abc").unwrap();
    assert_eq!(read_now(r.as_fd(), &mut buf).unwrap(), Some(3));
    assert_eq!(&buf[..3], b"abc");
    drop(w);
    assert_eq!(read_now(r.as_fd(), &mut buf).unwrap(), Some(0));

    let mut refused = Process::new(|| {
        testkit::filter_syscall(
            libc::SYS_preadv2,
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        );
        let (mut r, mut w) = os_pipe::pipe().unwrap();
        for _ in 0..2 {
            let e = read_now(r.as_fd(), &mut [0u8; 8]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Unsupported);
        }
        let writer = std::thread::spawn(move || {
            for i in 0..3u32 {
                std::thread::sleep(Duration::from_millis(5));
                let mut frame = Vec::new();
                encode(&mut frame, &i).unwrap();
                w.write_all(&frame).unwrap();
            }
        });
        let mut got = FrameBuf::new();
        for i in 0..3u32 {
            let frame = got.read_frame(&mut r).unwrap().expect("a frame");
            assert_eq!(decode::<u32>(frame).unwrap(), i);
        }
        writer.join().unwrap();
        assert!(got.read_frame(&mut r).unwrap().is_none());
    });
    refused.start().unwrap();
    assert_eq!(refused.join().unwrap(), ExitStatus::Exited(0));
}

/// A pid is given again once its process is reaped, and a grandchild may get it, holding
/// copies of the dead process's objects. Those must not take it for their owner: here a
/// `Private` pipe end of process A, seen by a grandchild G of A that got A's pid after A was
/// killed (as root, `ns_last_pid` chooses the next pid). Without root, SKIPPED.
fn a_descendant_with_a_dead_ancestors_pid_owns_nothing() {
    const NS_LAST_PID: &str = "/proc/sys/kernel/ns_last_pid";
    if std::fs::OpenOptions::new()
        .write(true)
        .open(NS_LAST_PID)
        .is_err()
    {
        testkit::skipped(&format!("{NS_LAST_PID} is not writable (not root?)"));
        return;
    }
    // A's child C outlives A: it comes back to this process, to be reaped here.
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer and touches no memory.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) };
    let (mut from_c, to_test) = os_pipe::pipe().unwrap();
    let (mut go, mut go_ahead) = os_pipe::pipe().unwrap();
    let mut a = Process::new(move || {
        let (_r, w) = os_pipe::pipe().unwrap();
        let private = common::Private::new(w).unwrap();
        let (a_pid, a_key) = (std::process::id(), common::process_key());
        let (private, report) = (&private, &to_test);
        // C is forked by hand: a child made by `Process` would die with A (it asks the
        // kernel to), and here C must outlive A.
        let c_body = move || {
            go.read_exact(&mut [0]).unwrap();
            // 0: G saw nothing of A's; 1: G took A's pipe for its own; 2: no G got A's pid.
            let mut verdict = 2u8;
            for _ in 0..50 {
                std::fs::write(NS_LAST_PID, (a_pid - 1).to_string()).unwrap();
                let mut g = Process::new(|| {
                    if std::process::id() != a_pid {
                        std::process::exit(2);
                    }
                    if private.get().is_some() || common::process_key() == a_key {
                        std::process::exit(1);
                    }
                });
                g.start().unwrap();
                match g.join().unwrap() {
                    ExitStatus::Exited(2) => continue,
                    ExitStatus::Exited(code) => verdict = code as u8,
                    other => panic!("G ended {other:?}"),
                }
                break;
            }
            { report }.write_all(&[verdict]).unwrap();
        };
        // SAFETY: A has one thread, so the child inherits no lock held by another; it runs
        // `c_body` and ends with `_exit`, never returning into A's code.
        let c = match unsafe { libc::fork() } {
            0 => {
                let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(c_body))
                    .map_or(101, |()| 0);
                // SAFETY: `_exit` ends C at once, as a forked child must.
                unsafe { libc::_exit(code) }
            }
            pid => pid,
        };
        (&to_test).write_all(&c.to_ne_bytes()).unwrap();
        std::thread::sleep(Duration::from_secs(60));
    });
    a.start().unwrap();
    let mut c_pid = [0; 4];
    from_c.read_exact(&mut c_pid).unwrap();
    a.kill().unwrap();
    a.join().unwrap();
    go_ahead.write_all(b"g").unwrap();
    let mut verdict = [9];
    from_c.read_exact(&mut verdict).unwrap();
    let c_pid = nix::unistd::Pid::from_raw(i32::from_ne_bytes(c_pid));
    assert_eq!(waitpid(c_pid, None).unwrap(), WaitStatus::Exited(c_pid, 0));
    // SAFETY: as above.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 0) };
    match verdict[0] {
        0 => {}
        1 => panic!("a grandchild with its dead grandparent's pid took its descriptor"),
        _ => testkit::skipped("no grandchild got the dead process's pid in 50 tries"),
    }
    assert_no_children();
}

/// A reference to a `Private` pipe end, taken before fork and carried into the child, must
/// not write into whatever file the child opens next: the child let the pipe end go, but
/// its number stays taken (by `/dev/null`, read-only), so the write fails.
fn a_private_descriptor_carried_into_a_child_reaches_nothing() {
    let dir = std::env::temp_dir().join(format!("private-{}", std::process::id()));
    std::fs::create_dir(&dir).unwrap();
    let victim = dir.join("victim");
    let (mut r, w) = os_pipe::pipe().unwrap();
    let private = common::Private::new(w).unwrap();
    let mut writer = private.get().unwrap();
    let mut child = Process::new(|| {
        let _file = std::fs::File::create(&victim).unwrap();
        assert!(writer.write_all(b"meant for the pipe").is_err());
    });
    child.start().unwrap();
    assert_eq!(child.join().unwrap(), ExitStatus::Exited(0));
    drop(child);
    drop(private);
    let mut got = Vec::new();
    r.read_to_end(&mut got).unwrap();
    let in_victim = std::fs::read(&victim).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(got, b"");
    assert_eq!(in_victim, b"");
}

/// A `Private` descriptor numbered past a lowered descriptor limit, which dup3 refuses as a
/// target: the child lets go of it all the same (it names `/dev/null` there, so the number
/// stays taken), its limit is the lowered one again, and it runs.
fn a_child_lets_go_of_a_private_descriptor_past_a_lowered_limit() {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let (_r, w) = os_pipe::pipe().unwrap();
    // SAFETY: dup2 onto 65, a number this test does not otherwise use; the new descriptor is
    // owned by `high` alone.
    let high = unsafe {
        assert_eq!(libc::dup2(w.as_raw_fd(), 65), 65);
        OwnedFd::from_raw_fd(65)
    };
    drop(w);
    let private = common::Private::new(high).unwrap();
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write `limit`, which is alive.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    let lowered = libc::rlimit {
        rlim_cur: 32,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: as above.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) };
    // The child's stderr is a pipe, to read what it says.
    let (mut said, stderr) = os_pipe::pipe().unwrap();
    // SAFETY: dup and dup2 on descriptors this process owns; fd 2 is put back below.
    let saved = unsafe {
        let saved = libc::dup(2);
        libc::dup2(stderr.as_raw_fd(), 2);
        saved
    };
    let mut child = Process::new(|| {
        let target = std::fs::read_link("/proc/self/fd/65").unwrap();
        assert_eq!(target, std::path::Path::new("/dev/null"));
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes `limit`, which is alive.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
        assert_eq!(limit.rlim_cur, 32);
    });
    let started = child.start();
    // SAFETY: as above: stderr and the limit as they were.
    unsafe {
        libc::dup2(saved, 2);
        libc::close(saved);
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    drop(stderr);
    started.unwrap();
    assert_eq!(child.join().unwrap(), ExitStatus::Exited(0));
    let mut message = String::new();
    said.read_to_string(&mut message).unwrap();
    assert_eq!(message, "");
    drop(private);
    assert_no_children();
}

extern "C" fn on_sigchld(_: libc::c_int) {}

/// A program's own SIGCHLD handler is left as it is by a start: the program asked for it.
/// With `SA_NOCLDWAIT` (the kernel reaps the children), a start is refused and the flag kept:
/// the kernel would free a child's pid as it ended, while its handle still named it (a
/// review's unrelated process given that pid was killed by `terminate`); clearing the flag
/// left the program's own children as zombies. In a child, which may change its handlers.
fn a_sigchld_handler_of_the_programs_own_is_left_alone() {
    let mut child = Process::new(|| {
        for flags in [libc::SA_RESTART, libc::SA_NOCLDWAIT | libc::SA_RESTART] {
            // SAFETY: sigaction reads one `sigaction` and writes one, both alive for the
            // calls; the handler does nothing, which is async-signal-safe.
            let now = unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_sigchld as *const () as libc::sighandler_t;
                action.sa_flags = flags;
                assert_eq!(
                    libc::sigaction(libc::SIGCHLD, &action, std::ptr::null_mut()),
                    0
                );
                let mut grandchild = Process::new(|| {});
                let started = grandchild.start();
                if flags & libc::SA_NOCLDWAIT == 0 {
                    started.unwrap();
                    assert_eq!(grandchild.join().unwrap(), ExitStatus::Exited(0));
                } else {
                    assert!(
                        matches!(started, Err(Error::ChildrenReapedByKernel)),
                        "{started:?}"
                    );
                }
                let mut now: libc::sigaction = std::mem::zeroed();
                assert_eq!(
                    libc::sigaction(libc::SIGCHLD, std::ptr::null(), &mut now),
                    0
                );
                assert_eq!(now.sa_sigaction, action.sa_sigaction);
                now.sa_flags
            };
            assert_eq!(now & flags, flags, "the handler's flags were changed");
        }
    });
    child.start().unwrap();
    assert_eq!(child.join().unwrap(), ExitStatus::Exited(0));
    assert_no_children();
}

/// Forks with the C library, as code other than `Process` may, and tells how the child
/// ended: with 101 where a `SharedBorrow` lived in the parent (the fork handler ends it),
/// with 0 where none did (the child exits at once).
fn fork_by_other_code() -> ExitStatus {
    // SAFETY: the child calls only `_exit` (after the C library's fork handlers), which is
    // safe in a child forked from a process with threads.
    match unsafe { libc::fork() } {
        // SAFETY: `_exit` is async-signal-safe; the child runs nothing else.
        0 => unsafe { libc::_exit(0) },
        -1 => panic!("fork: {}", std::io::Error::last_os_error()),
        pid => match waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap() {
            WaitStatus::Exited(_, code) => ExitStatus::Exited(code),
            other => panic!("the child ended {other:?}"),
        },
    }
}

/// Starts a thread that makes a `SharedBorrow` and holds it: alive once this returns, until
/// the closure returned is called, which drops it and joins the thread.
fn a_thread_holding_a_borrow() -> impl FnOnce() {
    let (end, ended) = std::sync::mpsc::channel::<()>();
    let (alive, is_alive) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let _borrow = common::SharedBorrow::new();
        alive.send(()).unwrap();
        let _ = ended.recv();
    });
    is_alive.recv().unwrap();
    move || {
        drop(end);
        thread.join().unwrap();
    }
}

/// Each thread counts its borrows of shared memory in a slot of its own, 64 threads at
/// most; a thread past those counts in one shared counter. A fork sees both, a slot its
/// thread has left is free again, and a borrow made as a thread's storage is torn down is
/// counted too.
fn borrows_are_counted_in_every_thread() {
    use common::SharedBorrow;
    use std::sync::{Arc, Barrier};

    assert_eq!(fork_by_other_code(), ExitStatus::Exited(0));
    // More threads than slots, each with a borrow alive.
    const THREADS: usize = 70;
    let (held, forked, dropped, done) = (
        Arc::new(Barrier::new(THREADS + 1)),
        Arc::new(Barrier::new(THREADS + 1)),
        Arc::new(Barrier::new(THREADS + 1)),
        Arc::new(Barrier::new(THREADS + 1)),
    );
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (held, forked, dropped, done) =
                (held.clone(), forked.clone(), dropped.clone(), done.clone());
            std::thread::spawn(move || {
                let borrow = SharedBorrow::new();
                held.wait();
                forked.wait();
                drop(borrow);
                dropped.wait();
                // Keeps the slot this thread may have until the others are done.
                done.wait();
            })
        })
        .collect();
    held.wait();
    assert_eq!(fork_by_other_code(), ExitStatus::Exited(101));
    forked.wait();
    dropped.wait();
    assert_eq!(fork_by_other_code(), ExitStatus::Exited(0));
    // Every slot is taken now: one more thread counts in the shared counter.
    let past_the_slots = a_thread_holding_a_borrow();
    assert_eq!(fork_by_other_code(), ExitStatus::Exited(101));
    past_the_slots();
    assert_eq!(fork_by_other_code(), ExitStatus::Exited(0));
    done.wait();
    for thread in threads {
        thread.join().unwrap();
    }
    // A borrow made by a thread-local's destructor, after the thread's slot was given back.
    struct BorrowsAsItEnds;
    impl Drop for BorrowsAsItEnds {
        fn drop(&mut self) {
            let _borrow = SharedBorrow::new();
            assert_eq!(fork_by_other_code(), ExitStatus::Exited(101));
        }
    }
    thread_local! {
        static ENDING: BorrowsAsItEnds = const { BorrowsAsItEnds };
    }
    std::thread::spawn(|| {
        // Destructors run in the reverse order of first use: the slot's goes first.
        ENDING.with(|_| {});
        drop(SharedBorrow::new());
    })
    .join()
    .unwrap();
    // The slots the threads left are free: a new thread's borrow is counted, and with the
    // threads gone, `Process` forks again.
    let again = a_thread_holding_a_borrow();
    assert_eq!(fork_by_other_code(), ExitStatus::Exited(101));
    again();
    let mut p = Process::new(|| {});
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), ExitStatus::Exited(0));
    assert_no_children();
}
