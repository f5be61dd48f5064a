//! Tests of `Queue` across processes. `harness = false`, because fork is refused while
//! libtest's threads run.

// A failed unwrap is a failed test here, as in #[test] functions.
#![allow(clippy::unwrap_used)]

// The workspace's test harness, included by path rather than named as a dependency: a copy
// of this section without `testkit/` still builds and runs (its tests need `testkit/` too).
#[path = "../../testkit/src/lib.rs"]
#[allow(dead_code, unused_imports)]
mod testkit;

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use common::frame::FrameError;
use common::{ExitStatus, Process};
use nix::sys::signal::{Signal, kill};
use queue::{Queue, QueueError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use testkit::{assert_no_children, open_fds, run_tests};

fn main() {
    run_tests(&[
        (
            "a_message_cut_short_breaks_the_queue",
            a_message_cut_short_breaks_the_queue,
        ),
        (
            "a_large_put_stopped_half_way_is_waited_for",
            a_large_put_stopped_half_way_is_waited_for,
        ),
        (
            "a_message_nested_too_deep_is_an_error_not_an_abort",
            a_message_nested_too_deep_is_an_error_not_an_abort,
        ),
        (
            "many_writers_never_mix_messages",
            many_writers_never_mix_messages,
        ),
        (
            "many_readers_share_the_read_ahead",
            many_readers_share_the_read_ahead,
        ),
        (
            "get_timeout_and_get_nowait_on_empty",
            get_timeout_and_get_nowait_on_empty,
        ),
        (
            "get_timeout_of_duration_max_waits_without_a_deadline",
            get_timeout_of_duration_max_waits_without_a_deadline,
        ),
        (
            "joining_before_draining_waits",
            joining_before_draining_waits,
        ),
        (
            "a_writer_killed_mid_message_breaks_the_queue",
            a_writer_killed_mid_message_breaks_the_queue,
        ),
        (
            "a_writer_killed_mid_message_breaks_the_queue_though_its_pid_is_reused",
            a_writer_killed_mid_message_breaks_the_queue_though_its_pid_is_reused,
        ),
        (
            "a_put_that_fails_mid_message_breaks_the_queue",
            a_put_that_fails_mid_message_breaks_the_queue,
        ),
        (
            "a_prefix_over_the_limit_breaks_the_queue",
            a_prefix_over_the_limit_breaks_the_queue,
        ),
        (
            "no_zombie_and_no_descriptor_after_drop",
            no_zombie_and_no_descriptor_after_drop,
        ),
        ("a_queue_is_sync", a_queue_is_sync),
        (
            "a_writer_waiting_on_a_full_pipe_is_told_when_the_queue_breaks",
            a_writer_waiting_on_a_full_pipe_is_told_when_the_queue_breaks,
        ),
        (
            "a_writer_waiting_on_a_full_pipe_is_told_when_its_reader_dies_mid_message",
            a_writer_waiting_on_a_full_pipe_is_told_when_its_reader_dies_mid_message,
        ),
        (
            "a_writer_killed_between_small_messages_breaks_nothing",
            a_writer_killed_between_small_messages_breaks_nothing,
        ),
        (
            "a_writer_killed_mid_message_breaks_the_queue_for_a_reader_with_many_locks",
            a_writer_killed_mid_message_breaks_the_queue_for_a_reader_with_many_locks,
        ),
        (
            "a_reader_killed_while_it_waits_for_data_breaks_nothing",
            a_reader_killed_while_it_waits_for_data_breaks_nothing,
        ),
        (
            "a_reader_killed_where_its_lock_is_abandoned_breaks_the_queue",
            a_reader_killed_where_its_lock_is_abandoned_breaks_the_queue,
        ),
        (
            "a_writer_killed_where_its_lock_is_abandoned_breaks_the_queue",
            a_writer_killed_where_its_lock_is_abandoned_breaks_the_queue,
        ),
        (
            "get_nowait_is_never_empty_with_items_queued_beside_a_waiting_put",
            get_nowait_is_never_empty_with_items_queued_beside_a_waiting_put,
        ),
        (
            "a_get_out_of_descriptors_waits_on_beside_a_writer_killed_between_messages",
            a_get_out_of_descriptors_waits_on_beside_a_writer_killed_between_messages,
        ),
        (
            "an_items_deserialize_may_use_the_queue",
            an_items_deserialize_may_use_the_queue,
        ),
        (
            "a_fork_inside_an_items_deserialize_keeps_its_bytes",
            a_fork_inside_an_items_deserialize_keeps_its_bytes,
        ),
        (
            "a_reader_out_of_descriptors_is_told_so_when_a_writer_dies_mid_message",
            a_reader_out_of_descriptors_is_told_so_when_a_writer_dies_mid_message,
        ),
    ]);
}

/// (writer, sequence number, payload): the payload's bytes and length follow from the other
/// two, so a message that arrives mixed or cut is seen. (A string, which bincode copies
/// whole, where a `Vec<u8>` would go byte by byte: that keeps the unoptimised test fast.)
type Message = (u32, u32, String);

fn message(writer: u32, seq: u32) -> Message {
    // A few percent large (up to 256 KiB), the rest small.
    let mix = (writer.wrapping_mul(2_654_435_761) ^ seq.wrapping_mul(40_503)) % 1000;
    let len = if mix < 30 {
        4096 + (mix as usize * 8_599) % (256 << 10)
    } else {
        mix as usize % 100
    };
    let bytes = (0..len)
        .map(|i| char::from(b'a' + ((writer as usize * 31 + seq as usize * 7 + i) % 26) as u8))
        .collect();
    (writer, seq, bytes)
}

fn many_writers_never_mix_messages() {
    const WRITERS: u32 = 8;
    const EACH: u32 = 2_000;
    let q = Queue::<Message>::new().unwrap();
    let mut writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let q = &q;
            Process::new(move || {
                for seq in 0..EACH {
                    q.put(&message(w, seq)).unwrap();
                }
            })
        })
        .collect();
    for p in &mut writers {
        p.start().unwrap();
    }
    let mut next = [0u32; WRITERS as usize];
    let mut large = 0;
    for _ in 0..WRITERS * EACH {
        let got = q.get_timeout(Duration::from_secs(30)).unwrap();
        let (w, seq, _) = got;
        assert_eq!(
            seq, next[w as usize],
            "writer {w}'s messages out of order or lost"
        );
        assert!(
            got == message(w, seq),
            "message {seq} of writer {w} arrived changed"
        );
        large += usize::from(got.2.len() > 4096);
        next[w as usize] += 1;
    }
    assert_eq!(next, [EACH; WRITERS as usize]);
    assert!(large > 100, "only {large} messages over PIPE_BUF");
    // Nothing more: no duplicate.
    assert!(matches!(q.get_nowait(), Err(QueueError::Empty)));
    for p in &mut writers {
        assert_eq!(p.join().unwrap(), ExitStatus::Exited(0));
    }
}

