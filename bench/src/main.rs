//! What each way of sharing costs: the workspace's Rust types beside Python's
//! `multiprocessing` beside a bare twin of each workload (the same work in direct libc
//! calls), in three conditions (two idle cores, one CPU, two busy loops beside), measured in
//! one run on one machine.
//!
//! Run it with `cargo run --release -p bench` (a few minutes). Rounds alternate Rust and
//! Python; each figure is the median of the rounds. It prints a Markdown table on stdout,
//! progress on stderr, and writes `bench.md` and `bench.svg` under `target/bench/`. The
//! README's figures are `bench/results/`, which only `-- --out bench/results` rewrites.
//! `-- --quick` runs small counts once and only checks that every workload runs and every
//! check holds (exact totals, every message received); it writes nothing.
//!
//! Built with `--features peers`, it measures beside them the crates a reader might choose
//! instead (`peers.rs`): procspawn, ipc-channel and raw_sync, each doing a workload's work.

mod chart;
mod conditions;
#[cfg(feature = "peers")]
mod peers;
mod python;
mod report;
mod twins;
mod workloads;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use common::say;
use conditions::{CONDITIONS, Condition};
use python::Python;
use report::Measured;
use twins::Waits;
use workloads::Timed;

const USAGE: &str = "usage: cargo run --release -p bench \
     [-- [--quick] [--rounds N] [--no-python] [--only NAME,...] [--out DIR]]";

/// What `--help` prints before the usage.
const ABOUT: &str =
    "What each mechanism of the workspace costs, beside Python's multiprocessing and
a bare twin of each workload (the same work in direct libc calls), on two idle cores, on one
CPU, and beside two busy loops, in one run: Markdown tables on stdout, progress on stderr.
  --quick      small counts, one round: checks that every workload runs; writes nothing
  --rounds N   rounds of each measurement (5); each figure is their median
  --no-python  leave the Python column empty
  --only NAMES measure only these workloads, by name, comma-separated: process, map, apply,
               apply_async, queue, lock, value, manager, spawn, forkserver
  --out DIR    where bench.md and bench.svg go (target/bench; the README's: bench/results)
Built with `--features peers`, it runs procspawn, ipc-channel and raw_sync beside the rows
they can do, in every condition.";

/// A bare twin: the workload's work done with direct libc calls (`twins.rs`).
pub struct Twin {
    /// What sets it apart, where a workload has two.
    pub name: &'static str,
    run: fn(usize) -> Timed,
}

/// A peer crate doing one workload's work (`peers.rs`, built with `--features peers`).
pub struct Peer {
    /// The workload's name.
    pub workload: &'static str,
    /// The crate, as the table names it.
    pub name: &'static str,
    #[cfg_attr(not(feature = "peers"), allow(dead_code))]
    run: fn(usize) -> Timed,
}

/// The peers that this build measures: none without the `peers` feature.
#[cfg(feature = "peers")]
pub const PEERS: &[Peer] = &peers::PEERS;
/// The peers that this build measures: none without the `peers` feature.
#[cfg(not(feature = "peers"))]
pub const PEERS: &[Peer] = &[];

impl Workload {
    /// The peer that does this workload's work, if this build measures one.
    pub fn peer(&self) -> Option<&'static Peer> {
        PEERS.iter().find(|p| p.workload == self.name)
    }
}

/// One workload: its Python name (bench.py's), what it does, its size, and its bare twins.
pub struct Workload {
    /// Its name, as `bench.py` takes it.
    pub name: &'static str,
    /// What it does, for the table.
    pub what: &'static str,
    /// Its size, in a full run and in a quick one: processes that each do `n` count `n` each.
    full: usize,
    quick: usize,
    /// Operations per unit of size: 2 where two processes each do `n`.
    ops_per_n: usize,
    rust: fn(usize) -> Timed,
    /// The same work in bare libc calls; where there are more than one, which wait otherwise
    /// (blocking reads; reads that poll, spin or look first), the fastest in each condition
    /// is the mark.
    pub twins: &'static [Twin],
}

const ONE: &str = "";
const BLOCKING: &str = "blocking reads";
const POLLING: &str = "polling reads";
/// As the workspace's readers wait: a spin where it may pay, then a sleep.
const SPINNING: &str = "spins, then blocks";
/// As the queue's reader waits: a `poll` that does not wait, then a read.
const LOOKING: &str = "polls first";

