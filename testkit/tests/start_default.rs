//! The simulation of Python 3.14's default start method, which every parity test runs the
//! Python originals under (`StartDefault::Forkserver`), must be able to fail: `fork_info.py`
//! without its `set_start_method('fork')` line prints what Python 3.14 prints, the fork
//! server as the child's parent and `__mp_main__` as its module, and as the installed
//! Python's default it prints what the article shows.

// A failed unwrap is a failed test here, as in #[test] functions.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use testkit::{StartDefault, has_ended, python3_as};

/// The ids and module name of each process `info` printed for: (parent, own id, module).
fn infos(stdout: &str) -> Vec<(u32, u32, String)> {
    let after = |prefix: &str| -> Vec<&str> {
        stdout
            .lines()
            .filter_map(|line| line.strip_prefix(prefix))
            .collect()
    };
    let modules = after("module name: ");
    let parents = after("parent process: ");
    let own = after("process id: ");
    assert!(
        modules.len() == 2 && parents.len() == 2 && own.len() == 2,
        "two processes print their ids and module:\n{stdout}"
    );
    (0..2)
        .map(|i| {
            let id = |text: &str| text.parse::<u32>().unwrap();
            (id(parents[i]), id(own[i]), modules[i].to_owned())
        })
        .collect()
}

/// What `multiprocessing.get_start_method()` says under `default`, or `None` without python3.
fn start_method(default: StartDefault) -> Option<String> {
    let (mut cmd, _site) = python3_as("the simulated Python 3.14 default", default)?;
    let probe = "import multiprocessing; print(multiprocessing.get_start_method())";
    let out = cmd
        .args(["-c", probe])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap().trim().to_owned())
}

#[test]
fn the_simulated_default_is_forkserver() {
    assert_eq!(
        start_method(StartDefault::Forkserver).as_deref(),
        start_method(StartDefault::Installed).map(|_| "forkserver")
    );
}

#[test]
fn fork_info_without_its_start_method_prints_what_python_3_14_prints() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let original = std::fs::read_to_string(root.join("fork-info/python/fork_info.py")).unwrap();
    let line = "    set_start_method('fork')\n";
    assert_eq!(original.matches(line).count(), 1, "{original}");
    let dir = std::env::temp_dir().join(format!("start-default-test-{}", std::process::id()));
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("fork_info.py"), original.replace(line, "")).unwrap();

    // Python 3.14 and later have forkserver as their own default.
    let installed_forks = start_method(StartDefault::Installed).as_deref() == Some("fork");
    let mut outputs = Vec::new();
    for default in StartDefault::ALL {
        let Some((mut cmd, site)) = python3_as("the simulated Python 3.14 default", default) else {
            std::fs::remove_dir_all(&dir).unwrap();
            return;
        };
        // Not testkit::run: with forkserver the fork server and its resource tracker end
        // just after the main process, and `run` takes them for orphans. `output` waits
        // until they have closed stdout as well.
        let out = cmd
            .arg("fork_info.py")
            .current_dir(&dir)
            .env("TMPDIR", &dir)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        drop(site);
        let stdout = String::from_utf8(out.stdout).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{default:?}: {stderr}");
        outputs.push((default, infos(&stdout), stdout, stderr));
    }
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(left.len(), 1, "left in the run's directory: {left:?}");

    for (default, ids, stdout, stderr) in outputs {
        assert_eq!(stderr, "", "{default:?}");
        let [(_, main, main_module), (parent, child, child_module)] = &ids[..] else {
            unreachable!("infos gives two");
        };
        assert_eq!(main_module, "__main__", "{default:?}:\n{stdout}");
        assert_ne!(child, main, "{default:?}:\n{stdout}");
        match default {
            StartDefault::Installed if !installed_forks => {}
            StartDefault::Installed => {
                assert_eq!(parent, main, "the child's parent is main:\n{stdout}");
                assert_eq!(child_module, "__main__", "{stdout}");
            }
            StartDefault::Forkserver => {
                assert_ne!(parent, main, "the fork server is the parent:\n{stdout}");
                assert_eq!(child_module, "__mp_main__", "{stdout}");
                // The fork server ends once the main process has: nothing is left running.
                let deadline = Instant::now() + Duration::from_secs(10);
                while !has_ended(*parent) {
                    assert!(Instant::now() < deadline, "fork server {parent} still runs");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
}
