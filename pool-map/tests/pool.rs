//! Tests of `Pool`. `harness = false`, because a pool forks its workers, and fork is
//! refused while libtest's threads run.

// A failed unwrap is a failed test here, as in #[test] functions.
#![allow(clippy::unwrap_used)]

// The workspace's test harness, included by path rather than named as a dependency: a copy
// of this section without `testkit/` still builds and runs (its tests need `testkit/` too).
#[path = "../../testkit/src/lib.rs"]
#[allow(dead_code, unused_imports)]
mod testkit;

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::{Duration, Instant};

use common::{ExitStatus, Process};
use nix::sys::signal::{Signal, kill, raise};
use nix::unistd::Pid;
use pool_map::{AsyncResult, Pool, PoolError};
use testkit::{assert_no_children, open_fds, run_tests};

fn main() {
    run_tests(&[
        ("map_returns_results_in_order", map_returns_results_in_order),
        ("map_of_nothing_and_of_many", map_of_nothing_and_of_many),
        ("apply_and_apply_async", apply_and_apply_async),
        ("a_panic_fails_its_task_only", a_panic_fails_its_task_only),
        (
            "a_panic_in_decoding_or_encoding_fails_its_task_only",
            a_panic_in_decoding_or_encoding_fails_its_task_only,
        ),
        ("get_timeout_returns_on_time", get_timeout_returns_on_time),
        (
            "get_timeout_of_duration_max_waits_without_a_deadline",
            get_timeout_of_duration_max_waits_without_a_deadline,
        ),
        (
            "get_timeout_of_nothing_takes_a_result_already_in",
            get_timeout_of_nothing_takes_a_result_already_in,
        ),
        (
            "a_short_get_timeout_takes_a_result_already_in",
            a_short_get_timeout_takes_a_result_already_in,
        ),
        (
            "values_over_the_frame_limit_fail_their_call",
            values_over_the_frame_limit_fail_their_call,
        ),
        ("a_worker_killed_in_map", a_worker_killed_in_map),
        ("a_worker_killed_from_outside", a_worker_killed_from_outside),
        ("a_worker_that_exits", a_worker_that_exits),
        (
            "close_and_join_finish_the_tasks",
            close_and_join_finish_the_tasks,
        ),
        (
            "terminate_and_drop_stop_the_workers",
            terminate_and_drop_stop_the_workers,
        ),
        (
            "a_child_cannot_use_its_parents_pool",
            a_child_cannot_use_its_parents_pool,
        ),
        (
            "a_death_blames_the_running_task_and_runs_none_twice",
            a_death_blames_the_running_task_and_runs_none_twice,
        ),
        (
            "join_ends_while_other_children_live",
            join_ends_while_other_children_live,
        ),
        (
            "join_waits_for_what_a_task_left_running",
            join_waits_for_what_a_task_left_running,
        ),
        (
            "a_worker_killed_with_a_helper_alive",
            a_worker_killed_with_a_helper_alive,
        ),
        (
            "a_worker_that_cannot_be_replaced_yet",
            a_worker_that_cannot_be_replaced_yet,
        ),
        (
            "a_task_cannot_cut_the_shared_word",
            a_task_cannot_cut_the_shared_word,
        ),
        (
            "the_live_workers_go_on_while_a_dead_ones_replacement_cannot_start",
            the_live_workers_go_on_while_a_dead_ones_replacement_cannot_start,
        ),
        (
            "a_replacement_refused_for_a_thread_holds_up_no_call",
            a_replacement_refused_for_a_thread_holds_up_no_call,
        ),
        (
            "a_death_is_counted_once_however_often_its_replacement_fails",
            a_death_is_counted_once_however_often_its_replacement_fails,
        ),
        (
            "a_task_the_dead_worker_never_read_runs_elsewhere",
            a_task_the_dead_worker_never_read_runs_elsewhere,
        ),
        (
            "a_task_left_unread_in_a_closed_pipe_runs_elsewhere",
            a_task_left_unread_in_a_closed_pipe_runs_elsewhere,
        ),
        (
            "a_task_written_as_an_idle_worker_is_killed_runs_elsewhere",
            a_task_written_as_an_idle_worker_is_killed_runs_elsewhere,
        ),
        (
            "idle_workers_killed_together_are_replaced_and_their_tasks_run",
            idle_workers_killed_together_are_replaced_and_their_tasks_run,
        ),
        (
            "workers_that_die_ready_at_their_first_read_fail_the_task",
            workers_that_die_ready_at_their_first_read_fail_the_task,
        ),
        (
            "a_task_that_kills_every_worker_that_reads_it_fails_among_others",
            a_task_that_kills_every_worker_that_reads_it_fails_among_others,
        ),
        (
            "tasks_behind_workers_the_pool_ends_are_not_blamed",
            tasks_behind_workers_the_pool_ends_are_not_blamed,
        ),
        (
            "terminate_and_drop_end_a_stopped_worker",
            terminate_and_drop_end_a_stopped_worker,
        ),
        (
            "workers_that_die_at_start_fail_the_task",
            workers_that_die_at_start_fail_the_task,
        ),
        (
            "a_worker_starts_past_a_lowered_descriptor_limit",
            a_worker_starts_past_a_lowered_descriptor_limit,
        ),
        (
            "a_pool_too_large_to_start_fails",
            a_pool_too_large_to_start_fails,
        ),
        (
            "a_result_comes_though_stdout_takes_nothing",
            a_result_comes_though_stdout_takes_nothing,
        ),
        (
            "a_serde_impl_that_calls_the_pool_gets_an_error",
            a_serde_impl_that_calls_the_pool_gets_an_error,
        ),
        (
            "the_frame_limit_counts_the_headers",
            the_frame_limit_counts_the_headers,
        ),
        (
            "a_panic_in_the_parents_serde_abandons_the_maps_other_chunks",
            a_panic_in_the_parents_serde_abandons_the_maps_other_chunks,
        ),
        (
            "bytes_outside_the_protocol_end_their_worker",
            bytes_outside_the_protocol_end_their_worker,
        ),
        (
            "garbage_and_a_death_found_between_calls",
            garbage_and_a_death_found_between_calls,
        ),
        (
            "a_result_hidden_by_garbage_is_lost_when_its_worker_dies",
            a_result_hidden_by_garbage_is_lost_when_its_worker_dies,
        ),
        (
            "a_handle_dropped_inside_a_pool_call_frees_its_result",
            a_handle_dropped_inside_a_pool_call_frees_its_result,
        ),
        (
            "no_zombie_and_no_descriptor_after_drop",
            no_zombie_and_no_descriptor_after_drop,
        ),
    ]);
}

fn square(x: i64) -> i64 {
    x * x
}

fn pid_of(x: i64) -> u32 {
    std::thread::sleep(Duration::from_millis(x as u64));
    std::process::id()
}

fn map_returns_results_in_order() {
    let p = Pool::new(5).unwrap();
    assert_eq!(p.map(square, &[1, 2, 3]).unwrap(), [1, 4, 9]);
    // Any serde types, both ways.
    fn shout(s: (String, usize)) -> Vec<String> {
        vec![s.0.to_uppercase(); s.1]
    }
    let got = p.map(shout, &[("a".into(), 2), ("b".into(), 0)]).unwrap();
    assert_eq!(got, [vec!["A".to_string(), "A".into()], vec![]]);
    // The work is spread: several workers answer.
    let pids = p.map(pid_of, &[20; 20]).unwrap();
    let mut distinct = pids.clone();
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() > 1, "one worker did everything: {pids:?}");
    assert!(distinct.iter().all(|pid| p.pids().contains(pid)));
}

fn map_of_nothing_and_of_many() {
    let p = Pool::new(2).unwrap();
    assert_eq!(p.map(square, &[]).unwrap(), Vec::<i64>::new());
    let items: Vec<i64> = (0..100_000).collect();
    let squares: Vec<i64> = items.iter().map(|x| x * x).collect();
    assert_eq!(p.map(square, &items).unwrap(), squares);
}

fn apply_and_apply_async() {
    let p = Pool::new(4).unwrap();
    for i in 0..50 {
        assert_eq!(p.apply(square, i).unwrap(), i * i);
    }
    let handles: Vec<_> = (0..1000)
        .map(|i| p.apply_async(square, i).unwrap())
        .collect();
    // In any order, and more than once.
    for (i, r) in handles.iter().enumerate().rev() {
        assert_eq!(r.get().unwrap(), (i * i) as i64);
    }
    assert_eq!(handles[7].get_timeout(Duration::from_secs(5)).unwrap(), 49);
    assert!(handles[7].ready().unwrap());
}

fn boom(x: i64) -> i64 {
    if x == 3 {
        panic!("three is not allowed");
    }
    x
}