/// Two reader processes take from one queue: every item reaches exactly one of them, also
/// those one reader had read ahead into the shared buffer.
fn many_readers_share_the_read_ahead() {
    let q = Queue::<u32>::new().unwrap();
    let back = Queue::<u32>::new().unwrap();
    let mut readers: Vec<_> = (0..2)
        .map(|_| {
            let (q, back) = (&q, &back);
            Process::new(move || {
                for _ in 0..5_000 {
                    back.put(&q.get().unwrap()).unwrap();
                }
            })
        })
        .collect();
    for p in &mut readers {
        p.start().unwrap();
    }
    let mut got = Vec::new();
    for i in 0..10_000 {
        q.put(&i).unwrap();
        // Drain as we go, so no pipe fills up.
        while let Ok(item) = back.get_nowait() {
            got.push(item);
        }
    }
    while got.len() < 10_000 {
        got.push(back.get_timeout(Duration::from_secs(30)).unwrap());
    }
    got.sort();
    assert_eq!(got, (0..10_000).collect::<Vec<_>>());
    for p in &mut readers {
        assert_eq!(p.join().unwrap(), ExitStatus::Exited(0));
    }
}

fn get_timeout_and_get_nowait_on_empty() {
    let q = Queue::<String>::new().unwrap();
    assert!(matches!(q.get_nowait(), Err(QueueError::Empty)));
    let started = Instant::now();
    assert!(matches!(
        q.get_timeout(Duration::from_millis(200)),
        Err(QueueError::Empty)
    ));
    let waited = started.elapsed();
    // The upper bound only catches a hang.
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    q.put(&"late".to_string()).unwrap();
    assert_eq!(q.get_nowait().unwrap(), "late");
    assert_eq!(QueueError::Empty.to_string(), "the queue is empty");
}

/// The deadlock Python documents: a child that put more than the pipe holds cannot end
/// until the items are read. Here it is shown, then resolved by reading first.
fn joining_before_draining_waits() {
    let q = Queue::<Vec<u8>>::new().unwrap();
    let mut child = Process::new(|| {
        for _ in 0..64 {
            q.put(&vec![7; 16 << 10]).unwrap();
        }
    });
    child.start().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.is_alive().unwrap(),
        "the child should be blocked in put"
    );
    for _ in 0..64 {
        assert_eq!(
            q.get_timeout(Duration::from_secs(10)).unwrap(),
            vec![7; 16 << 10]
        );
    }
    assert_eq!(child.join().unwrap(), ExitStatus::Exited(0));
}

/// A timeout past the clock's range is no deadline at all, not a panic.
fn get_timeout_of_duration_max_waits_without_a_deadline() {
    let q = Queue::<u32>::new().unwrap();
    let mut p = Process::new(|| {
        std::thread::sleep(Duration::from_millis(100));
        q.put(&7).unwrap();
    });
    p.start().unwrap();
    assert_eq!(q.get_timeout(Duration::MAX).unwrap(), 7);
    assert_eq!(p.join().unwrap(), ExitStatus::Exited(0));
}

