//! Tests of `Manager` and its proxies. `harness = false`, because the manager forks its
//! server, and fork is refused while libtest's threads run.

// A failed unwrap is a failed test here, as in #[test] functions.
#![allow(clippy::unwrap_used)]

// The workspace's test harness, included by path rather than named as a dependency: a copy
// of this section without `testkit/` still builds and runs (its tests need `testkit/` too).
#[path = "../../testkit/src/lib.rs"]
#[allow(dead_code, unused_imports)]
mod testkit;

use std::io::{Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::time::{Duration, Instant};

use common::{ExitStatus, Process, PyValue, frame, repr};
use manager::{DictProxy, ListProxy, Manager, ManagerError};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use testkit::{assert_no_children, has_ended, open_fds, run_tests};

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
            "a_frame_of_nested_lists_is_refused_and_others_served",
            a_frame_of_nested_lists_is_refused_and_others_served,
        ),
        (
            "a_client_that_does_not_read_holds_up_only_itself",
            a_client_that_does_not_read_holds_up_only_itself,
        ),
        (
            "an_answer_too_large_fails_that_request_alone",
            an_answer_too_large_fails_that_request_alone,
        ),
        (
            "more_connections_than_the_descriptor_limit_are_refused_not_fatal",
            more_connections_than_the_descriptor_limit_are_refused_not_fatal,
        ),
        (
            "over_the_descriptor_limit_a_connection_with_its_answer_due_is_kept",
            over_the_descriptor_limit_a_connection_with_its_answer_due_is_kept,
        ),
        (
            "a_server_left_no_descriptor_at_all_does_not_spin",
            a_server_left_no_descriptor_at_all_does_not_spin,
        ),
        (
            "out_of_descriptors_new_connections_are_refused_and_old_ones_served",
            out_of_descriptors_new_connections_are_refused_and_old_ones_served,
        ),
        (
            "a_connection_that_waited_for_a_descriptor_is_served_once_there_is_one",
            a_connection_that_waited_for_a_descriptor_is_served_once_there_is_one,
        ),
        (
            "a_client_that_sends_many_requests_at_once_takes_turns",
            a_client_that_sends_many_requests_at_once_takes_turns,
        ),
        ("proxies_are_send_and_sync", proxies_are_send_and_sync),
        ("many_managers_at_once", many_managers_at_once),
        (
            "a_signal_during_connect_does_not_fail_the_call",
            a_signal_during_connect_does_not_fail_the_call,
        ),
        (
            "a_request_too_large_to_send_is_not_kept",
            a_request_too_large_to_send_is_not_kept,
        ),
        (
            "a_server_short_of_memory_drops_a_connection_not_itself",
            a_server_short_of_memory_drops_a_connection_not_itself,
        ),
        (
            "a_child_does_not_keep_its_parents_connection",
            a_child_does_not_keep_its_parents_connection,
        ),
        (
            "threads_that_call_at_once_share_one_connection",
            threads_that_call_at_once_share_one_connection,
        ),
        (
            "a_process_forked_beside_a_call_is_not_held_up_by_it",
            a_process_forked_beside_a_call_is_not_held_up_by_it,
        ),
        (
            "a_call_of_its_own_at_the_descriptor_limit_is_told_the_server_ended",
            a_call_of_its_own_at_the_descriptor_limit_is_told_the_server_ended,
        ),
        (
            "a_killed_client_or_server_hangs_no_one",
            a_killed_client_or_server_hangs_no_one,
        ),
        (
            "the_socket_is_abstract_and_ends_with_the_server",
            the_socket_is_abstract_and_ends_with_the_server,
        ),
        ("another_user_is_refused", another_user_is_refused),
        (
            "a_process_that_takes_the_servers_name_is_not_talked_to",
            a_process_that_takes_the_servers_name_is_not_talked_to,
        ),
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
    // Keys compare as in Python: 1, 1.0 and True are one key.
    d.set(1, "a").unwrap();
    d.set(1.0, "b").unwrap();
    d.set(true, "c").unwrap();
    assert_eq!(repr(&d.copy().unwrap()).to_string(), "{1: 'c'}");
}

/// Sends `bytes` on a new connection, and returns what the server answered before it
/// closed the connection.
fn send_raw(address: &SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut raw = UnixStream::connect_addr(address).unwrap();
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
    let address = manager.address().clone();

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
    let mut cut = UnixStream::connect_addr(&address).unwrap();
    cut.write_all(&[100, 0, 0, 0, 1, 2, 3]).unwrap();
    drop(cut);
    // A connection that stays silent does not hold the server up.
    let _silent = UnixStream::connect_addr(&address).unwrap();

    assert_eq!(d.get("before").unwrap(), PyValue::Int(1));
    d.set("after", 2).unwrap();
    assert_eq!(d.len().unwrap(), 2);
}

/// The request numbers of the protocol (the order of `Request`'s variants), for raw frames.
const COPY: u32 = 5;
const LEN: u32 = 4;
const APPEND: u32 = 6;
const REVERSE: u32 = 7;

/// A raw request frame: the variant, then its fields' bytes.
fn request(variant: u32, fields: &[&[u8]]) -> Vec<u8> {
    let payload = [&variant.to_le_bytes()[..], &fields.concat()].concat();
    [&(payload.len() as u32).to_le_bytes()[..], &payload].concat()
}

