//! A map worth sharing out: [`costly`] does about 200 multiply-adds an item, so that the
//! work, not the messages, decides the time. The `mpi-scale` program runs it over MPI and on
//! section 1's `Pool`; [`checksum`] lets the two, and any numbers of ranks or workers, be
//! seen to compute the same results in the same order.

use std::time::{Duration, Instant};

use pool_map::{Pool, PoolError};

/// The items of the default run: ten million.
pub const ITEMS: u64 = 10_000_000;

/// 200 steps of a multiply-add, each on the last one's result: work that no compiler can
/// skip or vectorise away, about 200 multiply-adds an item.
pub fn costly(x: u64) -> u64 {
    let mut acc = x;
    for _ in 0..200 {
        acc = acc.wrapping_mul(0x5851_F42D_4C95_7F2D).wrapping_add(x | 1);
    }
    acc
}

/// A hash of the results that depends on their order: two runs agree only if they computed
/// the same results and put them back in the same places.
pub fn checksum(results: &[u64]) -> u64 {
    results
        .iter()
        .fold(0, |sum, &r| sum.wrapping_mul(31).wrapping_add(r))
}

/// About how many bytes of memory a run takes an item, all its processes together: the
/// items, their chunks' frames, the results and theirs. (A Pool run of 20,000,000 items
/// peaked at 357 MB in its parent alone: 18 bytes an item.)
pub const BYTES_AN_ITEM: u64 = 32;

/// This machine's memory in bytes, `MemTotal` of `/proc/meminfo`; `None` where it cannot be
/// read.
pub fn memory_total() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib = info.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
    let kib: u64 = kib.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024)
}

/// Refuses a run of `n` items that this machine's memory cannot hold (where
/// [`memory_total`] cannot tell, every run is let through): it would not fail with a
/// message, but be killed by the kernel half-way, or push the machine into swap.
pub fn check_memory(n: u64) -> Result<(), String> {
    let needs = n.saturating_mul(BYTES_AN_ITEM);
    match memory_total() {
        Some(total) if needs > total => Err(format!(
            "{n} items need about {} GiB of memory ({BYTES_AN_ITEM} bytes an item), more than \
             this machine's {} GiB",
            needs.div_ceil(1 << 30),
            total >> 30
        )),
        _ => Ok(()),
    }
}

/// The items of a run: `0, 1, ..., n - 1`.
pub fn items(n: u64) -> Vec<u64> {
    (0..n).collect()
}

/// One line of a run's report: who did it, how many items, the checksum, the wall time.
pub fn report(who: &str, n: u64, results: &[u64], wall: Duration) -> String {
    format!(
        "{who}: {n} items, checksum {:016x}, {:.3} s",
        checksum(results),
        wall.as_secs_f64()
    )
}

/// [`costly`] over `n` items on section 1's `Pool` of `workers` forked workers, in one
/// `map`; the time is the map's alone, as the MPI run's is, not the pool's start.
pub fn on_pool(workers: usize, n: u64) -> Result<String, PoolError> {
    let items = items(n);
    let p = Pool::new(workers)?;
    let start = Instant::now();
    let results = p.map(costly, &items)?;
    let wall = start.elapsed();
    let who = format!(
        "Pool, {workers} worker{}",
        if workers == 1 { "" } else { "s" }
    );
    Ok(report(&who, n, &results, wall))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_sees_order_and_values() {
        let results: Vec<u64> = items(5).into_iter().map(costly).collect();
        let mut swapped = results.clone();
        swapped.swap(1, 2);
        assert_ne!(checksum(&results), checksum(&swapped));
        assert_ne!(checksum(&results), checksum(&results[..4]));
        assert_ne!(costly(1), costly(2));
    }
}
