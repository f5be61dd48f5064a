//! A spawned child whose limit of open files is too low for the descriptors sent with its
//! request: it cannot run, and says why, not that it was run by hand. A test binary of its
//! own: it lowers this process's limit, which every test running beside it would share.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use common::ExitStatus;
use start_methods::{Context, Method};

/// What the child would run, had it room for its request.
fn entry(_args: &[u8], _fds: Vec<OwnedFd>) -> i32 {
    0
}

/// `/dev/null`, at descriptor 300 or above: above the limit the test sets, as a program's
/// descriptors may well be.
fn high_descriptor() -> OwnedFd {
    let null = std::fs::File::open("/dev/null").expect("open /dev/null");
    // SAFETY: F_DUPFD_CLOEXEC touches no memory; the new descriptor is checked, then owned
    // by the returned value alone.
    let fd = unsafe { libc::fcntl(null.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 300) };
    assert!(fd >= 0, "fcntl(F_DUPFD_CLOEXEC)");
    // SAFETY: `fd` was just made, and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Sets this process's soft limit of open files, and returns the one it had.
fn set_open_files(limit: u64) -> u64 {
    let mut now = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write one rlimit, which outlives the calls.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut now), 0);
        let was = now.rlim_cur;
        now.rlim_cur = limit.min(now.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &now), 0);
        was
    }
}

#[test]
fn a_child_without_room_for_its_descriptors_says_so() {
    let ctx = Context::new(Method::Spawn).expect("context");
    let fds: Vec<OwnedFd> = (0..8).map(|_| high_descriptor()).collect();
    // The child's stderr, which it inherits from this process's descriptor 2.
    let (mut said, stderr) = std::io::pipe().expect("pipe");
    // SAFETY: dup and dup2 touch no memory; descriptor 2 is put back below.
    let saved = unsafe { libc::dup(2) };
    assert!(saved >= 0);
    // SAFETY: as above.
    assert!(unsafe { libc::dup2(stderr.as_raw_fd(), 2) } >= 0);
    drop(stderr);
    // Room for stdin, stdout, stderr and the 8 descriptors would be 11 and more; the child
    // inherits this limit.
    let was = set_open_files(9);
    let ended = ctx.start(entry, Vec::new(), fds).and_then(|mut c| c.join());
    set_open_files(was);
    // SAFETY: as above; `saved` is closed after.
    unsafe {
        libc::dup2(saved, 2);
        libc::close(saved);
    }
    let mut stderr = String::new();
    said.read_to_string(&mut stderr).expect("read its stderr");
    assert_eq!(
        ended.expect("start and join"),
        ExitStatus::Exited(1),
        "{stderr}"
    );
    assert!(
        stderr.contains("a started child could not run: the descriptors sent with its request")
            && stderr.contains("RLIMIT_NOFILE")
            && !stderr.contains("by hand"),
        "{stderr:?}"
    );
}
