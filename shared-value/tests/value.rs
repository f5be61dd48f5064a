//! Tests of `Value` and `Array` across forked processes. `harness = false`, because fork is
//! refused while libtest's threads run.

// A failed unwrap is a failed test here, as in #[test] functions.
#![allow(clippy::unwrap_used)]

// The workspace's test harness, included by path rather than named as a dependency: a copy
// of this section without `testkit/` still builds and runs (its tests need `testkit/` too).
#[path = "../../testkit/src/lib.rs"]
#[allow(dead_code, unused_imports)]
mod testkit;

use common::{Error, ExitStatus, Process};
use nix::sys::signal::{Signal, raise};
use shared_value::{Array, LockError, Value};
use std::io::{Read, Write};
use std::time::Duration;
use testkit::{assert_no_children, run_tests};

fn main() {
    run_tests(&[
        (
            "a_child_changes_what_the_parent_sees",
            a_child_changes_what_the_parent_sees,
        ),
        (
            "get_lock_makes_increments_exact",
            get_lock_makes_increments_exact,
        ),
        ("arrays_of_any_length", arrays_of_any_length),
        (
            "an_index_out_of_range_panics_and_marks_nothing",
            an_index_out_of_range_panics_and_marks_nothing,
        ),
        ("guards_exclude_other_access", guards_exclude_other_access),
        (
            "fork_is_refused_while_a_guard_lives",
            fork_is_refused_while_a_guard_lives,
        ),
        (
            "a_fork_by_other_code_while_a_guard_lives_ends_the_child",
            a_fork_by_other_code_while_a_guard_lives_ends_the_child,
        ),
        (
            "a_holder_that_dies_half_way_is_reported",
            a_holder_that_dies_half_way_is_reported,
        ),
        (
            "a_holder_that_panics_half_way_is_reported",
            a_holder_that_panics_half_way_is_reported,
        ),
        (
            "a_killed_holder_is_over_only_when_all_its_threads_are",
            a_killed_holder_is_over_only_when_all_its_threads_are,
        ),
        (
            "a_holder_seen_from_another_namespace_is_never_taken_for_dead",
            a_holder_seen_from_another_namespace_is_never_taken_for_dead,
        ),
        (
            "a_holder_seen_through_another_namespaces_proc_is_never_taken_for_dead",
            a_holder_seen_through_another_namespaces_proc_is_never_taken_for_dead,
        ),
        // Last: it leaks a guard, and fork is refused from then on.
        (
            "a_guard_leaked_by_an_ended_thread_is_never_aliased",
            a_guard_leaked_by_an_ended_thread_is_never_aliased,
        ),
    ]);
}

fn a_child_changes_what_the_parent_sees() {
    let num = Value::new(0.5f64).unwrap();
    let arr = Array::new([1u8, 2, 3]).unwrap();
    let mut plain = 7;
    let mut p = Process::new(|| {
        num.set_value(-2.25).unwrap();
        arr.set(1, 20).unwrap();
        plain = 8; // the child's own copy
    });
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), ExitStatus::Exited(0));
    drop(p);
    assert_eq!(num.value().unwrap(), -2.25);
    assert_eq!(arr.to_vec().unwrap(), [1, 20, 3]);
    assert_eq!(plain, 7);
    assert_no_children();
}

/// Two processes x 100,000 `+= 1` under get_lock: exactly 200,000.
fn get_lock_makes_increments_exact() {
    let num = Value::new(0i64).unwrap();
    let mut ps: Vec<_> = (0..2)
        .map(|_| {
            Process::new(|| {
                for _ in 0..100_000 {
                    *num.get_lock().unwrap() += 1;
                }
            })
        })
        .collect();
    for p in &mut ps {
        p.start().unwrap();
    }
    for p in &mut ps {
        assert_eq!(p.join().unwrap(), ExitStatus::Exited(0));
    }
    assert_eq!(num.value().unwrap(), 200_000);
}

fn arrays_of_any_length() {
    let empty = Array::<i32>::new([]).unwrap();
    assert!(empty.is_empty());
    assert_eq!(empty.to_vec().unwrap(), Vec::<i32>::new());
    // More than one page, of a type larger than a byte.
    let big = Array::new((0..10_000).map(f64::from)).unwrap();
    assert_eq!(big.len(), 10_000);
    let mut p = Process::new(|| {
        for x in big.get_lock().unwrap().iter_mut() {
            *x *= 2.0;
        }
    });
    p.start().unwrap();
    p.join().unwrap();
    let doubled: Vec<f64> = (0..10_000).map(|i| f64::from(i) * 2.0).collect();
    assert_eq!(big.to_vec().unwrap(), doubled);
    let pairs = Value::new([1u16, 2]).unwrap();
    pairs.get_lock().unwrap()[1] = 9;
    assert_eq!(pairs.value().unwrap(), [1, 9]);
}