/// Reads one frame's payload from a raw connection.
fn read_payload(raw: &mut UnixStream) -> Vec<u8> {
    let mut prefix = [0; frame::PREFIX];
    raw.read_exact(&mut prefix).unwrap();
    let mut payload = vec![0; u32::from_le_bytes(prefix) as usize];
    raw.read_exact(&mut payload).unwrap();
    payload
}

/// A few round trips on the proxy's connection: whatever was written on another connection
/// before this, the server has read, and begun to serve (one request of each connection a
/// round), by the time it returns.
fn round_trips(l: &ListProxy) {
    for _ in 0..3 {
        l.len().unwrap();
    }
}

fn a_frame_of_nested_lists_is_refused_and_others_served() {
    let manager = Manager::new().unwrap();
    let l = manager.list(0..3).unwrap();
    // `l.append([[[...]]])` with 50,000 lists, as a serde-derived nested type would encode
    // it: 12 bytes a level (variant 5, then a length of one), a 600 KB frame that would take
    // a recursive decoder far past its stack. A `PyValue` has no list variant, so the server
    // refuses it at the first tag.
    let mut deep = Vec::new();
    for _ in 0..50_000 {
        deep.extend_from_slice(&5u32.to_le_bytes());
        deep.extend_from_slice(&1u64.to_le_bytes());
    }
    deep.extend_from_slice(&0u32.to_le_bytes());
    let answer = send_raw(
        manager.address(),
        &request(APPEND, &[&0u32.to_le_bytes(), &deep]),
    );
    let text = error_text(&answer);
    assert!(text.contains("bad request: malformed frame: "), "{text}");
    assert!(!has_ended(manager.pid().unwrap()), "the server died");
    assert_eq!(l.to_vec().unwrap(), [0, 1, 2].map(PyValue::from));
}

/// The server's resident memory, and its peak, in KiB.
fn server_memory(pid: u32) -> (u64, u64) {
    (status_kib(pid, "VmRSS:"), status_kib(pid, "VmHWM:"))
}

/// A figure of process `pid`'s memory in KiB, by its name in `/proc/PID/status`.
fn status_kib(pid: u32, name: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(name)).unwrap();
    line[name.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap()
}

fn a_client_that_does_not_read_holds_up_only_itself() {
    const LIMIT_KIB: u64 = 64 << 10;
    let manager = Manager::new().unwrap();
    let server = manager.pid().unwrap();
    // 90,000 ints: an answer of 1 MiB (12 bytes an item); object 0 in the server.
    let items: Vec<PyValue> = (0..90_000).map(PyValue::from).collect();
    let l = manager.list(items.clone()).unwrap();
    let mut raw = UnixStream::connect_addr(manager.address()).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    round_trips(&l);
    // 500 requests for a copy, 500 MiB of answers, and none read yet.
    let copy = request(COPY, &[&0u32.to_le_bytes()]);
    raw.write_all(&copy.repeat(500)).unwrap();
    round_trips(&l);
    let (rss, _) = server_memory(server);
    assert!(
        rss < LIMIT_KIB,
        "server holds {rss} KiB while its client does not read"
    );
    // Every answer comes, whole and in order, once the client reads.
    for n in 0..500 {
        let payload = read_payload(&mut raw);
        let (variant, got): (u32, Vec<PyValue>) = frame::decode(&payload).unwrap();
        assert!(variant == 5 && got == items, "answer {n} is not the list");
    }
    let (_, peak) = server_memory(server);
    assert!(peak < LIMIT_KIB, "server grew to {peak} KiB");
    drop(raw);
    assert_eq!(l.len().unwrap(), 90_000);
}

fn an_answer_too_large_fails_that_request_alone() {
    let manager = Manager::new().unwrap();
    // Object 0: 17 strings of 1 MiB, built by appends; its copy is over the 16 MiB limit.
    let big = manager.list(Vec::<i64>::new()).unwrap();
    let mib = "x".repeat(1 << 20);
    for _ in 0..17 {
        big.append(mib.as_str()).unwrap();
    }
    match big.to_vec() {
        Err(ManagerError::Remote(e)) => assert!(e.contains("over the limit"), "{e}"),
        other => panic!("not a remote error: {other:?}"),
    }
    assert_eq!(big.len().unwrap(), 17);
    // Object 1: a 1 MiB answer. A raw client asks for it, and before it reads the answer
    // (which the server has begun to write) for the copy that is too large.
    let items: Vec<PyValue> = (0..90_000).map(PyValue::from).collect();
    let small = manager.list(items.clone()).unwrap();
    let mut raw = UnixStream::connect_addr(manager.address()).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    round_trips(&small);
    raw.write_all(&request(COPY, &[&1u32.to_le_bytes()]))
        .unwrap();
    round_trips(&small);
    raw.write_all(&request(COPY, &[&0u32.to_le_bytes()]))
        .unwrap();
    round_trips(&small);
    let (variant, got): (u32, Vec<PyValue>) = frame::decode(&read_payload(&mut raw)).unwrap();
    assert!(
        variant == 5 && got == items,
        "the first answer is not whole"
    );
    let (variant, error): (u32, String) = frame::decode(&read_payload(&mut raw)).unwrap();
    assert_eq!(variant, 6, "not an error: {error}");
    assert!(error.contains("over the limit"), "{error}");
    // And the connection goes on.
    raw.write_all(&request(LEN, &[&0u32.to_le_bytes()]))
        .unwrap();
    let len: (u32, u64) = frame::decode(&read_payload(&mut raw)).unwrap();
    assert_eq!(len, (3, 17));
}

