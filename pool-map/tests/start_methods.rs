//! The pool started by each start method, in a program with threads: libtest runs each
//! test in a thread of its own, with other tests running beside it, which is where fork is
//! refused and spawn and forkserver must work (`common::start`). Each test also runs a
//! thread of its own beside what it checks.

// The workspace's test harness, included by path rather than named as a dependency.
#[path = "../../testkit/src/lib.rs"]
#[allow(dead_code, unused_imports)]
mod testkit;

use std::thread;
use std::time::{Duration, Instant};

use common::start::{Context, Method};
use common::{Error, ExitStatus};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use pool_map::{Pool, PoolError};
use testkit::{beside_a_thread, has_ended};

const THREADED: [Method; 2] = [Method::Spawn, Method::ForkServer];

fn square(x: i64) -> i64 {
    x * x
}

/// Creates `path`, to say it has started, then sleeps for a minute.
fn say_then_sleep(path: std::path::PathBuf) {
    std::fs::write(&path, "").expect("create the mark");
    sleep_for(60);
}

fn sleep_for(seconds: u64) {
    thread::sleep(Duration::from_secs(seconds));
}

#[test]
fn a_pool_maps_by_spawn_and_by_forkserver_while_threads_run() {
    for method in THREADED {
        let (workers, server) = beside_a_thread(|| {
            let ctx = Context::new(method).expect("context");
            let pool = Pool::with_context(2, &ctx).expect("pool");
            assert_eq!(
                pool.map(square, &[1, 2, 3]).expect("map"),
                [1, 4, 9],
                "{method}"
            );
            let items: Vec<i64> = (0..1000).collect();
            let squares: Vec<i64> = items.iter().map(|&x| x * x).collect();
            assert_eq!(pool.map(square, &items).expect("map"), squares, "{method}");
            assert_eq!(pool.apply(square, 12).expect("apply"), 144, "{method}");
            (pool.pids(), ctx.server_pid())
        });
        // The pool and the context are gone: so are the workers, and the server.
        for pid in workers {
            assert!(has_ended(pid), "{method}: worker {pid} outlived its pool");
        }
        if let Some(server) = server {
            assert!(
                has_ended(server),
                "the fork server {server} outlived its context"
            );
        }
    }
}

#[test]
fn fork_is_refused_while_threads_run() {
    beside_a_thread(|| match Pool::new(2) {
        Err(PoolError::Os(Error::ThreadsRunning { .. })) => {}
        other => panic!("a forked pool beside a thread: {:?}", other.map(|_| ())),
    });
}

/// A task written to a worker as it is killed, while it waits for one, runs on its
/// replacement: whichever way the worker was started, it gets the word of memory where it
/// says which task it began, and the pool reads it there.
#[test]
fn a_task_written_as_an_idle_worker_is_killed_runs_elsewhere() {
    for method in THREADED {
        beside_a_thread(|| {
            let ctx = Context::new(method).expect("context");
            let pool = Pool::with_context(1, &ctx).expect("pool");
            for x in 0..10 {
                assert_eq!(pool.apply(square, 2).expect("apply"), 4, "{method}");
                let worker = pool.pids()[0];
                testkit::until_asleep(worker);
                kill(Pid::from_raw(worker as i32), Signal::SIGKILL).expect("kill");
                match pool.apply(square, x) {
                    Ok(got) => assert_eq!(got, x * x, "{method}"),
                    Err(e) => panic!("{method}, round {x}: a task never begun: {e}"),
                }
            }
        });
    }
}

#[test]
fn a_killed_worker_is_reported_within_a_second_and_replaced() {
    for method in THREADED {
        beside_a_thread(|| {
            let ctx = Context::new(method).expect("context");
            let pool = Pool::with_context(1, &ctx).expect("pool");
            let worker = pool.pids()[0];
            let mark =
                std::env::temp_dir().join(format!("started-{}-{method}", std::process::id()));
            let result = pool
                .apply_async(say_then_sleep, mark.clone())
                .expect("apply_async");
            // Killed once it runs the task: a task not yet started would go to a new worker.
            let deadline = Instant::now() + Duration::from_secs(10);
            while !mark.exists() {
                assert!(
                    Instant::now() < deadline,
                    "{method}: the task never started"
                );
                thread::sleep(Duration::from_millis(1));
            }
            std::fs::remove_file(&mark).expect("remove the mark");
            kill(Pid::from_raw(worker as i32), Signal::SIGKILL).expect("kill");
            match result.get_timeout(Duration::from_secs(1)) {
                Err(PoolError::WorkerDied { pid, status, .. }) => {
                    assert_eq!(pid, worker, "{method}");
                    assert_eq!(status, ExitStatus::Signaled(Signal::SIGKILL), "{method}");
                }
                other => panic!("{method}: a killed worker's task: {:?}", other.map(|_| ())),
            }
            assert_eq!(
                pool.apply(square, 7).expect("apply"),
                49,
                "{method}: replaced"
            );
            assert_ne!(pool.pids()[0], worker, "{method}: a new worker");
        });
    }
}
