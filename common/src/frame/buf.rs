//! [`FrameBuf`]: frames read from a stream, a buffer at a time.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use super::{FrameError, PREFIX, payload_len};
use crate::Error;
use crate::fd::{self, Spin, wait_readable};

/// What a [`FrameBuf`] takes at its first read.
const FIRST: usize = 64 << 10;

/// The most a [`FrameBuf`] keeps once the frames that grew it have been taken: what a pipe
/// holds ([`fd::PIPE_SIZE`]). A buffer that gave back all it grew for each big frame had its
/// pages faulted in anew for the next: 40 `Pool::map`s of 200,000 ints on one pool (chunks
/// of 200 KB each way) took 6.7-8.2 ms each so, 4.2-6.9 ms with this (six alternating runs).
const KEPT: usize = fd::PIPE_SIZE;

/// Bytes read from a stream and not yet taken as frames: one buffer, reused, so reading
/// many small frames costs few system calls and no allocation per frame.
#[derive(Default)]
pub struct FrameBuf {
    /// Its whole length is usable; the bytes waiting are `buf[start..end]`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl FrameBuf {
    /// An empty buffer.
    pub fn new() -> Self {
        FrameBuf::default()
    }

    /// The payload length of the next frame, if the whole frame has arrived.
    pub fn ready(&self) -> Result<Option<usize>, FrameError> {
        let have = &self.buf[self.start..self.end];
        Ok(payload_len(have)?.filter(|len| have.len() >= PREFIX + len))
    }