/// Sets the server's RLIMIT_NOFILE: `soft` and `hard`.
fn limit_descriptors(server: u32, soft: libc::rlim_t, hard: libc::rlim_t) {
    set_limit(server, libc::RLIMIT_NOFILE, soft, hard);
}

/// Sets one of the server's limits (`resource`): `soft` and `hard`.
fn set_limit(server: u32, resource: libc::__rlimit_resource_t, soft: u64, hard: u64) {
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: prlimit reads the struct passed, valid for the call, and writes nothing (the
    // old limit's pointer is null); the server is this process's child, of the same user.
    let set = unsafe {
        libc::prlimit(
            server as libc::pid_t,
            resource,
            &limit,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(set, 0, "{}", std::io::Error::last_os_error());
}

/// The server's limit on descriptors is lowered to what it holds: what it inherited, the
/// listener, a spare, and this process's connection. New connections are refused; the old
/// one is served.
fn out_of_descriptors_new_connections_are_refused_and_old_ones_served() {
    let manager = Manager::new().unwrap();
    let server = manager.pid().unwrap();
    let d = manager.dict().unwrap();
    d.set("before", 1).unwrap();
    let fds = || -> Vec<u64> {
        let fds = std::fs::read_dir(format!("/proc/{server}/fd")).unwrap();
        fds.map(|fd| fd.unwrap().file_name().to_str().unwrap().parse().unwrap())
            .collect()
    };
    let mut held = fds();
    held.sort_unstable();
    // A new descriptor takes the lowest free number, and gets none at or over the limit.
    let lowest_free = (0..).find(|n| !held.contains(n)).unwrap();
    limit_descriptors(server, lowest_free, lowest_free);
    for _ in 0..3 {
        let answer = send_raw(manager.address(), &[]);
        let text = error_text(&answer);
        assert!(
            text.contains("the manager's server is out of file descriptors (accept: "),
            "{text}"
        );
        assert_eq!(d.get("before").unwrap(), PyValue::Int(1));
    }
    // A child's proxy, which opens a connection of its own, gets the same clear error, and
    // so does its next call, which tries again.
    let mut child = Process::new(|| {
        for _ in 0..2 {
            match d.get("before") {
                Err(ManagerError::Refused(e)) => {
                    assert!(e.contains("out of file descriptors"), "{e}");
                }
                other => panic!("not refused: {other:?}"),
            }
        }
    });
    child.start().unwrap();
    assert_eq!(child.join().unwrap(), ExitStatus::Exited(0));
    d.set("after", 2).unwrap();
    assert_eq!(d.len().unwrap(), 2);
    // Refusing did not make the server spin: it has used little processor time in all.
    let ticks = cpu_ticks(server);
    assert!(
        ticks < 100,
        "the server used {ticks} ticks of processor time"
    );
    let mut now = fds();
    now.sort_unstable();
    assert_eq!(now, held, "the server lost or leaked a descriptor");
}

/// The processor time process `pid` has used, in its own and in the kernel's code: clock
/// ticks (`utime` + `stime` of `/proc/<pid>/stat`, 100 a second).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// The server's RLIMIT_NOFILE: (soft, hard).
fn descriptor_limits(server: u32) -> (libc::rlim_t, libc::rlim_t) {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit writes the old limit into `old`, valid for the call, and sets nothing
    // (the new limit's pointer is null); the server is this process's child.
    let got = unsafe {
        libc::prlimit(
            server as libc::pid_t,
            libc::RLIMIT_NOFILE,
            std::ptr::null(),
            &mut old,
        )
    };
    assert_eq!(got, 0, "{}", std::io::Error::last_os_error());
    (old.rlim_cur, old.rlim_max)
}

/// The server's limit on descriptors is lowered to the number of its spare (the first
/// `/dev/null` it holds past stderr), so that it can neither accept a new connection with
/// the spare given up nor take the spare back: the connection waits. Once the limit is
/// raised again, the connection is served, though no other client wakes the server. (The
/// server slept with no timeout, and the connection waited for ever.)
fn a_connection_that_waited_for_a_descriptor_is_served_once_there_is_one() {
    let manager = Manager::new().unwrap();
    let server = manager.pid().unwrap();
    let d = manager.dict().unwrap();
    d.set("before", 1).unwrap();
    let spare = std::fs::read_dir(format!("/proc/{server}/fd"))
        .unwrap()
        .filter_map(|fd| {
            let fd = fd.unwrap();
            let n: u64 = fd.file_name().to_str()?.parse().ok()?;
            let null = std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == "/dev/null");
            (n > 2 && null).then_some(n)
        })
        .min()
        .unwrap();
    let (soft, hard) = descriptor_limits(server);
    limit_descriptors(server, spare, hard);
    let mut raw = UnixStream::connect_addr(manager.address()).unwrap();
    raw.write_all(&request(LEN, &[&0u32.to_le_bytes()]))
        .unwrap();
    // It waits: no answer, and no refusal, while there is no descriptor for it.
    raw.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0];
    let waited = raw.read(&mut byte);
    assert!(
        waited
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock),
        "{waited:?}"
    );
    limit_descriptors(server, soft, hard);
    // Bounded only to catch a hang.
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let len: (u32, u64) = frame::decode(&read_payload(&mut raw)).unwrap();
    assert_eq!(len, (3, 1));
    assert_eq!(d.get("before").unwrap(), PyValue::Int(1));
}

