//! The map of `mpi-map` made costly enough to show scale: about 200 multiply-adds on each of
//! ten million items, over as many MPI ranks as `mpiexec -n` starts, or on section 1's
//! `Pool` with `--pool WORKERS`. Rank 0 prints the time of the map alone (not the start of
//! the processes) and a checksum of the results, which every run of the same items shares.
//!
//! ```text
//! cargo build --release -p mpi-map --features mpi
//! for n in 1 2; do mpiexec -n $n target/release/mpi-scale; done
//! for w in 1 2; do target/release/mpi-scale --pool $w; done
//! ```
//!
//! prints, with times that vary (these are the README's, on 2 cores):
//!
//! ```text
//! MPI, 1 rank: 10000000 items, checksum ce995c1fcff93340, 2.805 s
//! MPI, 2 ranks: 10000000 items, checksum ce995c1fcff93340, 1.419 s
//! Pool, 1 worker: 10000000 items, checksum ce995c1fcff93340, 3.220 s
//! Pool, 2 workers: 10000000 items, checksum ce995c1fcff93340, 1.822 s
//! ```

use std::error::Error;
use std::time::Instant;

use mpi_map::MpiPoolExecutor;
use mpi_map::scale::{ITEMS, check_memory, costly, items, on_pool, report};

/// What `--help` prints.
const USAGE: &str = "Beyond the article: a costly map (about 200 multiply-adds an item) over MPI
ranks, or on a Pool of forked workers, timed. ITEMS: how many (10000000), at most what
this machine's memory holds, at about 32 bytes an item.
usage: cargo run -p mpi-map --features mpi --release --bin mpi-scale [-- --pool WORKERS] [ITEMS]
       under MPI: mpiexec -n RANKS target/release/mpi-scale [ITEMS]";

/// What the command line asks for.
enum Run {
    Mpi { n: u64 },
    Pool { workers: usize, n: u64 },
}

/// Reads `[--pool WORKERS] [ITEMS]`.
fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<Run>, String> {
    let number = |what: &str, text: Option<String>, max: u64| -> Result<u64, String> {
        let text = text.ok_or(format!("{what} needs a number"))?;
        text.parse()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or(format!("{what} is a number from 1 to {max}, not '{text}'"))
    };
    let mut workers = None;
    let mut n = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--pool" if workers.is_none() => workers = Some(number("--pool", args.next(), 64)?),
            _ if n.is_none() && !arg.starts_with('-') => {
                n = Some(number("ITEMS", Some(arg), i32::MAX as u64)?)
            }
            _ => return Err(format!("unknown argument '{arg}'")),
        }
    }
    let n = n.unwrap_or(ITEMS);
    check_memory(n)?;
    Ok(Some(match workers {
        Some(workers) => Run::Pool {
            workers: workers as usize,
            n,
        },
        None => Run::Mpi { n },
    }))
}

fn main() -> Result<(), Box<dyn Error>> {
    let run = match parse(common::args::own()) {
        Ok(Some(run)) => run,
        // Every rank reads the command line; the first prints what it asked for.
        Ok(None) => mpi_map::help(USAGE),
        Err(why) => mpi_map::usage_error(&why, USAGE),
    };
    match run {
        Run::Pool { workers, n } => println!("{}", on_pool(workers, n)?),
        Run::Mpi { n } => {
            let p = MpiPoolExecutor::new()?;
            let items = if p.rank() == 0 { items(n) } else { Vec::new() };
            let start = Instant::now();
            if let Some(results) = p.map(costly, &items)? {
                let ranks = p.size();
                let who = format!("MPI, {ranks} rank{}", if ranks == 1 { "" } else { "s" });
                println!("{}", report(&who, n, &results, start.elapsed()));
            }
        }
    }
    Ok(())
}