fn a_writer_killed_mid_message_breaks_the_queue() {
    let q = Queue::<String>::new().unwrap();
    let pid = kill_a_writer_mid_message(&q);
    let started = Instant::now();
    let err = q.get_timeout(Duration::from_secs(10)).err().unwrap();
    assert!(
        matches!(err, QueueError::Broken { pid: p } if p == pid),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // Every later call says so too, rather than reading misaligned bytes.
    assert!(matches!(q.put(&"y".into()), Err(QueueError::Broken { .. })));
    assert!(matches!(q.get_nowait(), Err(QueueError::Broken { .. })));
}

/// The same, for a reader that cannot take the write lock to look at the dead writer's flag
/// (it holds as many locks as a thread may): the queue is broken all the same, not left
/// looking empty with half a message gone.
fn a_writer_killed_mid_message_breaks_the_queue_for_a_reader_with_many_locks() {
    let q = Queue::<String>::new().unwrap();
    let pid = kill_a_writer_mid_message(&q);
    let locks: Vec<lock::Lock> = (0..1999).map(|_| lock::Lock::new().unwrap()).collect();
    let held: Vec<_> = locks.iter().map(|l| l.lock().unwrap()).collect();
    let err = q.get_timeout(Duration::from_secs(10)).err().unwrap();
    drop(held);
    assert!(
        matches!(err, QueueError::Broken { pid: p } if p == pid),
        "{err}"
    );
    assert!(matches!(q.get_nowait(), Err(QueueError::Broken { .. })));
}

/// The same, once the dead writer's pid names another, live process (as it may on a busy
/// machine; here given again through `/proc/sys/kernel/ns_last_pid`, which takes root): the
/// reader is told by the write lock's robust mutex, not by the pid, and does not wait
/// forever for the rest of the message.
fn a_writer_killed_mid_message_breaks_the_queue_though_its_pid_is_reused() {
    const LAST_PID: &str = "/proc/sys/kernel/ns_last_pid";
    let q = Queue::<String>::new().unwrap();
    let pid = kill_a_writer_mid_message(&q);
    // Another process takes the pid: a fork right after ns_last_pid is set to the one before
    // gets it, unless some other process of the machine forked in between.
    let mut other = None;
    for _ in 0..5 {
        if std::fs::write(LAST_PID, (pid - 1).to_string()).is_err() {
            println!("skipped: {LAST_PID} cannot be written here, so no pid can be given again");
            return;
        }
        let mut p = Process::new(|| std::thread::sleep(Duration::from_secs(60)));
        p.start().unwrap();
        if p.pid().unwrap().as_raw() as u32 == pid {
            other = Some(p);
            break;
        }
        p.kill().unwrap();
        p.join().unwrap();
    }
    let mut other = other.expect("the dead writer's pid was never given again");
    let mut reader = Process::new(|| match q.get() {
        Err(QueueError::Broken { pid: p }) if p == pid => {}
        got => panic!("the reader was told {:?}", got.map(|s| s.len())),
    });
    reader.start().unwrap();
    if !testkit::ends_within(
        reader.pid().unwrap().as_raw() as u32,
        Duration::from_secs(30),
    ) {
        reader.kill().unwrap();
        reader.join().unwrap();
        other.kill().unwrap();
        other.join().unwrap();
        panic!("the reader still waits for the rest of the dead writer's message");
    }
    other.kill().unwrap();
    other.join().unwrap();
    assert_eq!(reader.join().unwrap(), ExitStatus::Exited(0));
    assert!(matches!(q.get_nowait(), Err(QueueError::Broken { .. })));
}

/// Starts a child that puts a 1 MiB message, and kills it once it waits in write(2) with
/// part of the message in the pipe; returns its pid.
fn kill_a_writer_mid_message(q: &Queue<String>) -> u32 {
    let mut child = Process::new(|| {
        q.put(&"x".repeat(1 << 20)).unwrap();
    });
    child.start().unwrap();
    // Once the pipe holds 64 KiB of the message, the child sleeps in write(2), waiting to
    // write the rest: only then is it killed.
    let pid = child.pid().unwrap().as_raw() as u32;
    testkit::until_asleep(pid);
    child.kill().unwrap();
    child.join().unwrap();
    pid
}

/// A put that fails with part of its frame in the pipe (here its pipe end is swapped for
/// `/dev/null` under it, so write(2) fails with EBADF) breaks the queue: the rest never
/// comes, and the next frame would be read as its end. A get says so, rather than waiting
/// for the rest forever.
fn a_put_that_fails_mid_message_breaks_the_queue() {
    let (q, writer) = a_queue_and_its_write_end::<String>();
    let mut w = Process::new(|| {
        let null = std::fs::File::open("/dev/null").unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                // Once part of the message is in the pipe, the put's pipe end goes.
                let mut queued: libc::c_int = 0;
                // SAFETY: FIONREAD writes one int, into `queued`.
                while unsafe { libc::ioctl(writer, libc::FIONREAD, &mut queued) } == 0
                    && queued == 0
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                // SAFETY: `writer` is the queue's pipe end, which only the other thread uses,
                // in write(2) and poll(2): replaced by /dev/null, opened for reading only.
                assert!(unsafe { libc::dup2(null.as_raw_fd(), writer) } == writer);
            });
            match q.put(&"x".repeat(1 << 20)) {
                Err(QueueError::Os(_) | QueueError::Broken { .. }) => {}
                other => panic!("the put was told {other:?}"),
            }
        });
    });
    w.start().unwrap();
    assert_eq!(w.join().unwrap(), ExitStatus::Exited(0));
    let mut r = Process::new(|| match q.get() {
        Err(QueueError::Broken { .. }) => {}
        got => panic!("the reader was told {:?}", got.map(|s| s.len())),
    });
    r.start().unwrap();
    if !testkit::ends_within(r.pid().unwrap().as_raw() as u32, Duration::from_secs(10)) {
        r.kill().unwrap();
        r.join().unwrap();
        panic!("the reader still waits for the rest of a message that never comes");
    }
    assert_eq!(r.join().unwrap(), ExitStatus::Exited(0));
    assert!(matches!(q.put(&"y".into()), Err(QueueError::Broken { .. })));
}