/// The server's limit on descriptors is lowered below the number of its connections, which
/// is then more than poll(2) takes: the newest connections are refused, and the server goes
/// on with the others and every object.
fn more_connections_than_the_descriptor_limit_are_refused_not_fatal() {
    let manager = Manager::new().unwrap();
    let server = manager.pid().unwrap();
    let d = manager.dict().unwrap();
    d.set("before", 1).unwrap();
    // Ten more connections, each served once (the len of object 0, the dict).
    let mut newer: Vec<_> = (0..10)
        .map(|_| {
            let mut raw = UnixStream::connect_addr(manager.address()).unwrap();
            raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            raw.write_all(&request(LEN, &[&0u32.to_le_bytes()]))
                .unwrap();
            read_payload(&mut raw);
            raw
        })
        .collect();
    limit_descriptors(server, 8, 1024);
    assert_eq!(d.get("before").unwrap(), PyValue::Int(1));
    // The newest were told why.
    let mut answer = Vec::new();
    newer.last_mut().unwrap().read_to_end(&mut answer).unwrap();
    let text = error_text(&answer);
    assert!(text.contains("out of file descriptors"), "{text}");
    assert_eq!(d.len().unwrap(), 1);
}

/// Over the limit, the server gives up connections with no answer due before one whose
/// answer is half written: that one keeps its answer (given up, it lost the answer of a
/// request that had run, and its proxy took the cut for the server's end). Here the newest
/// connection waits for a 14 MB answer it does not read yet; an idle one goes instead.
fn over_the_descriptor_limit_a_connection_with_its_answer_due_is_kept() {
    let manager = Manager::new().unwrap();
    let server = manager.pid().unwrap();
    let d = manager.dict().unwrap();
    d.set("before", 1).unwrap();
    let l = manager.list(0..1_200_000).unwrap();
    let mut idle = UnixStream::connect_addr(manager.address()).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    idle.write_all(&request(LEN, &[&0u32.to_le_bytes()]))
        .unwrap();
    read_payload(&mut idle);
    let mut due = UnixStream::connect_addr(manager.address()).unwrap();
    due.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    due.write_all(&request(COPY, &[&1u32.to_le_bytes()]))
        .unwrap();
    // The server writes what the socket takes of the answer, then waits to write the rest.
    let mut first = [0; frame::PREFIX];
    due.read_exact(&mut first).unwrap();
    // Three connections and the listener: one more than poll(2) then takes.
    limit_descriptors(server, 3, 1024);
    let mut refused = Vec::new();
    idle.read_to_end(&mut refused).unwrap();
    let text = error_text(&refused);
    assert!(text.contains("out of file descriptors"), "{text}");
    let len = u32::from_le_bytes(first) as usize;
    let mut rest = vec![0; len];
    due.read_exact(&mut rest).unwrap();
    let (variant, items): (u32, Vec<PyValue>) = frame::decode(&rest).unwrap();
    assert_eq!((variant, items.len()), (5, 1_200_000));
    limit_descriptors(server, 1024, 1024);
    assert_eq!(d.get("before").unwrap(), PyValue::Int(1));
    assert_eq!(l.len().unwrap(), 1_200_000);
}

/// A soft limit of 0 descriptors, set from outside: poll(2) of the listener alone fails, and
/// there is nothing to give up. The server waits to ask again, as at the limit, rather than
/// asking again at once for ever (it spun a whole CPU), and serves once the limit is back.
fn a_server_left_no_descriptor_at_all_does_not_spin() {
    let manager = Manager::new().unwrap();
    let server = manager.pid().unwrap();
    let ticks = || cpu_ticks(server);
    let (soft, hard) = descriptor_limits(server);
    limit_descriptors(server, 0, hard);
    // Woken, so that it polls with the limit at 0.
    let mut raw = UnixStream::connect_addr(manager.address()).unwrap();
    let before = ticks();
    std::thread::sleep(Duration::from_secs(1));
    let used = ticks() - before;
    // A spinning server uses all 100 ticks of the second.
    assert!(used < 50, "the server used {used} ticks of the second");
    limit_descriptors(server, soft, hard);
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    raw.write_all(&request(LEN, &[&0u32.to_le_bytes()]))
        .unwrap();
    // No object yet: an error, as an answer.
    let payload = read_payload(&mut raw);
    let (variant, error): (u32, String) = frame::decode(&payload).unwrap();
    assert_eq!((variant, error.as_str()), (6, "no shared object 0"));
    let d = manager.dict().unwrap();
    d.set("after", 1).unwrap();
    assert_eq!(d.len().unwrap(), 1);
}

fn proxies_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<DictProxy>();
    assert_send_sync::<ListProxy>();
}

/// The address names no file (so none can be left behind), and nothing listens at it once
/// the manager is dropped.
fn the_socket_is_abstract_and_ends_with_the_server() {
    let manager = Manager::new().unwrap();
    let address = manager.address().clone();
    let name = address.as_abstract_name().expect("an abstract address");
    assert!(name.starts_with(b"py-multiprocess-manager-"), "{address:?}");
    assert!(address.as_pathname().is_none());
    UnixStream::connect_addr(&address).unwrap();
    drop(manager);
    let err = UnixStream::connect_addr(&address).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    assert_no_children();
}

