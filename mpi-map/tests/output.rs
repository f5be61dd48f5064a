//! The example's output under `mpiexec -n 4`: against its golden file, and beside its
//! mpi4py original; the costly map's results, the same over any number of ranks and on
//! section 1's `Pool`; and, built without MPI, the advice it prints instead.

// The workspace's test harness, included by path rather than named as a dependency: a copy
// of this section without `testkit/` still builds and runs (its tests need `testkit/` too).
#[path = "../../testkit/src/lib.rs"]
#[allow(dead_code, unused_imports)]
mod testkit;

#[allow(dead_code)]
mod mpiexec;

use std::path::Path;
use std::process::Command;

use mpiexec::{mpiexec, run_job, skip};
use testkit::{assert_golden, assert_help, assert_usage_error, python3, repeat, run};

const MPI_MAP: &str = env!("CARGO_BIN_EXE_mpi-map");
const MPI_SCALE: &str = env!("CARGO_BIN_EXE_mpi-scale");

/// `mpi-map` under `mpiexec -n 4`: its stdout, after checking that it succeeded quietly.
fn mpi_map(mut job: Command) -> String {
    job.arg(MPI_MAP);
    let out = run_job(job).success();
    assert_eq!(out.stderr, "", "stderr of a successful run");
    out.stdout
}

#[test]
fn prints_the_golden_output() {
    let Some(_) = mpiexec(4, "the golden output") else {
        return;
    };
    repeat(|| {
        let job = mpiexec(4, "the golden output").expect("mpiexec");
        assert_golden(&mpi_map(job), snapbox::file!["golden/mpi_map.stdout"]);
    });
}

#[test]
fn prints_the_same_on_any_number_of_ranks() {
    for ranks in [1, 2, 3, 5] {
        let Some(job) = mpiexec(ranks, "runs on 1 to 5 ranks") else {
            return;
        };
        assert_eq!(mpi_map(job), "[1, 4, 9]\n", "under mpiexec -n {ranks}");
    }
}

