//! Section 3: to share data between processes, use a `Queue`.
//!
//! Ten processes each put `[n, 'hello']` on one queue; the main process gets ten items and
//! prints them, in the order they came, which varies from run to run.
//!
//! Run it with `cargo run -p queue`; beside it, `python3 queue/python/queue_demo.py`.
//! It prints ten lines in an order that varies:
//!
//! ```text
//! [1, 'hello']
//! [0, 'hello']
//! [2, 'hello']
//! ...
//! ```

use common::{Process, PyValue, repr};
use queue::{Queue, QueueError};

/// What `--help` prints.
const USAGE: &str = "Section 3: ten processes put [n, 'hello'] on one Queue; the main process gets
each and prints it.
usage: cargo run -p queue";

fn f(q: &Queue<Vec<PyValue>>, n: i64) -> Result<(), QueueError> {
    q.put(&vec![n.into(), "hello".into()])
}

fn main() -> Result<(), QueueError> {
    common::args::none(USAGE);
    let q = Queue::new()?;
    for i in 0..10 {
        let mut p = Process::new(|| f(&q, i));
        p.start()?;
    }
    for _ in 0..10 {
        println!("{}", repr(&q.get()?));
    }
    Ok(())
}