/// A length prefix over the frame limit (written here by hand into the queue's pipe) cannot
/// be skipped: where the next frame begins is lost. The get that finds it says what it
/// found, and the queue is broken for every call after, rather than each get failing on the
/// same prefix forever.
fn a_prefix_over_the_limit_breaks_the_queue() {
    let (q, writer) = a_queue_and_its_write_end::<String>();
    let prefix = u32::MAX.to_le_bytes();
    // SAFETY: writes the 4 bytes of `prefix` to the queue's pipe end, which stays open.
    let n = unsafe { libc::write(writer, prefix.as_ptr().cast(), prefix.len()) };
    assert_eq!(n, 4);
    let err = q.get_nowait().err().unwrap();
    assert!(
        matches!(err, QueueError::Frame(FrameError::TooLarge { .. })),
        "{err}"
    );
    let me = std::process::id();
    assert!(matches!(q.get_nowait(), Err(QueueError::Broken { pid }) if pid == me));
    assert!(matches!(q.put(&"y".into()), Err(QueueError::Broken { pid }) if pid == me));
}

/// Writes `bytes` into the queue's pipe by hand, as a process that writes into it outside
/// the queue (through `/proc/self/fd`, say) would.
fn write_by_hand(writer: i32, bytes: &[u8]) {
    // SAFETY: writes `bytes`, alive for the call, to the queue's pipe end, which stays open.
    let n = unsafe { libc::write(writer, bytes.as_ptr().cast(), bytes.len()) };
    assert_eq!(n, bytes.len() as isize);
}

/// Runs `get` in a child, which must end (within 10 s: it is killed after, and the test
/// fails) with `Broken` by its own pid.
fn a_get_is_told_the_queue_is_broken(get: impl FnOnce() -> Result<String, QueueError> + Send) {
    let mut reader = Process::new(|| match get() {
        Err(QueueError::Broken { pid }) if pid == std::process::id() => Ok(()),
        other => Err(format!("not Broken by this reader: {other:?}")),
    });
    reader.start().unwrap();
    let pid = reader.pid().unwrap().as_raw() as u32;
    let ended = testkit::ends_within(pid, Duration::from_secs(10));
    if !ended {
        reader.kill().unwrap();
    }
    let status = reader.join().unwrap();
    assert!(ended, "the get still waited after 10 s");
    assert_eq!(status, ExitStatus::Exited(0));
}

/// Part of a message that no put is writing (a length prefix and fewer bytes than it
/// claims, written by hand; every put writes under the write lock, so with the lock free
/// and the pipe empty, the rest never comes): the get that waits for the rest is told the
/// queue is broken, where it waited for ever, and so is every call after (`get_timeout`
/// said `Empty`, each time). Below the read-ahead buffer's size, and above it.
fn a_message_cut_short_breaks_the_queue() {
    for claimed in [100u32, 1 << 20] {
        let (q, writer) = a_queue_and_its_write_end::<String>();
        let mut bytes = claimed.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[b'a'; 10]);
        write_by_hand(writer, &bytes);
        a_get_is_told_the_queue_is_broken(|| q.get());
        assert!(matches!(
            q.get_timeout(Duration::from_millis(10)),
            Err(QueueError::Broken { .. })
        ));
        assert!(matches!(q.put(&"y".into()), Err(QueueError::Broken { .. })));
    }
    let (q, writer) = a_queue_and_its_write_end::<String>();
    let mut bytes = 100u32.to_le_bytes().to_vec();
    bytes.extend_from_slice(&[b'a'; 10]);
    write_by_hand(writer, &bytes);
    a_get_is_told_the_queue_is_broken(|| q.get_nowait());
}

/// The same check does not take a message that a live put is still writing for a cut one:
/// a writer stopped (SIGSTOP) half-way through a message larger than the pipe holds the
/// write lock, and the get waits for it, past a timeout too, then takes the message whole.
fn a_large_put_stopped_half_way_is_waited_for() {
    let q = Queue::<String>::new().unwrap();
    let big = "x".repeat(1 << 20);
    let mut writer = Process::new(|| q.put(&big).unwrap());
    writer.start().unwrap();
    let pid = writer.pid().unwrap();
    testkit::until_asleep(pid.as_raw() as u32);
    kill(pid, Signal::SIGSTOP).unwrap();
    let mut waker = Process::new(|| {
        std::thread::sleep(Duration::from_millis(500));
        kill(pid, Signal::SIGCONT).unwrap();
    });
    waker.start().unwrap();
    assert_eq!(q.get_timeout(Duration::from_millis(10)).unwrap(), big);
    assert_eq!(waker.join().unwrap(), ExitStatus::Exited(0));
    assert_eq!(writer.join().unwrap(), ExitStatus::Exited(0));
}

/// A value that nests without end, as a linked list does.
#[derive(Serialize, Deserialize, Debug)]
enum Tree {
    Leaf,
    Node(Box<Tree>),
}

/// A message nested far deeper than the stack goes (200,000 `Node` tags, written by hand):
/// the get that takes it is told so, a decode error, and the queue goes on. Decoding it
/// overflowed the reader's stack, and the process aborted. A put of a value deeper than the
/// limit is refused.
fn a_message_nested_too_deep_is_an_error_not_an_abort() {
    let (q, writer) = a_queue_and_its_write_end::<Tree>();
    let mut payload = [1u8, 0, 0, 0].repeat(200_000);
    payload.extend_from_slice(&[0, 0, 0, 0]);
    let mut bytes = (payload.len() as u32).to_le_bytes().to_vec();
    bytes.extend_from_slice(&payload);
    let mut child = Process::new(|| {
        match q.get() {
            Err(QueueError::Frame(FrameError::Decode(why))) if why.contains("deep") => {}
            other => return Err(format!("not a decode error: {other:?}")),
        }
        q.put(&Tree::Node(Box::new(Tree::Leaf)))
            .map_err(|e| e.to_string())?;
        match q.get() {
            Ok(Tree::Node(leaf)) if matches!(*leaf, Tree::Leaf) => Ok(()),
            other => Err(format!("not the tree put: {other:?}")),
        }
    });
    child.start().unwrap();
    write_by_hand_all(writer, &bytes);
    assert_eq!(child.join().unwrap(), ExitStatus::Exited(0));
    // Nor can a put send one: refused by the writer, who can be told, not lost at the get.
    let deep = (0..1_200).fold(Tree::Leaf, |t, _| Tree::Node(Box::new(t)));
    match q.put(&deep) {
        Err(QueueError::Frame(FrameError::Encode(why))) => {
            assert!(why.to_string().contains("deep"), "{why}")
        }
        other => panic!("not refused: {other:?}"),
    }
    assert!(matches!(q.get_nowait(), Err(QueueError::Empty)));
}

