//! `PyValue` as serde data, with its nesting bounded.
//!
//! Serde's derived code walks a value recursively: a list inside a list costs a few stack
//! frames per level. Decoding a frame that holds a list nested a million deep (a few bytes
//! per level) would overflow the stack of whatever process reads it (the manager's server,
//! a queue reader, a pool worker) and abort it. Python's pickle has a recursion limit too.
//! So both directions count the lists around a value, and a value nested deeper than
//! [`MAX_DEPTH`] is an error: encoding refuses it before anything is sent, and decoding
//! refuses it before it recurses further. The wire format is the one serde derives.

use std::fmt;

use serde::de::{self, DeserializeSeed, EnumAccess, SeqAccess, VariantAccess, Visitor};
use serde::ser::{self, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::PyValue;

/// How many lists a `PyValue` may nest: `[[[]]]` nests 3.
///
/// Measured, a level costs about 3 KiB of stack to encode and decode in a debug build (256
/// levels need between 512 and 768 KiB) and about 0.5 KiB optimised. So 256 levels fit in
/// the 2 MiB that a Rust thread gets (a test's, say), and in a main thread's usual 8 MiB with
/// room to spare; Python's limit of 1,000 frames would not fit in a debug thread. No program
/// of this workspace nests lists more than a few levels.
pub const MAX_DEPTH: usize = 256;

fn too_deep() -> String {
    format!("lists nested deeper than {MAX_DEPTH} levels")
}

const NAME: &str = "PyValue";
const VARIANTS: &[&str] = &["None", "Bool", "Int", "Float", "Str", "List"];

impl Serialize for PyValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Nested {
            value: self,
            lists_around: 0,
        }
        .serialize(s)
    }
}

/// A value, and how many lists enclose it.
struct Nested<'a> {
    value: &'a PyValue,
    lists_around: usize,
}

impl Serialize for Nested<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.value {
            PyValue::None => s.serialize_unit_variant(NAME, 0, "None"),
            PyValue::Bool(b) => s.serialize_newtype_variant(NAME, 1, "Bool", b),
            PyValue::Int(i) => s.serialize_newtype_variant(NAME, 2, "Int", i),
            PyValue::Float(x) => s.serialize_newtype_variant(NAME, 3, "Float", x),
            PyValue::Str(t) => s.serialize_newtype_variant(NAME, 4, "Str", t),
            PyValue::List(_) if self.lists_around >= MAX_DEPTH => {
                Err(ser::Error::custom(too_deep()))
            }
            PyValue::List(items) => {
                let items = Items {
                    items,
                    lists_around: self.lists_around + 1,
                };
                s.serialize_newtype_variant(NAME, 5, "List", &items)
            }
        }
    }
}

/// A list's items, each inside `lists_around` lists.
struct Items<'a> {
    items: &'a [PyValue],
    lists_around: usize,
}

impl Serialize for Items<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.items.len()))?;
        for value in self.items {
            seq.serialize_element(&Nested {
                value,
                lists_around: self.lists_around,
            })?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for PyValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ValueSeed { lists_around: 0 }.deserialize(d)
    }
}

/// Which variant comes: by index (bincode) or by name (self-describing formats).
#[derive(Deserialize)]
#[serde(variant_identifier)]
enum Kind {
    None,
    Bool,
    Int,
    Float,
    Str,
    List,
}

/// Decodes one value inside `lists_around` lists.
struct ValueSeed {
    lists_around: usize,
}

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = PyValue;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<PyValue, D::Error> {
        d.deserialize_enum(NAME, VARIANTS, self)
    }
}

impl<'de> Visitor<'de> for ValueSeed {
    type Value = PyValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a PyValue")
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<PyValue, A::Error> {
        let (kind, v) = data.variant::<Kind>()?;
        Ok(match kind {
            Kind::None => {
                v.unit_variant()?;
                PyValue::None
            }
            Kind::Bool => PyValue::Bool(v.newtype_variant()?),
            Kind::Int => PyValue::Int(v.newtype_variant()?),
            Kind::Float => PyValue::Float(v.newtype_variant()?),
            Kind::Str => PyValue::Str(v.newtype_variant()?),
            // Refused before its items are read, so the stack never grows past the limit.
            Kind::List if self.lists_around >= MAX_DEPTH => {
                return Err(de::Error::custom(too_deep()));
            }
            Kind::List => PyValue::List(v.newtype_variant_seed(ItemsSeed {
                lists_around: self.lists_around + 1,
            })?),
        })
    }
}

