//! Medians, the Markdown tables and the SVG chart.

use std::path::Path;
use std::time::Duration;

use crate::chart::Bar;
use crate::conditions::{CONDITIONS, Condition};
use crate::python::Python;
use crate::{PEERS, Workload, ops_per_sec};

/// The rounds' figures of one side of one workload, in operations per second.
#[derive(Default)]
pub struct Samples {
    ops_per_sec: Vec<f64>,
    /// The first failure, if any round failed.
    error: Option<String>,
    ran: bool,
}

impl Samples {
    /// Adds one round: `ops` operations done in the time given, or a failure.
    pub fn add(&mut self, result: Result<Duration, String>, ops: usize) {
        self.ran = true;
        match result {
            Ok(elapsed) => self.ops_per_sec.push(ops_per_sec(ops, elapsed)),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
    }

    /// The last round's figure, or its failure, for the progress lines.
    pub fn last(&self) -> String {
        match (&self.error, self.ops_per_sec.last()) {
            (Some(e), _) => format!("FAILED: {e}"),
            (None, Some(x)) => format!("{:>12} ops/s", number(*x)),
            (None, None) => "-".to_owned(),
        }
    }

    /// The median of the rounds, unless a round failed or none ran.
    pub fn median(&self) -> Option<f64> {
        if self.error.is_some() || self.ops_per_sec.is_empty() {
            return None;
        }
        let mut sorted = self.ops_per_sec.clone();
        sorted.sort_by(f64::total_cmp);
        let mid = sorted.len() / 2;
        Some(if sorted.len() % 2 == 1 {
            sorted[mid]
        } else {
            (sorted[mid - 1] + sorted[mid]) / 2.0
        })
    }
}

/// The lowest and highest of the rounds' own ratios `a / b`, each of a round of `a` and the
/// round of `b` run in the same round: how far one round can stray from the ratio of the
/// medians. `None` unless both sides have two rounds or more, none failed (a failed round
/// would pair the others wrongly), and every ratio is a number.
pub fn round_range(a: &Samples, b: &Samples) -> Option<(f64, f64)> {
    if a.error.is_some() || b.error.is_some() {
        return None;
    }
    let (a, b) = (&a.ops_per_sec, &b.ops_per_sec);
    if a.len() != b.len() || a.len() < 2 {
        return None;
    }
    let ratios: Vec<f64> = a.iter().zip(b).map(|(a, b)| a / b).collect();
    if !ratios.iter().all(|r| r.is_finite()) {
        return None;
    }
    let low = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let high = ratios.iter().copied().fold(0.0, f64::max);
    Some((low, high))
}

/// Every side of one workload, in one condition.
#[derive(Default)]
pub struct Measured {
    /// Operations per round.
    pub ops: usize,
    /// Through the workspace's types.
    pub rust: Samples,
    /// Through Python's `multiprocessing`.
    pub python: Samples,
    /// Through each of the workload's bare twins.
    pub twins: Vec<Samples>,
    /// Through its peer crate, where it has one (`--features peers`).
    pub peer: Samples,
}

impl Measured {
    /// Nothing measured yet of `workload`.
    pub fn new(workload: &Workload) -> Measured {
        Measured {
            twins: workload.twins.iter().map(|_| Samples::default()).collect(),
            ..Measured::default()
        }
    }

    /// The faster twin's median, and which twin it is: of those that ran, unless one failed.
    pub fn best_twin(&self) -> Option<(f64, usize)> {
        let mut best: Option<(f64, usize)> = None;
        for (k, samples) in self.twins.iter().enumerate() {
            if !samples.ran {
                continue;
            }
            let median = samples.median()?;
            if best.is_none_or(|(b, _)| median > b) {
                best = Some((median, k));
            }
        }
        best
    }

    /// The best twin's samples ([`best_twin`](Self::best_twin)).
    pub fn best_twin_samples(&self) -> Option<&Samples> {
        self.best_twin().map(|(_, k)| &self.twins[k])
    }