    /// The next whole frame's payload, if it has arrived.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        let Some(len) = self.ready()? else {
            return Ok(None);
        };
        let from = self.start + PREFIX;
        self.start = from + len;
        Ok(Some(&self.buf[from..from + len]))
    }

    /// How many bytes wait that are not a whole frame yet.
    pub fn pending(&self) -> usize {
        self.end - self.start
    }

    /// Reads once from `r` into the buffer: what `read(2)` returns, 0 at end of stream.
    ///
    /// The buffer takes 64 KiB, and grows only as the bytes of a larger frame arrive (to
    /// twice what has come, and never past the frame's end): a frame's claimed length is
    /// never allocated up front. Once the frame is taken, it keeps what it grew up to 1 MiB,
    /// and gives back the rest.
    pub fn fill(&mut self, r: &mut impl Read) -> io::Result<usize> {
        let n = r.read(self.room()?)?;
        self.end += n;
        Ok(n)
    }

    /// As [`fill`](Self::fill), but without waiting even where reads of `fd` block
    /// ([`fd::read_now`]): `Ok(None)` when nothing has come yet.
    fn fill_now(&mut self, fd: BorrowedFd<'_>) -> io::Result<Option<usize>> {
        let n = fd::read_now(fd, self.room()?)?;
        self.end += n.unwrap_or(0);
        Ok(n)
    }

    /// Where the next read goes: the free end of the buffer, made room for.
    fn room(&mut self) -> io::Result<&mut [u8]> {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
        // What a big frame grew over KEPT, it gives back once taken: a connection that sent
        // one keeps at most 1 MiB, not its megabytes, even when the first bytes of the next
        // frame came with it (unless that frame needs more too).
        let give_back = self.buf.len() > KEPT && self.end - self.start <= KEPT && {
            let next = payload_len(&self.buf[self.start..self.end]);
            !matches!(next, Ok(Some(len)) if PREFIX + len > KEPT)
        };
        if self.start > 0 && (give_back || self.end == self.buf.len()) {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        if give_back {
            self.buf.truncate(KEPT);
            self.buf.shrink_to_fit();
        }
        if self.end == self.buf.len() {
            // Twice what it holds, so that a big frame comes in few reads; but no more than
            // the frame that has begun needs, which a peer that stalls inside it would
            // otherwise keep allocated, and zeroed, twice over.
            let doubled = (2 * self.buf.len()).max(FIRST);
            let grown = match payload_len(&self.buf[self.start..self.end]) {
                Ok(Some(len)) if self.start + PREFIX + len > self.end => {
                    doubled.min(self.start + PREFIX + len)
                }
                _ => doubled,
            };
            // Exactly: `resize` alone grows the allocation to twice its capacity, past the
            // frame's end (32 MiB for the largest frame of 16). Where memory is short (a
            // limit on the address space), the read fails, and the caller drops this
            // stream, where an allocation that failed aborted the process.
            self.buf
                .try_reserve_exact(grown - self.buf.len())
                .map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
            self.buf.resize(grown, 0);
        }
        Ok(&mut self.buf[self.end..])
    }

    /// Blocks until the next frame has arrived and returns its payload; `Ok(None)` at the
    /// end of the stream between frames.
    ///
    /// `r` must block (as pipes and sockets do unless made non-blocking), and its reads must
    /// be plain reads of its descriptor, which is read directly while spinning: where
    /// spinning pays (see [`Spin`]), it is read without waiting ([`fd::read_now`]) for a while;
    /// otherwise the reader sleeps in `read(2)` itself. That is one system call a wait,
    /// where a non-blocking read, a sleep in `poll(2)` and a second read made three: a pipe
    /// round trip on one CPU took 7.1 us with blocking reads against 9.1 us so (medians of
    /// five runs of 20,000 round trips, `taskset -c 0`).
    pub fn read_frame<R: Read + AsFd>(&mut self, r: &mut R) -> Result<Option<&[u8]>, FrameError> {
        let mut spin = Spin::new();
        while self.ready()?.is_none() {
            let read = if spin.again() {
                match self.fill_now(r.as_fd()) {
                    Ok(None) => continue,
                    Ok(Some(n)) => Ok(n),
                    // The kernel cannot read it without waiting: a look with poll(2) first.
                    Err(e)
                        if e.kind() == io::ErrorKind::Unsupported
                            && !wait_readable(r.as_fd(), Some(Duration::ZERO))? =>
                    {
                        continue;
                    }
                    // Readable, or an error: a read through `r` tells what is there. An
                    // error the kernel reports once (a reset connection) was told to the
                    // read that did not wait: this one finds the stream's end.
                    Err(_) => self.fill(r),
                }
            } else {
                self.fill(r)
            };
            match read {
                Ok(0) if self.pending() == 0 => return Ok(None),
                Ok(0) => {
                    return Err(FrameError::Truncated {
                        got: self.pending(),
                    });
                }
                Ok(_) => spin.got(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::os("read", e).into()),
            }
        }
        self.next_frame()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{MAX_FRAME, decode, encode};

    #[test]
    fn a_value_round_trips() {
        let mut buf = Vec::new();
        encode(&mut buf, &(7, "hello".to_string())).unwrap();
        encode(&mut buf, &vec![1.5f64, -0.0]).unwrap();
        let mut frames = FrameBuf::new();
        frames.fill(&mut &buf[..]).unwrap();
        let first: (i32, String) = decode(frames.next_frame().unwrap().unwrap()).unwrap();
        assert_eq!(first, (7, "hello".to_string()));
        let second: Vec<f64> = decode(frames.next_frame().unwrap().unwrap()).unwrap();
        assert_eq!(second, [1.5, -0.0]);
        assert!(frames.next_frame().unwrap().is_none());
    }

    #[test]
    fn a_prefix_over_the_limit_is_refused_before_its_payload() {
        let mut frames = FrameBuf::new();
        let prefix = (MAX_FRAME as u32 + 1).to_le_bytes();
        frames.fill(&mut &prefix[..]).unwrap();
        assert!(matches!(
            frames.next_frame(),
            Err(FrameError::TooLarge { len }) if len == MAX_FRAME + 1
        ));
        // Nor is a value over the limit written.
        let mut buf = vec![9];
        let big = vec![0u8; MAX_FRAME + 1];
        assert!(matches!(
            encode(&mut buf, &big),
            Err(FrameError::TooLarge { .. })
        ));
        assert_eq!(buf, [9]);
    }

    #[test]
    fn a_claimed_length_is_not_allocated_before_its_bytes_come() {
        let mut frames = FrameBuf::new();
        let mut claim = (MAX_FRAME as u32).to_le_bytes().to_vec();
        claim.extend_from_slice(&[0; 10]);
        frames.fill(&mut &claim[..]).unwrap();
        frames.fill(&mut &[0u8; 10][..]).unwrap();
        frames.fill(&mut &[0u8; 10][..]).unwrap();
        assert!(frames.next_frame().unwrap().is_none());
        assert_eq!(frames.pending(), 34);
        assert!(
            frames.buf.capacity() <= FIRST,
            "{} bytes allocated",
            frames.buf.capacity()
        );
    }

    #[test]
    fn a_frame_that_stalls_holds_no_more_than_its_own_length() {
        let mut buf = Vec::new();
        encode(&mut buf, &vec![7u8; MAX_FRAME - 8]).unwrap();
        assert_eq!(buf.len(), PREFIX + MAX_FRAME);
        // All but the last byte of the largest frame arrive, and its sender stops.
        let mut stalled = &buf[..buf.len() - 1];
        let mut frames = FrameBuf::new();
        while frames.fill(&mut stalled).unwrap() > 0 {}
        assert_eq!(frames.pending(), PREFIX + MAX_FRAME - 1);
        // Its allocation, not only its length: what a stalled peer keeps.
        assert!(
            frames.buf.capacity() <= PREFIX + MAX_FRAME,
            "{} bytes allocated",
            frames.buf.capacity()
        );
        frames.fill(&mut &buf[buf.len() - 1..]).unwrap();
        assert_eq!(frames.next_frame().unwrap().unwrap().len(), MAX_FRAME);
    }

    /// Reads a frame of `len` bytes whole, then a frame of one byte: returns how large the
    /// buffer grew for the first, and how large it was once the second had come.
    fn grown_then_kept(len: usize) -> (usize, usize) {
        let mut buf = Vec::new();
        encode(&mut buf, &vec![7u8; len]).unwrap();
        encode(&mut buf, &1u8).unwrap();
        let (mut big, small) = buf.split_at(buf.len() - PREFIX - 1);
        let mut frames = FrameBuf::new();
        while frames.ready().unwrap().is_none() {
            frames.fill(&mut big).unwrap();
        }
        let grown = frames.buf.capacity();
        frames.next_frame().unwrap().unwrap();
        frames.fill(&mut &small[..]).unwrap();
        assert_eq!(
            decode::<u8>(frames.next_frame().unwrap().unwrap()).unwrap(),
            1
        );
        (grown, frames.buf.capacity())
    }

    #[test]
    fn a_big_frame_gives_its_memory_back_once_taken() {
        let (grown, kept) = grown_then_kept(4 * KEPT);
        assert!(grown > 4 * KEPT);
        assert!(kept <= KEPT, "{kept} bytes kept");
    }

    #[test]
    fn a_big_frame_gives_its_memory_back_though_the_next_began_with_it() {
        let mut buf = Vec::new();
        encode(&mut buf, &vec![7u8; 4 * KEPT]).unwrap();
        let big = buf.len();
        encode(&mut buf, &1u8).unwrap();
        // The big frame arrives, and the first two bytes of the next before it is taken.
        let (mut first, rest) = buf.split_at(big + 2);
        let mut frames = FrameBuf::new();
        while frames.ready().unwrap().is_none() {
            frames.fill(&mut first).unwrap();
        }
        frames.fill(&mut first).unwrap();
        assert_eq!(frames.next_frame().unwrap().unwrap().len(), big - PREFIX);
        assert_eq!(frames.pending(), 2);
        frames.fill(&mut &rest[..]).unwrap();
        assert!(
            frames.buf.capacity() <= KEPT,
            "{} bytes kept",
            frames.buf.capacity()
        );
        assert_eq!(
            decode::<u8>(frames.next_frame().unwrap().unwrap()).unwrap(),
            1
        );
    }

    #[test]
    fn a_buffer_grown_for_a_frame_it_may_keep_is_kept() {
        let (grown, kept) = grown_then_kept(KEPT / 4);
        assert!(grown > FIRST);
        assert_eq!(kept, grown, "the next frame faulted its pages in anew");
    }

    #[test]
    fn a_stream_that_stops_inside_a_frame_is_truncated() {
        let mut buf = Vec::new();
        encode(&mut buf, "a frame that will be cut").unwrap();
        let (r, mut w) = os_pipe::pipe().unwrap();
        std::io::Write::write_all(&mut w, &buf[..10]).unwrap();
        drop(w);
        let mut r = r;
        let mut frames = FrameBuf::new();
        assert!(matches!(
            frames.read_frame(&mut r),
            Err(FrameError::Truncated { got: 10 })
        ));
    }

    #[test]
    fn frames_larger_than_a_pipe_arrive_whole() {
        let mut buf = Vec::new();
        let big: Vec<u32> = (0..100_000).collect();
        encode(&mut buf, &big).unwrap();
        let (mut r, mut w) = os_pipe::pipe().unwrap();
        let writer = std::thread::spawn(move || std::io::Write::write_all(&mut w, &buf));
        let mut frames = FrameBuf::new();
        let got: Vec<u32> = decode(frames.read_frame(&mut r).unwrap().unwrap()).unwrap();
        assert_eq!(got, big);
        writer.join().unwrap().unwrap();
        assert!(frames.read_frame(&mut r).unwrap().is_none());
    }
}