/// Decodes a list's items, each inside `lists_around` lists.
struct ItemsSeed {
    lists_around: usize,
}

impl<'de> DeserializeSeed<'de> for ItemsSeed {
    type Value = Vec<PyValue>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<PyValue>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ItemsSeed {
    type Value = Vec<PyValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of PyValues")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<PyValue>, A::Error> {
        // As serde's own `Vec` does: a claimed length is trusted only up to 1 MiB of items,
        // so a few hostile bytes cannot make a huge allocation before the items come.
        let cautious = (1 << 20) / std::mem::size_of::<PyValue>();
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(cautious));
        while let Some(item) = seq.next_element_seed(ValueSeed {
            lists_around: self.lists_around,
        })? {
            items.push(item);
        }
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{self, FrameError};

    /// `lists` lists, one inside the other, around `None`.
    fn nested(lists: usize) -> PyValue {
        (0..lists).fold(PyValue::None, |v, _| PyValue::List(vec![v]))
    }

    #[test]
    fn the_wire_format_is_the_derived_one() {
        #[derive(Serialize, Deserialize, Debug, PartialEq)]
        enum Derived {
            None,
            Bool(bool),
            Int(i64),
            Float(f64),
            Str(String),
            List(Vec<Derived>),
        }
        let ours = PyValue::List(vec![
            PyValue::None,
            true.into(),
            7.into(),
            0.25.into(),
            "s".into(),
            PyValue::List(vec![]),
        ]);
        let theirs = Derived::List(vec![
            Derived::None,
            Derived::Bool(true),
            Derived::Int(7),
            Derived::Float(0.25),
            Derived::Str("s".into()),
            Derived::List(vec![]),
        ]);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        frame::encode(&mut a, &ours).unwrap();
        frame::encode(&mut b, &theirs).unwrap();
        assert_eq!(a, b);
        assert_eq!(frame::decode::<PyValue>(&a[frame::PREFIX..]).unwrap(), ours);
    }

    #[test]
    fn nesting_up_to_the_limit_round_trips() {
        let deepest = nested(MAX_DEPTH);
        let mut buf = Vec::new();
        frame::encode(&mut buf, &deepest).unwrap();
        assert_eq!(
            frame::decode::<PyValue>(&buf[frame::PREFIX..]).unwrap(),
            deepest
        );
    }

    #[test]
    fn nesting_past_the_limit_is_refused_both_ways() {
        let mut buf = Vec::new();
        let err = frame::encode(&mut buf, &nested(MAX_DEPTH + 1)).unwrap_err();
        assert!(err.to_string().contains("nested deeper than 256"), "{err}");
        assert!(buf.is_empty());
        // What a hostile writer sends: a million lists of one item each (4 bytes of variant
        // and 8 of length per level), one inside the other, in a frame under the limit.
        let levels = 1_000_000;
        let mut payload = Vec::with_capacity(levels * 12 + 4);
        for _ in 0..levels {
            payload.extend_from_slice(&5u32.to_le_bytes());
            payload.extend_from_slice(&1u64.to_le_bytes());
        }
        payload.extend_from_slice(&0u32.to_le_bytes());
        assert!(payload.len() <= frame::MAX_FRAME);
        match frame::decode::<PyValue>(&payload) {
            Err(FrameError::Decode(e)) => assert!(e.contains("nested deeper than 256"), "{e}"),
            other => panic!("not a decode error: {other:?}"),
        }
        // Inside a Vec of values too, as a queue or a pool sends them.
        match frame::decode::<Vec<PyValue>>(&[&1u64.to_le_bytes()[..], &payload].concat()) {
            Err(FrameError::Decode(e)) => assert!(e.contains("nested deeper than 256"), "{e}"),
            other => panic!("not a decode error: {other:?}"),
        }
    }
}
