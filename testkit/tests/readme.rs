//! The code the README shows is the code in the files it names, so the two cannot drift.

use std::path::Path;

#[test]
fn readme_snippets_match_their_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut checked = 0;
    for (i, _) in readme.match_indices("<!-- same as ") {
        let rest = &readme[i + "<!-- same as ".len()..];
        let (path, rest) = rest.split_once(" -->\n```").unwrap();
        let (_lang, rest) = rest.split_once('\n').unwrap();
        let (snippet, _) = rest.split_once("```\n").unwrap();
        let file = std::fs::read_to_string(root.join(path))
            .unwrap_or_else(|e| panic!("README names {path}: {e}"));
        assert!(
            file.contains(snippet),
            "the README's snippet of {path} is not in the file:\n{snippet}"
        );
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} snippets found");
}

/// The bench's figures in the README are those of the last full run, in bench/results.
#[test]
fn readme_bench_tables_are_the_last_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let results = std::fs::read_to_string(root.join("bench/results/bench.md")).unwrap();
    let tables: Vec<&str> = results.lines().filter(|l| l.starts_with('|')).collect();
    assert!(tables.len() > 10, "bench.md holds no tables:\n{results}");
    for line in tables {
        assert!(
            readme.lines().any(|l| l == line),
            "the README lacks this line of bench/results/bench.md:\n{line}"
        );
    }
    let (when, _) = results.split_once(':').unwrap();
    let date = when.trim_start_matches("Measured on ").get(..10).unwrap();
    assert!(
        readme.contains(&format!("Measured on {date}")),
        "the README's date is not {date}"
    );
}

/// The README's ratios of Rust to each peer crate are those of the last run with the peers,
/// in bench/results/peers, and it says which run that was.
#[test]
fn readme_peer_ratios_are_the_last_peer_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let results = std::fs::read_to_string(root.join("bench/results/peers/bench.md")).unwrap();
    // For each row with a peer: its name, the peer's, and Rust / peer in each condition.
    let mut rows: Vec<(&str, &str, Vec<&str>)> = Vec::new();
    for line in results.lines().filter(|l| l.starts_with("| ")) {
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        let [name, .., peer, ratio] = cells[..] else {
            continue;
        };
        let Some((_, peer)) = peer.strip_suffix(')').and_then(|p| p.split_once(" (")) else {
            continue;
        };
        match rows.iter_mut().find(|(n, _, _)| *n == name) {
            Some((_, _, ratios)) => ratios.push(ratio),
            None => rows.push((name, peer, vec![ratio])),
        }
    }
    assert_eq!(rows.len(), 5, "five rows with a peer in:\n{results}");
    for (name, peer, ratios) in rows {
        assert_eq!(ratios.len(), 3, "{name}: a ratio in each condition");
        let line = format!("| {name} | {peer} | {} |", ratios.join(" | "));
        assert!(
            readme.lines().any(|l| l == line),
            "the README lacks this row of bench/results/peers/bench.md:\n{line}"
        );
    }
    let (run, _) = results.split_once(':').unwrap();
    assert!(readme.contains(run), "the README does not say: {run}");
}
