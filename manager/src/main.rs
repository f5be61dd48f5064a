//! Section 6: a `Manager` serves shared objects from a process of its own.
//!
//! The manager's server process holds a dict and a list. The main process gets proxies to
//! them and starts a child, which fills the dict and reverses the list through its proxies;
//! after `join`, the main process reads both back and prints them.
//!
//! Run it with `cargo run -p manager`; beside it, `python3 manager/python/manager.py`.
//! It prints:
//!
//! ```text
//! {1: '1', '2': 2, 0.25: None}
//! [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
//! ```
//!
//! (The article shows `{0.25: None, 1: '1', '2': 2}`, Python 2's hash order; Python 3
//! keeps insertion order, and so does this dict.)

use common::{Process, PyValue, repr};
use manager::{DictProxy, ListProxy, Manager, ManagerError};

/// What `--help` prints.
const USAGE: &str = "Section 6: a Manager's server process holds a dict and a list, which a child
changes through proxies and the main process then prints.
usage: cargo run -p manager";

fn f(d: &DictProxy, l: &ListProxy) -> Result<(), ManagerError> {
    d.set(1, "1")?;
    d.set("2", 2)?;
    d.set(0.25, PyValue::None)?;
    l.reverse()?;
    Ok(())
}

fn main() -> Result<(), ManagerError> {
    common::args::none(USAGE);
    let manager = Manager::new()?;
    let d = manager.dict()?;
    let l = manager.list(0..10)?;
    let mut p = Process::new(|| f(&d, &l));
    p.start()?;
    p.join()?;
    println!("{}", repr(&d.copy()?));
    println!("{}", repr(&l.to_vec()?));
    Ok(())
}