fn a_panic_fails_its_task_only() {
    silence_stderr_for_a_while();
    let p = Pool::new(2).unwrap();
    let err = p.map(boom, &[1, 2, 3, 4]).unwrap_err();
    assert!(
        matches!(&err, PoolError::Panicked { message, .. } if message == "three is not allowed"),
        "{err}"
    );
    assert!(err.to_string().contains("panicked in worker"), "{err}");
    let err = p.apply(boom, 3).unwrap_err();
    assert!(matches!(err, PoolError::Panicked { .. }), "{err}");
    // The pool, and the same workers, go on.
    let pids = p.pids();
    assert_eq!(p.apply(boom, 4).unwrap(), 4);
    assert_eq!(p.map(boom, &[5, 6]).unwrap(), [5, 6]);
    assert_eq!(p.pids(), pids);
    restore_stderr();
}

fn big(n: usize) -> String {
    "x".repeat(n)
}

fn values_over_the_frame_limit_fail_their_call() {
    let p = Pool::new(1).unwrap();
    let over = common::frame::MAX_FRAME + 1;
    let err = p.apply(|s: String| s.len(), big(over)).unwrap_err();
    assert!(err.to_string().contains("over the limit"), "{err}");
    let err = p.apply(big, over).unwrap_err();
    assert!(err.to_string().contains("over the limit"), "{err}");
    assert_eq!(p.apply(big, 3).unwrap(), "xxx");
    // A chunk of `map` over the limit goes in smaller chunks, in their order: here Python's
    // rule makes chunks of two items (8 items, 4 x 1 worker), each 18 MiB, which go as
    // chunks of one (a frame over the limit would fail the map).
    let nine_mib = 9 << 20;
    let items: Vec<String> = (0..8).map(|i| format!("{i}{}", big(nine_mib))).collect();
    let first = |s: String| s.chars().next().unwrap();
    let firsts = p.map(first, &items).unwrap();
    assert_eq!(firsts.into_iter().collect::<String>(), "01234567");
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn get_timeout_returns_on_time() {
    let p = Pool::new(1).unwrap();
    let slow = p.apply_async(sleep_ms, 1500).unwrap();
    let started = Instant::now();
    let err = slow.get_timeout(Duration::from_millis(300)).unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, PoolError::Timeout(t) if t == Duration::from_millis(300)));
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(400),
        "took {took:?}"
    );
    // The task went on; asking again gets it.
    assert_eq!(slow.get_timeout(Duration::from_secs(10)).unwrap(), 1500);
}

/// A timeout past the clock's range is no deadline at all, not a panic.
fn get_timeout_of_duration_max_waits_without_a_deadline() {
    let p = Pool::new(1).unwrap();
    let r = p.apply_async(sleep_ms, 100).unwrap();
    assert_eq!(r.get_timeout(Duration::MAX).unwrap(), 100);
}

fn die_on_3(x: i64) -> i64 {
    if x == 3 {
        raise(Signal::SIGKILL).unwrap();
    }
    std::thread::sleep(Duration::from_millis(50));
    x
}

fn a_worker_killed_in_map() {
    let p = Pool::new(2).unwrap();
    let before = p.pids();
    let started = Instant::now();
    let err = p.map(die_on_3, &(0..8).collect::<Vec<_>>()).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let PoolError::WorkerDied { pid, status, .. } = err else {
        panic!("not a death: {err}");
    };
    assert_eq!(status, ExitStatus::Signaled(Signal::SIGKILL));
    assert!(before.contains(&pid));
    assert!(err_text(pid).contains("killed by SIGKILL"));
    // A replacement took the dead worker's place, and the next call succeeds.
    let after = p.pids();
    assert_eq!(after.len(), 2);
    assert!(!after.contains(&pid));
    assert_eq!(p.map(square, &[1, 2, 3]).unwrap(), [1, 4, 9]);
}

fn err_text(pid: u32) -> String {
    PoolError::WorkerDied {
        pid,
        task: 7,
        status: ExitStatus::Signaled(Signal::SIGKILL),
    }
    .to_string()
}

fn a_worker_killed_from_outside() {
    let p = Pool::new(2).unwrap();
    let slow = p.apply_async(sleep_ms, 5000).unwrap();
    let other = p.apply_async(sleep_ms, 10).unwrap();
    let queued: Vec<_> = (0..4)
        .map(|_| p.apply_async(sleep_ms, 10).unwrap())
        .collect();
    assert_eq!(other.get().unwrap(), 10);
    // The slow task is on the first worker: a killer process ends it.
    let victim = p.pids()[0];
    let mut killer = Process::new(move || {
        std::thread::sleep(Duration::from_millis(200));
        kill(Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
    });
    killer.start().unwrap();
    let started = Instant::now();
    let err = slow.get_timeout(Duration::from_secs(10)).unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1200), "took {took:?}");
    assert_eq!(
        err.to_string(),
        format!("worker {victim} was killed by SIGKILL while running task 0")
    );
    killer.join().unwrap();
    for r in &queued {
        assert_eq!(r.get().unwrap(), 10);
    }
    assert_eq!(p.apply(square, 9).unwrap(), 81);
}

fn exit_3(x: i64) -> i64 {
    std::process::exit(x as i32)
}

fn a_worker_that_exits() {
    let p = Pool::new(1).unwrap();
    let err = p.apply(exit_3, 3).unwrap_err();
    assert!(matches!(
        err,
        PoolError::WorkerDied {
            status: ExitStatus::Exited(3),
            ..
        }
    ));
    assert!(err.to_string().contains("exited with code 3"), "{err}");
    assert_eq!(p.apply(square, 5).unwrap(), 25);
}

fn close_and_join_finish_the_tasks() {
    let p = Pool::new(2).unwrap();
    let handles: Vec<_> = (0..6)
        .map(|_| p.apply_async(sleep_ms, 50).unwrap())
        .collect();
    p.close().unwrap();
    assert!(matches!(p.apply(square, 1), Err(PoolError::Closed)));
    p.join().unwrap();
    for r in &handles {
        assert_eq!(r.get().unwrap(), 50);
    }
    assert!(p.pids().is_empty());
    assert_no_children();
}

fn terminate_and_drop_stop_the_workers() {
    let p = Pool::new(2).unwrap();
    let slow = p.apply_async(sleep_ms, 60_000).unwrap();
    let started = Instant::now();
    p.terminate().unwrap();
    assert!(matches!(slow.get(), Err(PoolError::Closed)));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_no_children();
    drop(slow);
    drop(p);

    let p = Pool::new(2).unwrap();
    let slow = p.apply_async(sleep_ms, 60_000).unwrap();
    drop(slow);
    let started = Instant::now();
    drop(p);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_no_children();
}

thread_local! {
    /// A pool, and a result of it, that a child reaches without capturing them: a target
    /// cannot capture a `Pool` (it is not `Sync`), but a thread-local is copied by fork.
    static LEAKED: std::cell::OnceCell<(&'static Pool, AsyncResult<'static, u64>)> =
        const { std::cell::OnceCell::new() };
}

/// Every operation of a child on its parent's pool is refused, and changes nothing: the
/// parent still gets its result, and its workers still run.
fn a_child_cannot_use_its_parents_pool() {
    let p: &'static Pool = Box::leak(Box::new(Pool::new(2).unwrap()));
    let pids = p.pids();
    let slow = p.apply_async(sleep_ms, 300).unwrap();
    LEAKED.with(|leaked| leaked.set((p, slow)).ok().unwrap());
    let mut child = Process::new(|| {
        LEAKED.with(|leaked| {
            let (p, slow) = leaked.get().unwrap();
            let refused = |r: Result<_, PoolError>| matches!(r, Err(PoolError::NotOwner { .. }));
            assert!(refused(slow.get().map(drop)));
            assert!(refused(slow.get_timeout(Duration::from_secs(1)).map(drop)));
            assert!(refused(slow.ready().map(drop)));
            assert!(refused(p.apply(square, 2).map(drop)));
            assert!(refused(p.apply_async(square, 2).map(drop)));
            assert!(refused(p.map(square, &[]).map(drop)));
            assert!(refused(p.map(square, &[1, 2]).map(drop)));
            assert!(refused(p.close()));
            assert!(refused(p.join()));
            assert!(refused(p.terminate()));
        })
    });
    child.start().unwrap();
    assert_eq!(child.join().unwrap(), ExitStatus::Exited(0));
    LEAKED.with(|leaked| {
        let (p, slow) = leaked.get().unwrap();
        assert_eq!(slow.get_timeout(Duration::from_secs(10)).unwrap(), 300);
        assert_eq!(p.pids(), pids);
        assert_eq!(p.apply(square, 2).unwrap(), 4);
        assert_eq!(p.map(square, &[1, 2]).unwrap(), [1, 4]);
        p.terminate().unwrap();
    });
    assert_no_children();
}

/// Writes `x` to the pipe `fd` (one byte: which tasks ran, and how often), and exits with
/// code 3 on task 2.
fn record_and_exit_on_2((fd, x): (i32, u8)) -> u8 {
    // SAFETY: `fd` is the write end of the test's pipe, inherited by the worker.
    unsafe { libc::write(fd, [x].as_ptr().cast(), 1) };
    if x == 2 {
        std::process::exit(3);
    }
    x
}

