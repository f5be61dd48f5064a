//! [`Limited`]: decoding that refuses values nested more than [`MAX_DEPTH`] deep.
//!
//! Serde decodes a nested value by recursion, a few stack frames a level, so a payload of
//! 100,000 nested enum tags (four bytes each in bincode) overflows the stack, and a stack
//! overflow aborts the process. The wrappers here stand between bincode's deserializer and
//! the type's visitor, carry how deep the value being decoded is, and decode each compound
//! value's contents one level deeper, through [`deeper`], which fails past the limit.
//! Everything else is passed through unchanged, so a primitive costs nothing more once
//! inlined.

use std::fmt;

use serde::de::{self, DeserializeSeed};

use super::MAX_DEPTH;

/// A seed decoded with a depth limit: the value itself is at depth 0.
pub(super) struct Limited<S>(S);

impl<S> Limited<S> {
    /// `seed`, decoded with a depth limit.
    pub(super) fn new(seed: S) -> Self {
        Limited(seed)
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Limited<S> {
    type Value = S::Value;

    #[inline]
    fn deserialize<D: de::Deserializer<'de>>(self, inner: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Deserializer { inner, depth: 0 })
    }
}

/// `inner`, to decode the contents of a value at `depth`: one level deeper, or an error
/// before any more recursion if that is past [`MAX_DEPTH`].
#[inline]
fn deeper<'de, D: de::Deserializer<'de>>(
    inner: D,
    depth: usize,
) -> Result<Deserializer<D>, D::Error> {
    if depth >= MAX_DEPTH {
        return Err(too_deep());
    }
    Ok(Deserializer {
        inner,
        depth: depth + 1,
    })
}

/// The error past [`MAX_DEPTH`]; out of line, as it is rare.
#[cold]
fn too_deep<E: de::Error>() -> E {
    E::custom(format_args!("nested more than {MAX_DEPTH} deep"))
}

/// A deserializer for a value at `depth`: hands the visitor on wrapped, to count what it
/// visits.
struct Deserializer<D> {
    inner: D,
    depth: usize,
}

/// Each `deserialize_*` method, forwarded with its arguments and the visitor wrapped.
/// Bincode is not self-describing, so the type's own choice of method must reach it.
macro_rules! forward_deserialize {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        #[inline]
        fn $method<V: de::Visitor<'de>>(
            self,
            $($arg: $ty,)*
            visitor: V,
        ) -> Result<V::Value, D::Error> {
            let visitor = Visitor { inner: visitor, depth: self.depth };
            self.inner.$method($($arg,)* visitor)
        }
    )*};
}

impl<'de, D: de::Deserializer<'de>> de::Deserializer<'de> for Deserializer<D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    #[inline]
    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// A visitor for a value at `depth`: a primitive is passed on as it is, a compound value's
/// contents are decoded one level deeper.
struct Visitor<V> {
    inner: V,
    depth: usize,
}

/// Each `visit_*` method of a primitive, forwarded unchanged.
macro_rules! forward_visit {
    ($($method:ident($ty:ty);)*) => {$(
        #[inline]
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: de::Visitor<'de>> de::Visitor<'de> for Visitor<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_string(String);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    #[inline]
    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    #[inline]
    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    #[inline]
    fn visit_some<D: de::Deserializer<'de>>(self, inner: D) -> Result<V::Value, D::Error> {
        self.inner.visit_some(deeper(inner, self.depth)?)
    }

    #[inline]
    fn visit_newtype_struct<D: de::Deserializer<'de>>(
        self,
        inner: D,
    ) -> Result<V::Value, D::Error> {
        self.inner.visit_newtype_struct(deeper(inner, self.depth)?)
    }

    #[inline]
    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.inner.visit_seq(Access {
            inner: seq,
            depth: self.depth,
        })
    }

    #[inline]
    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(Access {
            inner: map,
            depth: self.depth,
        })
    }

    #[inline]
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(Access {
            inner: data,
            depth: self.depth,
        })
    }
}

/// The parts of a compound value at `depth`, as a sequence, map or enum hands them out:
/// each is decoded one level deeper, through [`Seed`].
struct Access<A> {
    inner: A,
    depth: usize,
}

/// A seed for one part of a compound value at `depth`.
struct Seed<S> {
    inner: S,
    depth: usize,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<S> {
    type Value = S::Value;

    #[inline]
    fn deserialize<D: de::Deserializer<'de>>(self, inner: D) -> Result<S::Value, D::Error> {
        self.inner.deserialize(deeper(inner, self.depth)?)
    }
}

impl<A> Access<A> {
    /// `seed`, for a part of this value.
    #[inline]
    fn seed<S>(&self, seed: S) -> Seed<S> {
        Seed {
            inner: seed,
            depth: self.depth,
        }
    }
}

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for Access<A> {
    type Error = A::Error;

    #[inline]
    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        self.inner.next_element_seed(self.seed(seed))
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Access<A> {
    type Error = A::Error;

    #[inline]
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.inner.next_key_seed(self.seed(seed))
    }

    #[inline]
    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.inner.next_value_seed(self.seed(seed))
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

/// An enum's variant is its tag, one level deeper like its contents.
impl<'de, A: de::EnumAccess<'de>> de::EnumAccess<'de> for Access<A> {
    type Error = A::Error;
    type Variant = Access<A::Variant>;

    #[inline]
    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        let (seed, depth) = (self.seed(seed), self.depth);
        let (tag, variant) = self.inner.variant_seed(seed)?;
        Ok((
            tag,
            Access {
                inner: variant,
                depth,
            },
        ))
    }
}