/// [`write_by_hand`], for more than the pipe holds: written as a reader takes it.
fn write_by_hand_all(writer: i32, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: writes from `bytes`, alive for the call, to the queue's pipe end.
        let n = unsafe { libc::write(writer, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            assert_eq!(
                std::io::Error::last_os_error().kind(),
                std::io::ErrorKind::WouldBlock
            );
            std::thread::sleep(Duration::from_millis(1));
        } else {
            bytes = &bytes[n as usize..];
        }
    }
}

/// A new queue, and the descriptor of its pipe's write end (the one pipe write end it opened).
fn a_queue_and_its_write_end<T: Serialize + DeserializeOwned>() -> (Queue<T>, i32) {
    let before = pipe_write_ends();
    let q = Queue::<T>::new().unwrap();
    let new: Vec<i32> = pipe_write_ends()
        .into_iter()
        .filter(|fd| !before.contains(fd))
        .collect();
    let [writer] = new[..] else {
        panic!("the queue's pipe write end is not one of {new:?}")
    };
    (q, writer)
}

/// This process's descriptors that are the write ends of pipes.
fn pipe_write_ends() -> Vec<i32> {
    let mut fds = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let fd: i32 = entry
            .unwrap()
            .file_name()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        // The directory's own descriptor is gone by now.
        let Ok(link) = std::fs::read_link(format!("/proc/self/fd/{fd}")) else {
            continue;
        };
        let Ok(info) = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")) else {
            continue;
        };
        let flags = info.lines().find_map(|l| l.strip_prefix("flags:")).unwrap();
        let flags = u32::from_str_radix(flags.trim(), 8).unwrap();
        if link.to_string_lossy().starts_with("pipe:") && flags & 3 == 1 {
            fds.push(fd);
        }
    }
    fds
}

fn no_zombie_and_no_descriptor_after_drop() {
    let before = open_fds();
    for _ in 0..5 {
        let q = Queue::<(i64, String)>::new().unwrap();
        let mut p = Process::new(|| q.put(&(1, "hello".into())).unwrap());
        p.start().unwrap();
        assert_eq!(q.get().unwrap(), (1, "hello".to_string()));
        p.join().unwrap();
    }
    assert_no_children();
    assert_eq!(open_fds(), before);
}

/// A `Process` closure that captures `&Queue` must be `Send`, so `Queue` must be `Sync`. A
/// compile-time check: this does not build once it is not.
fn a_queue_is_sync() {
    fn assert_sync<T: Sync>() {}
    assert_sync::<Queue<String>>();
}

/// A writer of a 1 MiB message waits on the full pipe, holding the write lock, and is
/// stopped there, so that a reader waits in the middle of the message (with `reading` up);
/// the reader is killed, `after_the_death` runs, and the writer is continued: it must be
/// told `Broken` and end within 10 s, or the test fails with `still_waits`.
fn a_writer_on_a_full_pipe_whose_reader_dies(
    q: &Queue<String>,
    after_the_death: impl FnOnce(),
    still_waits: &str,
) {
    use nix::sys::signal::{Signal, kill};
    let mut w = Process::new(|| match q.put(&"x".repeat(1 << 20)) {
        Err(QueueError::Broken { .. }) => {}
        other => panic!("the writer was told {other:?}"),
    });
    w.start().unwrap();
    let w_pid = w.pid().unwrap();
    testkit::until_asleep(w_pid.as_raw() as u32);
    kill(w_pid, Signal::SIGSTOP).unwrap();
    let mut r = Process::new(|| drop(q.get()));
    r.start().unwrap();
    testkit::until_asleep(r.pid().unwrap().as_raw() as u32);
    std::thread::sleep(Duration::from_millis(100));
    r.kill().unwrap();
    r.join().unwrap();
    after_the_death();
    kill(w_pid, Signal::SIGCONT).unwrap();
    if !testkit::ends_within(w_pid.as_raw() as u32, Duration::from_secs(10)) {
        w.kill().unwrap();
        w.join().unwrap();
        panic!("{still_waits}");
    }
    assert_eq!(w.join().unwrap(), ExitStatus::Exited(0));
}

/// A writer waits on a full pipe, holding the write lock; a reader dies half-way through
/// its message, and the queue breaks. No one reads the pipe any more: the writer is told
/// (`Broken`), rather than left waiting forever with the lock, and so is the next put.
fn a_writer_waiting_on_a_full_pipe_is_told_when_the_queue_breaks() {
    let q = Queue::<String>::new().unwrap();
    a_writer_on_a_full_pipe_whose_reader_dies(
        &q,
        || {
            assert!(matches!(
                q.get_timeout(Duration::from_secs(1)),
                Err(QueueError::Broken { .. })
            ));
        },
        "the writer still waits on a broken queue",
    );
    assert!(matches!(q.put(&"y".into()), Err(QueueError::Broken { .. })));
    assert_no_children();
}