/// One worker, eight tasks, task 2 exits: task 1 keeps its result, task 2 is the one blamed,
/// and every other task runs once.
fn a_death_blames_the_running_task_and_runs_none_twice() {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let (mut r, w) = os_pipe::pipe().unwrap();
    let p = Pool::new(1).unwrap();
    let results: Vec<_> = (0..8u8)
        .map(|x| {
            p.apply_async(record_and_exit_on_2, (w.as_raw_fd(), x))
                .unwrap()
        })
        .collect();
    for (x, result) in results.iter().enumerate() {
        match (x, result.get_timeout(Duration::from_secs(10))) {
            (2, Err(PoolError::WorkerDied { task, status, .. })) => {
                assert_eq!(task, 2);
                assert_eq!(status, ExitStatus::Exited(3));
            }
            (x, got) => assert_eq!(got.unwrap(), x as u8),
        }
    }
    drop(results);
    drop(p);
    drop(w);
    let mut ran = Vec::new();
    r.read_to_end(&mut ran).unwrap();
    ran.sort();
    assert_eq!(
        ran,
        [0, 1, 2, 3, 4, 5, 6, 7],
        "tasks that ran, with repeats"
    );
    assert_no_children();
}

/// Starts a process that sleeps for `ms` milliseconds and leaves it running (dropped, not
/// joined); returns its pid.
fn start_a_sleeper(ms: u64) -> u32 {
    let mut sleeper = Process::new(move || std::thread::sleep(Duration::from_millis(ms)));
    sleeper.start().unwrap();
    sleeper.pid().unwrap().as_raw() as u32
}

/// A process a task started and left running is joined by its worker before the worker
/// exits, so `join` returns only once it has ended.
fn join_waits_for_what_a_task_left_running() {
    let p = Pool::new(1).unwrap();
    let grandchild = p.apply(start_a_sleeper, 300).unwrap();
    p.close().unwrap();
    p.join().unwrap();
    assert!(
        testkit::has_ended(grandchild),
        "join returned before {grandchild} ended"
    );
    drop(p);
    assert_no_children();
}

/// `close` and `join` end even while other children hold copies of descriptors: another
/// pool's workers, and a process started after the pool.
fn join_ends_while_other_children_live() {
    // A hang fails the test (SIGALRM ends it) instead of waiting forever.
    // SAFETY: alarm touches no memory.
    unsafe { libc::alarm(30) };
    let first = Pool::new(2).unwrap();
    let second = Pool::new(2).unwrap();
    let mut sleeper = Process::new(|| std::thread::sleep(Duration::from_secs(30)));
    sleeper.start().unwrap();
    assert_eq!(first.map(square, &[1, 2, 3]).unwrap(), [1, 4, 9]);
    first.close().unwrap();
    first.join().unwrap();
    assert!(first.pids().is_empty());
    assert_eq!(second.map(square, &[4]).unwrap(), [16]);
    second.close().unwrap();
    second.join().unwrap();
    sleeper.kill().unwrap();
    sleeper.join().unwrap();
    // SAFETY: as above; 0 cancels it.
    unsafe { libc::alarm(0) };
    assert_no_children();
}

/// Starts a helper that would outlive its worker by 30 s, sends its pid back, and waits. By
/// `start`, the helper holds none of the pool's descriptors and dies with the worker (it
/// asked the kernel to, `PR_SET_PDEATHSIG`); by a bare `fork`, it keeps the worker's end of
/// the results pipe open and lives on, so the pool cannot learn of the death from the pipe.
fn start_helper_and_wait((fd, bare): (i32, bool)) -> u8 {
    let pid = if bare {
        // SAFETY: the worker has one thread; the child only sleeps and exits.
        match unsafe { libc::fork() } {
            0 => {
                std::thread::sleep(Duration::from_secs(30));
                // SAFETY: ends the helper at once, as a forked child must.
                unsafe { libc::_exit(0) }
            }
            pid => pid,
        }
    } else {
        let mut helper = Process::new(|| std::thread::sleep(Duration::from_secs(30)));
        helper.start().unwrap();
        helper.pid().unwrap().as_raw()
    };
    // SAFETY: `fd` is the write end of the test's pipe, inherited by the worker.
    unsafe { libc::write(fd, pid.to_le_bytes().as_ptr().cast(), 4) };
    std::thread::sleep(Duration::from_secs(60));
    0
}

