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
