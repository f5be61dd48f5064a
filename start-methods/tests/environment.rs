//! A spawned child, and a fork server's, get the environment as std sees it: every entry
//! `std::env::vars_os` gives, copied under std's lock of the environment, so that a
//! `set_var` on another thread (safe code in a crate of edition 2021) waits for the copy.
//! An entry without `=`, which std leaves out, is not passed on (`Command` passes such an
//! entry, but reads `environ` under that lock, which a crate cannot take). `harness = false`:
//! this binary runs itself again with such an entry (`execve`), and that run starts the
//! children.

use std::ffi::{CStr, CString};
use std::os::fd::OwnedFd;

use start_methods::{Context, Method};

const ENTRY: &CStr = c"ENTRY_WITHOUT_EQUALS";

/// Whether `entry` is in this process's environment, as the C library keeps it.
fn in_environ(wanted: &CStr) -> bool {
    // SAFETY: `environ` is the C library's array of C strings, ended by a null pointer;
    // this process has one thread, and nothing changes its environment.
    unsafe {
        let mut entry = libc::environ;
        let mut found = false;
        while !entry.is_null() && !(*entry).is_null() {
            found |= CStr::from_ptr(*entry) == wanted;
            entry = entry.add(1);
        }
        found
    }
}

/// What the children run: 7 where their environment has the entries std sees, and not the
/// one without `=`; 3 where an entry std sees is missing; 5 where the other is there.
fn has_the_entries(_args: &[u8], _fds: Vec<OwnedFd>) -> i32 {
    if !in_environ(c"PATH=/usr/bin:/bin") || !in_environ(c"EMPTY=") {
        3
    } else if in_environ(ENTRY) {
        5
    } else {
        7
    }
}

fn main() {
    if std::env::args().nth(1).as_deref() != Some("--with-entry") {
        let me = CString::new(
            std::env::current_exe()
                .expect("this test's path")
                .into_os_string()
                .into_encoded_bytes(),
        )
        .expect("a path without NUL");
        let argv = [me.as_ptr(), c"--with-entry".as_ptr(), std::ptr::null()];
        let envp = [
            ENTRY.as_ptr(),
            c"PATH=/usr/bin:/bin".as_ptr(),
            c"EMPTY=".as_ptr(),
            std::ptr::null(),
        ];
        // SAFETY: both arrays hold C strings that live until execve, and end with null.
        unsafe { libc::execve(me.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        panic!("execve: {}", std::io::Error::last_os_error());
    }
    for method in [Method::Spawn, Method::ForkServer] {
        let ended = Context::new(method)
            .and_then(|ctx| ctx.start(has_the_entries, Vec::new(), Vec::new()))
            .and_then(|mut child| child.join());
        assert_eq!(
            format!("{ended:?}"),
            "Ok(Exited(7))",
            "{method}: 3, a child's environment lacks an entry std sees; 5, it has the one \
             without '='"
        );
    }
    println!("test a_child_gets_the_environment_std_sees ... ok");
}
