//! Tests of `Manager` and its proxies. `harness = false`, because the manager forks its
//! server, and fork is refused while libtest's threads run.

// A failed unwrap is a failed test here, as in #[test] functions.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::golden::{assert_no_children, open_fds, run_tests};
use common::{ExitStatus, Process, PyValue, frame, has_ended, repr};
use manager::{Manager, ManagerError};

fn main() {
    run_tests(&[
        (
            "proxies_work_in_every_process",
            proxies_work_in_every_process,
        ),
        (
            "errors_come_back_as_python_raises_them",
            errors_come_back_as_python_raises_them,
        ),
        (
            "bad_connections_are_closed_and_others_served",
            bad_connections_are_closed_and_others_served,
        ),
        (
            "the_socket_is_private_and_removed",
            the_socket_is_private_and_removed,
        ),
        ("another_user_cannot_connect", another_user_cannot_connect),
        (
            "the_server_ends_when_its_owner_is_killed",
            the_server_ends_when_its_owner_is_killed,
        ),
        (
            "no_zombie_and_no_descriptor_after_drop",
            no_zombie_and_no_descriptor_after_drop,
        ),
    ]);
}

fn proxies_work_in_every_process() {
    let manager = Manager::new().unwrap();
    let d = manager.dict().unwrap();
    let l = manager.list(Vec::<i64>::new()).unwrap();
    // The parent uses its connection first: the children inherit it, and must not use it.
    d.set("parent", 0).unwrap();
    let mut children: Vec<_> = (1..=4i64)
        .map(|n| {
            let (d, l) = (&d, &l);
            Process::new(move || {
                for k in 0..50 {
                    d.set(n * 100 + k, n).unwrap();
                    l.append(n).unwrap();
                }
            })
        })
        .collect();
    for p in &mut children {
        p.start().unwrap();
    }
    // Meanwhile the parent's own conversation goes on undisturbed.
    for _ in 0..100 {
        assert_eq!(d.get("parent").unwrap(), PyValue::Int(0));
    }
    for p in &mut children {
        assert_eq!(p.join().unwrap(), ExitStatus::Exited(0));
    }
    assert_eq!(d.len().unwrap(), 201);
    assert_eq!(l.len().unwrap(), 200);
    let mut items = l.to_vec().unwrap();
    items.sort_by_key(|v| repr(v).to_string());
    assert_eq!(items.first(), Some(&PyValue::Int(1)));
    assert_eq!(d.get(403).unwrap(), PyValue::Int(4));
    // A grandchild, forked from a child, opens its own connection too.
    let mut child = Process::new(|| {
        let mut grandchild = Process::new(|| l.set(0, "grandchild").unwrap());
        grandchild.start().unwrap();
        grandchild.join().unwrap();
    });
    child.start().unwrap();
    child.join().unwrap();
    assert_eq!(l.get(0).unwrap(), PyValue::from("grandchild"));
}

fn errors_come_back_as_python_raises_them() {
    let manager = Manager::new().unwrap();
    let d = manager.dict().unwrap();
    let l = manager.list(0..3).unwrap();
    let remote = |r: Result<PyValue, ManagerError>| match r {
        Err(ManagerError::Remote(e)) => e,
        other => panic!("not a remote error: {other:?}"),
    };
    assert_eq!(remote(d.get(1)), "KeyError: 1");
    assert_eq!(remote(d.get("1")), "KeyError: '1'");
    assert_eq!(remote(l.get(3)), "IndexError: list index out of range");
    assert_eq!(l.get(-1).unwrap(), PyValue::Int(2));
    let unhashable = d.set(PyValue::List(vec![]), 1).unwrap_err();
    assert_eq!(unhashable.to_string(), "TypeError: unhashable type: 'list'");
    // Keys compare as in Python: 1, 1.0 and True are one key.
    d.set(1, "a").unwrap();
    d.set(1.0, "b").unwrap();
    d.set(true, "c").unwrap();
    assert_eq!(repr(&d.copy().unwrap()).to_string(), "{1: 'c'}");
}

/// Sends `bytes` on a new connection, and returns what the server answered before it
/// closed the connection.
fn send_raw(address: &PathBuf, bytes: &[u8]) -> Vec<u8> {
    let mut raw = UnixStream::connect(address).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    raw.write_all(bytes).unwrap();
    let mut answer = Vec::new();
    raw.read_to_end(&mut answer).unwrap();
    answer
}