/// As above, but no one gets after the reader's death: the writer, waiting on the full pipe,
/// finds out by itself that its reader died half-way through the message (the read lock's
/// robust mutex tells it), rather than waiting forever.
fn a_writer_waiting_on_a_full_pipe_is_told_when_its_reader_dies_mid_message() {
    let q = Queue::<String>::new().unwrap();
    a_writer_on_a_full_pipe_whose_reader_dies(
        &q,
        || {},
        "the writer still waits on a pipe no one reads",
    );
    assert!(matches!(q.get_nowait(), Err(QueueError::Broken { .. })));
    assert_no_children();
}

/// A frame of at most PIPE_BUF bytes goes into the pipe whole or not at all: a writer
/// killed while it waits on a full pipe leaves every message whole, and breaks nothing.
fn a_writer_killed_between_small_messages_breaks_nothing() {
    let q = Queue::<(i64, String)>::new().unwrap();
    let mut p = Process::new(|| {
        for i in 0.. {
            q.put(&(i, "hello".into())).unwrap();
        }
    });
    p.start().unwrap();
    testkit::until_asleep(p.pid().unwrap().as_raw() as u32);
    p.kill().unwrap();
    p.join().unwrap();
    let mut n = 0;
    loop {
        match q.get_nowait() {
            Ok((i, hello)) => {
                assert_eq!((i, hello.as_str()), (n, "hello"));
                n += 1;
            }
            Err(QueueError::Empty) => break,
            Err(e) => panic!("after {n} items: {e}"),
        }
    }
    assert!(n > 100, "{n} items");
    q.put(&(-1, "after".into())).unwrap();
    assert_eq!(q.get().unwrap(), (-1, "after".to_string()));
    assert_no_children();
}

/// A reader killed while it waits on an empty queue has taken nothing, whenever it dies:
/// in its first look at the pipe, in the spin that follows, or asleep in poll. 50 rounds, each
/// killing it 0 to 490 microseconds into its `get`; then an item put must come out whole.
fn a_reader_killed_while_it_waits_for_data_breaks_nothing() {
    let q = Queue::<String>::new().unwrap();
    for round in 0..50u64 {
        let mut reader = Process::new(|| {
            let _ = q.get();
        });
        reader.start().unwrap();
        std::thread::sleep(Duration::from_micros(round * 10));
        reader.kill().unwrap();
        reader.join().unwrap();
        q.put(&format!("item {round}")).unwrap();
        match q.get_timeout(Duration::from_secs(5)) {
            Ok(item) => assert_eq!(item, format!("item {round}")),
            Err(e) => panic!(
                "round {round}: after a reader was killed {} us into its get: {e}",
                round * 10
            ),
        }
    }
    assert_no_children();
}

/// Runs `test` in a child of its own whose `pidfd_open` fails (EPERM, as under a seccomp
/// filter that forbids pidfds): there, as before Linux 5.3, the kernel cannot name a pid
/// namespace, so a lock cannot tell that a dead holder's process has ended, and abandons it
/// (`LockError::LockAbandoned`). The filter confines that child and its children alone.
fn where_dead_holders_cannot_be_told(test: fn()) {
    let mut child = Process::new(|| {
        testkit::filter_syscall(
            libc::SYS_pidfd_open,
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        );
        test();
    });
    child.start().unwrap();
    let pid = child.pid().unwrap().as_raw() as u32;
    if !testkit::ends_within(pid, Duration::from_secs(60)) {
        child.kill().unwrap();
        child.join().unwrap();
        panic!("the test still runs after 60 s");
    }
    assert_eq!(child.join().unwrap(), ExitStatus::Exited(0));
}