/// Run as root, a child that becomes user `nobody` is refused by the server, whatever it
/// sends; its proxies do not even talk to a server of another user. The server serves on.
fn another_user_is_refused() {
    // SAFETY: geteuid only reads this process's user id.
    if unsafe { libc::geteuid() } != 0 {
        testkit::skipped("not root, so no other user to try the socket as");
        return;
    }
    let manager = Manager::new().unwrap();
    let l = manager.list([1]).unwrap();
    let address = manager.address().clone();
    let mut stranger = Process::new(|| {
        // SAFETY: setgid and setuid change only this child's credentials.
        assert_eq!(unsafe { libc::setgid(65534) }, 0);
        // SAFETY: as above.
        assert_eq!(unsafe { libc::setuid(65534) }, 0);
        // Refused as soon as it is accepted, before it says anything.
        let mut raw = UnixStream::connect_addr(&address).unwrap();
        let mut answer = Vec::new();
        raw.read_to_end(&mut answer).unwrap();
        let text = error_text(&answer);
        assert!(
            text.contains("the manager's server serves only its own user's processes"),
            "{text}"
        );
        assert!(matches!(l.len(), Err(ManagerError::ServerGone)));
    });
    stranger.start().unwrap();
    assert_eq!(stranger.join().unwrap(), ExitStatus::Exited(0));
    assert_eq!(l.len().unwrap(), 1);
}