    /// The faster twin's last round, for the progress lines.
    pub fn best_twin_last(&self) -> String {
        let last = |s: &Samples| s.ops_per_sec.last().copied().unwrap_or(0.0);
        self.twins
            .iter()
            .max_by(|a, b| last(a).total_cmp(&last(b)))
            .map_or("-".to_owned(), Samples::last)
    }
}

/// Where and how the figures were made.
pub struct Meta {
    date: String,
    cores: usize,
    cpu: String,
    python: String,
    command: String,
}

impl Meta {
    /// Today's date and this machine's cores, CPU and Python.
    pub fn now(command: &str, python: Option<&Python>) -> Meta {
        let days = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / 86_400);
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                let line = info.lines().find(|l| l.starts_with("model name"))?;
                Some(line.split_once(':')?.1.trim().to_owned())
            })
            .unwrap_or_else(|| "an unknown CPU".to_owned());
        Meta {
            date: civil_date(days as i64),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            python: python.map_or("no Python".to_owned(), |p| p.version.clone()),
            command: command.to_owned(),
        }
    }
}

/// A table for each condition, with a line saying where and how they were made.
pub fn markdown(workloads: &[Workload], measured: &[Vec<Measured>], meta: &Meta) -> String {
    let rounds = measured
        .first()
        .and_then(|m| m.iter().find(|m| m.rust.ran))
        .map_or(0, |m| m.rust.ops_per_sec.len());
    let mut md = format!(
        "Measured on {} on {} cores ({}), {}, by `{}`: medians of {rounds} round{}, \
         in operations per second; higher is better. A bare twin does the workload's work \
         with direct libc calls (`bench/src/twins.rs`); where it has more than one, \
         which wait otherwise (blocking reads; reads that poll, spin or look first), the \
         fastest in each condition is the mark. `Rust / twin` \
         is the ratio of the medians; in brackets, the lowest and highest of the rounds' own \
         ratios (odd rounds run the twin first, even ones Rust; each condition begins with \
         an untimed run of both): how far one run can stray.\n",
        meta.date,
        meta.cores,
        meta.cpu,
        meta.python,
        meta.command,
        if rounds == 1 { "" } else { "s" }
    );
    #[cfg(feature = "peers")]
    {
        md += &format!(
            "\nPeers (`bench/src/peers.rs`, built with `--features peers`): {}, each doing the \
             work of the row it is on, with the same counts, processes and checks; `Rust / peer` \
             above 1 means the workspace is faster.\n",
            crate::peers::CRATES
        );
    }
    for (&condition, measured) in CONDITIONS.iter().zip(measured) {
        let idle = condition == Condition::Idle;
        md += &format!("\n**{}**\n\n", condition.name());
        md += if idle {
            "| workload | Python ops/s | Rust ops/s | bare twin ops/s | Rust / twin | Rust / Python |"
        } else {
            "| workload | Rust ops/s | bare twin ops/s | Rust / twin |"
        };
        if !PEERS.is_empty() {
            md += " peer ops/s | Rust / peer |";
        }
        md += if idle {
            "\n|---|---:|---:|---:|---:|---:|"
        } else {
            "\n|---|---:|---:|---:|"
        };
        if !PEERS.is_empty() {
            md += "---:|---:|";
        }
        md += "\n";
        for (i, (w, m)) in workloads.iter().zip(measured).enumerate() {
            if !m.rust.ran {
                // Left out by `--only`.
                continue;
            }
            let rust = m.rust.median();
            let twin = m.best_twin();
            let twin_cell = match twin {
                Some((ops, k)) if !w.twins[k].name.is_empty() => {
                    format!("{} ({})", number(ops), w.twins[k].name)
                }
                twin => cell(twin.map(|(ops, _)| ops), number),
            };
            let twin = twin.map(|(ops, _)| ops);
            let name = format!("{}. {}, {}", i + 1, w.what, count(m.ops));
            let range = m.best_twin_samples().and_then(|t| round_range(&m.rust, t));
            let vs_twin = match (ratio(rust, twin), range) {
                (Some(r), Some((low, high))) => format!("{r:.2} ({low:.2}-{high:.2})"),
                (r, _) => cell(r, |r| format!("{r:.2}")),
            };
            md += &if idle {
                let python = m.python.median();
                format!(
                    "| {name} | {} | {} | {twin_cell} | {vs_twin} | {} |",
                    cell(python, number),
                    cell(rust, number),
                    cell(ratio(rust, python), |r| format!("{r:.1}x")),
                )
            } else {
                format!(
                    "| {name} | {} | {twin_cell} | {vs_twin} |",
                    cell(rust, number)
                )
            };
            if !PEERS.is_empty() {
                let peer = m.peer.median();
                md += &match w.peer() {
                    Some(p) => format!(
                        " {} | {} |",
                        cell(peer, |ops| format!("{} ({})", number(ops), p.name)),
                        cell(ratio(rust, peer), times)
                    ),
                    None => " no peer | - |".to_owned(),
                };
            }
            md += "\n";
        }
    }
    md
}