const WORKLOADS: [Workload; 10] = [
    Workload {
        name: "process",
        what: "start and join an empty process",
        full: 500,
        quick: 20,
        ops_per_n: 1,
        rust: workloads::process,
        twins: &[Twin {
            name: ONE,
            run: twins::process,
        }],
    },
    Workload {
        name: "map",
        what: "`map` of x*x over ints",
        full: 200_000,
        quick: 5_000,
        ops_per_n: 1,
        rust: workloads::map,
        twins: &[Twin {
            name: ONE,
            run: twins::map,
        }],
    },
    Workload {
        name: "apply",
        what: "`apply`, synchronous calls",
        full: 5_000,
        quick: 200,
        ops_per_n: 1,
        rust: workloads::apply,
        twins: &[
            Twin {
                name: BLOCKING,
                run: |n| twins::apply(n, Waits::Block),
            },
            Twin {
                name: POLLING,
                run: |n| twins::apply(n, Waits::Poll),
            },
            Twin {
                name: SPINNING,
                run: |n| twins::apply(n, Waits::Spin),
            },
        ],
    },
    Workload {
        name: "apply_async",
        what: "`apply_async` calls, then `get` on all",
        full: 20_000,
        quick: 1_000,
        ops_per_n: 1,
        rust: workloads::apply_async,
        twins: &[Twin {
            name: ONE,
            run: twins::apply_async,
        }],
    },
    Workload {
        name: "queue",
        what: "queue: `(int, 'hello')` from one producer",
        full: 200_000,
        quick: 5_000,
        ops_per_n: 1,
        rust: workloads::queue,
        twins: &[
            Twin {
                name: BLOCKING,
                run: |n| twins::queue(n, false),
            },
            Twin {
                name: LOOKING,
                run: |n| twins::queue(n, true),
            },
        ],
    },
    Workload {
        name: "lock",
        what: "lock: acquire/release in 2 processes",
        // A million turns each, some 30 ms: a hundred thousand took about 3, as long as the
        // scheduler may take to move a new child to the idle core, and the two children then
        // often ran one after the other, uncontended (the row read 2.15 of its twin).
        full: 1_000_000,
        quick: 5_000,
        ops_per_n: 2,
        rust: workloads::lock,
        twins: &[Twin {
            name: ONE,
            run: twins::lock,
        }],
    },
    Workload {
        name: "value",
        what: "`Value` += 1 under its lock, 2 processes",
        // As the lock's: enough turns for the two children to contend.
        full: 1_000_000,
        quick: 5_000,
        ops_per_n: 2,
        rust: workloads::value,
        twins: &[Twin {
            name: ONE,
            run: twins::value,
        }],
    },
    Workload {
        name: "manager",
        what: "manager: a child sets dict items",
        full: 20_000,
        quick: 500,
        ops_per_n: 1,
        rust: workloads::manager,
        twins: &[
            Twin {
                name: BLOCKING,
                run: |n| twins::manager(n, Waits::Block),
            },
            Twin {
                name: POLLING,
                run: |n| twins::manager(n, Waits::Poll),
            },
            Twin {
                name: SPINNING,
                run: |n| twins::manager(n, Waits::Spin),
            },
        ],
    },
    Workload {
        name: "spawn",
        what: "start and join an empty process by spawn",
        full: 40,
        quick: 2,
        ops_per_n: 1,
        rust: workloads::spawn,
        twins: &[Twin {
            name: ONE,
            run: twins::spawn,
        }],
    },
    Workload {
        name: "forkserver",
        what: "start and join an empty process by a fork server",
        full: 200,
        quick: 5,
        ops_per_n: 1,
        rust: workloads::forkserver,
        twins: &[Twin {
            name: ONE,
            run: twins::forkserver,
        }],
    },
];

/// Rounds in a full run.
const ROUNDS: usize = 5;

#[derive(Debug)]
struct Options {
    quick: bool,
    rounds: usize,
    python: bool,
    /// The workloads to measure, by name; every one when empty.
    only: Vec<String>,
    out: Option<PathBuf>,
}

impl Options {
    /// Whether this run measures `workload`.
    fn runs(&self, workload: &Workload) -> bool {
        self.only.is_empty() || self.only.iter().any(|name| name == workload.name)
    }
}

