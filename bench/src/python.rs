//! The Python side: `bench/python/bench.py`, run with `python3`, one workload per run.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// `python3` and the bench's script, both found.
pub struct Python {
    script: PathBuf,
    /// What `python3 --version` says, as `Python 3.11.7`.
    pub version: String,
}

impl Python {
    /// Finds `python3` and `bench/python/bench.py`, or says which is missing.
    pub fn find() -> Result<Python, String> {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/bench.py");
        if !script.is_file() {
            return Err(format!("{} not found", script.display()));
        }
        let out = Command::new("python3")
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("python3 not found ({e})"))?;
        if !out.status.success() {
            return Err(format!("python3 --version failed ({})", out.status));
        }
        let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Ok(Python { script, version })
    }

    /// Runs `workload` with `n`, and returns the time its timed part took.
    pub fn run(&self, workload: &str, n: usize) -> Result<Duration, String> {
        let out = Command::new("python3")
            .arg(&self.script)
            .args([workload, &n.to_string()])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("python3: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr.lines().last().unwrap_or("no message");
            return Err(format!(
                "bench.py {workload} ended with {}: {last}",
                out.status
            ));
        }
        stdout
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| format!("bench.py {workload} printed {stdout:?}, not seconds"))
    }
}