/// A ratio as `7.4x`, `0.21x`: two significant digits, three above 10.
fn times(r: f64) -> String {
    match r {
        10.0.. => format!("{r:.0}x"),
        1.0.. => format!("{r:.1}x"),
        _ => format!("{r:.2}x"),
    }
}

/// Every failure, as `queue, Rust, two idle cores: the queue lost or reordered a message`.
pub fn failures(workloads: &[Workload], measured: &[Vec<Measured>]) -> Vec<String> {
    let mut failures = Vec::new();
    for (condition, measured) in CONDITIONS.iter().zip(measured) {
        for (w, m) in workloads.iter().zip(measured) {
            let twins = w.twins.iter().zip(&m.twins).map(|(t, s)| (t.name, s));
            let peer = w.peer().map(|p| (p.name, &m.peer));
            let sides = [("Rust", &m.rust), ("Python", &m.python)]
                .into_iter()
                .chain(twins.map(|(name, s)| (if name.is_empty() { "twin" } else { name }, s)))
                .chain(peer);
            for (side, samples) in sides {
                if let Some(e) = &samples.error {
                    failures.push(format!("{}, {side}, {}: {e}", w.name, condition.name()));
                }
            }
        }
    }
    failures
}

/// Writes `bench.md` and `bench.svg` into `dir`.
pub fn write(
    dir: &Path,
    markdown: &str,
    workloads: &[Workload],
    measured: &[Vec<Measured>],
) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("bench.md"), markdown)?;
    // For each workload: Python on idle cores, then Rust in each condition, then its peer in
    // each condition (where the build measures peers), each divided by the bare twin of the
    // same condition.
    // Workloads left out by `--only` have no bars.
    let run: Vec<usize> = (0..workloads.len())
        .filter(|&i| measured[0][i].rust.ran)
        .collect();
    let bars: Vec<Vec<Option<Bar>>> = run
        .iter()
        .map(|&i| {
            // One side's bar in condition `c`: its median over the twin's, and the range of
            // the rounds' own ratios.
            let bar = |c: usize, side: &Samples| {
                let m = &measured[c][i];
                Some(Bar {
                    ratio: ratio(side.median(), m.best_twin().map(|(ops, _)| ops))?,
                    range: m.best_twin_samples().and_then(|t| round_range(side, t)),
                })
            };
            let mut bars = vec![bar(0, &measured[0][i].python)];
            bars.extend((0..CONDITIONS.len()).map(|c| bar(c, &measured[c][i].rust)));
            if !PEERS.is_empty() {
                bars.extend((0..CONDITIONS.len()).map(|c| bar(c, &measured[c][i].peer)));
            }
            bars
        })
        .collect();
    let names: Vec<&str> = run.iter().map(|&i| workloads[i].name).collect();
    crate::chart::draw(&dir.join("bench.svg"), &names, &bars)
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? / b?)
}