/// What the command line asked for; `Ok(None)` for `--help`.
fn options(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
    let (mut quick, mut python, mut rounds, mut out) = (false, true, None, None);
    let mut only = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--quick" => quick = true,
            "--no-python" => python = false,
            "--rounds" => {
                let given = args.next().ok_or("--rounds needs a number")?;
                let n = given.parse().ok().filter(|n| (1..=100).contains(n));
                rounds = Some(n.ok_or(format!("--rounds takes 1 to 100; not '{given}'"))?);
            }
            "--out" => out = Some(args.next().ok_or("--out needs a directory")?.into()),
            "--only" => {
                let names = args.next().ok_or("--only needs workload names")?;
                for name in names.split(',') {
                    if !WORKLOADS.iter().any(|w| w.name == name) {
                        return Err(format!("--only: no workload is named '{name}'"));
                    }
                    only.push(name.to_owned());
                }
            }
            _ => return Err(format!("unknown argument '{arg}'")),
        }
    }
    // A quick run is a check, not a measurement: one round, and nothing written unless asked.
    // A full run writes under target/, never over the README's figures in bench/results.
    Ok(Some(Options {
        quick,
        python,
        rounds: rounds.unwrap_or(if quick { 1 } else { ROUNDS }),
        only,
        out: out.or_else(|| (!quick).then(default_out)),
    }))
}

/// `bench/` under the workspace's target directory (`CARGO_TARGET_DIR` if set).
fn default_out() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    target.join("bench")
}

