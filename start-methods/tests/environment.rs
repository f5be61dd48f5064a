//! A spawned child, and a fork server's, get the environment as the C library keeps it,
//! each entry as it is, as std's `Command` passes it: an entry without `=` too (which
//! `std::env::vars_os` leaves out). `harness = false`: this binary runs itself again with
//! such an entry (`execve`), and that run starts the children.

use std::ffi::{CStr, CString};
use std::os::fd::OwnedFd;

use start_methods::{Context, Method};

const ENTRY: &CStr = c"ENTRY_WITHOUT_EQUALS";

/// What the children run: 7 where the entry is in their environment, 3 where it is not.
fn has_the_entry(_args: &[u8], _fds: Vec<OwnedFd>) -> i32 {
    // SAFETY: `environ` is the C library's array of C strings, ended by a null pointer;
    // this process has one thread, and nothing changes its environment.
    let found = unsafe {
        let mut entry = libc::environ;
        let mut found = false;
        while !entry.is_null() && !(*entry).is_null() {
            found |= CStr::from_ptr(*entry) == ENTRY;
            entry = entry.add(1);
        }
        found
    };
    if found { 7 } else { 3 }
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
            std::ptr::null(),
        ];
        // SAFETY: both arrays hold C strings that live until execve, and end with null.
        unsafe { libc::execve(me.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        panic!("execve: {}", std::io::Error::last_os_error());
    }
    for method in [Method::Spawn, Method::ForkServer] {
        let ended = Context::new(method)
            .and_then(|ctx| ctx.start(has_the_entry, Vec::new(), Vec::new()))
            .and_then(|mut child| child.join());
        assert_eq!(
            format!("{ended:?}"),
            "Ok(Exited(7))",
            "{method}: a child's environment lacks an entry without '='"
        );
    }
    println!("test a_child_gets_every_entry_of_the_environment ... ok");
}