#[test]
fn prints_what_the_mpi4py_original_prints() {
    let what = "parity with the mpi4py original";
    let Some(job) = mpiexec(4, what) else {
        return;
    };
    let Some(mut check) = python3(what) else {
        return;
    };
    // Loading mpi4py's MPI module loads the MPI library: a wheel that finds none fails here.
    check.args(["-c", "import mpi4py.MPI"]);
    let found = run(check);
    if !found.status.success() {
        skip(
            &format!("mpi4py is not usable: {}", found.stderr.trim()),
            what,
        );
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/mpi_map.py");
    let mut python = mpiexec(4, what).expect("mpiexec");
    python.args(["python3", "-m", "mpi4py.futures"]).arg(script);
    let python = run_job(python).success();
    assert_eq!(python.stderr, "");
    assert_eq!(mpi_map(job), python.stdout);
}

/// `mpi-scale` with `args` under `job` (`mpiexec -n ranks`), or alone (`None`, for
/// `--pool`): its one line, without who ran it and without the time.
fn scale(job: Option<Command>, args: &[&str]) -> String {
    let mut cmd = match job {
        Some(mut job) => {
            job.arg(MPI_SCALE);
            job
        }
        None => Command::new(MPI_SCALE),
    };
    cmd.args(args);
    let out = run_job(cmd).success();
    let line = out.stdout.trim_end();
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    let (without_time, _) = line.rsplit_once(", ").expect("a time at the end");
    without_time
        .split_once(": ")
        .expect("who: what")
        .1
        .to_owned()
}

#[test]
fn the_costly_map_computes_the_same_over_mpi_and_on_the_pool() {
    // Small: a test checks the results, the README's figures show the time.
    let items = "20011";
    let on_pool = scale(None, &["--pool", "2", items]);
    assert!(on_pool.starts_with("20011 items, checksum "), "{on_pool}");
    for ranks in [1, 2, 3] {
        let Some(job) = mpiexec(ranks, "the costly map over MPI") else {
            return;
        };
        assert_eq!(scale(Some(job), &[items]), on_pool, "mpiexec -n {ranks}");
    }
    assert_ne!(scale(None, &["--pool", "1", "20010"]), on_pool);
}

#[test]
fn refuses_arguments_with_usage() {
    let mut cmd = Command::new(MPI_MAP);
    cmd.arg("5");
    assert_usage_error(
        cmd,
        &["unknown argument '5'", "usage: cargo run -p mpi-map"],
    );
    for (args, says) in [
        (&["--pool"][..], "--pool needs a number"),
        (&["--pool", "0"], "--pool is a number from 1 to 64, not '0'"),
        (&["10", "11"], "unknown argument '11'"),
        (&["-n"], "unknown argument '-n'"),
        (&["2147483648"], "ITEMS is a number from 1 to 2147483647"),
    ] {
        let mut cmd = Command::new(MPI_SCALE);
        cmd.args(args);
        assert_usage_error(cmd, &[says, "usage: cargo run -p mpi-map"]);
    }
    // The most items it takes, 2^31 - 1, need about 64 GiB: refused where the machine has
    // less, before anything is allocated.
    let total_gib = mpi_map::scale::memory_total().expect("MemTotal") >> 30;
    if total_gib < 64 {
        for args in [&["2147483647"][..], &["--pool", "2", "2147483647"]] {
            let mut cmd = Command::new(MPI_SCALE);
            cmd.args(args);
            assert_usage_error(
                cmd,
                &[
                    "2147483647 items need about 64 GiB of memory (32 bytes an item), more than \
                     this machine's",
                    "usage: cargo run -p mpi-map",
                ],
            );
        }
    } else {
        println!("SKIPPED: {total_gib} GiB of memory hold the most items mpi-scale takes");
    }
}

/// Under `mpiexec -n 3`, every rank reads the command line; a usage error and the help are
/// printed once, by the first rank, and the job exits as one rank would.
#[test]
fn under_mpiexec_the_command_line_is_answered_once() {
    for (program, arg, says) in [
        (MPI_MAP, "x", "error: unknown argument 'x'"),
        (MPI_SCALE, "bogus", "error: ITEMS is a number from 1 to"),
    ] {
        let Some(mut job) = mpiexec(3, "usage errors under mpiexec") else {
            return;
        };
        job.args([program, arg]);
        let out = run_job(job);
        assert_eq!(out.status.code(), Some(2), "stderr: {}", out.stderr);
        assert_eq!(out.stdout, "");
        assert_eq!(out.stderr.matches(says).count(), 1, "{}", out.stderr);
        assert_eq!(out.stderr.matches("usage: ").count(), 1, "{}", out.stderr);
        let mut job = mpiexec(3, "help under mpiexec").expect("mpiexec");
        job.args([program, "--help"]);
        let out = run_job(job).success();
        assert_eq!(out.stdout.matches("usage: ").count(), 1, "{}", out.stdout);
    }
}

#[test]
fn help_says_what_it_shows() {
    assert_help(Command::new(MPI_MAP), "Beyond the article: MPIPoolExecutor");
    assert_help(Command::new(MPI_SCALE), "Beyond the article: a costly map");
}

#[test]
fn a_launcher_of_another_mpi_is_named() {
    // A program of one MPI started by the other's launcher is one rank of a job of one, in
    // an environment that says the job has four: Open MPI's variable, under MPICH, or
    // MPICH's under Open MPI.
    if mpiexec(1, "the launcher check").is_none() {
        return;
    }
    for variable in ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"] {
        let mut cmd = Command::new(MPI_MAP);
        cmd.env(variable, "4");
        let out = run(cmd);
        assert_eq!(out.status.code(), Some(1), "stderr: {}", out.stderr);
        assert_eq!(out.stdout, "");
        assert!(
            out.stderr.starts_with(&format!(
                "Error: started by the launcher of another MPI: {variable}=4, but MPI sees \
                 one process; start it with the mpiexec of "
            )),
            "stderr: {}",
            out.stderr
        );
    }
}

#[cfg(not(feature = "mpi"))]
#[test]
fn without_mpi_it_says_how_to_install_it() {
    for cmd in [Command::new(MPI_MAP), Command::new(MPI_SCALE)] {
        let out = run(cmd);
        assert_eq!(out.status.code(), Some(2), "stderr: {}", out.stderr);
        assert_eq!(out.stdout, "");
        assert_eq!(out.stderr, format!("{}\n", mpi_map::INSTALL));
        assert!(
            out.stderr
                .contains("apt-get install libmpich-dev mpich libclang-dev")
        );
    }
}