/// `a[i]` out of range panics, as indexing a slice does (Python raises IndexError), in the
/// child that asks; the array stays as it was, for every process, and is not taken for one
/// whose holder died half-way.
fn an_index_out_of_range_panics_and_marks_nothing() {
    let arr = Array::new([1i32, 2]).unwrap();
    let mut p = Process::new(|| arr.get(2).map(drop));
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), ExitStatus::Exited(101));
    let mut p = Process::new(|| arr.set(7, 0));
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), ExitStatus::Exited(101));
    assert_eq!(arr.get(1).unwrap(), 2);
    assert_eq!(arr.to_vec().unwrap(), [1, 2]);
    assert_no_children();
}

/// While this process holds the guard, reading the value again is refused, not a deadlock,
/// and a child waits for the guard's release.
fn guards_exclude_other_access() {
    use std::io::{Read, Write};
    let num = Value::new(1u32).unwrap();
    let (mut r, mut w) = os_pipe::pipe().unwrap();
    let num = &num;
    let mut p = Process::new(move || {
        // Wait until the parent holds the guard, then read: that waits for the release.
        r.read_exact(&mut [0]).unwrap();
        assert_eq!(num.value().unwrap(), 2);
    });
    p.start().unwrap();
    let mut held = num.get_lock().unwrap();
    assert!(matches!(num.value(), Err(LockError::AlreadyHeld)));
    w.write_all(b"x").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    *held = 2;
    drop(held);
    assert_eq!(p.join().unwrap(), ExitStatus::Exited(0));
}

/// A child forked while a guard lives would get a copy of its `&mut T` into shared memory,
/// and write through it while the parent does: two processes "under the lock" at once. A
/// target cannot capture the guard (that does not compile, see `ValueGuard`), but it can
/// capture a `&mut T` taken from it; so fork is refused while any guard lives.
fn fork_is_refused_while_a_guard_lives() {
    let num = Value::new(0u64).unwrap();
    let arr = Array::new([0u8; 4]).unwrap();
    {
        let mut held = num.get_lock().unwrap();
        let inside: &mut u64 = &mut held;
        let mut p = Process::new(move || *inside += 1);
        assert!(matches!(
            p.start(),
            Err(Error::SharedBorrowHeld { guards: 1 })
        ));
        assert_eq!(p.pid(), None);
    }
    {
        let mut held = arr.get_lock().unwrap();
        let _other = num.get_lock().unwrap();
        let items: &mut [u8] = &mut held;
        let mut p = Process::new(move || items[0] = 1);
        assert!(matches!(
            p.start(),
            Err(Error::SharedBorrowHeld { guards: 2 })
        ));
    }
    // Once the guards are gone, fork is allowed again.
    let mut p = Process::new(|| *num.get_lock().unwrap() += 1);
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), ExitStatus::Exited(0));
    assert_eq!(num.value().unwrap(), 1);
    assert_eq!(arr.to_vec().unwrap(), [0; 4]);
    assert_no_children();
}

/// `Process::start` is not the only fork safe code can reach: `nix::unistd::daemon` forks,
/// and its first process exits, which hands the lock on to the next waiter as its holder's
/// death, while the daemon goes on with a copy of the guard's `&mut`. That daemon must end
/// at once, before it can write through it.
fn a_fork_by_other_code_while_a_guard_lives_ends_the_child() {
    let num = Value::new(0u64).unwrap();
    let (mut report, writer) = os_pipe::pipe().unwrap();
    let (mut stderr, err_writer) = os_pipe::pipe().unwrap();
    let num = &num;
    let mut p = Process::new(move || {
        let mut held = num.get_lock().unwrap();
        let inside: &mut u64 = &mut held;
        *inside = 1;
        // SAFETY: dup2 onto fd 2 replaces this child's own stderr; both descriptors are open.
        unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&err_writer), 2) };
        // Only the daemon returns from it; this process exits 0 inside.
        nix::unistd::daemon(true, true).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        *inside = 2;
        let _ = (&writer).write_all(b"the daemon wrote through the guard");
    });
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), ExitStatus::Exited(0));
    let (mut said, mut why) = (String::new(), String::new());
    // Both ends reach EOF once the daemon, wherever it went, has ended too.
    report.read_to_string(&mut said).unwrap();
    stderr.read_to_string(&mut why).unwrap();
    assert_eq!(said, "", "stderr: {why}");
    assert!(
        why.contains("forked while a guard of shared memory was held"),
        "stderr: {why}"
    );
    // The first process died holding the lock: the next to take it is told so, once.
    assert!(matches!(num.get_lock(), Err(LockError::OwnerDied { .. })));
    assert_eq!(*num.get_lock().unwrap(), 1);
    assert_no_children();
}

