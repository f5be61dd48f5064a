//! Spawn: this executable run again, told by its first argument what it is, before `main`.

use std::ffi::{CStr, CString, c_char, c_int};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::panic::{self, AssertUnwindSafe};

use nix::spawn::{PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags, posix_spawn};
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::Pid;

use super::{Entry, MAX_ARGS, REQUEST_HEADER, Received, Request, receive, send, server};
use crate::process::{Block, die_with_parent, keep_children_to_reap, reap_detached};
use crate::{Error, PANIC_EXIT_CODE, interrupt};

/// The first argument of a spawned child, as Python's (`--multiprocessing-fork`).
pub(super) const SPAWNED: &str = "--multiprocessing-fork";
/// The first argument of a fork server.
pub(super) const SERVER: &str = "--multiprocessing-forkserver";

/// Runs before `main` in every run of a program that links this module: glibc calls each
/// function of the executable's `.init_array` section with `main`'s argc, argv and envp.
/// Before `main`, so that a spawned child runs none of it, whatever `main` is: the
/// program's own, or the test harness's in a test binary.
// SAFETY (of the attribute): the section holds pointers to functions of this signature,
// which the loader calls once each, before `main`; that is what this static is.
#[used]
#[unsafe(link_section = ".init_array")]
static BEFORE_MAIN: extern "C" fn(c_int, *const *const c_char, *const *const c_char) = before_main;

extern "C" fn before_main(argc: c_int, argv: *const *const c_char, _: *const *const c_char) {
    // Only as part of an executable: a shared library that links this module runs it when
    // loaded, with its host program's arguments, which are none of ours.
    if argc < 2
        || argv.is_null()
        || super::code_offset(
            before_main as extern "C" fn(c_int, *const *const c_char, *const *const c_char)
                as usize,
        )
        .is_err()
    {
        return;
    }
    // SAFETY: glibc passes `main`'s argc and argv: argv holds argc pointers to C strings,
    // alive for the whole run; argc is at least 2, so the second one is there.
    let first = unsafe { CStr::from_ptr(*argv.add(1)) }.to_bytes();
    if first != SPAWNED.as_bytes() && first != SERVER.as_bytes() {
        return;
    }
    // The fork handlers, registered here too: this process has one thread still, and it
    // never returns to the loader, which may have put `pid.rs`'s own registration after
    // this function in `.init_array` (it did in every release build here), so that it never
    // ran. A fork by the child's target, or the server's fork of a child, then ran none.
    crate::pid::watch_forks();
    // `start_self` asks for no signal blocked in this process, as std's `Command` does; the
    // mask survives exec, though, so one started otherwise may hold back the three signals
    // that `start_self` holds while it starts a child: they reach it from now on.
    interrupt::release_in_new_process();
    // A child holds only the descriptors it is sent: `exec` closed the owner's that were
    // marked close-on-exec, not the others (one inherited from the owner's own parent, say).
    close_inherited();
    let code = if first == SPAWNED.as_bytes() {
        run_spawned()
    } else if first == SERVER.as_bytes() {
        server::serve()
    } else {
        return;
    };
    let code = if io::stdout().flush().is_err() && code == 0 {
        1
    } else {
        code
    };
    // SAFETY: `_exit` ends the process at once; stdout was flushed just above, and `main`,
    // which never ran, has nothing to tear down.
    unsafe { libc::_exit(code) }
}

/// Closes every descriptor but stdin (the request), stdout and stderr.
fn close_inherited() {
    // SAFETY: close_range takes integers and touches no memory; the descriptors it closes
    // belong to no Rust value yet (`main` has not run, and no constructor of ours keeps one).
    if unsafe { libc::syscall(libc::SYS_close_range, 3, u32::MAX, 0) } == 0 {
        return;
    }
    // Without close_range (before Linux 5.9, or under valgrind): one by one, as listed.
    let Ok(listed) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<RawFd> = listed
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: as above; the listing's own descriptor is closed by now, and closing it
        // again, or one valgrind keeps for itself, fails harmlessly (EBADF).
        unsafe { libc::close(fd) };
    }
}

/// Starts a spawned child that runs `entry(args, fds)`; returns its pid.
pub(super) fn spawn(entry: Entry, args: &[u8], fds: Vec<OwnedFd>) -> Result<Pid, Error> {
    let request = Request::new(entry, args, fds.len())?;
    let (ours, theirs) = super::socket_pair()?;
    let pid = start_self(SPAWNED, theirs)?;
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    if let Err(e) = send(ours.as_fd(), &request.encode(), &raw) {
        // It reads the end of its stdin, says so and exits 2; it is reaped by a later
        // start or at exit.
        super::detach(pid);
        return Err(e);
    }
    Ok(pid)
}

