//! An owner the kernel makes not dumpable (it changed its user, as a service that starts as
//! root and drops to another user does) hides its executable from its children: spawn and
//! forkserver must still work from it, since their children can tell it is their parent.
//! `harness = false`: the owner is a child forked from this test's one thread. Needs root
//! (to change the owner's user); says SKIPPED otherwise.

// The workspace's test harness, included by path (see output.rs).
#[path = "../../testkit/src/lib.rs"]
#[allow(dead_code, unused_imports)]
mod testkit;

use std::os::fd::OwnedFd;

use common::ExitStatus;
use common::start::{Context, Method};

/// The user and group the owner drops to: nobody's, on Linux.
const NOBODY: u32 = 65534;

fn exit_0(_: &[u8], _: Vec<OwnedFd>) -> i32 {
    0
}

/// In the owner: a child started by `method` runs and exits 0.
fn starts(method: Method) -> Result<(), String> {
    let ctx = Context::new(method).map_err(|e| format!("{method:?}: {e}"))?;
    let mut child = ctx
        .start(exit_0, Vec::new(), Vec::new())
        .map_err(|e| format!("{method:?}: start: {e}"))?;
    match child.join() {
        Ok(ExitStatus::Exited(0)) => Ok(()),
        other => Err(format!("{method:?}: the child ended {other:?}")),
    }
}

fn main() {
    // SAFETY: geteuid takes nothing and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        testkit::skipped("not root, so the owner cannot change its user");
        return;
    }
    // SAFETY: this test binary runs one thread (harness = false) and the child ends by _exit.
    let owner = unsafe { libc::fork() };
    if owner == 0 {
        // SAFETY: setgid, setuid and prctl take integers and touch no memory.
        let dropped = unsafe {
            libc::setgid(NOBODY) == 0
                && libc::setuid(NOBODY) == 0
                && libc::prctl(libc::PR_SET_DUMPABLE, 0) == 0
        };
        let code = if !dropped {
            eprintln!("cannot drop to nobody: {}", std::io::Error::last_os_error());
            3
        } else {
            match starts(Method::Spawn).and_then(|()| starts(Method::ForkServer)) {
                Ok(()) => 0,
                Err(why) => {
                    eprintln!("{why}");
                    1
                }
            }
        };
        // SAFETY: ends the owner at once, running nothing of the test's.
        unsafe { libc::_exit(code) };
    }
    assert!(owner > 0, "fork: {}", std::io::Error::last_os_error());
    let mut status = 0;
    // SAFETY: waitpid writes only `status`.
    assert_eq!(unsafe { libc::waitpid(owner, &mut status, 0) }, owner);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the owner that is not dumpable could not start children: status {status:#x}"
    );
    println!("test an_owner_that_is_not_dumpable_starts_children ... ok");
}