/// Once the server has ended, its abstract name is free for anyone to take. A proxy checks
/// who answers (the process that made the listening socket, and its user, as the kernel
/// says), so it sends nothing to the process that took the name, and says the server has
/// gone.
fn a_process_that_takes_the_servers_name_is_not_talked_to() {
    use std::os::unix::net::UnixListener;
    let manager = Manager::new().unwrap();
    let d = manager.dict().unwrap();
    d.set(1, "secret").unwrap();
    let server = manager.pid().unwrap();
    kill(Pid::from_raw(server as i32), Signal::SIGKILL).unwrap();
    while !has_ended(server) {
        std::thread::sleep(Duration::from_millis(1));
    }
    // Another process of this user takes the name, and counts what it is sent in the
    // second after (closing each connection once it has read it).
    let address = manager.address().clone();
    let (mut from_impostor, to_test) = os_pipe::pipe().unwrap();
    let mut impostor = Process::new(move || {
        let listener = UnixListener::bind_addr(&address).unwrap();
        (&to_test).write_all(b"r").unwrap();
        listener.set_nonblocking(true).unwrap();
        let mut told = 0u64;
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until {
            match listener.accept() {
                Ok((mut conn, _)) => {
                    conn.set_read_timeout(Some(Duration::from_millis(200)))
                        .unwrap();
                    let mut got = Vec::new();
                    let _ = conn.read_to_end(&mut got);
                    told += got.len() as u64;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        (&to_test).write_all(&told.to_le_bytes()).unwrap();
    });
    impostor.start().unwrap();
    from_impostor.read_exact(&mut [0]).unwrap();
    // The old connection ends with the server; the next call connects anew, to the impostor.
    let _ = d.get(1);
    match d.get(1) {
        Err(ManagerError::ServerGone) => {}
        other => panic!("not ServerGone: {other:?}"),
    }
    let mut told = [0; 8];
    from_impostor.read_exact(&mut told).unwrap();
    assert_eq!(impostor.join().unwrap(), ExitStatus::Exited(0));
    assert_eq!(
        u64::from_le_bytes(told),
        0,
        "the proxy sent the impostor a request"
    );
    drop(manager);
    assert_no_children();
}

/// SIGKILL leaves the owner no time to end its server: the kernel kills it (it asked to be,
/// when it was forked), within the second.
fn the_server_ends_when_its_owner_is_killed() {
    let (mut r, w) = os_pipe::pipe().unwrap();
    let mut owner = Process::new(move || {
        let manager = Manager::new().unwrap();
        (&w).write_all(&manager.pid().unwrap().to_ne_bytes())
            .unwrap();
        std::thread::sleep(Duration::from_secs(60));
    });
    owner.start().unwrap();
    let mut server = [0; 4];
    r.read_exact(&mut server).unwrap();
    let server = u32::from_ne_bytes(server);
    assert!(!has_ended(server));
    owner.kill().unwrap();
    owner.join().unwrap();
    let started = Instant::now();
    while !has_ended(server) {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "server {server} outlived its owner"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
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

/// A process's connection to the server is its own: a child forked after the parent used a
/// proxy closes the parent's connection at once (it would otherwise hold it open, unused,
/// for as long as it runs), and opens its own when it calls.
fn a_child_does_not_keep_its_parents_connection() {
    let manager = Manager::new().unwrap();
    let before = open_fds();
    let d = manager.dict().unwrap();
    let opened: Vec<String> = open_fds()
        .into_iter()
        .filter(|fd| !before.contains(fd) && fd.contains("socket:"))
        .collect();
    assert_eq!(opened.len(), 1, "the connection: {opened:?}");
    let conn = opened[0].clone();
    let mut child = Process::new(|| {
        assert!(!open_fds().contains(&conn), "the child holds fd {conn}");
        d.set(1, 2).unwrap();
    });
    child.start().unwrap();
    assert_eq!(child.join().unwrap(), ExitStatus::Exited(0));
    assert_eq!(d.get(1).unwrap(), PyValue::from(2));
}

/// Threads of one process that call at once take turns on its one connection: with no
/// descriptor left for another, all 800 calls of 4 threads go through. (A call that found
/// the connection taken opened one of its own: 574 to 666 of them failed with EMFILE.) In a
/// child, whose descriptor limit is lowered.
fn threads_that_call_at_once_share_one_connection() {
    let manager = Manager::new().unwrap();
    let d = manager.dict().unwrap();
    d.set("k", 1).unwrap();
    let mut child = Process::new(|| {
        // Its connection, first; then no descriptor more.
        assert_eq!(d.len().unwrap(), 1);
        let highest = open_fds()
            .iter()
            .filter_map(|fd| fd.split(' ').next()?.parse::<u64>().ok())
            .max()
            .unwrap();
        let limit = libc::rlimit {
            rlim_cur: highest + 1,
            rlim_max: highest + 1,
        };
        // SAFETY: setrlimit reads the struct passed, alive for the call.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
        // And the numbers below it that are free, taken.
        let mut taken = Vec::new();
        while let Ok(null) = std::fs::File::open("/dev/null") {
            taken.push(null);
        }
        let failed = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..200 {
                        if d.len().is_err() {
                            failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(failed.into_inner(), 0, "calls failed");
        drop(taken);
    });
    child.start().unwrap();
    assert_eq!(child.join().unwrap(), ExitStatus::Exited(0));
}

/// A process forked by safe code (`nix::unistd::daemon`) while another thread of its parent
/// is in a proxy call: its own call goes through, on a connection of its own, rather than
/// wait for the connection that thread held at the fork, which no thread will ever give back
/// there. (It waited for ever.) The forked process is handed, when its parent ends, to a
/// process of the test's that reaps it.
fn a_process_forked_beside_a_call_is_not_held_up_by_it() {
    let manager = Manager::new().unwrap();
    let d = manager.dict().unwrap();
    d.set("k", 1).unwrap();
    let (mut reaper, mut said) = forked_beside_a_call(
        || {
            for _ in 0..5000 {
                let _ = d.len();
            }
        },
        |_| match d.get("k") {
            Ok(PyValue::Int(1)) => "answered".to_string(),
            got => format!("{got:?}"),
        },
    );
    reaper.start().unwrap();
    assert_eq!(reaper.join().unwrap(), ExitStatus::Exited(0));
    drop(reaper);
    let mut answer = String::new();
    said.read_to_string(&mut answer).unwrap();
    assert_eq!(answer, "answered");
    assert_eq!(d.get("k").unwrap(), PyValue::Int(1));
}

/// A reaper process (taking in orphans) whose child runs `busy` on a thread and, 50 ms in,
/// forks beside it with `daemon` and ends; the forked process, alone, runs `then` (given
/// where to write) and writes what it returns, under a 10 s alarm. Returns the reaper, to
/// start, and the read end of what is written. The reaper exits 0 once the forked process
/// has exited 0.
fn forked_beside_a_call<'a>(
    busy: impl Fn() + Send + Sync + 'a,
    then: impl Fn(&os_pipe::PipeWriter) -> String + Send + Sync + 'a,
) -> (Process<impl FnOnce() + Send + 'a>, os_pipe::PipeReader) {
    let (said, tell) = os_pipe::pipe().unwrap();
    let reaper = Process::new(move || {
        // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes an int and touches no memory.
        assert_eq!(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) }, 0);
        let mut caller = Process::new(|| {
            std::thread::scope(|s| {
                s.spawn(&busy);
                std::thread::sleep(Duration::from_millis(50));
                // Forks, and ends the parent: this goes on in the new process, alone.
                nix::unistd::daemon(true, true).unwrap();
                // SAFETY: alarm touches no memory; it ends this process if the call hangs.
                unsafe { libc::alarm(10) };
                let said = then(&tell);
                let _ = (&tell).write_all(said.as_bytes());
                // SAFETY: ends this process at once, as a child does.
                unsafe { libc::_exit(0) };
            });
        });
        caller.start().unwrap();
        assert_eq!(caller.join().unwrap(), ExitStatus::Exited(0));
        // The forked process, now this one's child.
        let ended = nix::sys::wait::wait().unwrap();
        assert!(
            matches!(ended, nix::sys::wait::WaitStatus::Exited(_, 0)),
            "{ended:?}"
        );
    });
    (reaper, said)
}

/// A process forked beside a call makes its calls on connections of their own; at its
/// descriptor limit, one whose server dies while it waits is told `ServerGone`: the
/// connection is closed before a new one asks whether the server lives (asked with it
/// still open, the new socket failed with EMFILE, and the call said that instead).
fn a_call_of_its_own_at_the_descriptor_limit_is_told_the_server_ended() {
    let manager = Manager::new().unwrap();
    let d = manager.dict().unwrap();
    d.set("k", 1).unwrap();
    let server = Pid::from_raw(manager.pid().unwrap() as i32);
    // Stopped, the server leaves every call waiting: the thread below holds the connection
    // when its process forks, and the forked process's call waits until the kill.
    kill(server, Signal::SIGSTOP).unwrap();
    let (mut reaper, mut said) = forked_beside_a_call(
        || {
            let _ = d.len();
        },
        |mut tell| {
            // The lowest free descriptor is the last this process may open.
            // SAFETY: F_DUPFD makes a new descriptor of fd 0, closed on the next line.
            let free = unsafe { libc::fcntl(0, libc::F_DUPFD, 0) };
            // SAFETY: `free` was made above and is used nowhere else.
            unsafe { libc::close(free) };
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit writes the struct and setrlimit reads it, valid for both
            // calls; the soft limit goes down, the hard one stays.
            let set = unsafe {
                libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
                limit.rlim_cur = free as libc::rlim_t + 1;
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit)
            };
            if set != 0 {
                return "setrlimit failed".to_string();
            }
            let _ = tell.write_all(b"calling\n");
            match d.get("k") {
                Err(ManagerError::ServerGone) => "ServerGone".to_string(),
                other => format!("{other:?}"),
            }
        },
    );
    reaper.start().unwrap();
    let mut calling = [0; 8];
    said.read_exact(&mut calling).unwrap();
    // Time for the call to connect and wait for its answer.
    std::thread::sleep(Duration::from_millis(300));
    kill(server, Signal::SIGKILL).unwrap();
    assert_eq!(reaper.join().unwrap(), ExitStatus::Exited(0));
    drop(reaper);
    let mut answer = String::new();
    said.read_to_string(&mut answer).unwrap();
    assert_eq!(answer, "ServerGone");
    drop(d);
    drop(manager);
    assert_no_children();
}

/// A client killed in the middle of its calls costs the others nothing; a server killed
/// makes every call fail with `ServerGone`, and the manager still ends and cleans up.
fn a_killed_client_or_server_hangs_no_one() {
    let manager = Manager::new().unwrap();
    let l = manager.list(0..1000).unwrap();
    for pause in [0, 1, 5, 20] {
        let mut client = Process::new(|| while l.reverse().is_ok() && l.to_vec().is_ok() {});
        client.start().unwrap();
        std::thread::sleep(Duration::from_millis(pause));
        client.kill().unwrap();
        assert_eq!(
            client.join().unwrap(),
            ExitStatus::Signaled(nix::sys::signal::Signal::SIGKILL)
        );
        assert_eq!(l.len().unwrap(), 1000);
    }
    let server = manager.pid().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let started = Instant::now();
    assert!(matches!(l.len(), Err(ManagerError::ServerGone)));
    assert!(matches!(manager.dict(), Err(ManagerError::ServerGone)));
    drop(l);
    drop(manager);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_no_children();
}

/// A client that sends 2,000 requests at once (each reverses a list, then appends to a
/// counter), and another that asks for the counter's length just after: the server takes
/// one request of each connection a round, so the second is answered after one or two of
/// the 2,000, not after all that one read of the socket brought (about 1,900). The server is
/// stopped while both write, so that both are there when it looks.
fn a_client_that_sends_many_requests_at_once_takes_turns() {
    use nix::sys::signal::{Signal, kill};
    let manager = Manager::new().unwrap();
    let server = nix::unistd::Pid::from_raw(manager.pid().unwrap() as i32);
    let _big = manager.list(0..1000).unwrap(); // object 0
    let _counter = manager.list(Vec::<i64>::new()).unwrap(); // object 1
    let len = request(LEN, &[&1u32.to_le_bytes()]);
    let int_0 = [&2u32.to_le_bytes()[..], &0i64.to_le_bytes()].concat();
    let pair = [
        request(REVERSE, &[&0u32.to_le_bytes()]),
        request(APPEND, &[&1u32.to_le_bytes(), &int_0]),
    ]
    .concat();
    // Both connected and served once, in this order, before the server stops.
    let mut hog = UnixStream::connect_addr(manager.address()).unwrap();
    let mut other = UnixStream::connect_addr(manager.address()).unwrap();
    for raw in [&mut hog, &mut other] {
        raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        raw.write_all(&len).unwrap();
        read_payload(raw);
    }
    kill(server, Signal::SIGSTOP).unwrap();
    hog.write_all(&pair.repeat(2000)).unwrap();
    other.write_all(&len).unwrap();
    kill(server, Signal::SIGCONT).unwrap();
    let (variant, served_first): (u32, u64) = frame::decode(&read_payload(&mut other)).unwrap();
    assert_eq!(variant, 3, "not a length");
    assert!(
        served_first <= 2,
        "{served_first} of the other client's 2,000 requests were served before this call"
    );
    drop(hog);
}

/// Many managers live at once, each at an address of its own, and each ends with its drop.
fn many_managers_at_once() {
    let managers: Vec<Manager> = (0..12).map(|_| Manager::new().unwrap()).collect();
    for (i, manager) in managers.iter().enumerate() {
        let d = manager.dict().unwrap();
        d.set(i as i64, "here").unwrap();
        assert_eq!(d.len().unwrap(), 1);
    }
    let addresses: Vec<SocketAddr> = managers.iter().map(|m| m.address().clone()).collect();
    drop(managers);
    assert!(
        addresses
            .iter()
            .all(|address| UnixStream::connect_addr(address).is_err())
    );
    assert_no_children();
}

/// The system call that `pid` is blocked in, if it is blocked in one (`/proc/PID/syscall`).
fn blocked_in(pid: i32) -> Option<libc::c_long> {
    let line = std::fs::read_to_string(format!("/proc/{pid}/syscall")).ok()?;
    line.split(' ').next()?.parse().ok()
}

extern "C" fn do_nothing(_: libc::c_int) {}

/// A call whose connect(2) waits (the listener's backlog is full) and is interrupted by a
/// signal whose handler was set without SA_RESTART: the connect is tried again, as Python's
/// proxy does (PEP 475), where the call failed with "connect: Interrupted system call".
fn a_signal_during_connect_does_not_fail_the_call() {
    use nix::sys::socket::{
        AddressFamily, Backlog, SockFlag, SockType, UnixAddr, bind, connect, listen, socket,
    };
    use std::os::fd::AsRawFd;
    let manager = Manager::new().unwrap();
    let d = manager.dict().unwrap();
    let server = manager.pid().unwrap();
    kill(Pid::from_raw(server as i32), Signal::SIGKILL).unwrap();
    while !has_ended(server) {
        std::thread::sleep(Duration::from_millis(1));
    }
    // The server's name, taken by this process, with a backlog of one connection, taken.
    let name = manager.address().as_abstract_name().unwrap().to_vec();
    let address = UnixAddr::new_abstract(&name).unwrap();
    let unix_socket = || {
        let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
        socket(AddressFamily::Unix, SockType::Stream, flags, None).unwrap()
    };
    let listener = unix_socket();
    bind(listener.as_raw_fd(), &address).unwrap();
    listen(&listener, Backlog::new(0).unwrap()).unwrap();
    let waiting = unix_socket();
    connect(waiting.as_raw_fd(), &address).unwrap();
    let mut caller = Process::new(move || {
        // SAFETY: the handler does nothing, so it is async-signal-safe; sa_flags lacks
        // SA_RESTART on purpose; the struct is zeroed (an empty mask) and alive for the call.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = do_nothing as extern "C" fn(libc::c_int) as usize;
            libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut());
        }
        // Its connections are closed unanswered, as by a server that has ended.
        match d.get(1) {
            Err(ManagerError::ServerGone) => Ok(()),
            other => Err(format!("not ServerGone: {other:?}")),
        }
    });
    caller.start().unwrap();
    let pid = caller.pid().unwrap().as_raw();
    let started = Instant::now();
    while blocked_in(pid) != Some(libc::SYS_connect) {
        assert!(started.elapsed() < Duration::from_secs(10), "no connect");
        std::thread::sleep(Duration::from_millis(1));
    }
    kill(Pid::from_raw(pid), Signal::SIGUSR1).unwrap();
    // Once the signal is taken, it has ended that connect: a caller that tries again waits
    // in connect anew, one that gave up ends. Then the backlog is emptied.
    while signal_pending(pid, libc::SIGUSR1) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let listener = std::os::unix::net::UnixListener::from(listener);
    while !has_ended(pid as u32) {
        // Closed at once, as by a server that has ended.
        drop(listener.accept());
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(caller.join().unwrap(), ExitStatus::Exited(0));
    drop(manager);
    assert_no_children();
}

/// Whether `signal` waits to be taken by process `pid` (or has, if it has ended).
fn signal_pending(pid: i32, signal: libc::c_int) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let bit = 1u64 << (signal - 1);
    ["SigPnd:", "ShdPnd:"].iter().any(|field| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .is_some_and(|mask| mask & bit != 0)
    })
}

