//! A signal whose handler forks comes to a thread while it forks, after `common`'s fork
//! handler has taken the locks of its lists and before the fork itself. The handler's fork
//! takes no lock (this thread holds them), and must not let go of the outer fork's either:
//! another thread would then change a list while the outer fork copies it, and the outer
//! fork's child could find its lock held for ever.
//!
//! The signal's moment is made certain by a fork handler of this test's own, registered
//! before `common`'s (the C library runs them in reverse order, so this one runs after
//! it), which raises the signal, then lets another thread make a `Private` (which takes the
//! list's lock) and looks, 200 ms later, whether it could. `common` registers its handlers
//! as the program is loaded (`.init_array`); this test registers its own before that, from
//! the executable's `.preinit_array`, whose functions the C library calls first.

use std::ffi::{c_char, c_int};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static ARMED: AtomicBool = AtomicBool::new(false);
static GO: AtomicBool = AtomicBool::new(false);
static MADE: AtomicBool = AtomicBool::new(false);
static MADE_DURING_FORK: AtomicBool = AtomicBool::new(false);

/// The signal's handler: a fork whose child ends at once, reaped here.
extern "C" fn fork_and_reap(_: libc::c_int) {
    // SAFETY: fork, `_exit` in the child and waitpid are async-signal-safe; waitpid writes
    // nothing (a null status).
    unsafe {
        match libc::fork() {
            0 => libc::_exit(0),
            pid => {
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

/// This test's prepare handler, run after `common`'s in the test's one armed fork.
extern "C" fn after_commons_prepare() {
    if !ARMED.swap(false, Ordering::SeqCst) {
        return;
    }
    // SAFETY: raise runs the handler above on this thread before it returns.
    unsafe { libc::raise(libc::SIGUSR1) };
    GO.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(200));
    MADE_DURING_FORK.store(MADE.load(Ordering::SeqCst), Ordering::SeqCst);
}

/// Registers this test's fork handler before `common`'s (below).
extern "C" fn register_first(_: c_int, _: *const *const c_char, _: *const *const c_char) {
    // SAFETY: registers a handler that lives for the whole program.
    let registered = unsafe { libc::pthread_atfork(Some(after_commons_prepare), None, None) };
    assert_eq!(registered, 0, "pthread_atfork");
}

// SAFETY (of the attribute): the section holds pointers to functions of this signature, which
// the C library calls once each as the program starts, before any of `.init_array`.
#[used]
#[unsafe(link_section = ".preinit_array")]
static REGISTER_FIRST: extern "C" fn(c_int, *const *const c_char, *const *const c_char) =
    register_first;

fn main() {
    // SAFETY: installs a handler that does only what a signal handler may.
    unsafe {
        libc::signal(
            libc::SIGUSR1,
            fork_and_reap as *const () as libc::sighandler_t,
        );
    }
    // Each list's lock taken once: its fork handlers are registered by now in any case.
    let _ = common::Private::new(std::fs::File::open("/dev/null").expect("/dev/null"));
    let maker = std::thread::spawn(|| {
        while !GO.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        let private = common::Private::new(std::fs::File::open("/dev/null").expect("/dev/null"));
        MADE.store(private.is_ok(), Ordering::SeqCst);
    });
    ARMED.store(true, Ordering::SeqCst);
    // SAFETY: the child only calls `_exit`.
    let pid = match unsafe { libc::fork() } {
        // SAFETY: as above.
        0 => unsafe { libc::_exit(0) },
        pid => pid,
    };
    // SAFETY: waitpid writes nothing (a null status); `pid` is this process's child.
    unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    maker.join().expect("the thread that makes a Private");
    assert!(MADE.load(Ordering::SeqCst), "no Private was made");
    assert!(
        !MADE_DURING_FORK.load(Ordering::SeqCst),
        "another thread took a list's lock while a fork held it"
    );
    println!("test a_fork_from_a_signal_handler_leaves_the_outer_forks_locks ... ok");
}
