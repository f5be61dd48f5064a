//! The layout's rule: a section uses `common` and the library of a section that Python's
//! own modules put before it (`async-pool` and `mpi-map` use `pool-map`'s Pool; `queue` and
//! `shared-value` use `lock`'s Lock, as Python's Queue and Value use its Lock), never a later
//! one, never the bench, and never the test harness as a dependency.

use std::path::Path;

/// Each section and the folders its manifest may name by path, in any table.
const ALLOWED: &[(&str, &[&str])] = &[
    ("pool-map", &["common"]),
    ("fork-info", &["common"]),
    ("thread-vs-process", &["common"]),
    ("queue", &["common", "lock"]),
    ("lock", &["common"]),
    ("shared-value", &["common", "lock"]),
    ("manager", &["common"]),
    ("async-pool", &["common", "pool-map"]),
    ("start-methods", &["common"]),
    ("mpi-map", &["common", "pool-map"]),
];

#[test]
fn sections_use_only_common_and_the_libraries_before_them() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for &(section, allowed) in ALLOWED {
        let manifest = std::fs::read_to_string(root.join(section).join("Cargo.toml"))
            .expect("a section's manifest");
        let named: Vec<&str> = manifest
            .split("path = \"../")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .collect();
        for folder in &named {
            assert!(
                allowed.contains(folder),
                "{section} names ../{folder}; it may name only {allowed:?}"
            );
        }
        assert!(
            !manifest.contains("workspace = true"),
            "{section}'s manifest inherits from the workspace, and fails outside it"
        );
    }
}

#[test]
fn common_uses_no_section() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifest = std::fs::read_to_string(root.join("common/Cargo.toml")).expect("manifest");
    let (dependencies, _) = manifest
        .split_once("[dev-dependencies]")
        .unwrap_or((&manifest, ""));
    assert!(
        !dependencies.contains("path = "),
        "common depends on a folder of the workspace:\n{dependencies}"
    );
}
