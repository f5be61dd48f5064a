//! The raw limits: the same kinds of work done with direct libc calls and nothing else, no
//! framing, no checks, no bookkeeping. What a mechanism costs beyond its limit is its own.
//!
//! Each child forked here only reads, writes and calls `_exit`, and ends at once when its
//! parent goes (its pipe reaches its end, or a write to it fails), so none is left behind.

use std::error::Error;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::ptr;
use std::time::Instant;

use crate::workloads::Timed;

/// fork, `_exit(0)` in the child, waitpid in the parent: `n` times.
pub fn fork_exit_wait(n: usize) -> Timed {
    let start = Instant::now();
    for _ in 0..n {
        let child = fork(|| {})?;
        reap(child)?;
    }
    Ok(start.elapsed())
}

/// One byte to a child and one back, `n` times, with blocking reads (`polling`: with
/// non-blocking reads that spin until the byte is there, on both sides).
pub fn round_trip(n: usize, polling: bool) -> Timed {
    let (to_child_r, to_child_w) = os_pipe::pipe()?;
    let (to_parent_r, to_parent_w) = os_pipe::pipe()?;
    if polling {
        set_nonblocking(to_child_r.as_raw_fd())?;
        set_nonblocking(to_parent_r.as_raw_fd())?;
    }
    let (r, w) = (to_child_r.as_raw_fd(), to_parent_w.as_raw_fd());
    let parents_ends = [to_child_w.as_raw_fd(), to_parent_r.as_raw_fd()];
    let child = fork(|| {
        close(parents_ends);
        for _ in 0..n {
            if read_byte(r).is_err() || write_all(w, b"x").is_err() {
                return;
            }
        }
    })?;
    drop((to_child_r, to_parent_w));
    let (r, w) = (to_parent_r.as_raw_fd(), to_child_w.as_raw_fd());
    let start = Instant::now();
    let result = (0..n).try_for_each(|_| {
        write_all(w, b"x")?;
        read_byte(r)
    });
    let elapsed = start.elapsed();
    drop(to_child_w);
    reap(child)?;
    result?;
    Ok(elapsed)
}

/// A child writes `n` messages of 16 bytes, one `write` each; the parent reads them all.
pub fn stream(n: usize) -> Timed {
    let (mut reader, writer) = os_pipe::pipe()?;
    let w = writer.as_raw_fd();
    let readers_end = reader.as_raw_fd();
    let start = Instant::now();
    let child = fork(|| {
        close([readers_end]);
        for _ in 0..n {
            if write_all(w, &[7; 16]).is_err() {
                return;
            }
        }
    })?;
    drop(writer);
    let mut buf = vec![0; 1 << 16];
    let mut left = n * 16;
    while left > 0 {
        match io::Read::read(&mut reader, &mut buf)? {
            0 => return Err("the writer stopped early".into()),
            got => left = left.saturating_sub(got),
        }
    }
    let elapsed = start.elapsed();
    reap(child)?;
    Ok(elapsed)
}

/// Lock and unlock a process-shared mutex in a `MAP_SHARED` mapping, `n` times, uncontended.
pub fn mutex(n: usize) -> Timed {
    let size = std::mem::size_of::<libc::pthread_mutex_t>();
    // SAFETY: an anonymous shared mapping of `size` bytes, at an address the kernel chooses;
    // failure is checked below.
    let memory = unsafe {
        libc::mmap(
            ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if memory == libc::MAP_FAILED {
        return Err(io::Error::last_os_error().into());
    }
    let mutex = memory.cast::<libc::pthread_mutex_t>();
    // SAFETY: `mutex` points to `size` writable bytes, page-aligned, which the attribute
    // functions initialise as a process-shared mutex before it is used; it is destroyed and
    // unmapped at the end, and nothing else refers to it.
    unsafe {
        let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
        libc::pthread_mutexattr_init(&mut attr);
        libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
        libc::pthread_mutex_init(mutex, &attr);
        libc::pthread_mutexattr_destroy(&mut attr);
        let start = Instant::now();
        for _ in 0..n {
            libc::pthread_mutex_lock(mutex);
            libc::pthread_mutex_unlock(mutex);
        }
        let elapsed = start.elapsed();
        libc::pthread_mutex_destroy(mutex);
        libc::munmap(memory, size);
        Ok(elapsed)
    }
}

/// Forks a child that runs `child` and then `_exit(0)`.
fn fork(child: impl FnOnce()) -> Result<libc::pid_t, Box<dyn Error>> {
    // SAFETY: the bench runs no other thread, and the child only reads and writes pipes with
    // system calls and ends with _exit: nothing in it needs a lock another thread could hold.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error().into()),
        0 => {
            child();
            // SAFETY: ends the child at once, running none of the parent's destructors.
            unsafe { libc::_exit(0) }
        }
        pid => Ok(pid),
    }
}

/// waitpid for `pid`, which must have exited with 0.
fn reap(pid: libc::pid_t) -> Result<(), Box<dyn Error>> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid writes only `status`.
        if unsafe { libc::waitpid(pid, &mut status, 0) } == pid {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e.into());
        }
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        Err(format!("a raw child ended with status {status:#x}").into())
    }
}

/// In a child: closes the parent's ends of its pipes, so that the child's reads reach the
/// end and its writes fail once the parent is gone, instead of waiting forever.
fn close<const N: usize>(fds: [RawFd; N]) {
    for fd in fds {
        // SAFETY: the descriptor is this child's copy of one the parent owns; the child
        // never uses it, and closing it affects only the child.
        unsafe { libc::close(fd) };
    }
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor this process owns; it touches no memory.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads one byte, spinning while a non-blocking pipe is empty.
fn read_byte(fd: RawFd) -> Result<(), Box<dyn Error>> {
    let mut byte = 0u8;
    loop {
        // SAFETY: reads at most one byte into `byte`, which is alive.
        match unsafe { libc::read(fd, (&raw mut byte).cast(), 1) } {
            1 => return Ok(()),
            0 => return Err("the pipe's other end closed".into()),
            _ => match io::Error::last_os_error() {
                e if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
                {
                    std::hint::spin_loop()
                }
                e => return Err(e.into()),
            },
        }
    }
}

/// Writes all of `bytes` (at most PIPE_BUF, so one write does it).
fn write_all(fd: RawFd, bytes: &[u8]) -> Result<(), Box<dyn Error>> {
    loop {
        // SAFETY: writes from `bytes`, which is alive, at most its length.
        let wrote = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if wrote == bytes.len() as isize {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if wrote >= 0 || e.kind() != io::ErrorKind::Interrupted {
            return Err(format!("write: {e}").into());
        }
    }
}