/// A child killed half-way through negating an array under its lock leaves it half-changed;
/// the next user learns that, instead of reading it as if it were whole.
fn a_holder_that_dies_half_way_is_reported() {
    let arr = Array::new(0..10).unwrap();
    let num = Value::new(1.5f64).unwrap();
    let mut p = Process::new(|| {
        let mut a = arr.get_lock().unwrap();
        for x in &mut a[..5] {
            *x = -*x;
        }
        let _n = num.get_lock().unwrap();
        raise(Signal::SIGKILL).unwrap();
    });
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), ExitStatus::Signaled(Signal::SIGKILL));
    let pid = p.pid().unwrap().as_raw() as u32;
    match arr.to_vec() {
        Err(LockError::OwnerDied { pid: dead }) => assert_eq!(dead, pid),
        other => panic!("a dead holder's half-negated array read as {other:?}"),
    }
    match num.value() {
        Err(LockError::OwnerDied { pid: dead }) => assert_eq!(dead, pid),
        other => panic!("a dead holder's value read as {other:?}"),
    }
    // Told once, the lock is usable again: what the holder left is there to repair.
    assert_eq!(arr.to_vec().unwrap(), [0, -1, -2, -3, -4, 5, 6, 7, 8, 9]);
    assert_eq!(num.value().unwrap(), 1.5);
    assert_no_children();
}

/// A child that panics half-way through a change, its guard dropped while unwinding (the
/// lock released as usual), leaves the next user told, as a killed one does.
fn a_holder_that_panics_half_way_is_reported() {
    let arr = Array::new([0i32, 0]).unwrap();
    let mut p = Process::new(|| {
        let mut a = arr.get_lock().unwrap();
        a[0] = 1;
        if a[0] == 1 {
            panic!("half-way");
        }
    });
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), ExitStatus::Exited(101));
    let pid = p.pid().unwrap().as_raw() as u32;
    match arr.to_vec() {
        Err(LockError::OwnerDied { pid: dead }) => assert_eq!(dead, pid),
        other => panic!("a panicked holder's half-changed array read as {other:?}"),
    }
    assert_eq!(arr.to_vec().unwrap(), [1, 0]);
    assert_no_children();
}

/// A thread leaks its guard (safe code may) and hands out the `&mut` it gives, then ends.
/// The lock's holder is dead, but the reference lives: a second guard would alias it. So
/// the value's lock is never given again.
fn a_guard_leaked_by_an_ended_thread_is_never_aliased() {
    let num: &'static Value<u64> = Box::leak(Box::new(Value::new(1).unwrap()));
    let leaked: &'static mut u64 = std::thread::spawn(|| {
        let guard = Box::leak(Box::new(num.get_lock().unwrap()));
        &mut **guard
    })
    .join()
    .unwrap();
    *leaked = 2;
    for _ in 0..2 {
        assert!(matches!(
            num.get_lock(),
            Err(LockError::LockAbandoned { .. })
        ));
        assert!(matches!(num.value(), Err(LockError::LockAbandoned { .. })));
    }
    assert_eq!(*leaked, 2);
    // The thread has ended, but its borrow is still counted: no child gets a copy of
    // `leaked`.
    let mut p = Process::new(|| *leaked = 3);
    assert!(matches!(
        p.start(),
        Err(Error::SharedBorrowHeld { guards: 1 })
    ));
}

