//! Beyond the article: `Pool.map` over MPI, as mpi4py's `MPIPoolExecutor().map(f, items)`.
//!
//! MPI starts the processes itself: `mpiexec -n 4 prog` runs `prog` four times, on one
//! machine or many, and each copy (a *rank*, numbered 0 to 3) runs `main` from the top.
//! Nothing is forked, so nothing is shared but what is sent. [`MpiPoolExecutor::map`] is a
//! collective call that every rank makes:
//!
//! 1. rank 0 broadcasts how many items there are, so every rank computes the same shares
//!    ([`shares`]: contiguous runs, in the items' order, as even as can be);
//! 2. rank 0 scatters the items, each rank its share (`MPI_Scatterv`), rank 0 included;
//! 3. every rank applies `f` to its share;
//! 4. rank 0 gathers the results into place, in the items' order (`MPI_Gatherv`), and gets
//!    `Some(results)`; the other ranks get `None`.
//!
//! mpi4py's executor differs in one way: its rank 0 only hands out tasks, one at a time, to
//! the other ranks, since they receive `f` pickled. Here every rank was compiled with `f`,
//! so rank 0 works too, and each rank gets its share in one message.
//!
//! # When a rank dies
//!
//! A rank that panics would unwind into `MPI_Finalize` while the others wait for it in a
//! collective: the whole job hangs (rsmpi issue 197). [`MpiPoolExecutor::new`] installs a
//! panic hook that prints the panic as usual, then calls `MPI_Abort` on the world
//! communicator: the launcher kills every rank, and `mpiexec` exits non-zero. A rank killed
//! by a signal (`kill -9`) is seen by the launcher, which ends the others the same way.
//!
//! Three limits of that. The hook is installed by `new`: make the executor first, since a
//! rank that ends before it (a panic, or even `exit(0)`) leaves the others waiting in
//! `MPI_Init`. The hook ends the job on any panic, even one the program catches
//! (`catch_unwind`, a thread joined later), and it calls `MPI_Abort` from the panicking
//! thread, which MPI's single-thread mode does not promise to allow (MPICH does it). And
//! killing MPICH's per-node proxy (`hydra_pmi_proxy`), not a rank, leaves the ranks blocked
//! and `mpiexec` waiting: kill `mpiexec` or the ranks instead.
//!
//! # Two MPIs on one machine
//!
//! A program built against one MPI and started by the other's launcher does not join that
//! launcher's job: each copy runs alone, as rank 0 of a job of 1, and prints the whole
//! answer. [`MpiPoolExecutor::new`] refuses to start when the launcher's environment says
//! the job has more ranks than MPI sees ([`MpiError::WrongLauncher`]).
//!
//! # Without MPI
//!
//! MPI is the cargo feature `mpi`, off by default, since rsmpi builds only where an MPI and
//! libclang are installed. Built without it, [`MpiPoolExecutor::new`] prints how to install
//! them ([`INSTALL`]) and exits with status 2; the rest of the crate (the shares, the costly
//! workload and its run on section 1's `Pool`) builds and works everywhere.

pub mod scale;

use std::fmt;

/// What a program built without MPI prints, before it exits with status 2.
pub const INSTALL: &str = "This program was built without MPI (the cargo feature `mpi`).
Install an MPI and libclang, then build with the feature and start it with mpiexec:
    apt-get install libmpich-dev mpich libclang-dev    # Debian, MPICH
    cargo build -p mpi-map --features mpi
    mpiexec -n 4 target/debug/mpi-map";

/// The rank that holds the items and gets the results: mpi4py's too.
pub const ROOT: i32 = 0;

/// Whether this process is the first rank, the one that prints what the command line asked
/// for (its usage, or what was wrong with it): every rank reads the same command line,
/// before MPI is started, and under `mpiexec -n 4` printed the same lines four times. Every
/// rank exits with the same status. The launcher names each rank in the environment
/// (`PMI_RANK` for MPICH's, `OMPI_COMM_WORLD_RANK` for Open MPI's, `PMIX_RANK` for PMIx's);
/// a program started without one is the only rank there is.
fn first_rank() -> bool {
    ["PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"]
        .iter()
        .find_map(|name| std::env::var(name).ok())
        .is_none_or(|rank| rank.trim() == "0")
}

