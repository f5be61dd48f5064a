//! Copying a section out of the workspace works: each section's folder, with the folders
//! its `Cargo.toml` names by path, copied into a folder of its own outside the workspace,
//! builds offline with no edit and prints its golden output.

use std::path::{Path, PathBuf};
use std::process::Command;

use testkit::{redact_pids, run, sorted_lines};

/// Each section's program: (section, binary, arguments, golden file).
const PROGRAMS: &[(&str, &str, &[&str], &str)] = &[
    ("pool-map", "pool-map", &[], "pool_map.stdout"),
    ("fork-info", "fork-info", &[], "fork_info.stdout"),
    (
        "thread-vs-process",
        "thread-vs-process",
        &["processes"],
        "processes.stdout",
    ),
    ("queue", "queue", &[], "queue_demo.stdout"),
    ("lock", "lock", &[], "lock.stdout"),
    ("shared-value", "shared-value", &[], "shared_value.stdout"),
    ("manager", "manager", &[], "manager.stdout"),
    (
        "async-pool",
        "async-pool",
        &["--sleep", "0.05"],
        "async_pool.stdout",
    ),
    ("async-pool", "apply", &["--sleep", "0.05"], "apply.stdout"),
    (
        "start-methods",
        "start-methods",
        &[],
        "start_methods.stdout",
    ),
];

#[test]
fn every_section_copied_out_builds_and_prints_its_golden_output() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let scratch = Scratch::new("copy-a-section");
    // One target folder for every copy, so that the registry's crates build once.
    let target = scratch.0.join("target");
    let mut sections: Vec<&str> = PROGRAMS.iter().map(|p| p.0).collect();
    sections.dedup();
    for section in sections {
        let dest = scratch.0.join(section);
        let folders = path_dependencies(&root, section);
        for folder in &folders {
            copy_dir(&root.join(folder), &dest.join(folder));
        }
        build_offline(&dest.join(section), &target, &[]);
        for &(_, bin, args, golden) in PROGRAMS.iter().filter(|p| p.0 == section) {
            let mut cmd = Command::new(target.join("debug").join(bin));
            cmd.args(args);
            let out = run(cmd).success();
            let golden =
                std::fs::read_to_string(root.join(section).join("tests/golden").join(golden))
                    .expect("golden file");
            let actual = redact_pids(&out.stdout);
            assert_eq!(
                sorted_lines(&actual),
                sorted_lines(&golden),
                "{bin} {args:?}, copied out, printed:\n{actual}"
            );
        }
    }
}

/// The MPI section, beyond the article, copied out as the others are: built without its
/// feature `mpi` it says how to install MPI and exits 2; where `mpiexec` is found, built with
/// the feature it prints its golden output under `mpiexec -n 2`.
#[test]
fn the_mpi_section_copied_out_builds_with_and_without_mpi() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let scratch = Scratch::new("copy-the-mpi-section");
    let target = scratch.0.join("target");
    let dest = scratch.0.join("mpi-map");
    for folder in path_dependencies(&root, "mpi-map") {
        copy_dir(&root.join(&folder), &dest.join(&folder));
    }
    let build = |args: &[&str]| {
        build_offline(&dest.join("mpi-map"), &target, args);
        target.join("debug/mpi-map")
    };
    let out = run(Command::new(build(&[])));
    assert_eq!(out.status.code(), Some(2), "stderr: {}", out.stderr);
    assert!(
        out.stderr
            .contains("apt-get install libmpich-dev mpich libclang-dev")
    );
    let mpiexec = Command::new("mpiexec").arg("--version").output();
    if !mpiexec.is_ok_and(|v| v.status.success()) {
        return;
    }
    let mut job = Command::new("mpiexec");
    job.args(["-n", "2"]).arg(build(&["--features", "mpi"]));
    assert_eq!(run(job).success().stdout, "[1, 4, 9]\n");
}

/// Builds the binaries of the crate copied to `dir`, offline, into `target`, with `args`
/// (`--features ...`); panics with cargo's errors if it does not build.
fn build_offline(dir: &Path, target: &Path, args: &[&str]) {
    let build = Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
        .args(["build", "--offline", "--quiet", "--bins"])
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target)
        .output()
        .expect("cargo runs");
    assert!(
        build.status.success(),
        "{} copied out does not build with {args:?}:\n{}",
        dir.display(),
        String::from_utf8_lossy(&build.stderr)
    );
}

/// `section` and every folder named by `path = "../x"` in its `[dependencies]`, and in
/// theirs: the folders a copy needs. (Dev-dependencies of a dependency are not needed.)
fn path_dependencies(root: &Path, section: &str) -> Vec<String> {
    let mut folders = vec![section.to_string()];
    let mut i = 0;
    while i < folders.len() {
        let manifest =
            std::fs::read_to_string(root.join(&folders[i]).join("Cargo.toml")).expect("a manifest");
        let mut table = "";
        for line in manifest.lines() {
            if line.starts_with('[') {
                table = line;
            } else if let (true, Some((_, rest))) =
                (table == "[dependencies]", line.split_once("path = \"../"))
            {
                let folder = rest.split('"').next().unwrap_or_default().to_string();
                if !folders.contains(&folder) {
                    folders.push(folder);
                }
            }
        }
        i += 1;
    }
    folders
}

/// Copies the folder `from` to `to`, but no `target` folder.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("readdir") {
        let entry = entry.expect("entry");
        let (path, name) = (entry.path(), entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            if name != "target" {
                copy_dir(&path, &to.join(name));
            }
        } else {
            std::fs::copy(&path, to.join(name)).expect("copy");
        }
    }
}

/// A folder of this test's own, outside the workspace, removed when the test ends.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
