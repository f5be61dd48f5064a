//! Values between processes: bincode frames with a length prefix, over pipes and sockets.
//!
//! A frame is a little-endian `u32` payload length, then the payload: one value encoded with
//! bincode 2's standard configuration, but with integers at their fixed size (an `i64` is
//! eight bytes), which encode and decode at memory speed where varints took a third of the
//! time of a `map` of small ints. A reader checks the length against [`MAX_FRAME`]
//! before it waits for or allocates the payload, so a wrong or hostile prefix costs nothing,
//! and a payload that does not decode to exactly one value is an error, never a panic: nor
//! a stack overflow, as a value nested more than [`MAX_DEPTH`] deep is refused, by the
//! writer as by the reader.

use std::fmt;
use std::marker::PhantomData;

use bincode::config::{Configuration, Fixint, Limit, LittleEndian};
use serde::Serialize;
use serde::de::{DeserializeOwned, DeserializeSeed};

use crate::Error;

mod buf;
mod depth;
pub use buf::FrameBuf;

/// The largest payload a frame may carry: 16 MiB.
pub const MAX_FRAME: usize = 16 << 20;

/// How deeply a decoded value may nest: Python's default recursion limit. Decoding recurses
/// a level for each `Some`, element, field or variant's contents, and a payload can nest its
/// tags far deeper than the stack goes (a nested enum costs four bytes a level), so a deeper
/// value is a decode error where it would otherwise overflow the stack and abort. Encoding
/// counts the same way, so such a value is an encode error at the writer, not a frame sent
/// for the reader to refuse. A level also takes stack, from a few hundred bytes to kilobytes
/// (large fields, a debug build): whatever its depth, a compound value is refused, by the
/// reader or the writer, once the decode or encode has taken 1.5 MiB of stack below where it
/// began, which keeps a spawned thread's 2 MiB from overflowing if it began with less than
/// about 450 KiB used. Each side measures its own stack, and a reader takes more than the
/// writer (for arrays, far more): a value near that budget may be sent, then refused by
/// the reader. A thread of a smaller stack has the count of levels only; and a single level
/// larger than what is left of the stack (fields of hundreds of kilobytes) overflows before
/// it can be refused.
pub const MAX_DEPTH: usize = 1000;

/// The length prefix's size.
pub const PREFIX: usize = 4;

const CONFIG: Configuration<LittleEndian, Fixint, Limit<MAX_FRAME>> = bincode::config::standard()
    .with_fixed_int_encoding()
    .with_limit::<MAX_FRAME>();

/// What can be wrong with a frame.
#[derive(thiserror::Error)]
pub enum FrameError {
    /// The length prefix claims more than [`MAX_FRAME`] bytes.
    #[error("frame of {len} bytes is over the limit of {MAX_FRAME}")]
    TooLarge {
        /// The length the prefix claims, or the encoded value's length.
        len: usize,
    },
    /// The stream ended in the middle of a frame.
    #[error("stream ended inside a frame, after {got} bytes")]
    Truncated {
        /// How many bytes of the frame had arrived.
        got: usize,
    },
    /// The value could not be encoded.
    #[error("cannot encode value: {}", encode_message(.0))]
    Encode(bincode::error::EncodeError),
    /// The payload is not one value of the expected type.
    #[error("malformed frame: {0}")]
    Decode(String),
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] Error),
}

/// The same text as `Display`, so that a worker's `Error:` line reads as a message.
impl fmt::Debug for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A type's own message (serde's `Error::custom`) as it wrote it; bincode's otherwise.
fn encode_message(e: &bincode::error::EncodeError) -> String {
    match e {
        bincode::error::EncodeError::OtherString(why) => why.clone(),
        e => e.to_string(),
    }
}

/// Starts a frame at the end of `buf`: reserves its length prefix. Returns where it starts,
/// for [`end_frame`].
pub fn start_frame(buf: &mut Vec<u8>) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0; PREFIX]);
    start
}

/// Appends `value`'s encoding to `buf`, inside a frame begun with [`start_frame`]. A value
/// nested more than [`MAX_DEPTH`] deep is an error, as decoding it would be (see there for
/// the stack's own budget, which is each side's); what it had
/// appended is left in `buf`, for the caller to take out with the frame.
pub fn encode_into<T: Serialize + ?Sized>(buf: &mut Vec<u8>, value: &T) -> Result<(), FrameError> {
    bincode::serde::encode_into_std_write(depth::LimitedValue(value), buf, CONFIG)
        .map(drop)
        .map_err(FrameError::Encode)
}

/// Ends the frame that starts at `start`: writes its length prefix. A frame over the limit
/// is taken out of `buf` again and reported.
pub fn end_frame(buf: &mut Vec<u8>, start: usize) -> Result<(), FrameError> {
    let len = buf.len() - start - PREFIX;
    if len > MAX_FRAME {
        buf.truncate(start);
        return Err(FrameError::TooLarge { len });
    }
    buf[start..start + PREFIX].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

/// Appends one frame holding `value` to `buf`.
pub fn encode<T: Serialize + ?Sized>(buf: &mut Vec<u8>, value: &T) -> Result<(), FrameError> {
    let start = start_frame(buf);
    if let Err(e) = encode_into(buf, value) {
        buf.truncate(start);
        return Err(e);
    }
    end_frame(buf, start)
}

/// The payload length that the frame starting at `bytes` claims, checked against
/// [`MAX_FRAME`]; `None` while fewer than [`PREFIX`] bytes have come.
pub fn payload_len(bytes: &[u8]) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = bytes.first_chunk::<PREFIX>() else {
        return Ok(None);
    };
    let len = u32::from_le_bytes(*prefix) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge { len });
    }
    Ok(Some(len))
}

/// Decodes a payload that must hold exactly one `T`.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    decode_seed(PhantomData, payload)
}

/// [`decode`], through `seed`: serde's way to decode into something the caller holds (to
/// append a list's items to a vector of its own, say) where `decode` makes a value anew.
pub fn decode_seed<'de, S: DeserializeSeed<'de>>(
    seed: S,
    payload: &'de [u8],
) -> Result<S::Value, FrameError> {
    let (value, used) =
        bincode::serde::seed_decode_from_slice(depth::Limited::new(seed), payload, CONFIG)
            .map_err(|e| match e {
                // A type's own message (serde's `Error::custom`) or the depth limit's, as written.
                bincode::error::DecodeError::OtherString(why) => FrameError::Decode(why),
                e => FrameError::Decode(e.to_string()),
            })?;
    if used != payload.len() {
        return Err(FrameError::Decode(format!(
            "{} bytes left over after the value",
            payload.len() - used
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_leftovers_are_decode_errors() {
        assert!(matches!(
            decode::<String>(&[5, b'a']),
            Err(FrameError::Decode(_))
        ));
        assert!(matches!(decode::<u8>(&[1, 2]), Err(FrameError::Decode(_))));
        // A Vec claiming 2^60 elements in a few bytes fails without allocating them.
        let claim = [253, 0, 0, 0, 0, 0, 0, 0, 16];
        assert!(matches!(
            decode::<Vec<u64>>(&claim),
            Err(FrameError::Decode(_))
        ));
    }
}