/// Starts this executable again, with `flag` as its first argument and `stdin` as its
/// stdin, and tracks it for the interrupt handler. `posix_spawn` makes the child and runs the
/// file in it, safely from a program with threads; unlike `fork`, it runs no
/// `pthread_atfork` handler, whose child would end at once while a guard of shared memory
/// lives in any thread (`SharedBorrow`).
pub(super) fn start_self(flag: &str, stdin: OwnedFd) -> Result<Pid, Error> {
    reap_detached(Block::No);
    keep_children_to_reap()?;
    io::stdout()
        .flush()
        .map_err(|e| Error::os("write(stdout)", e))?;
    let mut actions = PosixSpawnFileActions::init().map_err(|e| Error::os("posix_spawn", e))?;
    actions
        .add_dup2(stdin.as_raw_fd(), 0)
        .map_err(|e| Error::os("posix_spawn", e))?;
    // By its path, which valgrind follows; the request says which file it must be.
    let mut exe = std::env::current_exe().map_err(|e| Error::os("readlink(/proc/self/exe)", e))?;
    // Where the file at that path was deleted or replaced (the program was rebuilt while it
    // ran), the kernel says so after the path (a path that names no file failed with
    // ENOENT), and still has the file this process runs: it is opened, and run by its
    // descriptor's name. Not by `/proc/self/exe`, which valgrind runs as itself: it starts
    // its tool with that path, which names the tool's file by then.
    let running = if exe.as_os_str().as_bytes().ends_with(b" (deleted)") {
        let opened =
            File::open("/proc/self/exe").map_err(|e| Error::os("open(/proc/self/exe)", e))?;
        // A copy numbered 3 or more, so that putting the child's stdin at 0 cannot replace
        // it, and close-on-exec, so that no other child keeps it (std's open asks for that
        // too, but valgrind's ignores it).
        // SAFETY: fcntl(F_DUPFD_CLOEXEC) takes ints and touches no memory; `opened` is open.
        let fd = unsafe { libc::fcntl(opened.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
        if fd < 0 {
            return Err(Error::os(
                "fcntl(F_DUPFD_CLOEXEC)",
                io::Error::last_os_error(),
            ));
        }
        // SAFETY: `fd` was just made, and nothing else owns it.
        let file = unsafe { OwnedFd::from_raw_fd(fd) };
        // A dup2 onto itself clears close-on-exec in this child alone (glibc 2.29 and
        // later), which keeps it across its exec, where valgrind's launcher opens it by that
        // name again. The child closes it first thing (`close_inherited`).
        let fd = file.as_raw_fd();
        actions
            .add_dup2(fd, fd)
            .map_err(|e| Error::os("posix_spawn", e))?;
        exe = format!("/proc/self/fd/{fd}").into();
        Some(file)
    } else {
        None
    };
    // As std's `Command` starts a program: no signal blocked, SIGPIPE at its default.
    let mut attributes = PosixSpawnAttr::init().map_err(|e| Error::os("posix_spawn", e))?;
    attributes
        .set_sigmask(&SigSet::empty())
        .and_then(|()| attributes.set_sigdefault(&SigSet::from(Signal::SIGPIPE)))
        .and_then(|()| {
            attributes.set_flags(
                PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF,
            )
        })
        .map_err(|e| Error::os("posix_spawn", e))?;
    let name = std::env::args_os().next().unwrap_or(exe.clone().into());
    let args = [c_string(name.into_vec())?, c_string(flag.into())?];
    let env = environment();
    // A signal that comes while the child is made waits until it is tracked, so that the
    // handler ends it too; one that reaches another thread meanwhile runs the handler there,
    // which waits for this start to end (see `interrupt::Busy`).
    let starting = interrupt::begin_start()?;
    let pid = posix_spawn(exe.as_path(), &actions, &attributes, &args, &env)
        .map_err(|e| Error::os("posix_spawn", e))?;
    starting.track(pid.as_raw());
    drop(starting);
    // Open until the child has run the file: `posix_spawn` returns once it has.
    drop(running);
    Ok(pid)
}

/// The environment, copied under std's lock of it (`std::env::vars_os`): a crate of edition
/// 2021 may call `std::env::set_var` as safe code, on another thread, and std makes that
/// wait for this copy, where a walk of the C library's `environ` would race with it. An
/// entry without `=`, which std leaves out, is not passed on.
fn environment() -> Vec<CString> {
    std::env::vars_os()
        .filter_map(|(key, value)| {
            let mut entry = key.into_vec();
            entry.push(b'=');
            entry.extend(value.into_vec());
            // No NUL inside: both came from a C string.
            CString::new(entry).ok()
        })
        .collect()
}

/// Bytes of an argument as a C string (none holds a NUL: arguments came from C strings).
fn c_string(bytes: Vec<u8>) -> Result<CString, Error> {
    CString::new(bytes).map_err(|e| Error::os("posix_spawn", io::Error::other(e)))
}

/// The pid a child asks to die with ([`die_with_parent`]): this process, when the calling
/// thread is its first; 0 otherwise. The kernel kills a child when the *thread* that
/// started it ends, and any other thread may end long before the process does.
pub(super) fn parent_to_die_with() -> i32 {
    // SAFETY: getpid and gettid take nothing and touch no memory.
    let (pid, tid) = unsafe { (libc::getpid(), libc::gettid()) };
    if pid == tid { pid } else { 0 }
}

/// A spawned child: reads its request from stdin and runs it.
fn run_spawned() -> i32 {
    // SAFETY: fcntl(F_GETFD) only asks whether descriptor 0 is open.
    if unsafe { libc::fcntl(0, libc::F_GETFD) } < 0 {
        return refuse(SPAWNED, "stdin is closed");
    }
    // SAFETY: descriptor 0 is open, just checked, and nothing closes it before
    // `quiet_stdin` replaces it, after the last use of this borrow.
    let stdin = unsafe { BorrowedFd::borrow_raw(0) };
    if let Err(why) = super::check_sender(stdin) {
        return refuse_unless_orphaned(SPAWNED, &why, stdin);
    }
    let mut buf = vec![0; REQUEST_HEADER + MAX_ARGS];
    let (len, fds) = match receive(stdin, &mut buf, true) {
        Ok(Received::Message(len, fds)) => (len, fds),
        // From this program's start code, as checked: not a run by hand.
        Ok(Received::Truncated(_)) => {
            return cannot_start(
                "the descriptors sent with its request did not fit in it (its limit of open \
                 files, RLIMIT_NOFILE, is too low for them)",
            );
        }
        Ok(_) => return refuse_unless_orphaned(SPAWNED, "no request came on stdin", stdin),
        Err(e) => return refuse_unless_orphaned(SPAWNED, &e.to_string(), stdin),
    };
    if let Err(e) = quiet_stdin() {
        return cannot_start(&e.to_string());
    }
    match Request::decode(&buf[..len]) {
        Some(request) if usize::from(request.fds) == fds.len() => run(&request, fds),
        _ => refuse(SPAWNED, "the request is malformed"),
    }
}

/// [`refuse`], unless the process that made `socket` (its starter, if this process was
/// started as it should be) has ended: killed while it started this one, say. Then no one
/// ran this by hand, nor is anyone left to be told: it ends quietly, with the same code.
pub(super) fn refuse_unless_orphaned(flag: &str, why: &str, socket: BorrowedFd<'_>) -> i32 {
    if super::maker_has_ended(socket) {
        return 2;
    }
    refuse(flag, why)
}

/// Says why a process started with `flag` cannot run, and returns the usage error's code.
pub(super) fn refuse(flag: &str, why: &str) -> i32 {
    crate::error_line(format_args!(
        "{why}: {flag} is for a process started by this program itself, which sends it what \
         to do on its stdin; it is not run by hand"
    ));
    2
}

/// Says why a started child, started as it should be, cannot run its request, and returns
/// the exit code it ends with: 1, as a Python child whose start fails.
fn cannot_start(why: &str) -> i32 {
    crate::error_line(format_args!("a started child could not run: {why}"));
    1
}

/// Runs a request in a started child: the entry, then what a child does before it ends.
pub(super) fn run(request: &Request<'_>, fds: Vec<OwnedFd>) -> i32 {
    if request.die_with != 0 {
        die_with_parent(request.die_with);
    }
    // Spawned: the generation the request says. Forked by a fork server: one below it,
    // which is one below the request's maker.
    let below = crate::interrupt::depth().saturating_add(1);
    crate::interrupt::set_depth(below.max(request.depth.into()));
    // What Rust's runtime does before `main`, which has not run: a write to a closed pipe
    // fails with EPIPE instead of killing the process.
    // SAFETY: setting a signal's disposition to SIG_IGN touches no memory.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // And what the examples do first: a failure to print is a one-line error.
    crate::unprintable::explain();
    let Some(entry) = request.entry() else {
        crate::error_line(format_args!(
            "this program's file has changed since the process that started this one started \
             (was it rebuilt?): a started child must run the same file"
        ));
        return 2;
    };
    let code = match panic::catch_unwind(AssertUnwindSafe(|| entry(request.args, fds))) {
        Ok(code) => code,
        Err(payload) => {
            // The panic hook has printed the message; see `run_child` in process.rs.
            std::mem::forget(payload);
            PANIC_EXIT_CODE
        }
    };
    // Children that the entry started and did not join are joined here, not orphaned.
    reap_detached(Block::Yes);
    code
}

/// Puts `/dev/null` at descriptor 0, as Python's children have it: stdin was the request.
pub(super) fn quiet_stdin() -> Result<(), Error> {
    let null = File::open("/dev/null").map_err(|e| Error::os("open(/dev/null)", e))?;
    // SAFETY: dup2 touches no memory; descriptor 0 is this process's stdin, which nothing
    // else here reads any more.
    if unsafe { libc::dup2(null.as_raw_fd(), 0) } < 0 {
        return Err(Error::os("dup2", io::Error::last_os_error()));
    }
    Ok(())
}