/// This process's resident memory, in KiB.
fn resident_kib() -> u64 {
    status_kib(std::process::id(), "VmRSS:")
}

/// A request over the frame limit fails, and its encoding (a copy of the whole value) is
/// given back, not kept by the connection until its next call.
fn a_request_too_large_to_send_is_not_kept() {
    let manager = Manager::new().unwrap();
    let d = manager.dict().unwrap();
    d.set(1, 1).unwrap();
    let before = resident_kib();
    let big = "x".repeat(64 << 20);
    match d.set(2, big.as_str()) {
        Err(ManagerError::Frame(e)) => assert!(e.to_string().contains("over the limit"), "{e}"),
        other => panic!("not refused: {other:?}"),
    }
    drop(big);
    let after = resident_kib();
    assert!(
        after < before + (32 << 10),
        "{before} KiB before the call, {after} KiB after"
    );
    assert_eq!(d.get(1).unwrap(), PyValue::from(1));
    drop(manager);
    assert_no_children();
}

/// A server whose memory is limited (RLIMIT_AS) meets clients that each stall inside a
/// largest frame (16 MiB): when it cannot make room for one, it drops that connection, and
/// goes on serving the others. An allocation that failed aborted it, and every object with it.
fn a_server_short_of_memory_drops_a_connection_not_itself() {
    let manager = Manager::new().unwrap();
    let l = manager.list([1, 2, 3]).unwrap();
    let server = manager.pid().unwrap();
    // Room for two such frames beside what it uses now (and what its heap, inherited from
    // this process, has free: connections are opened until one is dropped).
    let size = status_kib(server, "VmSize:") << 10;
    set_limit(
        server,
        libc::RLIMIT_AS,
        size + (40 << 20),
        libc::RLIM_INFINITY,
    );
    let mut frame = request(
        APPEND,
        &[&0u32.to_le_bytes(), &vec![0; frame::MAX_FRAME - 8]],
    );
    frame.truncate(frame::PREFIX + frame::MAX_FRAME - 1);
    let mut stalled = Vec::new();
    let dropped = (0..64).any(|_| {
        let mut raw = UnixStream::connect_addr(manager.address()).unwrap();
        // Cut by the server when it gives up on this connection: then the rest is not sent.
        let _ = raw.write_all(&frame);
        // A connection the server still holds says nothing; one it dropped reads as ended.
        raw.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let held =
            matches!(raw.read(&mut [0]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
        stalled.push(raw);
        !held
    });
    assert!(!has_ended(server), "the server died");
    assert!(dropped, "no connection dropped");
    assert_eq!(l.to_vec().unwrap(), [1, 2, 3].map(PyValue::from));
    drop(manager);
    assert_no_children();
}