/// Waits for `p` to end, for up to 10 s: else kills it, and fails with `still_waits`.
/// (Asked with `waitpid`: `testkit::ends_within` needs the pidfds that the filter forbids.)
fn ends_or_fails(mut p: Process<impl FnOnce()>, still_waits: &str) {
    let started = Instant::now();
    let status = loop {
        if let Some(status) = p.poll().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(10) {
            p.kill().unwrap();
            p.join().unwrap();
            panic!("{still_waits}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(status, ExitStatus::Exited(0));
}

/// A reader killed while it waits for data, where its read lock is then abandoned: no get
/// can ever come, so the queue is broken, and a writer that fills the pipe is told so,
/// rather than waiting for ever for a reader. (Before, every get failed with
/// `LockAbandoned`, the queue was not marked, and the put waited for ever.)
fn a_reader_killed_where_its_lock_is_abandoned_breaks_the_queue() {
    where_dead_holders_cannot_be_told(|| {
        let q = Queue::<String>::new().unwrap();
        let mut r = Process::new(|| drop(q.get()));
        r.start().unwrap();
        let r_pid = r.pid().unwrap().as_raw() as u32;
        testkit::until_asleep(r_pid);
        r.kill().unwrap();
        r.join().unwrap();
        let mut w = Process::new(|| {
            for i in 0..1_000 {
                match q.put(&"x".repeat(3000)) {
                    Ok(()) => {}
                    Err(QueueError::Broken { pid }) if pid == r_pid => return,
                    Err(e) => panic!("put {i}: {e}"),
                }
            }
            panic!("1,000 puts of 3 KB went into a pipe that no one reads");
        });
        w.start().unwrap();
        ends_or_fails(w, "the writer still waits on a pipe no one can read");
        match q.get_nowait() {
            Err(QueueError::Broken { pid }) if pid == r_pid => {}
            other => panic!("a get was told {:?}", other.map(|s| s.len())),
        }
        assert_no_children();
    });
}

/// A writer killed while it waits on a full pipe with small messages (no change under way),
/// where its write lock is then abandoned: no put can ever come, so a put is refused. A
/// reader still gets every whole message in the pipe (a put refused so broke the queue for
/// all at first, and they were lost), then is told, rather than waiting for ever for a
/// writer, or hearing `Empty` for ever from `get_nowait`.
fn a_writer_killed_where_its_lock_is_abandoned_breaks_the_queue() {
    where_dead_holders_cannot_be_told(|| {
        let q = Queue::<String>::new().unwrap();
        let mut w = Process::new(|| {
            for _ in 0..10_000 {
                q.put(&"x".repeat(100)).unwrap();
            }
        });
        w.start().unwrap();
        let w_pid = w.pid().unwrap().as_raw() as u32;
        // Asleep only once the pipe is full: it waits for room, holding the write lock.
        testkit::until_asleep(w_pid);
        w.kill().unwrap();
        w.join().unwrap();
        // No put can come any more: a put is refused, and the whole messages stay.
        assert!(matches!(q.put(&"y".into()), Err(QueueError::Broken { pid }) if pid == w_pid));
        let mut r = Process::new(|| {
            let mut got = 0;
            loop {
                // Without waiting, as a reader that polls: told too, once the queue is
                // empty, rather than `Empty` for ever. (The messages are all in the pipe.)
                match q.get_nowait() {
                    Ok(item) => {
                        assert_eq!(item, "x".repeat(100));
                        got += 1;
                    }
                    Err(QueueError::Broken { pid }) if pid == w_pid => break,
                    Err(e) => panic!("get {got}: {e}"),
                }
            }
            // The pipe held 64 KiB of 112-byte frames.
            assert!(got >= 500, "only {got} messages got");
        });
        r.start().unwrap();
        ends_or_fails(r, "the reader still waits for a put that can never come");
        assert!(matches!(q.put(&"y".into()), Err(QueueError::Broken { pid }) if pid == w_pid));
        assert_no_children();
    });
}

/// A put that waits on a full pipe looks at the read lock only where its holder may have
/// died: taking a free one to look, it made a `get_nowait` just then say `Empty` with items
/// queued (6 to 27 times in 300,000).
fn get_nowait_is_never_empty_with_items_queued_beside_a_waiting_put() {
    let q = Queue::<u32>::new().unwrap();
    let mut w = Process::new(|| {
        for i in 0..u32::MAX {
            if q.put(&i).is_err() {
                return;
            }
        }
    });
    w.start().unwrap();
    // Asleep once the pipe is full: from then on, a put waits for room, and looks at the
    // read lock every 100 ms of waiting.
    testkit::until_asleep(w.pid().unwrap().as_raw() as u32);
    let mut empties = 0;
    for next in 0..200_000 {
        loop {
            match q.get_nowait() {
                Ok(i) => {
                    assert_eq!(i, next);
                    break;
                }
                Err(QueueError::Empty) => empties += 1,
                Err(e) => panic!("{e}"),
            }
        }
        // Slower than the writer: the pipe stays full, and the put waits.
        let t = Instant::now();
        while t.elapsed() < Duration::from_micros(20) {}
    }
    w.kill().unwrap();
    w.join().unwrap();
    assert_eq!(empties, 0, "get_nowait said Empty with items queued");
}

/// A writer killed while it waits on a full pipe with small messages breaks nothing, and is
/// left unreaped (a zombie that is not the reader's child). A reader with no descriptor to
/// spare gets every message, then waits for the next put as on any empty queue: not being
/// able to ask whether the writer has ended loses nothing outside a message. (Its look at
/// the write lock failed the get with pidfd_open's EMFILE.)
fn a_get_out_of_descriptors_waits_on_beside_a_writer_killed_between_messages() {
    let q = Queue::<String>::new().unwrap();
    let mut w = Process::new(|| {
        for _ in 0..10_000 {
            q.put(&"x".repeat(100)).unwrap();
        }
    });
    w.start().unwrap();
    let w_pid = w.pid().unwrap();
    testkit::until_asleep(w_pid.as_raw() as u32);
    nix::sys::signal::kill(w_pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    while testkit::process_state(w_pid.as_raw() as u32) != Some('Z') {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut r = Process::new(|| {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the struct, and setrlimit reads it, alive for both calls;
        // the limit is this child's alone.
        let set = unsafe {
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
            limit.rlim_cur = 64;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit)
        };
        assert_eq!(set, 0, "{}", std::io::Error::last_os_error());
        // One get first: the lock asks this process's pid namespace once, with a pidfd.
        q.get().unwrap();
        let mut spent = Vec::new();
        while let Ok(f) = std::fs::File::open("/dev/null") {
            spent.push(f);
        }
        let mut got = 1;
        let end = loop {
            match q.get_timeout(Duration::from_secs(1)) {
                Ok(_) => got += 1,
                Err(e) => break e,
            }
        };
        assert!(matches!(end, QueueError::Empty), "after {got}: {end}");
        assert!(got >= 500, "only {got} messages got");
    });
    r.start().unwrap();
    let status = r.join().unwrap();
    w.join().unwrap();
    assert_eq!(status, ExitStatus::Exited(0));
}

/// The queue that [`Nested`]'s `Deserialize` gets from.
static NESTED: std::sync::OnceLock<Queue<Nested>> = std::sync::OnceLock::new();

/// A number whose `Deserialize`, for 1, gets the next item of [`NESTED`] too.
#[derive(Debug, PartialEq)]
struct Nested(u32, Option<u32>);

impl serde::Serialize for Nested {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Nested {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Nested, D::Error> {
        let n = <u32 as serde::Deserialize>::deserialize(d)?;
        if n != 1 {
            return Ok(Nested(n, None));
        }
        let q = NESTED.get().unwrap();
        match q.get_timeout(Duration::from_secs(5)) {
            Ok(next) => Ok(Nested(n, Some(next.0))),
            Err(e) => panic!("a get inside an item's Deserialize: {e}"),
        }
    }
}

/// An item is decoded after the read lock is let go, as Python unpickles outside its lock:
/// its `Deserialize` may get from the same queue (before, it failed with `AlreadyHeld`), or
/// put into it.
fn an_items_deserialize_may_use_the_queue() {
    let q = NESTED.get_or_init(|| Queue::new().unwrap());
    q.put(&Nested(1, None)).unwrap();
    q.put(&Nested(2, None)).unwrap();
    q.put(&Nested(3, None)).unwrap();
    assert_eq!(q.get().unwrap(), Nested(1, Some(2)));
    assert_eq!(q.get().unwrap(), Nested(3, None));
    assert!(matches!(q.get_nowait(), Err(QueueError::Empty)));
}

/// Where a child forked inside [`Forks`]'s `Deserialize` writes whether the bytes it was
/// given changed under it.
static MARK: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// An item whose `Deserialize` forks, with safe code (`daemon`), while `get` decodes it: the
/// child keeps the bytes it was given, which must be its own, not the queue's shared
/// read-ahead buffer that the next `get` rewrites.
struct Forks(Vec<u8>);

impl serde::Serialize for Forks {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Forks {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Forks, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Forks;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_borrowed_bytes<E>(self, bytes: &'de [u8]) -> Result<Forks, E> {
                if bytes[0] != b'D' {
                    return Ok(Forks(bytes.to_vec()));
                }
                let before = bytes.to_vec();
                // The caller's process ends in `daemon`; its child goes on here.
                nix::unistd::daemon(true, true).unwrap();
                std::thread::sleep(Duration::from_millis(500));
                let seen = if bytes == before { "same" } else { "changed" };
                let _ = std::fs::write(MARK.get().unwrap(), seen);
                // SAFETY: `_exit` ends this process at once.
                unsafe { libc::_exit(0) }
            }
        }
        d.deserialize_bytes(Visit)
    }
}

/// A child forked inside an item's `Deserialize` holds no reference into the queue's shared
/// buffer: what it was given stays the same while other items pass through the queue.
fn a_fork_inside_an_items_deserialize_keeps_its_bytes() {
    let mark = std::env::temp_dir().join(format!("queue-forks-{}", std::process::id()));
    MARK.set(mark.clone()).unwrap();
    let q = Queue::<Forks>::new().unwrap();
    q.put(&Forks(vec![b'D'; 64])).unwrap();
    let mut reader = Process::new(|| q.get().map(drop));
    reader.start().unwrap();
    // `daemon` ends the reader with 0, once it has forked.
    assert_eq!(reader.join().unwrap(), ExitStatus::Exited(0));
    q.put(&Forks(vec![b'X'; 64])).unwrap();
    assert_eq!(q.get().unwrap().0, vec![b'X'; 64]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !mark.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(10));
    let seen = std::fs::read_to_string(&mark);
    let _ = std::fs::remove_file(&mark);
    assert_eq!(
        seen.unwrap(),
        "same",
        "the forked child's bytes changed under it"
    );
    assert_no_children();
}

/// A reader waits for the rest of a message whose writer was killed (and is not reaped: a
/// zombie that is not the reader's child), with no descriptor left to ask whether the writer
/// has ended. It must say so, not wait for ever.
fn a_reader_out_of_descriptors_is_told_so_when_a_writer_dies_mid_message() {
    let q = Queue::<String>::new().unwrap();
    let mut reader = Process::new(|| {
        // A first call asks what it asks once a process (its pid namespace, with a pidfd).
        assert!(matches!(q.get_nowait(), Err(QueueError::Empty)));
        // Every descriptor below the limit taken: none is left for a pidfd.
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes `limit`, setrlimit reads it; both are alive.
        unsafe {
            assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
            limit.rlim_cur = 64;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
        let _held: Vec<_> = std::iter::from_fn(|| std::fs::File::open("/dev/null").ok()).collect();
        match q.get() {
            Err(QueueError::Lock(lock::LockError::Os(e))) if e.to_string().contains("pidfd") => {
                Ok(())
            }
            other => Err(format!("{:?}", other.map(|s| s.len()))),
        }
    });
    reader.start().unwrap();
    let r = reader.pid().unwrap().as_raw() as u32;
    testkit::until_asleep(r);
    // The writer fills the pipe while the reader is stopped, then is killed mid-message.
    nix::sys::signal::kill(reader.pid().unwrap(), nix::sys::signal::Signal::SIGSTOP).unwrap();
    let mut writer = Process::new(|| q.put(&"x".repeat(1 << 20)).unwrap());
    writer.start().unwrap();
    testkit::until_asleep(writer.pid().unwrap().as_raw() as u32);
    writer.kill().unwrap();
    nix::sys::signal::kill(reader.pid().unwrap(), nix::sys::signal::Signal::SIGCONT).unwrap();
    let ended = testkit::ends_within(r, Duration::from_secs(20));
    if !ended {
        reader.kill().unwrap();
    }
    let status = reader.join().unwrap();
    writer.join().unwrap();
    assert!(
        ended,
        "the reader waited for ever for a dead writer's message"
    );
    assert_eq!(status, ExitStatus::Exited(0));
    assert_no_children();
}
