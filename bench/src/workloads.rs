//! The eight workloads, in Rust, through the workspace's own types: the same `Process`,
//! `Pool`, `Queue`, `Lock`, `Value` and `Manager` the examples use. Each returns the time its
//! timed part took, after checking its result; `bench/python/bench.py` does the same in
//! Python, line for line.

use std::error::Error;
use std::time::{Duration, Instant};

use common::{ExitStatus, Outcome, Process, PyValue};
use lock::Lock;
use manager::Manager;
use pool_map::Pool;
use queue::Queue;
use shared_value::Value;

/// What a workload returns: the time its timed part took, or why it failed.
pub type Timed = Result<Duration, Box<dyn Error>>;

pub(crate) fn sq(x: i64) -> i64 {
    x * x
}

pub(crate) fn check(ok: bool, what: impl Into<String>) -> Result<(), Box<dyn Error>> {
    if ok { Ok(()) } else { Err(what.into().into()) }
}

/// Starts `processes` that each run `target`, joins them all, and checks that each exited 0.
pub(crate) fn start_and_join<F, R>(processes: usize, target: F) -> Result<(), Box<dyn Error>>
where
    F: Fn() -> R + Copy + Send,
    R: Outcome,
{
    let mut ps: Vec<_> = (0..processes).map(|_| Process::new(target)).collect();
    for p in &mut ps {
        p.start()?;
    }
    for p in &mut ps {
        let status = p.join()?;
        check(
            status == ExitStatus::Exited(0),
            format!("a process ended {status:?}"),
        )?;
    }
    Ok(())
}

/// 1. Start and join an empty child process, `n` times.
pub fn process(n: usize) -> Timed {
    let start = Instant::now();
    for _ in 0..n {
        start_and_join(1, || {})?;
    }
    Ok(start.elapsed())
}

fn empty(_: ()) {}

/// Starts and joins an empty process from `ctx`, `n` times.
fn start_by(ctx: &start_methods::Context, n: usize) -> Timed {
    let start = Instant::now();
    for _ in 0..n {
        let mut p = start_methods::Process::new(ctx, empty, ())?;
        p.start()?;
        let status = p.join()?;
        check(
            status == ExitStatus::Exited(0),
            format!("a process ended {status:?}"),
        )?;
    }
    Ok(start.elapsed())
}

/// 1b. Start and join an empty child process by spawn, `n` times.
pub fn spawn(n: usize) -> Timed {
    start_by(
        &start_methods::get_context(start_methods::Method::Spawn)?,
        n,
    )
}

/// 1c. Start and join an empty child process by a fork server, `n` times; the server is
/// started, and has started one child, before the timer.
pub fn forkserver(n: usize) -> Timed {
    let ctx = start_methods::get_context(start_methods::Method::ForkServer)?;
    start_by(&ctx, 1)?;
    start_by(&ctx, n)
}

/// 2. `pool.map(sq, range(n))` with two workers.
pub fn map(n: usize) -> Timed {
    let pool = Pool::new(2)?;
    // Python's `range(n)` is made before its timer too, and costs nothing to make.
    let items: Vec<i64> = (0..n as i64).collect();
    let start = Instant::now();
    let squares = pool.map(sq, &items)?;
    let elapsed = start.elapsed();
    check(
        squares.iter().zip(&items).all(|(s, &x)| *s == x * x) && squares.len() == n,
        "map returned wrong squares",
    )?;
    Ok(elapsed)
}

/// 3. `pool.apply(sq, (i,))`, `n` times, one after another.
pub fn apply(n: usize) -> Timed {
    let pool = Pool::new(2)?;
    let start = Instant::now();
    for i in 0..n as i64 {
        check(pool.apply(sq, i)? == i * i, "apply returned a wrong square")?;
    }
    Ok(start.elapsed())
}

/// 4. `n` calls of `pool.apply_async(sq, (i,))`, then `get` on each.
pub fn apply_async(n: usize) -> Timed {
    let pool = Pool::new(2)?;
    let start = Instant::now();
    let results = (0..n as i64)
        .map(|i| pool.apply_async(sq, i))
        .collect::<Result<Vec<_>, _>>()?;
    let squares = results
        .iter()
        .map(|r| r.get())
        .collect::<Result<Vec<_>, _>>()?;
    let elapsed = start.elapsed();
    check(
        squares.iter().enumerate().all(|(i, &s)| s == sq(i as i64)),
        "apply_async returned wrong squares",
    )?;
    Ok(elapsed)
}

/// 5. One producer process puts `n` messages `(i, "hello")`; the main process gets them all.
pub fn queue(n: usize) -> Timed {
    let q: Queue<(i64, String)> = Queue::new()?;
    let start = Instant::now();
    let mut producer = Process::new(|| {
        for i in 0..n as i64 {
            q.put(&(i, "hello".to_owned()))?;
        }
        Ok::<_, queue::QueueError>(())
    });
    producer.start()?;
    for i in 0..n as i64 {
        let (got, hello) = q.get()?;
        check(
            got == i && hello == "hello",
            "the queue lost or reordered a message",
        )?;
    }
    let status = producer.join()?;
    check(
        status == ExitStatus::Exited(0),
        format!("the producer ended {status:?}"),
    )?;
    Ok(start.elapsed())
}

/// 6. Two processes each acquire and release one lock `n` times.
pub fn lock(n: usize) -> Timed {
    let lock = Lock::new()?;
    let start = Instant::now();
    start_and_join(2, || {
        for _ in 0..n {
            lock.acquire()?;
            lock.release()?;
        }
        Ok::<_, lock::LockError>(())
    })?;
    Ok(start.elapsed())
}

/// 7. Two processes each add 1 to a shared `Value` `n` times, under its lock.
pub fn value(n: usize) -> Timed {
    let num = Value::new(0i64)?;
    let start = Instant::now();
    start_and_join(2, || {
        for _ in 0..n {
            *num.get_lock()? += 1;
        }
        Ok::<_, lock::LockError>(())
    })?;
    let elapsed = start.elapsed();
    let total = num.value()?;
    check(
        total == 2 * n as i64,
        format!("the total is {total}, not {}", 2 * n),
    )?;
    Ok(elapsed)
}

/// 8. A child sets `n` items of a manager's dict.
pub fn manager(n: usize) -> Timed {
    let manager = Manager::new()?;
    let d = manager.dict()?;
    let start = Instant::now();
    start_and_join(1, || {
        for i in 0..n as i64 {
            d.set(i, i)?;
        }
        Ok::<_, manager::ManagerError>(())
    })?;
    let elapsed = start.elapsed();
    let len = d.len()?;
    check(
        len == n && d.get(n as i64 - 1)? == PyValue::from(n as i64 - 1),
        format!("the dict holds {len} items, not {n}"),
    )?;
    Ok(elapsed)
}