/// A variant's contents, still counted from the enum's depth: a tuple or struct variant's
/// fields are one level deeper than the enum, as a tuple's or struct's are.
impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Access<A> {
    type Error = A::Error;

    #[inline]
    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    #[inline]
    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        let seed = self.seed(seed);
        self.inner.newtype_variant_seed(seed)
    }

    #[inline]
    fn tuple_variant<V: de::Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let visitor = Visitor {
            inner: visitor,
            depth: self.depth,
        };
        self.inner.tuple_variant(len, visitor)
    }

    #[inline]
    fn struct_variant<V: de::Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let visitor = Visitor {
            inner: visitor,
            depth: self.depth,
        };
        self.inner.struct_variant(fields, visitor)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::fmt::Debug;
    use std::marker::PhantomData;
    use std::thread;

    use serde::de::DeserializeOwned;
    use serde::{Deserialize, Serialize};

    use super::MAX_DEPTH;
    use crate::frame::{FrameError, PREFIX, decode, decode_seed, encode};

    /// A value that nests one level a `Node`.
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    enum Tree {
        Leaf,
        Node(Box<Tree>),
    }

    /// A tree `depth` nodes deep.
    fn tree(depth: usize) -> Tree {
        (0..depth).fold(Tree::Leaf, |t, _| Tree::Node(Box::new(t)))
    }

    /// `f`'s result, run on a thread with a stack of `size` bytes.
    fn on_stack<T: Send + 'static>(size: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
        let thread = thread::Builder::new().stack_size(size).spawn(f);
        thread.expect("spawn").join().expect("join")
    }

    /// The payload of `value`'s frame.
    fn payload<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
        let mut buf = Vec::new();
        encode(&mut buf, value).expect("encode");
        buf.split_off(PREFIX)
    }

    /// Checks that `value` decodes as it was encoded.
    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: T) {
        assert_eq!(decode::<T>(&payload(&value)).expect("decode"), value);
    }

    /// Checks that `result` is the depth limit's error.
    fn too_deep(result: Result<Tree, FrameError>) {
        match result {
            Err(FrameError::Decode(why)) => {
                assert_eq!(why, format!("nested more than {MAX_DEPTH} deep"));
            }
            // Not the tree itself: a thousand levels of it would fill the screen.
            other => panic!("expected the depth limit, got {:?}", other.map(drop)),
        }
    }

    #[test]
    fn hostile_nesting_is_an_error_not_an_overflow() {
        // 200,000 `Node` tags (a fixint variant index is a little-endian u32), then a `Leaf`.
        let mut hostile = [1, 0, 0, 0].repeat(200_000);
        hostile.extend_from_slice(&[0, 0, 0, 0]);
        // Within the 2 MiB of a spawned thread's default stack, even in a debug build, which
        // takes 1-1.25 KiB of stack a level (1,000 levels fit in 1.25 MiB, not in 1 MiB).
        // Without the limit, this aborts.
        too_deep(on_stack(2 << 20, move || decode::<Tree>(&hostile)));
    }

    #[test]
    fn deep_values_round_trip_up_to_the_limit_and_no_further() {
        // 8 MiB, as a main thread has, for encoding and dropping the deeper trees too. A
        // tree of n nodes has its leaf's tag n + 1 levels down: n = MAX_DEPTH - 1 is the most.
        on_stack(8 << 20, || {
            round_trip(tree(400));
            round_trip(tree(MAX_DEPTH - 1));
            too_deep(decode(&payload(&tree(MAX_DEPTH))));
            too_deep(decode(&payload(&tree(1200))));
        });
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Unit;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Newtype(u16);

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    enum Shape {
        Point,
        Circle(f64),
        Line(i32, i32),
        Rect { w: u32, h: u32 },
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Drawing<'a> {
        name: &'a str,
        id: Newtype,
        shapes: Vec<Shape>,
    }

    #[test]
    fn ordinary_values_round_trip() {
        round_trip((-7i64, "seven".to_string()));
        round_trip(vec![(1u8, Some("one".to_string())), (2, None)]);
        round_trip(Option::<Box<Option<u8>>>::None);
        round_trip(Some(Box::new(None::<u8>)));
        round_trip(Some(Box::new(Some(5u8))));
        round_trip(Unit);
        round_trip(());
        round_trip(HashMap::from([
            ("a".to_string(), vec![1, -2, 3]),
            ("b".to_string(), vec![]),
        ]));
        round_trip((u128::MAX, 'é', true, 0.5f32, vec![0u8, 255]));
        // Borrowed from the payload, as without the limit.
        let drawing = Drawing {
            name: "sketch",
            id: Newtype(9),
            shapes: vec![
                Shape::Point,
                Shape::Circle(1.5),
                Shape::Line(-1, 1),
                Shape::Rect { w: 3, h: 4 },
            ],
        };
        let bytes = payload(&drawing);
        let decoded = decode_seed(PhantomData::<Drawing>, &bytes).expect("decode");
        assert_eq!(decoded, drawing);
    }
}