/// Prints the usage (under `mpiexec`, the first rank only) and exits 0.
pub fn help(usage: &str) -> ! {
    if first_rank() {
        println!("{usage}");
    }
    std::process::exit(0)
}

/// Prints what was wrong and the usage on stderr (the first rank only) and exits 2.
pub fn usage_error(why: &str, usage: &str) -> ! {
    if first_rank() {
        common::say!("error: {why}\n{usage}");
    }
    std::process::exit(2)
}

/// For a program that takes no arguments: `common::args::none`, answered once under
/// `mpiexec` (a failure to print, too, is a one-line error). Returns if there are none, or
/// exits.
pub fn no_arguments(usage: &str) {
    common::unprintable::explain();
    match common::args::parse(common::args::own(), &[]) {
        common::args::Parsed::Run(_) => {}
        common::args::Parsed::Help => help(usage),
        common::args::Parsed::Wrong(why) => usage_error(&why, usage),
    }
}

/// What can go wrong in MPI's `map`, before any message is sent.
#[derive(PartialEq, Eq)]
pub enum MpiError {
    /// MPI was initialised already in this process: one executor per process.
    AlreadyInitialized,
    /// The program was started by the launcher of another MPI than the one it was built
    /// with: `variable` says the job has `ranks` processes, but MPI sees this one alone.
    WrongLauncher {
        /// The launcher's environment variable that gives the job's size.
        variable: &'static str,
        /// What it says.
        ranks: u64,
        /// The MPI this program was built with (`MPI_Get_library_version`'s first line).
        library: String,
    },
    /// MPI counts items with a C `int`: a map of more than `i32::MAX` items is refused.
    TooManyItems {
        /// How many items were given.
        items: u64,
    },
}

impl fmt::Display for MpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MpiError::AlreadyInitialized => {
                write!(
                    f,
                    "MPI is initialised already: one MpiPoolExecutor a process"
                )
            }
            MpiError::WrongLauncher {
                variable,
                ranks,
                library,
            } => write!(
                f,
                "started by the launcher of another MPI: {variable}={ranks}, but MPI sees one \
                 process; start it with the mpiexec of {library}"
            ),
            MpiError::TooManyItems { items } => write!(
                f,
                "{items} items: MPI counts items with a C int, at most {}",
                i32::MAX
            ),
        }
    }
}

// `main` returning an error prints it with `Debug`: the message, as Display says it.
impl fmt::Debug for MpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for MpiError {}

/// How `items` items are shared among `ranks` ranks: each rank's count and the index of its
/// first item (`MPI_Scatterv`'s `counts` and `displs`). Contiguous runs in the items' order;
/// the first `items % ranks` ranks get one item more than the others.
pub fn shares(items: u64, ranks: i32) -> Result<(Vec<i32>, Vec<i32>), MpiError> {
    let total = i32::try_from(items).map_err(|_| MpiError::TooManyItems { items })?;
    let ranks = ranks.max(1);
    let (base, extra) = (total / ranks, total % ranks);
    let counts: Vec<i32> = (0..ranks).map(|r| base + i32::from(r < extra)).collect();
    let displs = counts
        .iter()
        .scan(0, |next, &count| {
            let first = *next;
            *next += count;
            Some(first)
        })
        .collect();
    Ok((counts, displs))
}

#[cfg(feature = "mpi")]
mod executor;
#[cfg(feature = "mpi")]
pub use executor::{Item, MpiPoolExecutor};

#[cfg(not(feature = "mpi"))]
mod without_mpi;
#[cfg(not(feature = "mpi"))]
pub use without_mpi::{Item, MpiPoolExecutor};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_contiguous_and_as_even_as_can_be() {
        assert_eq!(shares(3, 4), Ok((vec![1, 1, 1, 0], vec![0, 1, 2, 3])));
        assert_eq!(shares(10, 3), Ok((vec![4, 3, 3], vec![0, 4, 7])));
        assert_eq!(shares(0, 2), Ok((vec![0, 0], vec![0, 0])));
        assert_eq!(shares(5, 1), Ok((vec![5], vec![0])));
    }

    #[test]
    fn shares_refuse_what_a_c_int_cannot_count() {
        let items = i32::MAX as u64 + 1;
        assert_eq!(shares(items, 4), Err(MpiError::TooManyItems { items }));
        assert!(shares(i32::MAX as u64, 4).is_ok());
    }
}