fn main() -> ExitCode {
    match common::args::own().next().as_deref() {
        // The spawn twin's child: this program run again, which ends at once.
        Some(twins::EXIT_AT_ONCE) => return ExitCode::SUCCESS,
        // The fork-server twin's server: this program run again, serving until the bench
        // closes its socket.
        Some(twins::FORK_SERVER) => return ExitCode::from(twins::serve_forks()),
        _ => {}
    }
    // procspawn starts its children by running this program again: in such a child, this
    // runs the function it was sent and exits, before anything else is done.
    #[cfg(feature = "peers")]
    peers::init();
    let options = match options(common::args::own()) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{ABOUT}\n{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            say!("bench: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let python = match options.python.then(Python::find) {
        Some(Ok(python)) => Some(python),
        Some(Err(e)) => {
            say!("bench: {e}: the Python column stays empty");
            None
        }
        None => None,
    };
    let size = |full: usize, quick: usize| if options.quick { quick } else { full };
    let mut measured: Vec<Vec<Measured>> = CONDITIONS
        .iter()
        .map(|_| WORKLOADS.iter().map(Measured::new).collect())
        .collect();
    for round in 1..=options.rounds {
        say!("round {round} of {}", options.rounds);
        // Alternate who goes first, so that neither always runs on a warmer machine: Rust
        // and Python; and the twins, first in odd rounds and last in even ones.
        let python_first = round % 2 == 0;
        let twins_first = round % 2 == 1;
        for (&condition, measured) in CONDITIONS.iter().zip(&mut measured) {
            say!(" {}", condition.name());
            // A quick run checks, and need not wait for the condition to settle.
            let _in_force = match condition.enter(!options.quick) {
                Ok(setting) => setting,
                Err(e) => {
                    say!("bench: cannot set up {}: {e}", condition.name());
                    return ExitCode::FAILURE;
                }
            };
            // The first workload run after a condition is entered ran slow, whichever it
            // was, Rust or twin (the process row beside busy loops: 313 to 825 ms where later
            // runs took 43 to 54): one untimed run of each side first.
            let mut warm = options.quick;
            // Python is measured on idle cores only: the comparison with it is made there.
            let python = python.as_ref().filter(|_| condition == Condition::Idle);
            for (w, m) in WORKLOADS.iter().zip(measured.iter_mut()) {
                if !options.runs(w) {
                    continue;
                }
                let n = size(w.full, w.quick);
                let ops = n * w.ops_per_n;
                m.ops = ops;
                if !warm {
                    // Untimed: a failure here shows again in the runs that count.
                    let _ = (w.rust)(n);
                    for twin in w.twins.iter().filter(|t| t.runs_in(condition)) {
                        let _ = (twin.run)(n);
                    }
                    warm = true;
                }
                if twins_first {
                    measure_twins(w, condition, n, m);
                }
                for python_turn in [python_first, !python_first] {
                    match (python, python_turn) {
                        (Some(py), true) => m.python.add(py.run(w.name, n), ops),
                        (None, true) => {}
                        (_, false) => m.rust.add((w.rust)(n).map_err(|e| e.to_string()), ops),
                    }
                }
                if !twins_first {
                    measure_twins(w, condition, n, m);
                }
                // The peer goes last, so that procspawn's pool has ended its threads before
                // the next workload forks.
                if let Some(peer) = w.peer() {
                    m.peer.add((peer.run)(n).map_err(|e| e.to_string()), ops);
                }
                say!(
                    "  {:<12} Rust {}   twin {}   Python {}{}",
                    w.name,
                    m.rust.last(),
                    m.best_twin_last(),
                    m.python.last(),
                    w.peer().map_or(String::new(), |p| format!(
                        "   {} {}",
                        p.name,
                        m.peer.last()
                    ))
                );
            }
        }
    }
    let meta = report::Meta::now(&options_line(&options), python.as_ref());
    let markdown = report::markdown(&WORKLOADS, &measured, &meta);
    // Not `print!`, which panics when stdout is gone (`| head`): the results are still
    // written where asked, and the run fails.
    let printed = io::stdout().write_all(markdown.as_bytes());
    if let Err(e) = &printed {
        say!("bench: cannot print the tables: {e}");
    }
    if let Some(dir) = &options.out {
        if let Err(e) = report::write(dir, &markdown, &WORKLOADS, &measured) {
            say!("bench: cannot write the results to {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
        say!("wrote {0}/bench.md and {0}/bench.svg", dir.display());
    }
    let failures = report::failures(&WORKLOADS, &measured);
    for failure in &failures {
        say!("bench: FAILED {failure}");
    }
    if failures.is_empty() && printed.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

impl Twin {
    /// Whether it runs in `condition`. Not on one CPU: one whose reader never sleeps, which
    /// holds the CPU its peer needs, so that each round trip waits for the scheduler's tick
    /// (8 ms here), minutes in all; nor one that spins where it may pay, which there never
    /// spins and is the blocking twin again.
    fn runs_in(&self, condition: Condition) -> bool {
        condition != Condition::OneCpu || ![POLLING, SPINNING].contains(&self.name)
    }
}

/// One run of each of `w`'s twins that runs in `condition`, of size `n`, into `m`.
fn measure_twins(w: &Workload, condition: Condition, n: usize, m: &mut Measured) {
    for (twin, samples) in w.twins.iter().zip(&mut m.twins) {
        if twin.runs_in(condition) {
            samples.add((twin.run)(n).map_err(|e| e.to_string()), m.ops);
        }
    }
}

/// The command that made these figures, as the results say.
fn options_line(options: &Options) -> String {
    let mut line = String::from("cargo run --release -p bench");
    if !PEERS.is_empty() {
        line += " --features peers";
    }
    let mut extra = Vec::new();
    if options.quick {
        extra.push("--quick".to_owned());
    }
    if options.rounds != if options.quick { 1 } else { ROUNDS } {
        extra.push(format!("--rounds {}", options.rounds));
    }
    if !options.python {
        extra.push("--no-python".to_owned());
    }
    if !options.only.is_empty() {
        extra.push(format!("--only {}", options.only.join(",")));
    }
    if !extra.is_empty() {
        line += " -- ";
        line += &extra.join(" ");
    }
    line
}

/// Operations per second.
pub fn ops_per_sec(ops: usize, elapsed: Duration) -> f64 {
    ops as f64 / elapsed.as_secs_f64().max(1e-9)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Options>, String> {
        options(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn a_full_run_writes_under_target_and_a_quick_one_nowhere() {
        let full = parse(&[]).unwrap().unwrap();
        let out = full.out.unwrap();
        assert_eq!(out, default_out());
        // Under the target directory, `target/` unless CARGO_TARGET_DIR says otherwise.
        let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
            PathBuf::from,
        );
        assert!(out.starts_with(&target), "{}", out.display());
        assert!(!out.ends_with("bench/results"));
        assert_eq!(parse(&["--quick"]).unwrap().unwrap().out, None);
        let asked = parse(&["--out", "bench/results"]).unwrap().unwrap();
        assert_eq!(asked.out, Some(PathBuf::from("bench/results")));
        assert!(parse(&["--help"]).unwrap().is_none());
    }

    #[test]
    fn only_takes_workload_names_and_refuses_others() {
        let some = parse(&["--only", "lock,value"]).unwrap().unwrap();
        let run: Vec<&str> = WORKLOADS
            .iter()
            .filter(|w| some.runs(w))
            .map(|w| w.name)
            .collect();
        assert_eq!(run, ["lock", "value"]);
        let all = parse(&[]).unwrap().unwrap();
        assert_eq!(
            WORKLOADS.iter().filter(|w| all.runs(w)).count(),
            WORKLOADS.len()
        );
        let e = parse(&["--only", "lock,locks"]).unwrap_err();
        assert!(e.contains("'locks'"), "{e}");
        assert!(parse(&["--only"]).is_err());
    }
}
