//! The peers: crates a reader might choose instead of this workspace, doing the same work as
//! the workload whose row they share (built with `--features peers` only).
//!
//! - procspawn 1.0 starts a process by running this program again (`/proc/self/exe`), which
//!   `procspawn::init` at the top of `main` turns into the child; its `Pool` serves `apply`.
//! - ipc-channel 0.23 carries the queue's 200,000 messages, and the manager's requests and
//!   answers, over its Unix sockets.
//! - raw_sync 0.1 is the lock: a process-shared pthread mutex, neither robust nor
//!   error-checking.
//!
//! The same counts, the same processes started at the same moments (by the workload's own
//! [`Process`] where the workload forks one), the same checks. Every child dies with the bench:
//! a forked one as every `Process` does, one that procspawn starts by a `PR_SET_PDEATHSIG`
//! asked for between its fork and its exec.

use std::error::Error;
use std::io;
use std::time::{Duration, Instant};

use common::{ExitStatus, Mapping, Process};
use ipc_channel::ipc;
use raw_sync::locks::{LockInit, Mutex};

use crate::Peer;
use crate::workloads::{Timed, check, sq, start_and_join};

/// The peer crates and their versions, as Cargo.lock has them (a test checks).
pub const CRATES: &str = "procspawn 1.0.2, ipc-channel 0.23.1, raw_sync 0.1.5";

/// The peers, one for each workload that has one, in the workloads' order.
pub const PEERS: [Peer; 5] = [
    Peer {
        workload: "process",
        name: "procspawn",
        run: process,
    },
    Peer {
        workload: "apply",
        name: "procspawn's Pool",
        run: apply,
    },
    Peer {
        workload: "queue",
        name: "ipc-channel",
        run: queue,
    },
    Peer {
        workload: "lock",
        name: "raw_sync",
        run: lock,
    },
    Peer {
        workload: "manager",
        name: "ipc-channel",
        run: manager,
    },
];

/// The first thing `main` does: in a child that procspawn started, runs what it was sent and
/// exits; in the bench itself, returns.
pub fn init() {
    procspawn::init();
    // SAFETY: procspawn asks this of a build without its `safe-shared-libraries` feature: every
    // function the bench gives it (`empty`, `sq`) is in the bench's executable, none in a
    // shared library, so its offset from `init` is the same in the child.
    unsafe { procspawn::assert_spawn_is_safe() };
}

