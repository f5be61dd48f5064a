//! [`MpiPoolExecutor`] where the crate is built without the feature `mpi`: the same names,
//! so that the programs build unchanged, but [`new`](MpiPoolExecutor::new) only says how to
//! install MPI, and exits.

use crate::{INSTALL, MpiError};

/// What `map` can send: with MPI, a type MPI knows how to send; here, any plain data.
pub trait Item: Copy + Default {}
impl<T: Copy + Default> Item for T {}

/// Built without MPI: no value of this type can be made. Neither `Send` nor `Sync`, as
/// with MPI.
pub struct MpiPoolExecutor {
    never: Never,
    _one_thread: std::marker::PhantomData<*const ()>,
}

enum Never {}

impl MpiPoolExecutor {
    /// Prints how to install MPI and build with it ([`INSTALL`]) on stderr, and exits with
    /// status 2: the program cannot do what it is for.
    pub fn new() -> Result<MpiPoolExecutor, MpiError> {
        common::say!("{INSTALL}");
        std::process::exit(2)
    }

    /// Never runs: there is no executor.
    pub fn rank(&self) -> i32 {
        match self.never {}
    }

    /// Never runs: there is no executor.
    pub fn size(&self) -> i32 {
        match self.never {}
    }

    /// Never runs: there is no executor.
    pub fn map<T: Item, R: Item>(
        &self,
        _f: impl Fn(T) -> R,
        _items: &[T],
    ) -> Result<Option<Vec<R>>, MpiError> {
        match self.never {}
    }
}
