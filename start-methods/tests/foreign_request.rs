//! A request that does not come from this program: a process of another executable (this
//! test) starts the example as a spawned child, or as a fork server, with a socket pair of
//! its own on stdin, and asks it to run the code at an offset of its choosing. The example
//! must refuse, with a clear error and exit status 2, and run nothing.

// The workspace's test harness, included by path rather than named as a dependency.
#[path = "../../testkit/src/lib.rs"]
#[allow(dead_code, unused_imports)]
mod testkit;

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};

const EXAMPLE: &str = env!("CARGO_BIN_EXE_start-methods");

/// A request as this program's start code encodes one: the executable's device and inode,
/// the entry's offset, the pid to die with, the child's generation, the number of
/// descriptors, the arguments.
fn request(entry: u64) -> Vec<u8> {
    let file = std::fs::metadata(EXAMPLE).expect("stat the example");
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&file.dev().to_le_bytes());
    bytes.extend_from_slice(&file.ino().to_le_bytes());
    bytes.extend_from_slice(&entry.to_le_bytes());
    bytes.extend_from_slice(&0i32.to_le_bytes());
    bytes.push(1);
    bytes.push(0);
    bytes
}

/// Runs the example with `flag`, sends it `messages` on its stdin, and returns its exit
/// code, stdout and stderr.
fn run_with(flag: &str, messages: &[Vec<u8>]) -> (Option<i32>, String, String) {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .expect("socketpair");
    let mut child = Command::new(EXAMPLE)
        .arg(flag)
        .stdin(Stdio::from(theirs))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the example");
    let mut ours = File::from(ours);
    for message in messages {
        // It may have refused and ended already: then the write fails, as it should.
        let _ = ours.write_all(message);
    }
    drop(ours);
    // Bounded only to catch a hang.
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("waitpid").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{flag} did not end");
        }
        thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().expect("read its output");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_refused(flag: &str, (code, stdout, stderr): (Option<i32>, String, String)) {
    assert_eq!(
        code,
        Some(2),
        "{flag}: stdout {stdout:?}, stderr {stderr:?}"
    );
    assert_eq!(stdout, "", "{flag} ran something");
    assert!(
        stderr.starts_with("Error: stdin is a socket made by process ")
            && stderr.contains("which runs another program")
            && stderr.contains(flag),
        "{flag}: {stderr:?}"
    );
}

#[test]
fn a_spawned_child_refuses_a_request_from_another_program() {
    let flag = "--multiprocessing-fork";
    assert_refused(flag, run_with(flag, &[request(0x1000)]));
}

#[test]
fn a_fork_server_refuses_requests_from_another_program() {
    let flag = "--multiprocessing-forkserver";
    let whom_to_die_with = 0i32.to_le_bytes().to_vec();
    assert_refused(flag, run_with(flag, &[whom_to_die_with, request(0x1000)]));
}

/// A process that makes the socket pair itself, queues a request on one end, puts the
/// other at its stdin and then runs the example with the flag: the kernel names it as the
/// pair's maker still, and it now runs the example's file. The example must see that the
/// maker is itself, and refuse. (It ran the code at the request's offset.)
#[test]
fn a_child_refuses_a_socket_it_made_itself_before_it_ran() {
    use std::os::unix::process::CommandExt;
    for flag in ["--multiprocessing-fork", "--multiprocessing-forkserver"] {
        let mut messages = Vec::new();
        if flag.ends_with("forkserver") {
            messages.push(0i32.to_le_bytes().to_vec());
        }
        messages.push(request(0x10));
        let mut cmd = Command::new(EXAMPLE);
        cmd.arg(flag).stdout(Stdio::piped()).stderr(Stdio::piped());
        // SAFETY: between fork and exec, this makes a socket pair, sends on one end and moves
        // the other to descriptor 0: system calls only, on memory the closure owns (the
        // messages, made before the fork); no allocation, no lock.
        unsafe {
            cmd.pre_exec(move || {
                let mut ends = [-1; 2];
                if libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0, ends.as_mut_ptr()) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                for message in &messages {
                    libc::send(ends[0], message.as_ptr().cast(), message.len(), 0);
                }
                libc::dup2(ends[1], 0);
                libc::close(ends[1]);
                libc::close(ends[0]);
                Ok(())
            })
        };
        let out = cmd.output().expect("run the example");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {out:?}");
        assert!(out.stdout.is_empty(), "{flag} ran something");
        assert!(
            stderr.starts_with("Error: stdin is a socket this process made itself")
                && stderr.contains(flag),
            "{flag}: {stderr:?}"
        );
    }
}

#[test]
fn a_spawned_child_refuses_a_pipe_on_stdin() {
    let flag = "--multiprocessing-fork";
    let out = Command::new(EXAMPLE)
        .arg(flag)
        .stdin(Stdio::piped())
        .output()
        .expect("run the example");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("Error: stdin is not a Unix socket of datagrams"),
        "{stderr:?}"
    );
}

/// A process that makes the socket, starts the example on it with either flag, and is gone
/// before the example looks at it (killed while it started a child, say): the example ends
/// with status 2 and says nothing, since no one ran it by hand and no one is left to tell.
#[test]
fn a_child_whose_starter_has_gone_ends_quietly() {
    // The example starts once the starter, which made its socket, has ended.
    const STARTER: &str = r#"
import os, socket, subprocess, sys
ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
subprocess.Popen(["sh", "-c", 'sleep 0.3; exec "$0" "$@"'] + sys.argv[1:], stdin=theirs)
os._exit(0)
"#;
    for flag in ["--multiprocessing-fork", "--multiprocessing-forkserver"] {
        let Some(mut python) = testkit::python3("a starter that has gone") else {
            return;
        };
        // The example inherits stderr: reading it to its end waits for the example's end.
        let out = python
            .args(["-c", STARTER, EXAMPLE, flag])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("run the starter");
        assert!(out.status.success(), "the starter failed: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr, "", "{flag}, whose starter had gone, said something");
        assert!(out.stdout.is_empty());
    }
}