fn error_text(answer: &[u8]) -> String {
    // A frame holding Response::Error: its text is in it, readable as bytes.
    let len = frame::payload_len(answer).unwrap().unwrap();
    assert_eq!(answer.len(), frame::PREFIX + len, "one frame, then the end");
    String::from_utf8_lossy(answer).into_owned()
}

fn bad_connections_are_closed_and_others_served() {
    let manager = Manager::new().unwrap();
    let d = manager.dict().unwrap();
    d.set("before", 1).unwrap();
    let address = manager.address().to_path_buf();

    // Garbage in a frame of the right length.
    let answer = send_raw(&address, &[5, 0, 0, 0, 0xff, 0xfe, 0xfd, 0xfc, 0xfb]);
    assert!(
        error_text(&answer).contains("bad request: malformed frame"),
        "{answer:?}"
    );
    // A length over the limit: refused without reading on.
    let answer = send_raw(&address, &(frame::MAX_FRAME as u32 + 1).to_le_bytes());
    assert!(error_text(&answer).contains("over the limit"), "{answer:?}");
    // A frame cut short, then the connection closed: nothing to answer.
    let mut cut = UnixStream::connect(&address).unwrap();
    cut.write_all(&[100, 0, 0, 0, 1, 2, 3]).unwrap();
    drop(cut);
    // A connection that stays silent does not hold the server up.
    let _silent = UnixStream::connect(&address).unwrap();

    assert_eq!(d.get("before").unwrap(), PyValue::Int(1));
    d.set("after", 2).unwrap();
    assert_eq!(d.len().unwrap(), 2);
}

fn the_socket_is_private_and_removed() {
    let manager = Manager::new().unwrap();
    let address = manager.address().to_path_buf();
    let dir = address.parent().unwrap().to_path_buf();
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "{}", dir.display());
    assert!(address.exists());
    drop(manager);
    assert!(
        !address.exists() && !dir.exists(),
        "{} left behind",
        dir.display()
    );
    assert_no_children();
}

/// Run as root, a child that becomes user `nobody` is refused by the socket's directory.
fn another_user_cannot_connect() {
    // SAFETY: geteuid only reads this process's user id.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: not root, so no other user to try the socket as");
        return;
    }
    let manager = Manager::new().unwrap();
    let address = manager.address().to_path_buf();
    let mut stranger = Process::new(|| {
        // SAFETY: setgid and setuid change only this child's credentials.
        assert_eq!(unsafe { libc::setgid(65534) }, 0);
        // SAFETY: as above.
        assert_eq!(unsafe { libc::setuid(65534) }, 0);
        let err = UnixStream::connect(&address).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
    });
    stranger.start().unwrap();
    assert_eq!(stranger.join().unwrap(), ExitStatus::Exited(0));
}

fn the_server_ends_when_its_owner_is_killed() {
    let (mut r, w) = os_pipe::pipe().unwrap();
    let mut owner = Process::new(move || {
        let manager = Manager::new().unwrap();
        let told = format!(
            "{} {}\n",
            manager.pid().unwrap(),
            manager.address().display()
        );
        (&w).write_all(told.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_secs(60));
    });
    owner.start().unwrap();
    // One line; not to the end, which would wait for the owner (and its server) to exit.
    let mut told = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(&mut r), &mut told).unwrap();
    let (server, address) = told.trim().split_once(' ').unwrap();
    let (server, address): (u32, PathBuf) = (server.parse().unwrap(), address.into());
    assert!(!has_ended(server) && address.exists());
    owner.kill().unwrap();
    owner.join().unwrap();
    let started = Instant::now();
    while !has_ended(server) || address.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "server {server} outlived its owner"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!address.parent().unwrap().exists());
}

fn no_zombie_and_no_descriptor_after_drop() {
    let before = open_fds();
    for _ in 0..3 {
        let manager = Manager::new().unwrap();
        let l = manager.list([1, 2, 3]).unwrap();
        let mut p = Process::new(|| l.reverse().unwrap());
        p.start().unwrap();
        p.join().unwrap();
        assert_eq!(l.to_vec().unwrap(), [3, 2, 1].map(PyValue::from));
    }
    assert_no_children();
    assert_eq!(open_fds(), before);
}
