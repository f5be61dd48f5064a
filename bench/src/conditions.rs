//! The three conditions every workload runs in: two idle cores; both processes on one CPU;
//! and beside two busy loops. Users' machines are rarely idle, and a wait that spins can
//! hold the very CPU its peer needs: a figure from an idle machine alone would hide that.

use std::error::Error;
use std::io;

/// Where a workload runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    /// Nothing else runs: every process has a core when it wants one.
    Idle,
    /// The bench and every process it starts may run on one CPU only (their affinity).
    OneCpu,
    /// Two other processes spin on the CPUs the whole time.
    Busy,
}

/// The conditions, in the order they are measured and shown.
pub const CONDITIONS: [Condition; 3] = [Condition::Idle, Condition::OneCpu, Condition::Busy];

impl Condition {
    /// Its name in the tables and the chart.
    pub fn name(self) -> &'static str {
        match self {
            Condition::Idle => "two idle cores",
            Condition::OneCpu => "one CPU for all",
            Condition::Busy => "two busy loops beside",
        }
    }

    /// Puts this process (and so every child it forks from now on) in the condition, until
    /// the returned value is dropped; with `settle`, lets a second pass first (see below).
    pub fn enter(self, settle: bool) -> Result<Setting, Box<dyn Error>> {
        let mut setting = Setting {
            affinity: None,
            hogs: Vec::new(),
        };
        match self {
            Condition::Idle => {}
            Condition::OneCpu => {
                let old = affinity()?;
                let first = (0..libc::CPU_SETSIZE as usize)
                    // SAFETY: CPU_ISSET reads the set, which is alive, at an index below its size.
                    .find(|&cpu| unsafe { libc::CPU_ISSET(cpu, &old) })
                    .ok_or("this process may run on no CPU")?;
                // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET adds one CPU to it.
                let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
                // SAFETY: as above, with an index below the set's size.
                unsafe { libc::CPU_SET(first, &mut one) };
                set_affinity(&one)?;
                setting.affinity = Some(old);
            }
            Condition::Busy => {
                for _ in 0..2 {
                    setting.hogs.push(busy_loop()?);
                }
            }
        }
        if settle && self != Condition::Idle {
            // Every process asks its affinity again each second (`common::fd::Spin`), and
            // busy loops just started take a moment to get their share: the workloads
            // start in the condition as it will stay.
            std::thread::sleep(std::time::Duration::from_millis(1100));
        }
        Ok(setting)
    }
}

/// A busy loop: a child that spins until it is killed.
type Hog = common::Process<fn()>;

/// A condition in force: dropping it puts the old affinity back and ends the busy loops.
pub struct Setting {
    affinity: Option<libc::cpu_set_t>,
    hogs: Vec<Hog>,
}

impl Drop for Setting {
    fn drop(&mut self) {
        if let Some(old) = &self.affinity {
            let _ = set_affinity(old);
        }
        for hog in &mut self.hogs {
            // Killed and reaped: an error means it is gone already.
            let _ = hog.kill();
            let _ = hog.join();
        }
    }
}

/// Starts a child that spins until it is killed, or until the bench dies. It is a
/// `common::Process` (not a bare fork, as the twins' children are) so that Ctrl-C, which
/// may come at any moment of the minutes the busy loops run, ends and reaps it before the
/// bench ends, as it does the workloads' children: none is left for init to reap.
fn busy_loop() -> Result<Hog, Box<dyn Error>> {
    let mut hog: Hog = common::Process::new(|| {
        loop {
            std::hint::spin_loop();
        }
    });
    hog.start()?;
    Ok(hog)
}

fn affinity() -> Result<libc::cpu_set_t, io::Error> {
    // SAFETY: a zeroed cpu_set_t is the empty set, which sched_getaffinity overwrites.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the set is alive and its size is given.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(set)
}

fn set_affinity(set: &libc::cpu_set_t) -> Result<(), io::Error> {
    // SAFETY: sched_setaffinity reads the set, which is alive, of the size given.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(set), set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