/// A holder killed while another of its threads still writes through the guard's `&mut`
/// (here a `read(2)` of a tmpfs file into the array, which goes on to its end): its first
/// thread is a zombie at once, but the process has not ended until that write has. The
/// next guard is given only then: nothing changes under it.
fn a_killed_holder_is_over_only_when_all_its_threads_are() {
    use std::io::{Read, Write};
    const N: usize = 128 << 20;
    let file = std::path::Path::new("/dev/shm").join(format!("value-{}", std::process::id()));
    if std::fs::write(&file, vec![0x55u8; N]).is_err() {
        testkit::skipped("no /dev/shm");
        return;
    }
    let arr = Array::new(std::iter::repeat_n(0u8, N)).unwrap();
    let (mut ready, ready_w) = os_pipe::pipe().unwrap();
    let mut holder = Process::new(|| {
        let mut source = std::fs::File::open(&file).unwrap();
        let mut held = arr.get_lock().unwrap();
        (&ready_w).write_all(b"x").unwrap();
        // Time for the parent to wait in get_lock.
        std::thread::sleep(std::time::Duration::from_millis(100));
        let items: &mut [u8] = &mut held;
        std::thread::scope(|s| {
            s.spawn(move || source.read(items));
            std::thread::sleep(std::time::Duration::from_micros(200));
            raise(Signal::SIGKILL).unwrap();
        });
    });
    holder.start().unwrap();
    ready.read_exact(&mut [0]).unwrap();
    assert!(matches!(arr.get_lock(), Err(LockError::OwnerDied { .. })));
    let held = arr.get_lock().unwrap();
    let filled = |items: &[u8]| {
        (0..N)
            .step_by(1 << 20)
            .filter(|&i| items[i] == 0x55)
            .count()
    };
    let when_taken = filled(&held);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let later = filled(&held);
    drop(held);
    holder.join().unwrap();
    std::fs::remove_file(&file).unwrap();
    assert_eq!(
        when_taken, later,
        "the dead holder's thread wrote under our guard"
    );
    assert_no_children();
}