/// A worker killed while a process it started lives is reported within a second; a helper
/// it started with `start` dies with it.
fn a_worker_killed_with_a_helper_alive() {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    for bare in [false, true] {
        let (mut r, w) = os_pipe::pipe().unwrap();
        let p = Pool::new(1).unwrap();
        let victim = p.pids()[0];
        let waiting = p
            .apply_async(start_helper_and_wait, (w.as_raw_fd(), bare))
            .unwrap();
        let mut pid = [0u8; 4];
        r.read_exact(&mut pid).unwrap();
        let helper = Pid::from_raw(i32::from_le_bytes(pid));
        kill(Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
        let started = Instant::now();
        let err = waiting.get_timeout(Duration::from_secs(10)).unwrap_err();
        let took = started.elapsed();
        if !bare {
            let gone = Instant::now();
            while !testkit::has_ended(helper.as_raw() as u32) {
                assert!(
                    gone.elapsed() < Duration::from_secs(1),
                    "the helper outlived its worker"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let _ = kill(helper, Signal::SIGKILL);
        assert!(
            matches!(err, PoolError::WorkerDied { pid, .. } if pid == victim),
            "{err}"
        );
        assert!(
            took < Duration::from_secs(1),
            "bare fork {bare}: took {took:?}"
        );
        assert_eq!(p.apply(square, 3).unwrap(), 9);
    }
    assert_no_children();
}

fn no_zombie_and_no_descriptor_after_drop() {
    let before = open_fds();
    for _ in 0..5 {
        let p = Pool::new(3).unwrap();
        assert_eq!(p.map(square, &[1, 2, 3]).unwrap(), [1, 4, 9]);
        let _ = p.apply_async(sleep_ms, 10_000).unwrap();
    }
    assert_no_children();
    assert_eq!(open_fds(), before);
}

/// Panicking workers print their panic; a test that panics them on purpose hides it.
static SAVED_STDERR: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

fn silence_stderr_for_a_while() {
    let null = std::fs::File::create("/dev/null").unwrap();
    // SAFETY: dup and dup2 on descriptors this process owns.
    unsafe {
        SAVED_STDERR.store(libc::dup(2), std::sync::atomic::Ordering::Relaxed);
        libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 2);
    }
}

fn restore_stderr() {
    let saved = SAVED_STDERR.swap(-1, std::sync::atomic::Ordering::Relaxed);
    // SAFETY: `saved` is the copy of stderr made above.
    unsafe {
        libc::dup2(saved, 2);
        libc::close(saved);
    }
}

/// Writes a byte to the pipe `fd`, then sleeps a minute.
fn say_and_sleep(fd: i32) -> u8 {
    // SAFETY: `fd` is the write end of the test's pipe, inherited by the worker.
    unsafe { libc::write(fd, [1u8].as_ptr().cast(), 1) };
    std::thread::sleep(Duration::from_secs(60));
    0
}

/// A dead worker whose replacement cannot be forked now (here a guard of shared memory is
/// held, so fork is refused): the call says why, the dead worker is blamed for its own task
/// only, and once fork is possible again a replacement runs the next tasks.
fn a_worker_that_cannot_be_replaced_yet() {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let (mut r, w) = os_pipe::pipe().unwrap();
    let p = Pool::new(1).unwrap();
    let victim = p.pids()[0];
    let slow = p.apply_async(say_and_sleep, w.as_raw_fd()).unwrap();
    // Running it, for sure, when it is killed.
    r.read_exact(&mut [0]).unwrap();
    let borrow = common::SharedBorrow::new();
    kill(Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
    let err = slow.get_timeout(Duration::from_secs(10)).unwrap_err();
    assert!(
        matches!(err, PoolError::Os(common::Error::SharedBorrowHeld { .. })),
        "{err}"
    );
    let again = slow.get_timeout(Duration::from_secs(10));
    assert!(
        matches!(again, Err(PoolError::WorkerDied { pid, task: 0, .. }) if pid == victim),
        "{again:?}"
    );
    assert!(matches!(
        p.apply(square, 2),
        Err(PoolError::Os(common::Error::SharedBorrowHeld { .. }))
    ));
    drop(borrow);
    assert_eq!(p.apply(square, 3).unwrap(), 9);
    assert_eq!(p.map(square, &[1, 2, 3]).unwrap(), [1, 4, 9]);
    assert!(!p.pids().contains(&victim));
    drop(slow);
    drop(p);
    assert_no_children();
}

/// Cuts to nothing the file of the word the worker shares with the pool, found among its
/// mappings (`/proc/self/map_files`, which takes root to open) as safe code can, then exits:
/// with 3 when the file refused to be cut, 4 when it was cut, 5 when it could not be opened.
fn cut_the_shared_word(_: u8) -> u8 {
    let mut code = 5;
    for entry in std::fs::read_dir("/proc/self/map_files").unwrap().flatten() {
        let target = std::fs::read_link(entry.path()).unwrap_or_default();
        if !target.to_string_lossy().contains("pool-worker-started") {
            continue;
        }
        if let Ok(file) = std::fs::OpenOptions::new().write(true).open(entry.path()) {
            code = if file.set_len(0).is_ok() { 4 } else { 3 };
        }
    }
    std::process::exit(code)
}

/// A task cannot cut the file of the word its worker shares with the pool (it is sealed at
/// its length): had it, the pool's parent would die of SIGBUS when it read the word.
fn a_task_cannot_cut_the_shared_word() {
    ends_without_hanging(|| {
        let p = Pool::new(1).unwrap();
        match p.apply(cut_the_shared_word, 0) {
            Err(PoolError::WorkerDied {
                status: ExitStatus::Exited(3),
                ..
            }) => {}
            Err(PoolError::WorkerDied {
                status: ExitStatus::Exited(5),
                ..
            }) => testkit::skipped("/proc/self/map_files cannot be opened (not root?)"),
            other => panic!("{other:?}"),
        }
        assert_eq!(p.apply(square, 3).unwrap(), 9);
    });
}

/// A dead worker whose replacement cannot be started now, beside a worker that lives: the
/// calls go on, on the live worker, and the dead one's place is filled once fork is possible
/// again. (Each call failed with why the replacement could not start, even `apply`, whose
/// task the live worker had run: asked again, it ran twice.)
fn the_live_workers_go_on_while_a_dead_ones_replacement_cannot_start() {
    let p = Pool::new(2).unwrap();
    let victim = p.pids()[0];
    testkit::until_asleep(victim);
    let borrow = common::SharedBorrow::new();
    kill(Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(500) {
        assert_eq!(p.apply(square, 4).unwrap(), 16);
        let r = p.apply_async(square, 5).unwrap();
        assert_eq!(r.get().unwrap(), 25);
        assert_eq!(p.map(square, &[1, 2, 3]).unwrap(), [1, 4, 9]);
    }
    assert_eq!(p.pids().len(), 1, "{:?}", p.pids());
    assert!(!p.pids().contains(&victim));
    drop(borrow);
    // Tried again within a few seconds (the wait doubles after each failure).
    let freed = Instant::now();
    while p.pids().len() < 2 {
        assert!(freed.elapsed() < Duration::from_secs(10), "not replaced");
        assert_eq!(p.apply(square, 6).unwrap(), 36);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(p.map(square, &[1, 2, 3, 4]).unwrap(), [1, 4, 9, 16]);
    drop(p);
    assert_no_children();
}

/// As above, where the fork is refused because a thread of the caller's runs: a try to
/// replace the dead worker does not hold up the call that makes it. (Refused after the
/// second a fork waits for threads to end, it made a `get_timeout` of 50 ms take 1.01 s,
/// in 4-5 of 34 calls.) Once the thread has ended, the place is filled.
fn a_replacement_refused_for_a_thread_holds_up_no_call() {
    // In a child: the thread's memory stays out of this process, whose later children
    // (`a_task_that_kills_every_worker_that_reads_it_fails_among_others`) count theirs.
    ends_without_hanging(|| {
        let p = Pool::new(2).unwrap();
        let victim = p.pids()[0];
        testkit::until_asleep(victim);
        // A pool of one, whose worker dies too: with no worker left, a call fails at once
        // with why (it waited the second first).
        let alone = Pool::new(1).unwrap();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|s| {
            s.spawn(move || stopped.recv());
            kill(Pid::from_raw(alone.pids()[0] as i32), Signal::SIGKILL).unwrap();
            let asked = Instant::now();
            let refused = alone.apply(square, 2);
            assert!(
                matches!(
                    refused,
                    Err(PoolError::Os(common::Error::ThreadsRunning { .. }))
                ),
                "{refused:?}"
            );
            assert!(
                asked.elapsed() < Duration::from_millis(500),
                "{:?}",
                asked.elapsed()
            );
            kill(Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
            let started = Instant::now();
            let mut slowest = Duration::ZERO;
            while started.elapsed() < Duration::from_secs(3) {
                let r = p.apply_async(sleep_ms, 200).unwrap();
                let asked = Instant::now();
                match r.get_timeout(Duration::from_millis(50)) {
                    Ok(200) | Err(PoolError::Timeout(_)) => {}
                    other => panic!("{other:?}"),
                }
                slowest = slowest.max(asked.elapsed());
                assert_eq!(r.get().unwrap(), 200);
            }
            // Ten times the timeout: a call that waited for the threads took twenty.
            assert!(slowest < Duration::from_millis(500), "{slowest:?}");
            drop(stop);
        });
        let freed = Instant::now();
        while p.pids().len() < 2 {
            assert!(freed.elapsed() < Duration::from_secs(10), "not replaced");
            assert_eq!(p.apply(square, 6).unwrap(), 36);
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(alone.apply(square, 7).unwrap(), 49);
    });
}

/// One worker killed before it began a task, and its replacement refused again and again
/// (a guard held): each call says why, and the one death is not counted as many deaths at
/// start (which would fail the calls with `WorkersDieAtStart`, as if three workers had died).
fn a_death_is_counted_once_however_often_its_replacement_fails() {
    let p = Pool::new(1).unwrap();
    let victim = p.pids()[0];
    testkit::until_asleep(victim);
    let borrow = common::SharedBorrow::new();
    kill(Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
    for round in 0..5 {
        let err = p.apply(square, round).unwrap_err();
        assert!(
            matches!(err, PoolError::Os(common::Error::SharedBorrowHeld { .. })),
            "round {round}: {err}"
        );
    }
    drop(borrow);
    assert_eq!(p.apply(square, 3).unwrap(), 9);
    drop(p);
    assert_no_children();
}

/// Starts a helper by a bare `fork` (which keeps the worker's pipes open), sends its pid
/// back, and returns: the worker is then idle.
fn start_helper_and_return(fd: i32) -> u8 {
    // SAFETY: the worker has one thread; the child only sleeps and exits.
    let pid = match unsafe { libc::fork() } {
        0 => {
            std::thread::sleep(Duration::from_secs(30));
            // SAFETY: ends the helper at once, as a forked child must.
            unsafe { libc::_exit(0) }
        }
        pid => pid,
    };
    // SAFETY: `fd` is the write end of the test's pipe, inherited by the worker.
    unsafe { libc::write(fd, pid.to_le_bytes().as_ptr().cast(), 4) };
    0
}

/// A task written to a worker that had already died (its pipe held open by a process it
/// started) was never read, so never run: it is not blamed on the dead worker, but runs on
/// its replacement.
fn a_task_the_dead_worker_never_read_runs_elsewhere() {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let (mut r, w) = os_pipe::pipe().unwrap();
    let p = Pool::new(1).unwrap();
    let victim = p.pids()[0];
    assert_eq!(p.apply(start_helper_and_return, w.as_raw_fd()).unwrap(), 0);
    let mut pid = [0u8; 4];
    r.read_exact(&mut pid).unwrap();
    let helper = Pid::from_raw(i32::from_le_bytes(pid));
    kill(Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
    while !testkit::has_ended(victim) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let got = p.apply(square, 7);
    let _ = kill(helper, Signal::SIGKILL);
    assert_eq!(got.unwrap(), 49);
    assert!(!p.pids().contains(&victim));
    drop(p);
    assert_no_children();
}

/// Returns 0, and makes the worker die (SIGSYS, by a seccomp filter) at its next read
/// (`read(2)`, or `preadv2(2)` while it spins): the read of the task after this one, which
/// then stays unread in the pipe.
fn die_at_next_read(_: u8) -> u8 {
    // Time for the pool to write the next task while this one runs.
    std::thread::sleep(Duration::from_millis(200));
    testkit::filter_syscall(libc::SYS_read, libc::SECCOMP_RET_KILL_PROCESS);
    testkit::filter_syscall(libc::SYS_preadv2, libc::SECCOMP_RET_KILL_PROCESS);
    0
}

/// The worker dies with a task in its pipe that it never read, and the pool's next write
/// finds the pipe closed (EPIPE) before the pool sees the death. No task after the first
/// ran on it, so none is blamed: all run on the replacement.
fn a_task_left_unread_in_a_closed_pipe_runs_elsewhere() {
    let p = Pool::new(1).unwrap();
    let victim = p.pids()[0];
    let first = p.apply_async(die_at_next_read, 0).unwrap();
    // The worker has read the first task, and sleeps in it, when the second is written
    // (one queued task more lets the pool hand it over).
    std::thread::sleep(Duration::from_millis(50));
    let mut rest = vec![p.apply_async(square, 1).unwrap()];
    rest.push(p.apply_async(square, 2).unwrap());
    while !testkit::has_ended(victim) {
        std::thread::sleep(Duration::from_millis(1));
    }
    // Enough queued that the pool hands one more to the dead worker: that write fails.
    for x in 3..6 {
        rest.push(p.apply_async(square, x).unwrap());
    }
    assert_eq!(first.get().unwrap(), 0);
    for (x, r) in (1..6).zip(&rest) {
        assert_eq!(r.get_timeout(Duration::from_secs(10)).unwrap(), x * x);
    }
    assert!(!p.pids().contains(&victim));
    drop((first, rest));
    drop(p);
    assert_no_children();
}

/// A worker killed while it waits for a task can still read the task written in that very
/// moment, and die before it runs it: that task is not blamed on the dead worker, but runs,
/// once, on its replacement. (Blamed nearly every time when the pool took a task read for a
/// task begun.)
fn a_task_written_as_an_idle_worker_is_killed_runs_elsewhere() {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let (mut r, w) = os_pipe::pipe().unwrap();
    for x in 0..20u8 {
        let p = Pool::new(1).unwrap();
        assert_eq!(p.apply(square, 2).unwrap(), 4);
        let victim = p.pids()[0];
        // Asleep in its read of the task pipe: killed there, it runs nothing more.
        testkit::until_asleep(victim);
        kill(Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
        match p.apply(record_and_exit_on_2, (w.as_raw_fd(), 10 + x)) {
            Ok(got) => assert_eq!(got, 10 + x),
            Err(e) => panic!("round {x}: a task the killed worker never began: {e}"),
        }
        assert!(!p.pids().contains(&victim));
    }
    drop(w);
    let mut ran = Vec::new();
    r.read_to_end(&mut ran).unwrap();
    assert_eq!(
        ran,
        (10..30).collect::<Vec<u8>>(),
        "tasks that ran, with repeats"
    );
    assert_no_children();
}

/// Every worker of a pool killed while it waits for its first task (as the OOM killer, or
/// a kill from outside, may): the next calls run on replacements, as in Python, and do not
/// fail with `WorkersDieAtStart`, though three workers in a row died before they began a
/// task. A `map` of more chunks than workers hands each dead worker a chunk before its
/// death is seen: once they have ended, or (the call right after the kills) while they are
/// still ending, their pipes still open, where the chunks stay unread.
fn idle_workers_killed_together_are_replaced_and_their_tasks_run() {
    for round in 0..10 {
        let p = Pool::new(3).unwrap();
        let victims = p.pids();
        for &victim in &victims {
            testkit::until_asleep(victim);
        }
        for &victim in &victims {
            kill(Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
        }
        if round % 2 == 0 {
            for &victim in &victims {
                assert!(testkit::ends_within(victim, Duration::from_secs(10)));
            }
        }
        let items: Vec<i64> = (0..12).collect();
        match p.map(square, &items) {
            Ok(squares) => assert_eq!(squares, items.iter().map(|x| x * x).collect::<Vec<_>>()),
            Err(e) => panic!("round {round}: {e}"),
        }
        assert_eq!(p.apply(square, 5).unwrap(), 25);
        assert!(p.pids().iter().all(|pid| !victims.contains(pid)));
    }
    assert_no_children();
}

/// A number whose serde impls panic on 13, in the worker: decoding it (an argument) or
/// encoding it (a result).
#[derive(Debug, PartialEq)]
struct Unlucky(i32);

impl serde::Serialize for Unlucky {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        assert!(
            self.0 != 13 || common::current_pid() == PARENT.load(Relaxed),
            "13 out"
        );
        s.serialize_i32(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Unlucky {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i32::deserialize(d)?;
        assert!(
            n != 13 || common::current_pid() == PARENT.load(Relaxed),
            "13 in"
        );
        Ok(Unlucky(n))
    }
}

/// The test's own process, where the impls do not panic.
static PARENT: AtomicU32 = AtomicU32::new(0);

fn same(n: Unlucky) -> Unlucky {
    n
}

fn unlucky(n: i32) -> Unlucky {
    Unlucky(n)
}

/// A panic in a serde impl run by the worker, for an argument or a result, fails the task as
/// a panic in `f` does, and the worker goes on.
fn a_panic_in_decoding_or_encoding_fails_its_task_only() {
    PARENT.store(common::current_pid(), Relaxed);
    let pool = Pool::new(1).unwrap();
    let pids = pool.pids();
    for (got, said) in [
        (
            pool.map(same, &[Unlucky(1), Unlucky(13)]).map(drop),
            "13 in",
        ),
        (pool.map(unlucky, &[1, 13]).map(drop), "13 out"),
        (pool.apply(same, Unlucky(13)).map(drop), "13 in"),
        (pool.apply(unlucky, 13).map(drop), "13 out"),
    ] {
        match got {
            Err(PoolError::Panicked { message, .. }) => {
                assert!(message.contains(said), "{message}")
            }
            other => panic!("not a panic of its task: {other:?}"),
        }
    }
    assert_eq!(pool.pids(), pids, "a worker died");
    assert_eq!(
        pool.map(same, &[Unlucky(1), Unlucky(2)]).unwrap(),
        [Unlucky(1), Unlucky(2)]
    );
    drop(pool);
    assert_no_children();
}

/// Python's `r.get(timeout=0)` returns a result that is in: so does `get_timeout(ZERO)`,
/// polled in a loop, which must also send the tasks still queued.
fn get_timeout_of_nothing_takes_a_result_already_in() {
    let pool = Pool::new(1).unwrap();
    let results: Vec<_> = (0..200)
        .map(|i| pool.apply_async(square, i).unwrap())
        .collect();
    let started = Instant::now();
    let last = loop {
        match results[199].get_timeout(Duration::ZERO) {
            Ok(v) => break v,
            Err(PoolError::Timeout(_)) => {
                assert!(started.elapsed() < Duration::from_secs(30), "never came");
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(last, 199 * 199);
    drop(results);
    drop(pool);
    assert_no_children();
}

/// A result that came long ago is returned by `get_timeout` however short its time, even
/// when the time runs out during a round that reads nothing: here, the liveness check that
/// is due after the pool sat idle (found by review: 10 to 30 us missed it every time).
fn a_short_get_timeout_takes_a_result_already_in() {
    let pool = Pool::new(2).unwrap();
    for us in [2, 5, 10, 15, 20, 30, 50, 100] {
        for i in 0..2 {
            let r = pool.apply_async(square, i).unwrap();
            // Longer than the pool's liveness interval (100 ms): the result is in, and a
            // liveness check is due.
            std::thread::sleep(Duration::from_millis(150));
            match r.get_timeout(Duration::from_micros(us)) {
                Ok(v) => assert_eq!(v, i * i),
                Err(e) => panic!("get_timeout({us} us) of a result already in: {e}"),
            }
        }
    }
    drop(pool);
    assert_no_children();
}

/// Runs `check` in a child and asserts that it succeeds; a child still running after a
/// half a minute is killed and the test fails: what `check` does would have hung.
fn ends_without_hanging(check: impl FnOnce() + Send) {
    let mut child = Process::new(check);
    child.start().unwrap();
    if !testkit::ends_within(
        child.pid().unwrap().as_raw() as u32,
        Duration::from_secs(30),
    ) {
        child.kill().unwrap();
        child.join().unwrap();
        panic!("hung");
    }
    assert_eq!(child.join().unwrap(), ExitStatus::Exited(0));
    assert_no_children();
}

/// A worker stopped by SIGSTOP acts on no SIGTERM until continued: `terminate`, and
/// dropping the pool, continue it, and end it however it goes.
fn terminate_and_drop_end_a_stopped_worker() {
    ends_without_hanging(|| {
        let p = Pool::new(2).unwrap();
        let slow = p.apply_async(sleep_ms, 60_000).unwrap();
        kill(Pid::from_raw(p.pids()[0] as i32), Signal::SIGSTOP).unwrap();
        p.terminate().unwrap();
        assert!(matches!(slow.get(), Err(PoolError::Closed)));
        assert_no_children();
    });
    ends_without_hanging(|| {
        let p = Pool::new(2).unwrap();
        for &pid in &p.pids() {
            kill(Pid::from_raw(pid as i32), Signal::SIGSTOP).unwrap();
        }
        drop(p);
        assert_no_children();
    });
}

/// What every child forked from now on runs first, in the process that registers it.
extern "C" fn exit_at_once() {
    // SAFETY: `_exit` ends the child at once; it is always safe to call.
    unsafe { libc::_exit(1) }
}

/// Every replacement worker dies before it reads a task (here each child exits as soon as
/// it is forked): the task waiting fails, after a few of them, rather than wait forever
/// while the pool forks without end.
fn workers_that_die_at_start_fail_the_task() {
    replacements_that_die_fail_the_task(exit_at_once, ExitStatus::Exited(1));
}

extern "C" fn die_at_first_read() {
    // The child of a fork in a process of one thread: it may allocate, and filter.
    testkit::filter_syscall(libc::SYS_read, libc::SECCOMP_RET_KILL_PROCESS);
    testkit::filter_syscall(libc::SYS_preadv2, libc::SECCOMP_RET_KILL_PROCESS);
}

/// Every replacement worker gets ready and dies at its first read of its task pipe (here a
/// seccomp filter kills it there), as one would that a task too large for its memory kills
/// as it reads it: ready, it may have been killed while it waited, so each worker of the
/// pool may die so once without failing a call, but not without end. The task waiting
/// fails after a few of them, rather than wait forever while the pool forks them.
fn workers_that_die_ready_at_their_first_read_fail_the_task() {
    replacements_that_die_fail_the_task(die_at_first_read, ExitStatus::Signaled(Signal::SIGSYS));
}

/// Forks made by this process since it registered [`count_forks`].
static FORKS: AtomicU32 = AtomicU32::new(0);

extern "C" fn count_forks() {
    FORKS.fetch_add(1, Relaxed);
}

/// In each worker as it is forked: 512 KiB of address space more than it has, so that
/// reading a task of 900 KiB fails (its buffer cannot grow: `Error: read: out of memory`,
/// status 1), and a small one does not. (What the worker inherits of its parent's heap
/// decides where the reading fails: a block of the task's size left free there is taken
/// without more address space. A test run before it in this process, on a thread, or
/// failing, left such blocks: tests that make threads run in a child. So did the task's
/// argument, dropped once encoded, and its frame as it grew, in the pool's process, for a
/// worker forked after: see the test.)
extern "C" fn little_memory() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: libc::rlim_t = status
        .lines()
        .find_map(|line| line.strip_prefix("VmSize:"))
        .and_then(|size| size.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let limit = libc::rlimit {
        rlim_cur: (kib + 512) << 10,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct, alive for the call.
    unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) };
}

fn bytes_len(bytes: Vec<u8>) -> usize {
    bytes.len()
}

fn sleep_3ms(x: i64) -> i64 {
    std::thread::sleep(Duration::from_millis(3));
    x
}

/// A task too large for the workers' memory ends each worker that reads it, before it
/// begins (its read fails, and it exits with status 1); meanwhile other workers finish
/// other tasks. It fails after three such deaths (`WorkersDieAtStart`), and the others run: counted per worker, and started anew by
/// every result, the deaths went on until every other task was done (13 workers forked for
/// it among 100 other tasks). It is small enough (900 KiB) that tasks queued behind it are
/// in the same pipes when the workers die: they are not blamed (counted too, 16 of them
/// failed with it).
fn a_task_that_kills_every_worker_that_reads_it_fails_among_others() {
    ends_without_hanging(|| {
        // SAFETY: the handlers touch an atomic, and, in a child of this process of one
        // thread, read a file and set a limit; this process forks nothing but pool workers
        // from now on.
        let registered =
            unsafe { libc::pthread_atfork(None, Some(count_forks), Some(little_memory)) };
        assert_eq!(registered, 0);
        // Blocks over 128 KiB made with mmap, and given back when freed, in this process
        // (the pool's): a block freed in its heap (the task's argument once encoded, its
        // frame as it grew) would be free in every worker forked after, which then read
        // the task into it, and ran it.
        // SAFETY: mallopt sets one of malloc's parameters; this process has one thread.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10) };
        let p = Pool::new(2).unwrap();
        let forked = FORKS.load(Relaxed);
        let poison = p.apply_async(bytes_len, vec![7u8; 900 << 10]).unwrap();
        let others: Vec<_> = (0..100)
            .map(|x| p.apply_async(sleep_3ms, x).unwrap())
            .collect();
        for (x, other) in (0..100).zip(others) {
            assert_eq!(other.get().unwrap(), x);
        }
        let err = poison.get().unwrap_err();
        assert!(
            matches!(
                err,
                PoolError::WorkersDieAtStart {
                    status: ExitStatus::Exited(1),
                    ..
                }
            ),
            "{err}"
        );
        let replacements = FORKS.load(Relaxed) - forked;
        assert!(replacements <= 4, "{replacements} workers forked");
        drop(poison);
        drop(p);
        assert_no_children();
    });
}

/// A pool of one whose worker is killed after a first task, and every replacement made to
/// die by `in_child` (a fork handler of the child, run in each worker as it is forked): the
/// next call fails with `WorkersDieAtStart`, the last death `status`.
fn replacements_that_die_fail_the_task(in_child: extern "C" fn(), status: ExitStatus) {
    ends_without_hanging(|| {
        let p = Pool::new(1).unwrap();
        assert_eq!(p.apply(square, 2).unwrap(), 4);
        // SAFETY: registers a handler that `in_child` makes safe in a child: this process, a
        // child of the test, has one thread and forks nothing but pool workers from now on.
        let registered = unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
        assert_eq!(registered, 0);
        let died = p.apply(exit_3, 1);
        assert!(
            matches!(died, Err(PoolError::WorkerDied { .. })),
            "{died:?}"
        );
        let err = p.apply(square, 3).unwrap_err();
        assert!(
            matches!(err, PoolError::WorkersDieAtStart { status: s, .. } if s == status),
            "{err}"
        );
        drop(p);
        assert_no_children();
    });
}

/// Lowers this process's soft RLIMIT_NOFILE to `n` (a test that calls it runs in a child of
/// its own: `ends_without_hanging`).
fn lower_descriptor_limit_to(n: libc::rlim_t) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes `limit`, setrlimit reads it; both are alive.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = n;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
}

/// A pool's descriptors numbered past RLIMIT_NOFILE, lowered after they were opened: the
/// workers of another pool forked from then on let go of them all the same, and run.
fn a_worker_starts_past_a_lowered_descriptor_limit() {
    ends_without_hanging(|| {
        let hold: Vec<_> = (0..200)
            .map(|_| std::fs::File::open("/dev/null").unwrap())
            .collect();
        let high = Pool::new(1).unwrap();
        drop(hold);
        let p = Pool::new(1).unwrap();
        lower_descriptor_limit_to(64);
        silence_stderr_for_a_while();
        let died = p.apply(exit_3, 1);
        let replaced = p.apply(square, 2);
        restore_stderr();
        assert!(
            matches!(died, Err(PoolError::WorkerDied { .. })),
            "{died:?}"
        );
        assert_eq!(replaced.unwrap(), 4);
        assert_eq!(high.apply(square, 3).unwrap(), 9);
        drop(high);
        drop(p);
        assert_no_children();
    });
}

/// A number of workers no system could start fails with the error of the first that could
/// not start, with no panic or abort, and the workers started before it are ended. (The
/// descriptor limit is lowered so that it comes after a few dozen workers.)
fn a_pool_too_large_to_start_fails() {
    ends_without_hanging(|| {
        lower_descriptor_limit_to(64);
        for processes in [usize::MAX / 2, 1 << 40] {
            let err = Pool::new(processes).err().unwrap();
            assert!(matches!(err, PoolError::Os(_)), "{err}");
            assert_no_children();
        }
    });
}

/// Prints, without a newline (so that it stays buffered until the worker flushes it).
fn print_and_square(x: i64) -> i64 {
    print!("printed");
    x * x
}

/// A worker whose stdout takes nothing (here `/dev/full`): what `f` printed is lost, its
/// result is not, and the worker goes on.
fn a_result_comes_though_stdout_takes_nothing() {
    ends_without_hanging(|| {
        use std::os::fd::AsRawFd;
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        // SAFETY: dup2 on descriptors this process owns; this child prints nothing itself.
        assert_eq!(unsafe { libc::dup2(full.as_raw_fd(), 1) }, 1);
        silence_stderr_for_a_while();
        let p = Pool::new(1).unwrap();
        let worker = p.pids()[0];
        let first = p.apply(print_and_square, 3);
        let second = p.apply(print_and_square, 4);
        restore_stderr();
        assert_eq!(first.unwrap(), 9);
        assert_eq!(second.unwrap(), 16);
        assert_eq!(p.pids(), [worker]);
        drop(p);
        assert_no_children();
    });
}

thread_local! {
    /// The pool that `Reenter`'s serde impls call, while a test sets it.
    static REENTERED_POOL: std::cell::Cell<*const Pool> = const { std::cell::Cell::new(std::ptr::null()) };
    /// What those calls returned.
    static REENTERED: std::cell::RefCell<Vec<Result<i64, PoolError>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// A value whose serde impls call the pool they go through.
struct Reenter(u8);

fn call_the_pool() {
    let pool = REENTERED_POOL.get();
    if !pool.is_null() {
        // SAFETY: the test sets the pointer to a pool that outlives every call it makes, and
        // clears it before the pool is dropped.
        let pool = unsafe { &*pool };
        let inner = pool.apply(square, 2);
        REENTERED.with_borrow_mut(|calls| calls.push(inner));
    }
}

impl serde::Serialize for Reenter {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        call_the_pool();
        s.serialize_u8(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Reenter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u8::deserialize(d)?;
        call_the_pool();
        Ok(Reenter(n))
    }
}

fn add_one(r: Reenter) -> Reenter {
    Reenter(r.0 + 1)
}

/// An argument's or a result's serde impl that calls the pool again, while the call that
/// encodes or decodes it uses the pool: that inner call fails, and the outer goes on.
fn a_serde_impl_that_calls_the_pool_gets_an_error() {
    ends_without_hanging(|| {
        let p = Pool::new(1).unwrap();
        REENTERED_POOL.set(&p);
        let applied = p.apply(add_one, Reenter(1)).unwrap();
        let mapped = p.map(add_one, &[Reenter(5)]).unwrap();
        let later = p.apply_async(add_one, Reenter(9)).unwrap();
        let got = later.get().unwrap();
        REENTERED_POOL.set(std::ptr::null());
        assert_eq!([applied.0, mapped[0].0, got.0], [2, 6, 10]);
        let inner = REENTERED.take();
        // Each value encoded in the parent, and decoded there.
        assert_eq!(inner.len(), 6);
        for call in &inner {
            assert!(matches!(call, Err(PoolError::Busy)), "{call:?}");
        }
        drop(later);
        assert_eq!(p.apply(square, 3).unwrap(), 9);
        drop(p);
        assert_no_children();
    });
}

/// The bounds `Pool`'s documentation states: an argument encodes to at most 16 MiB less the
/// task's 24-byte header, a result to at most 16 MiB less its 9-byte header (a `String`
/// encodes as its 8-byte length and its bytes); one byte more fails, with `Frame` for an
/// argument and `Panicked` for a result.
fn the_frame_limit_counts_the_headers() {
    let limit = common::frame::MAX_FRAME;
    let p = Pool::new(1).unwrap();
    let most = limit - 24 - 8;
    assert_eq!(p.apply(|s: String| s.len(), big(most)).unwrap(), most);
    let err = p.apply(|s: String| s.len(), big(most + 1)).unwrap_err();
    assert!(matches!(err, PoolError::Frame(_)), "{err}");
    let most = limit - 9 - 8;
    assert_eq!(p.apply(big, most).unwrap().len(), most);
    let err = p.apply(big, most + 1).unwrap_err();
    assert!(
        matches!(&err, PoolError::Panicked { message, .. } if message.contains("over the limit")),
        "{err}"
    );
    assert_eq!(p.apply(square, 3).unwrap(), 9);
}

/// An item whose `Serialize` panics in the test's process when it is 255.
#[derive(serde::Deserialize)]
struct Bomb(u8);

impl serde::Serialize for Bomb {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        assert!(self.0 != 255, "bomb");
        s.serialize_u8(self.0)
    }
}

/// Writes the item to the pipe `fd`: which items ran, and how often.
fn record_item((fd, item): (i32, Bomb)) -> u8 {
    // SAFETY: `fd` is the write end of the test's pipe, inherited by the worker.
    unsafe { libc::write(fd, [item.0].as_ptr().cast(), 1) };
    item.0
}

/// A `map` whose last item's `Serialize` panics, in the parent, after its first chunk was
/// sent and others were queued: the chunks not yet sent never run (not even on the pool's
/// next call), and only the sent one does.
fn a_panic_in_the_parents_serde_abandons_the_maps_other_chunks() {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let (mut r, w) = os_pipe::pipe().unwrap();
    let pool = Pool::new(1).unwrap();
    // One worker: chunks of 10 items; the first goes at once, the next two queue, and the
    // last panics as it is encoded.
    let items: Vec<(i32, Bomb)> = (0..39)
        .chain([255])
        .map(|i| (w.as_raw_fd(), Bomb(i)))
        .collect();
    let mapped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.map(record_item, &items)
    }));
    assert!(mapped.is_err(), "the bomb did not go off");
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
    pool.close().unwrap();
    pool.join().unwrap();
    drop(pool);
    drop(w);
    let mut ran = Vec::new();
    r.read_to_end(&mut ran).unwrap();
    assert_eq!(ran, (0..10).collect::<Vec<u8>>(), "items that ran");
    assert_no_children();
}

/// After 300 ms (so that the tasks given after it are this worker's too), writes `bytes`
/// into the worker's results pipe, opened again through `/proc/self/fd`, with safe code.
fn scribble((bytes, before): (Vec<u8>, Vec<String>)) -> u8 {
    std::thread::sleep(Duration::from_millis(300));
    write_into_results(&bytes, &before);
    7
}

/// The pipes this process holds now (`pipe:[inode]`): those the test had before it made a
/// pool, which are not the pool's.
fn pipes_before() -> Vec<String> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .map(|link| link.to_string_lossy().into_owned())
        .filter(|link| link.starts_with("pipe:"))
        .collect()
}

/// Writes `bytes` into the worker's results pipe, opened again through `/proc/self/fd`: the
/// one pipe it holds for writing that the test did not have `before` it made the pool (not
/// one the test inherited, a jobserver's, say, nor the test's own).
fn write_into_results(bytes: &[u8], before: &[String]) {
    use std::io::Write;
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let path = entry.unwrap().path();
        let fd: i32 = path.file_name().unwrap().to_str().unwrap().parse().unwrap();
        let link = std::fs::read_link(&path).map(|l| l.to_string_lossy().into_owned());
        let is_pools_pipe = link.is_ok_and(|l| l.starts_with("pipe:") && !before.contains(&l));
        if fd <= 2 || !is_pools_pipe {
            continue;
        }
        // Open for writing only where the worker writes: the read end's `flags` end in 0.
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap_or_default();
        let writes = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .is_some_and(|f| u32::from_str_radix(f.trim(), 8).is_ok_and(|f| f & 3 == 1));
        if writes {
            if let Ok(mut pipe) = std::fs::OpenOptions::new().write(true).open(&path) {
                pipe.write_all(bytes).unwrap();
            }
        }
    }
}

/// Writes `x` to the pipe `fd`: which tasks ran, and how often.
fn record((fd, x): (i32, u8)) -> u8 {
    // SAFETY: `fd` is the write end of the test's pipe, inherited by the worker.
    unsafe { libc::write(fd, [x].as_ptr().cast(), 1) };
    x
}

/// A result frame of task `task`, of `kind`, with `value`.
fn result_frame(task: u64, kind: u8, value: &[u8]) -> Vec<u8> {
    let mut frame = ((8 + 1 + value.len()) as u32).to_le_bytes().to_vec();
    frame.extend(task.to_le_bytes());
    frame.push(kind);
    frame.extend(value);
    frame
}

/// A worker's results pipe that carries bytes outside the protocol cannot be read right
/// again: the worker is replaced, and the pool goes on. The tasks it ran or began before
/// its garbage was read fail with a frame error (their results are behind it), and none of
/// the tasks given to it runs twice, or is lost: each call ends. The garbage: a length over
/// the frame limit; a frame for a task it was not given; one for its own task with a kind
/// that is not one, or a panic message that does not decode; a length that swallows the
/// results after it.
fn bytes_outside_the_protocol_end_their_worker() {
    ends_without_hanging(|| {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        for garbage in [
            vec![0xff; 4],
            result_frame(999, 0, &[]),
            result_frame(0, 9, &[]),
            result_frame(0, 1, &[]),
            40u32.to_le_bytes().to_vec(),
        ] {
            let (mut r, w) = os_pipe::pipe().unwrap();
            let before = pipes_before();
            let pool = Pool::new(1).unwrap();
            let pids = pool.pids();
            // Task 0 of a fresh pool, so that the frames above name it.
            let first = pool.apply_async(scribble, (garbage, before)).unwrap();
            let rest: Vec<_> = (1..=8u8)
                .map(|x| pool.apply_async(record, (w.as_raw_fd(), x)).unwrap())
                .collect();
            match first.get_timeout(Duration::from_secs(10)) {
                Err(PoolError::Frame(e)) => assert!(e.to_string().contains("lost"), "{e}"),
                other => panic!("not a frame error: {other:?}"),
            }
            let mut returned = Vec::new();
            for (x, result) in (1..=8u8).zip(&rest) {
                match result.get_timeout(Duration::from_secs(10)) {
                    Ok(got) => {
                        assert_eq!(got, x);
                        returned.push(x);
                    }
                    Err(PoolError::Frame(e)) => assert!(e.to_string().contains("lost"), "{e}"),
                    Err(e) => panic!("task {x}: {e}"),
                }
            }
            assert_ne!(pool.pids(), pids, "the worker was not replaced");
            assert_eq!(pool.apply(square, 3).unwrap(), 9);
            drop((first, rest));
            pool.close().unwrap();
            pool.join().unwrap();
            drop(pool);
            drop(w);
            let mut ran = Vec::new();
            r.read_to_end(&mut ran).unwrap();
            for x in 1..=8u8 {
                let times = ran.iter().filter(|&&y| y == x).count();
                let expected = if returned.contains(&x) { 1..=1 } else { 0..=1 };
                assert!(
                    expected.contains(&times),
                    "task {x} ran {times} times: {ran:?}"
                );
            }
        }
    });
}

/// Writes 4 bytes that are not a frame into the worker's results pipe, then waits a second,
/// running, for the pool to end the worker.
fn scribble_and_wait(before: Vec<String>) -> u8 {
    write_into_results(&[0xff; 4], &before);
    std::thread::sleep(Duration::from_secs(1));
    7
}

/// Three workers in a row sent garbage, and the pool ended each: the tasks in their pipes,
/// which they never began, are not blamed for those deaths, and run (counted as workers
/// that died running no task, two of them failed with `WorkersDieAtStart`).
fn tasks_behind_workers_the_pool_ends_are_not_blamed() {
    ends_without_hanging(|| {
        let before = pipes_before();
        let p = Pool::new(1).unwrap();
        let scribblers: Vec<_> = (0..3)
            .map(|_| p.apply_async(scribble_and_wait, before.clone()).unwrap())
            .collect();
        let squares: Vec<_> = (0..10).map(|x| p.apply_async(square, x).unwrap()).collect();
        for s in &scribblers {
            match s.get_timeout(Duration::from_secs(20)) {
                Err(PoolError::Frame(e)) => assert!(e.to_string().contains("lost"), "{e}"),
                other => panic!("not a lost result: {other:?}"),
            }
        }
        for (x, r) in (0..10).zip(&squares) {
            assert_eq!(r.get_timeout(Duration::from_secs(20)).unwrap(), x * x);
        }
        drop((scribblers, squares));
        drop(p);
        assert_no_children();
    });
}

/// Writes 4 bytes that are not a frame into the worker's results pipe, then ends the worker.
fn scribble_and_exit(before: Vec<String>) -> u8 {
    write_into_results(&[0xff; 4], &before);
    std::process::exit(3)
}

/// Garbage and the worker's end, both there before the caller's next call: that call's
/// check that the workers live is what finds them (no `poll` in a call saw the pipe's end).
/// The task fails as lost, the worker is replaced once, and the pool goes on. (The check
/// took the replacement for the dead worker, and waited for it to end: for ever.)
fn garbage_and_a_death_found_between_calls() {
    ends_without_hanging(|| {
        let before = pipes_before();
        let pool = Pool::new(1).unwrap();
        let pids = pool.pids();
        let r = pool.apply_async(scribble_and_exit, before).unwrap();
        // Outside the pool for longer than its 100 ms between checks that workers live.
        std::thread::sleep(Duration::from_millis(500));
        match r.get_timeout(Duration::from_secs(10)) {
            Err(PoolError::Frame(e)) => assert!(e.to_string().contains("lost"), "{e}"),
            other => panic!("not a frame error: {other:?}"),
        }
        let replaced = pool.pids();
        assert_ne!(replaced, pids);
        assert_eq!(pool.apply(square, 3).unwrap(), 9);
        assert_eq!(pool.pids(), replaced, "replaced more than once");
        drop(r);
        drop(pool);
        assert_no_children();
    });
}

/// One byte per task, shared with the workers: whether it has run before. A page of
/// `MAP_SHARED` memory, made before the pool forks its workers.
struct Marks(*mut std::sync::atomic::AtomicU8);

impl Marks {
    fn new() -> Marks {
        // SAFETY: a fresh anonymous mapping of one page; checked below.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(page, libc::MAP_FAILED);
        Marks(page.cast())
    }

    /// The address, for a task: a forked worker has the same mapping there.
    fn addr(&self) -> usize {
        self.0 as usize
    }

    /// True the first time task `i` asks, in whichever process.
    fn first(addr: usize, i: usize) -> bool {
        // SAFETY: `addr` is a `Marks` page, mapped in every worker (forked after it was made)
        // until the test unmaps it, after the pool is dropped; `i` < 4096; its bytes are
        // only ever used as atomics.
        let mark = unsafe { &*(addr as *const std::sync::atomic::AtomicU8).add(i) };
        mark.swap(1, Relaxed) == 0
    }
}

impl Drop for Marks {
    fn drop(&mut self) {
        // SAFETY: the page mapped in `new`, which no reference outlives.
        unsafe { libc::munmap(self.0.cast(), 4096) };
    }
}

/// Task A: records itself, and the first time, writes a length whose frame never comes
/// whole into its results pipe (its own result goes into that frame), then returns.
fn hide_own_result((fd, marks, before): (i32, usize, Vec<String>)) -> u8 {
    record((fd, b'A'));
    if Marks::first(marks, 0) {
        write_into_results(&40u32.to_le_bytes(), &before);
    }
    b'A'
}

/// Task B: records itself, and the first time, exits (`how` 0) or waits to be killed.
fn die_once((fd, marks, how): (i32, usize, u8)) -> u8 {
    record((fd, b'B'));
    if Marks::first(marks, 1) {
        if how == 0 {
            std::process::exit(3);
        }
        std::thread::sleep(Duration::from_secs(60));
    }
    b'B'
}

/// One worker runs A, which hides its own result behind a length whose frame never comes,
/// then B, in which it dies (it exits, or is killed). A ran, and its result is lost: it
/// fails as lost, B as the task its worker died in, and C runs once. (The death was taken
/// for one in A, which had not begun as far as the shared word said: A and B ran twice, and
/// all three returned.)
fn a_result_hidden_by_garbage_is_lost_when_its_worker_dies() {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    for how in [0u8, 1] {
        ends_without_hanging(move || {
            let marks = Marks::new();
            let (mut r, w) = os_pipe::pipe().unwrap();
            let fd = w.as_raw_fd();
            let before = pipes_before();
            let pool = Pool::new(1).unwrap();
            let a = pool
                .apply_async(hide_own_result, (fd, marks.addr(), before))
                .unwrap();
            let b = pool.apply_async(die_once, (fd, marks.addr(), how)).unwrap();
            let c = pool.apply_async(record, (fd, b'C')).unwrap();
            if how == 1 {
                let mut ran = [0; 2];
                r.read_exact(&mut ran).unwrap();
                assert_eq!(&ran, b"AB");
                kill(Pid::from_raw(pool.pids()[0] as i32), Signal::SIGKILL).unwrap();
            }
            match a.get_timeout(Duration::from_secs(10)) {
                Err(PoolError::Frame(e)) => assert!(e.to_string().contains("lost"), "A: {e}"),
                other => panic!("A: {other:?}"),
            }
            match b.get_timeout(Duration::from_secs(10)) {
                Err(PoolError::WorkerDied { .. }) => {}
                other => panic!("B: {other:?}"),
            }
            assert_eq!(c.get_timeout(Duration::from_secs(10)).unwrap(), b'C');
            drop((a, b, c));
            drop(pool);
            drop(w);
            let mut ran = Vec::new();
            r.read_to_end(&mut ran).unwrap();
            let expected: &[u8] = if how == 1 { b"C" } else { b"ABC" };
            assert_eq!(
                ran,
                expected,
                "tasks run: {}",
                String::from_utf8_lossy(&ran)
            );
            drop(marks);
        });
    }
}

thread_local! {
    /// Handles that an argument's `Serialize` drops, inside the call that encodes it.
    static TO_DROP: std::cell::RefCell<Vec<AsyncResult<'static, Vec<u8>>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// An argument that drops the handles in [`TO_DROP`] as it is encoded.
struct Dropper;

impl serde::Serialize for Dropper {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        TO_DROP.with_borrow_mut(Vec::clear);
        s.serialize_unit()
    }
}

impl<'de> serde::Deserialize<'de> for Dropper {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d).map(|()| Dropper)
    }
}

fn takes_dropper(_: Dropper) -> u8 {
    0
}

/// This process's resident memory, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A result's handle dropped while the pool is in use (by an argument's `Serialize`, inside
/// the call that encodes it) frees the result as any dropped handle does, when the pool is
/// next used: 25 results of 4 MiB grow the parent by far less than 100 MiB. (Its drop could
/// not reach the pool, and the results stayed until the pool was dropped: 101 MiB.)
fn a_handle_dropped_inside_a_pool_call_frees_its_result() {
    ends_without_hanging(|| {
        let pool: &'static Pool = Box::leak(Box::new(Pool::new(1).unwrap()));
        assert_eq!(pool.apply(takes_dropper, Dropper).unwrap(), 0);
        let before = rss_kib();
        for _ in 0..25 {
            let big = pool.apply_async(big_bytes, 4 << 20).unwrap();
            TO_DROP.with_borrow_mut(|handles| handles.push(big));
            // One worker: once this result is in, the big one has been read.
            assert_eq!(pool.apply(takes_dropper, Dropper).unwrap(), 0);
        }
        let grown_mib = rss_kib().saturating_sub(before) / 1024;
        assert!(grown_mib < 40, "the parent grew by {grown_mib} MiB");
        // SAFETY: the pool leaked above, of which no handle is left (`TO_DROP` is empty).
        drop(unsafe { Box::from_raw(std::ptr::from_ref(pool).cast_mut()) });
        assert_no_children();
    });
}

fn big_bytes(n: usize) -> Vec<u8> {
    vec![1; n]
}