/// In a child of procspawn, between its fork and its exec: ask the kernel to kill it when
/// the bench's thread that started it ends, as the workspace's children do.
fn die_with_bench() -> io::Result<()> {
    // SAFETY: prctl takes integers and touches no memory; it is async-signal-safe, as a
    // pre_exec hook must be.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn empty((): ()) {}

/// Row 1: `procspawn::spawn` of an empty function, and `join`, `n` times.
pub fn process(n: usize) -> Timed {
    let start = Instant::now();
    for _ in 0..n {
        let mut builder = procspawn::Builder::new();
        // SAFETY: the hook makes only an async-signal-safe call, and allocates nothing.
        unsafe { builder.pre_exec(die_with_bench) };
        builder.spawn((), empty).join()?;
    }
    Ok(start.elapsed())
}

/// Row 3: `pool.spawn(i, sq).join()`, `n` times, one after another, in a procspawn `Pool` of two
/// made before the timer (`Pool::new(2)` in the workload).
pub fn apply(n: usize) -> Timed {
    let mut builder = procspawn::Pool::builder(2);
    // SAFETY: as in `process`.
    unsafe { builder.pre_exec(die_with_bench) };
    let pool = builder.build()?;
    let start = Instant::now();
    let result = (0..n as i64).try_for_each(|i| {
        check(
            pool.spawn(i, sq).join()? == i * i,
            "apply returned a wrong square",
        )
    });
    let elapsed = start.elapsed();
    pool.shutdown();
    drop(pool);
    // The pool's threads end once it is gone; the next workload forks, which needs them gone.
    single_threaded()?;
    result?;
    Ok(elapsed)
}

/// Row 5: one producer process sends `n` messages `(i, "hello")` into an ipc-channel; the main
/// process receives them all, in order.
pub fn queue(n: usize) -> Timed {
    let (tx, rx) = ipc::channel::<(i64, String)>()?;
    let start = Instant::now();
    // The sender moves into the child: the parent's copy is closed at `start`, so the parent's
    // `recv` fails, and does not wait for ever, if the producer dies.
    let mut producer = Process::new(move || {
        for i in 0..n as i64 {
            tx.send((i, "hello".to_owned()))?;
        }
        Ok::<_, ipc_channel::IpcError>(())
    });
    producer.start()?;
    let received = (0..n as i64).try_for_each(|i| {
        let (got, hello) = rx.recv()?;
        check(
            got == i && hello == "hello",
            "the queue lost or reordered a message",
        )
    });
    if received.is_err() {
        producer.kill()?;
    }
    let status = producer.join()?;
    let elapsed = start.elapsed();
    received?;
    check(
        status == ExitStatus::Exited(0),
        format!("the producer ended {status:?}"),
    )?;
    Ok(elapsed)
}

/// Row 6: two processes each lock and unlock a raw_sync `Mutex` `n` times; the mutex is made
/// before the timer in a `MAP_SHARED` mapping, as `Lock::new` makes its own.
pub fn lock(n: usize) -> Timed {
    let shared = Mapping::new(4096)?;
    // Where the mutex goes, and the data it guards (none is used).
    let at = |shared: &Mapping| (shared.as_ptr(), shared.as_ptr().wrapping_add(2048));
    let (memory, data) = at(&shared);
    // SAFETY: the mapping is 4096 bytes, page-aligned and new: the mutex (40 bytes) fits at
    // its start, and nothing else uses it.
    let _mutex = unsafe { Mutex::new(memory, data) }?;
    let start = Instant::now();
    start_and_join(2, || {
        let (memory, data) = at(&shared);
        // SAFETY: the mutex was made at this address of the mapping, which this child shares
        // and never unmaps.
        let (mutex, _) = unsafe { Mutex::from_existing(memory, data) }?;
        for _ in 0..n {
            drop(mutex.lock()?);
        }
        Ok::<_, Box<dyn Error>>(())
    })?;
    Ok(start.elapsed())
}

/// A request to the dict's server: `Some((key, value))` sets an item, `None` asks how many
/// there are. Its answer to a set is `()`.
type Request = Option<(i64, i64)>;

/// Row 8: a child sets `n` items of a dict in a server process, one request and one answer each,
/// over ipc-channel: the server is forked before the timer and keeps the dict in a `HashMap`,
/// as the manager's does; the child is forked inside the timer. The parent then asks the
/// server the dict's length, and the server ends.
pub fn manager(n: usize) -> Timed {
    let (requests, served) = ipc::channel::<Request>()?;
    let (done, answers) = ipc::channel::<()>()?;
    let (len_tx, len_rx) = ipc::channel::<u64>()?;
    let mut server = Process::new(move || {
        let mut dict = std::collections::HashMap::new();
        loop {
            match served.recv()? {
                Some((key, value)) => {
                    dict.insert(key, value);
                    done.send(())?;
                }
                None => return len_tx.send(dict.len() as u64),
            }
        }
    });
    server.start()?;
    let sender = requests.clone();
    let start = Instant::now();
    let mut client = Process::new(move || {
        for i in 0..n as i64 {
            sender.send(Some((i, i)))?;
            answers.recv()?;
        }
        Ok::<_, ipc_channel::IpcError>(())
    });
    let set = client.start().map_err(Into::into).and_then(|()| {
        let status = client.join()?;
        check(
            status == ExitStatus::Exited(0),
            format!("the client ended {status:?}"),
        )
    });
    let elapsed = start.elapsed();
    let len = set.and_then(|()| {
        requests.send(None)?;
        Ok(len_rx.recv()?)
    });
    if len.is_err() {
        server.kill()?;
    }
    let status = server.join()?;
    let len = len?;
    check(
        len == n as u64 && status == ExitStatus::Exited(0),
        format!("the dict holds {len} items, not {n}; the server ended {status:?}"),
    )?;
    Ok(elapsed)
}

/// Waits, up to two seconds, until this thread is the process's only one.
fn single_threaded() -> Result<(), Box<dyn Error>> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let threads = std::fs::read_dir("/proc/self/task")?.count();
        if threads == 1 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{threads} threads still run after procspawn's pool").into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crates_named_are_those_in_cargo_lock() {
        let lock = include_str!("../../Cargo.lock");
        for named in CRATES.split(", ") {
            let (name, version) = named.split_once(' ').unwrap();
            let entry = format!("name = \"{name}\"\nversion = \"{version}\"\n");
            assert!(lock.contains(&entry), "Cargo.lock has no {named}");
        }
        // One name per crate, as the table names them.
        assert_eq!(CRATES.split(", ").count(), 3);
    }

    #[test]
    fn every_peer_is_a_workload_and_has_one_at_most() {
        for (i, peer) in PEERS.iter().enumerate() {
            let workload = crate::WORKLOADS
                .iter()
                .position(|w| w.name == peer.workload);
            assert!(workload.is_some(), "{} is no workload", peer.workload);
            assert!(PEERS[..i].iter().all(|p| p.workload != peer.workload));
        }
    }
}