/// A holder in another time namespace sees start times shifted, so its pid and start mean
/// nothing here: a thread of it that leaked its guard and ended, while the process goes on
/// writing through the guard's `&mut`, must leave the lock abandoned, not recovered. As root
/// (`unshare(CLONE_NEWTIME)`); otherwise SKIPPED.
fn a_holder_seen_from_another_namespace_is_never_taken_for_dead() {
    use std::io::{Read, Write};
    let num = Value::new(0i64).unwrap();
    let (mut ready, ready_w) = os_pipe::pipe().unwrap();
    let mut c = Process::new(|| {
        // SAFETY: unshare takes a flag and touches no memory; it moves this process's
        // future children into a new time namespace.
        if unsafe { libc::unshare(libc::CLONE_NEWTIME) } != 0 {
            (&ready_w).write_all(b"s").unwrap();
            return;
        }
        std::fs::write("/proc/self/timens_offsets", "boottime 1000 0").unwrap();
        let mut g = Process::new(|| {
            let leaked: &mut i64 = std::thread::scope(|s| {
                s.spawn(|| &mut **Box::leak(Box::new(num.get_lock().unwrap())))
                    .join()
                    .unwrap()
            });
            (&ready_w).write_all(b"h").unwrap();
            for _ in 0..10 {
                *leaked += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        });
        g.start().unwrap();
        g.join().unwrap();
    });
    c.start().unwrap();
    let mut said = [0];
    ready.read_exact(&mut said).unwrap();
    if said == *b"s" {
        c.join().unwrap();
        testkit::skipped("no new time namespace (unshare(CLONE_NEWTIME) needs CAP_SYS_ADMIN)");
        return;
    }
    for _ in 0..2 {
        match num.get_lock() {
            Err(LockError::LockAbandoned { .. }) => {}
            other => panic!("a live holder's lock was given: {:?}", other.map(|g| *g)),
        }
    }
    assert_eq!(c.join().unwrap(), ExitStatus::Exited(0));
    assert_no_children();
}

/// Holder A and waiter B share a new pid namespace, in which their `Value` was made, but
/// `/proc` is still the parent namespace's (`unshare` without a new `/proc`): there, A's
/// pid names another process, Z, a zombie, which `/proc` shows as exiting for as long as
/// no one reaps it. A, whose thread leaked its guard and ended, goes on writing: B must
/// find the lock abandoned, neither take Z for A nor wait on Z's exit forever (it waits
/// `EXIT_WAIT`, since it cannot tell). As root; otherwise SKIPPED.
fn a_holder_seen_through_another_namespaces_proc_is_never_taken_for_dead() {
    use std::io::{Read, Write};
    const NS_LAST_PID: &str = "/proc/sys/kernel/ns_last_pid";
    const A_PID: u32 = 30000;
    let (mut ready, ready_w) = os_pipe::pipe().unwrap();
    let (go, mut go_w) = os_pipe::pipe().unwrap();
    let (stop, stop_w) = os_pipe::pipe().unwrap();
    let mut m = Process::new(|| {
        // SAFETY: unshare takes a flag and touches no memory; this process's next children
        // are in a new pid namespace.
        if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
            (&ready_w).write_all(&0u32.to_ne_bytes()).unwrap();
            return;
        }
        let mut init = Process::new(|| {
            let num = Value::new(0i64).unwrap();
            std::fs::write(NS_LAST_PID, (A_PID - 1).to_string()).unwrap();
            let mut a = Process::new(|| {
                let leaked: &mut i64 = std::thread::scope(|s| {
                    s.spawn(|| &mut **Box::leak(Box::new(num.get_lock().unwrap())))
                        .join()
                        .unwrap()
                });
                (&ready_w)
                    .write_all(&std::process::id().to_ne_bytes())
                    .unwrap();
                let mut stop = stop.try_clone().unwrap();
                while read_within(&mut stop, &mut [0], Duration::from_millis(25)).is_err() {
                    *leaked += 1;
                }
            });
            a.start().unwrap();
            let mut b = Process::new(|| {
                (&go).read_exact(&mut [0]).unwrap();
                let got: Vec<_> = (0..2).map(|_| num.get_lock().map(|g| *g)).collect();
                (&stop_w).write_all(b"s").unwrap();
                for got in got {
                    assert!(
                        matches!(got, Err(LockError::LockAbandoned { .. })),
                        "{got:?}"
                    );
                }
            });
            b.start().unwrap();
            assert_eq!(b.join().unwrap(), ExitStatus::Exited(0));
            a.join().unwrap();
        });
        init.start().unwrap();
        assert_eq!(init.join().unwrap(), ExitStatus::Exited(0));
    });
    m.start().unwrap();
    let mut pid = [0u8; 4];
    if let Err(e) = read_within(&mut ready, &mut pid, Duration::from_secs(30)) {
        go_w.write_all(b"g").unwrap();
        (&stop_w).write_all(b"s").unwrap();
        panic!(
            "A never said it holds the lock ({e}); the namespace's processes: {:?}",
            m.join()
        );
    }
    let a_pid = u32::from_ne_bytes(pid);
    if a_pid == 0 {
        m.join().unwrap();
        testkit::skipped("no new pid namespace (unshare(CLONE_NEWPID) needs CAP_SYS_ADMIN)");
        return;
    }
    // A process of this namespace that starts now gets A's number here, and is a zombie
    // until it is joined.
    std::fs::write(NS_LAST_PID, (a_pid - 1).to_string()).unwrap();
    let mut z = Process::new(|| {});
    z.start().unwrap();
    assert_eq!(
        z.pid().unwrap().as_raw() as u32,
        a_pid,
        "Z did not get A's number"
    );
    go_w.write_all(b"g").unwrap();
    let m_pid = m.pid().unwrap().as_raw() as u32;
    let start = std::time::Instant::now();
    while !testkit::has_ended(m_pid) {
        if start.elapsed() > lock::EXIT_WAIT * 3 {
            // B hangs: A stops, so that the test ends, and fails.
            (&stop_w).write_all(b"s").unwrap();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let ended = m.join().unwrap();
    z.join().unwrap();
    assert_eq!(
        ended,
        ExitStatus::Exited(0),
        "B took a live holder's lock, or hung"
    );
    assert_no_children();
}

/// Reads `buf.len()` bytes, or fails after `limit`: a bound that only catches a hang.
fn read_within(r: &mut os_pipe::PipeReader, buf: &mut [u8], limit: Duration) -> Result<(), String> {
    use std::io::Read;
    use std::os::fd::AsRawFd;

    let deadline = std::time::Instant::now() + limit;
    let mut got = 0;
    while got < buf.len() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let mut pfd = libc::pollfd {
            fd: r.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll reads and writes one pollfd, which outlives the call.
        let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if n == 0 {
            return Err(format!("nothing within {limit:?}"));
        }
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e.to_string());
        }
        match r.read(&mut buf[got..]) {
            Ok(0) => return Err("end of file".into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}