fn cell(value: Option<f64>, format: impl Fn(f64) -> String) -> String {
    value.map_or("-".to_owned(), format)
}

/// A figure to three significant digits, with thousands separated: `51,300,000`, `4.56`.
pub fn number(x: f64) -> String {
    if !x.is_finite() || x <= 0.0 {
        return "0".to_owned();
    }
    let scale = 10f64.powi(x.log10().floor() as i32 - 2);
    let rounded = (x / scale).round() * scale;
    if rounded < 100.0 {
        return format!(
            "{:.*}",
            (2 - rounded.log10().floor() as i32).max(0) as usize,
            rounded
        );
    }
    count(rounded as usize)
}

/// An integer with thousands separated: `200,000`.
fn count(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The date of `days` since 1970-01-01, as `2026-11-24` (Howard Hinnant's civil_from_days).
fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_have_three_significant_digits() {
        assert_eq!(number(51_234_567.0), "51,200,000");
        assert_eq!(number(489.6), "490");
        assert_eq!(number(4.567), "4.57");
        assert_eq!(number(45.67), "45.7");
        assert_eq!(number(999.6), "1,000");
        assert_eq!(count(200_000), "200,000");
        assert_eq!(count(5), "5");
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(20_416), "2025-11-24");
        assert_eq!(civil_date(11_016), "2000-02-29");
    }

    #[test]
    fn a_round_range_pairs_the_rounds_of_two_sides() {
        let samples = |ops: &[f64]| {
            let mut s = Samples::default();
            ops.iter()
                .for_each(|&ops| s.add(Ok(Duration::from_secs_f64(1.0 / ops)), 1));
            s
        };
        let (rust, twin) = (samples(&[2.0, 9.0, 3.0]), samples(&[4.0, 10.0, 2.0]));
        let (low, high) = round_range(&rust, &twin).unwrap();
        // Round by round: 0.5, 0.9, 1.5; not the lowest over the highest (0.2), nor the
        // highest over the lowest (4.5).
        assert!(
            (low - 0.5).abs() < 1e-6 && (high - 1.5).abs() < 1e-6,
            "{low} {high}"
        );
        // One round, or rounds that do not pair up: no range.
        assert_eq!(round_range(&samples(&[2.0]), &samples(&[4.0])), None);
        assert_eq!(round_range(&rust, &samples(&[4.0, 10.0])), None);
        // A failed round on either side: no range, though the counts still pair up.
        let (mut failed, mut twin_failed) = (samples(&[2.0, 9.0]), samples(&[4.0, 10.0]));
        failed.add(Err("lost a message".into()), 1);
        twin_failed.add(Ok(Duration::from_secs_f64(0.5)), 1);
        assert_eq!(round_range(&failed, &samples(&[4.0, 10.0])), None);
        let mut rust_ok = samples(&[2.0, 9.0]);
        rust_ok.add(Ok(Duration::from_secs_f64(0.5)), 1);
        twin_failed.add(Err("lost a message".into()), 1);
        assert_eq!(round_range(&rust_ok, &twin_failed), None);
    }

    #[test]
    fn medians_of_odd_and_even_counts_and_failures() {
        let mut s = Samples::default();
        for secs in [1.0, 4.0, 2.0] {
            s.add(Ok(Duration::from_secs_f64(secs)), 4);
        }
        assert_eq!(s.median(), Some(2.0));
        s.add(Ok(Duration::from_secs_f64(0.5)), 4);
        assert_eq!(s.median(), Some(3.0));
        s.add(Err("lost a message".into()), 4);
        assert_eq!(s.median(), None);
        assert!(s.last().contains("lost a message"));
    }
}
