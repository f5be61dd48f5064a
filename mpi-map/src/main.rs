//! Beyond the article: `Pool.map` over MPI, for a map that outgrows one machine's cores.
//!
//! Every rank of the job runs this `main`. Rank 0 scatters the items 1, 2 and 3 among the
//! ranks, rank 0 included; each rank squares its share, and rank 0 gathers the results in
//! the items' order and prints them. Python's `mpi4py.futures.MPIPoolExecutor().map`.
//!
//! Built with MPI (the feature `mpi`) and started by MPI's launcher, here with MPICH:
//!
//! ```text
//! cargo build -p mpi-map --features mpi
//! mpiexec -n 4 target/debug/mpi-map
//! ```
//!
//! (Open MPI: `mpirun --oversubscribe -n 4 target/debug/mpi-map`, and `--allow-run-as-root`
//! as root.) Beside it, `mpiexec -n 4 python3 -m mpi4py.futures mpi-map/python/mpi_map.py`.
//! It prints:
//!
//! ```text
//! [1, 4, 9]
//! ```
//!
//! Built without the feature, it says how to install MPI and exits with status 2. The
//! mechanism is [`mpi_map::MpiPoolExecutor`]; `mpi-scale` (`src/bin/scale.rs`) times a
//! costly map over 1 and 2 ranks, and on section 1's `Pool`.

use common::repr;
use mpi_map::{MpiError, MpiPoolExecutor};

/// What `--help` prints.
const USAGE: &str = "Beyond the article: MPIPoolExecutor().map(f, [1, 2, 3]) over MPI: rank 0
scatters the items, every rank squares its share, rank 0 gathers and prints the results.
usage: cargo run -p mpi-map --features mpi; then mpiexec -n 4 target/debug/mpi-map";

fn f(x: i32) -> i32 {
    x * x
}

fn main() -> Result<(), MpiError> {
    mpi_map::no_arguments(USAGE);
    let p = MpiPoolExecutor::new()?;
    if let Some(results) = p.map(f, &[1, 2, 3])? {
        println!("{}", repr(&results));
    }
    Ok(())
}
