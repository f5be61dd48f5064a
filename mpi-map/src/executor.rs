//! [`MpiPoolExecutor`] on rsmpi: initialise MPI, abort the job on a panic, scatter, map,
//! gather.

use std::marker::PhantomData;

use mpi::Rank;
use mpi::datatype::{Equivalence, Partition, PartitionMut};
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, Root};

use crate::{MpiError, ROOT, shares};

/// What `map` can send: a type MPI knows how to send ([`Equivalence`]: integers, floats,
/// arrays of them...), plain data with a default to fill buffers with.
pub trait Item: Equivalence + Copy + Default {}
impl<T: Equivalence + Copy + Default> Item for T {}

/// An MPI job seen as a pool: every rank is a worker, and rank 0 also hands out the items
/// and gets the results. Python's `mpi4py.futures.MPIPoolExecutor`.
///
/// ```no_run
/// # fn main() -> Result<(), mpi_map::MpiError> {
/// let p = mpi_map::MpiPoolExecutor::new()?;
/// if let Some(results) = p.map(|x: i32| x * x, &[1, 2, 3])? {
///     assert_eq!(results, [1, 4, 9]); // on rank 0 only
/// }
/// # Ok(())
/// # }
/// ```
///
/// Dropping it finalises MPI (`MPI_Finalize`), which waits for the other ranks.
///
/// MPI is initialised for one thread (`MPI_THREAD_SINGLE`, rsmpi's `initialize`): only the
/// thread that made the executor may call MPI. So the executor stays on that thread: it is
/// neither `Send` nor `Sync` (two threads that called `map` at once made MPICH abort every
/// rank), and this does not compile:
///
/// ```compile_fail
/// fn shared_between_threads<T: Sync>(_: &T) {}
/// let p = mpi_map::MpiPoolExecutor::new().unwrap();
/// shared_between_threads(&p);
/// ```
pub struct MpiPoolExecutor {
    world: SimpleCommunicator,
    // Last: finalising MPI is the last thing dropping the executor does.
    _universe: Universe,
    // Neither `Send` nor `Sync`: with MPICH, a communicator is an integer, which is both.
    _one_thread: PhantomData<*const ()>,
}

impl MpiPoolExecutor {
    /// Initialises MPI (`MPI_Init`), and installs a panic hook that aborts the whole job
    /// (`MPI_Abort`) after the panic's message is printed, so that a panic on one rank
    /// cannot leave the others waiting forever. Fails if MPI was initialised already, or if
    /// this process was started by another MPI's launcher ([`MpiError::WrongLauncher`]).
    pub fn new() -> Result<MpiPoolExecutor, MpiError> {
        let universe = mpi::initialize().ok_or(MpiError::AlreadyInitialized)?;
        abort_on_panic();
        let world = universe.world();
        check_launcher(&world)?;
        Ok(MpiPoolExecutor {
            world,
            _universe: universe,
            _one_thread: PhantomData,
        })
    }

    /// This process's rank, from 0 to [`size`](Self::size) - 1.
    pub fn rank(&self) -> Rank {
        self.world.rank()
    }

    /// How many processes the job has: `mpiexec -n`.
    pub fn size(&self) -> Rank {
        self.world.size()
    }

    /// Applies `f` to every item, shared among all the ranks, and returns the results in
    /// the items' order on rank 0 (`Some`), `None` on the others: Python's
    /// `executor.map(f, items)`. Every rank must call it, in the same order as every other
    /// collective call; the items that count are rank 0's, the others' are not read.
    pub fn map<T: Item, R: Item>(
        &self,
        f: impl Fn(T) -> R,
        items: &[T],
    ) -> Result<Option<Vec<R>>, MpiError> {
        let root = self.world.process_at_rank(ROOT);
        let is_root = self.rank() == ROOT;
        // Only rank 0 knows how many items there are: it tells the others, and every rank
        // then computes the same shares, or the same error.
        let mut len = if is_root { items.len() as u64 } else { 0 };
        root.broadcast_into(&mut len);
        let (counts, displs) = shares(len, self.size())?;
        let me = usize::try_from(self.rank()).unwrap_or_default();

        let mut share = vec![T::default(); counts[me] as usize];
        if is_root {
            let send = Partition::new(items, &counts[..], &displs[..]);
            root.scatter_varcount_into_root(&send, &mut share[..]);
        } else {
            root.scatter_varcount_into(&mut share[..]);
        }

        let mapped: Vec<R> = share.into_iter().map(f).collect();

        if is_root {
            let mut results = vec![R::default(); len as usize];
            let mut into = PartitionMut::new(&mut results[..], &counts[..], &displs[..]);
            root.gather_varcount_into_root(&mapped[..], &mut into);
            Ok(Some(results))
        } else {
            root.gather_varcount_into(&mapped[..]);
            Ok(None)
        }
    }
}

/// Installs a panic hook that runs the hook that was there (which prints the message), then
/// aborts every rank of the job. Without it, a panicking rank unwinds, drops the
/// `Universe` and calls `MPI_Finalize`, which waits for ranks that wait for it.
fn abort_on_panic() {
    let print = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        print(info);
        if mpi::is_initialized() && !mpi::is_finalized() {
            SimpleCommunicator::world().abort(common::PANIC_EXIT_CODE);
        }
    }));
}

/// The launchers' variables that give the job's size: MPICH's Hydra (and Slurm's PMI), then
/// Open MPI's.
const LAUNCHER_SIZES: [&str; 2] = ["PMI_SIZE", "OMPI_COMM_WORLD_SIZE"];

/// Refuses a job of one rank whose launcher said it has more: this program was started by
/// another MPI's `mpiexec`, and every copy would run alone.
fn check_launcher(world: &SimpleCommunicator) -> Result<(), MpiError> {
    if world.size() != 1 {
        return Ok(());
    }
    for variable in LAUNCHER_SIZES {
        let ranks = std::env::var(variable).ok().and_then(|n| n.parse().ok());
        if let Some(ranks @ 2..) = ranks {
            let library = mpi::environment::library_version().unwrap_or_default();
            let library = library.lines().next().unwrap_or("its MPI");
            let library = library.split_whitespace().collect::<Vec<_>>().join(" ");
            return Err(MpiError::WrongLauncher {
                variable,
                ranks,
                library,
            });
        }
    }
    Ok(())
}
