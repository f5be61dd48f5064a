//! [`Limited`] and [`LimitedValue`]: decoding and encoding that refuse values nested more
//! than [`MAX_DEPTH`] deep.
//!
//! Serde decodes a nested value by recursion, a few stack frames a level, so a payload of
//! 100,000 nested enum tags (four bytes each in bincode) overflows the stack, and a stack
//! overflow aborts the process. The wrappers here stand between bincode's deserializer and
//! the type's visitor, carry how deep the value being decoded is, and decode each compound
//! value's contents one level deeper, through [`deeper`], which fails past the limit.
//! Everything else is passed through unchanged, so a primitive costs nothing more once
//! inlined.
//!
//! Encoding recurses the same way, and counts the same way, through [`depth_below`]: a value
//! the reader would refuse for its levels is refused by the writer, who can be told, instead
//! of sent and lost; and one too deep for the writer's own stack is an error there, not an
//! abort. The stack each side takes is its own ([`STACK_BUDGET`]): a reader takes more than
//! the writer (1.3 to 1.7 times, a debug build; far more for arrays, built on its stack), so
//! a value near the budget may be sent, and then refused by the reader.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed};
use serde::ser::{self, Serialize};

use super::MAX_DEPTH;

/// How much stack an encode or a decode may take: a compound value is refused, whatever its
/// depth, where it would begin further than this below where the encode or decode began. A
/// level takes from a few hundred bytes of stack (a small enum, in a release build) to
/// kilobytes (a struct of arrays, in a debug build), so a count of levels alone let values
/// within [`MAX_DEPTH`] overflow a spawned thread's 2 MiB (`enum { Leaf, Node([u64; 32],
/// Box<Self>) }`, 700 deep, in a debug build). Three quarters of that 2 MiB: a spawned
/// thread that begins with less than about 450 KiB of its stack used (the thread's own
/// data takes some, and a check may be passed a level or two before the budget is), and a
/// main thread (8 MiB), are kept from overflowing; a thread of a smaller stack has only the
/// count of levels.
/// And more than 1,000 levels of a small enum take in a debug build (1.3 MiB), so that
/// such a value is refused by its count, in every build.
///
/// Where it began, not the thread's bounds: glibc works a main thread's bounds out from
/// `/proc/self/maps`, and they were wrong under valgrind (20 KiB, in a forked child), which
/// refused every compound value; nor do they hold for code on another stack (a coroutine's).
const STACK_BUDGET: usize = 3 << 19;

/// Further than this from where the encode or decode began, the stack is another one (a
/// coroutine that began it, and switched to this thread's own stack, or the reverse): only
/// levels are counted there.
const OTHER_STACK: usize = 1 << 30;

thread_local! {
    /// Where this thread's outermost encode or decode began (an address on its stack), 0
    /// while it runs none.
    static BEGAN: Cell<usize> = const { Cell::new(0) };
}

#[cfg(test)]
thread_local! {
    /// Set by a test that checks the count of levels alone, on a stack large enough.
    static NO_BUDGET: Cell<bool> = const { Cell::new(false) };
}

/// The address of a local of the caller's frame: where its stack is now.
#[inline(always)]
fn stack_here() -> usize {
    let here = 0u8;
    std::hint::black_box(&raw const here) as usize
}

/// An encode or a decode under way on this thread: marks where it began, if no other
/// one (an outer one, whose value's code encodes or decodes another) has, and unmarks it
/// when dropped, by a panic too.
struct Began {
    outermost: bool,
}

impl Began {
    #[inline]
    fn here() -> Began {
        let outermost = BEGAN.get() == 0;
        if outermost {
            BEGAN.set(stack_here());
        }
        Began { outermost }
    }
}

impl Drop for Began {
    #[inline]
    fn drop(&mut self) {
        if self.outermost {
            BEGAN.set(0);
        }
    }
}

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
        let _began = Began::here();
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

/// The same error, to encode.
#[cold]
fn too_deep_to_encode<E: ser::Error>() -> E {
    E::custom(format_args!("nested more than {MAX_DEPTH} deep"))
}

/// The error where the stack runs low first.
#[cold]
fn too_deep_for_the_stack<E: de::Error>(depth: usize) -> E {
    E::custom(StackLow(depth))
}

/// The same error, to encode.
#[cold]
fn too_deep_for_the_stack_to_encode<E: ser::Error>(depth: usize) -> E {
    E::custom(StackLow(depth))
}

/// What the stack's errors say, at a depth.
struct StackLow(usize);

impl fmt::Display for StackLow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "nested too deep for this thread's stack ({} levels)",
            self.0
        )
    }
}

/// Whether the encode or decode under way has taken more than [`STACK_BUDGET`] of stack
/// below where it began. Asked where a compound value begins, not for each of its parts:
/// asked for each element, a check of the stack made decoding a `Vec<i64>` take twice as
/// long.
#[inline]
fn stack_low() -> bool {
    #[cfg(test)]
    if NO_BUDGET.get() {
        return false;
    }
    let began = BEGAN.get();
    // Above where it began (another stack) wraps round to a distance past OTHER_STACK.
    let taken = began.wrapping_sub(stack_here());
    began != 0 && taken > STACK_BUDGET && taken < OTHER_STACK
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

impl<V> Visitor<V> {
    /// Fails where a compound value begins with the stack low ([`stack_low`]).
    #[inline]
    fn room<E: de::Error>(&self) -> Result<(), E> {
        if stack_low() {
            return Err(too_deep_for_the_stack(self.depth));
        }
        Ok(())
    }
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
        self.room()?;
        self.inner.visit_some(deeper(inner, self.depth)?)
    }

    #[inline]
    fn visit_newtype_struct<D: de::Deserializer<'de>>(
        self,
        inner: D,
    ) -> Result<V::Value, D::Error> {
        self.room()?;
        self.inner.visit_newtype_struct(deeper(inner, self.depth)?)
    }

    #[inline]
    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.room()?;
        self.inner.visit_seq(Access {
            inner: seq,
            depth: self.depth,
        })
    }

    #[inline]
    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.room()?;
        self.inner.visit_map(Access {
            inner: map,
            depth: self.depth,
        })
    }

    #[inline]
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.room()?;
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

/// A value encoded with the depth limit that [`Limited`] decodes with: the value itself is
/// at depth 0.
pub(super) struct LimitedValue<'a, T: ?Sized>(pub(super) &'a T);

impl<T: Serialize + ?Sized> Serialize for LimitedValue<'_, T> {
    #[inline]
    fn serialize<S: ser::Serializer>(&self, inner: S) -> Result<S::Ok, S::Error> {
        let _began = Began::here();
        self.0.serialize(Serializer { inner, depth: 0 })
    }
}

/// The depth of the contents of a value at `depth`: one level deeper, or an error before
/// any more recursion if that is past [`MAX_DEPTH`], as [`deeper`] decides.
#[inline]
fn depth_below<E: ser::Error>(depth: usize) -> Result<usize, E> {
    if depth >= MAX_DEPTH {
        return Err(too_deep_to_encode());
    }
    Ok(depth + 1)
}

/// `value`, as a part of a compound value at `depth`: one level deeper, or the error.
#[inline]
fn part<T: ?Sized, E: ser::Error>(value: &T, depth: usize) -> Result<Part<'_, T>, E> {
    Ok(Part {
        value,
        depth: depth_below(depth)?,
    })
}

/// A part of a compound value, itself at `depth`: encoded through [`Serializer`], to count
/// its own parts.
struct Part<'a, T: ?Sized> {
    value: &'a T,
    depth: usize,
}

impl<T: Serialize + ?Sized> Serialize for Part<'_, T> {
    #[inline]
    fn serialize<S: ser::Serializer>(&self, inner: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(Serializer {
            inner,
            depth: self.depth,
        })
    }
}

/// A serializer for a value at `depth`: a primitive is passed on as it is, a compound
/// value's parts are encoded one level deeper.
struct Serializer<S> {
    inner: S,
    depth: usize,
}

impl<S> Serializer<S> {
    /// Fails where a compound value begins with the stack low ([`stack_low`]).
    #[inline]
    fn room<E: ser::Error>(&self) -> Result<(), E> {
        if stack_low() {
            return Err(too_deep_for_the_stack_to_encode(self.depth));
        }
        Ok(())
    }
}

/// Each `serialize_*` method of a primitive, forwarded unchanged.
macro_rules! forward_serialize {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        #[inline]
        fn $method(self, $($arg: $ty),*) -> Result<S::Ok, S::Error> {
            self.inner.$method($($arg),*)
        }
    )*};
}

/// Counted as [`Visitor`] and [`Access`] count what they decode: an enum's tag is one level
/// deeper than the enum, like its contents, so that even a unit variant is refused at the
/// limit; a tuple or struct variant's fields are one level deeper than the enum, as a
/// tuple's or struct's are; a sequence, map or struct is refused only when it has a part
/// past the limit, an empty one never.
impl<S: ser::Serializer> ser::Serializer for Serializer<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Compound<S::SerializeSeq>;
    type SerializeTuple = Compound<S::SerializeTuple>;
    type SerializeTupleStruct = Compound<S::SerializeTupleStruct>;
    type SerializeTupleVariant = Compound<S::SerializeTupleVariant>;
    type SerializeMap = Compound<S::SerializeMap>;
    type SerializeStruct = Compound<S::SerializeStruct>;
    type SerializeStructVariant = Compound<S::SerializeStructVariant>;

    forward_serialize! {
        serialize_bool(v: bool);
        serialize_i8(v: i8);
        serialize_i16(v: i16);
        serialize_i32(v: i32);
        serialize_i64(v: i64);
        serialize_i128(v: i128);
        serialize_u8(v: u8);
        serialize_u16(v: u16);
        serialize_u32(v: u32);
        serialize_u64(v: u64);
        serialize_u128(v: u128);
        serialize_f32(v: f32);
        serialize_f64(v: f64);
        serialize_char(v: char);
        serialize_str(v: &str);
        serialize_bytes(v: &[u8]);
        serialize_none();
        serialize_unit();
        serialize_unit_struct(name: &'static str);
    }

    #[inline]
    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<S::Ok, S::Error> {
        depth_below::<S::Error>(self.depth)?;
        self.inner.serialize_unit_variant(name, index, variant)
    }

    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        self.room()?;
        self.inner
            .serialize_some(&part::<_, S::Error>(value, self.depth)?)
    }

    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        self.room()?;
        self.inner
            .serialize_newtype_struct(name, &part::<_, S::Error>(value, self.depth)?)
    }

    #[inline]
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        self.room()?;
        let value = part::<_, S::Error>(value, self.depth)?;
        self.inner
            .serialize_newtype_variant(name, index, variant, &value)
    }

    #[inline]
    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        self.room()?;
        Ok(Compound::at(self.depth, self.inner.serialize_seq(len)?))
    }

    #[inline]
    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        self.room()?;
        Ok(Compound::at(self.depth, self.inner.serialize_tuple(len)?))
    }

    #[inline]
    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        self.room()?;
        Ok(Compound::at(
            self.depth,
            self.inner.serialize_tuple_struct(name, len)?,
        ))
    }

    #[inline]
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        self.room()?;
        depth_below::<S::Error>(self.depth)?;
        Ok(Compound::at(
            self.depth,
            self.inner
                .serialize_tuple_variant(name, index, variant, len)?,
        ))
    }

    #[inline]
    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        self.room()?;
        Ok(Compound::at(self.depth, self.inner.serialize_map(len)?))
    }

    #[inline]
    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        self.room()?;
        Ok(Compound::at(
            self.depth,
            self.inner.serialize_struct(name, len)?,
        ))
    }

    #[inline]
    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        self.room()?;
        depth_below::<S::Error>(self.depth)?;
        Ok(Compound::at(
            self.depth,
            self.inner
                .serialize_struct_variant(name, index, variant, len)?,
        ))
    }

    #[inline]
    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// A compound value at `depth`, as its serializer takes its parts: each is encoded one
/// level deeper, through [`Part`].
struct Compound<C> {
    inner: C,
    depth: usize,
}

impl<C> Compound<C> {
    #[inline]
    fn at(depth: usize, inner: C) -> Compound<C> {
        Compound { inner, depth }
    }
}

/// Each `Serialize*` trait of a compound value, for [`Compound`]: the methods that take a
/// part, with their other arguments, and `skip_field` where the trait has it.
macro_rules! serialize_parts {
    ($($trait:ident { $($method:ident($($arg:ident: $ty:ty),*))+ $(, $skip:ident)? })*) => {$(
        impl<C: ser::$trait> ser::$trait for Compound<C> {
            type Ok = C::Ok;
            type Error = C::Error;

            $(
                #[inline]
                fn $method<T: Serialize + ?Sized>(
                    &mut self,
                    $($arg: $ty,)*
                    value: &T,
                ) -> Result<(), C::Error> {
                    self.inner.$method($($arg,)* &part::<_, C::Error>(value, self.depth)?)
                }
            )+

            $(
                #[inline]
                fn $skip(&mut self, key: &'static str) -> Result<(), C::Error> {
                    self.inner.$skip(key)
                }
            )?

            #[inline]
            fn end(self) -> Result<C::Ok, C::Error> {
                self.inner.end()
            }
        }
    )*};
}

serialize_parts! {
    SerializeSeq { serialize_element() }
    SerializeTuple { serialize_element() }
    SerializeTupleStruct { serialize_field() }
    SerializeTupleVariant { serialize_field() }
    SerializeMap { serialize_key() serialize_value() }
    SerializeStruct { serialize_field(key: &'static str), skip_field }
    SerializeStructVariant { serialize_field(key: &'static str), skip_field }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};
    use std::fmt::Debug;
    use std::marker::PhantomData;
    use std::thread;

    use serde::de::DeserializeOwned;
    use serde::{Deserialize, Serialize};

    use super::{BEGAN, MAX_DEPTH, NO_BUDGET, stack_here, stack_low};
    use crate::frame::{CONFIG, FrameError, PREFIX, decode, decode_seed, encode};

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

    /// Drops `tree` a node at a time: dropping it as it is recurses a level a node.
    fn drop_tree(mut tree: Tree) {
        while let Tree::Node(next) = tree {
            tree = *next;
        }
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

    /// The payload of `value` as bincode encodes it without the limit: what a writer without
    /// it would send.
    fn unlimited_payload<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
        bincode::serde::encode_to_vec(value, CONFIG).expect("encode")
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
            too_deep(decode(&unlimited_payload(&tree(MAX_DEPTH))));
            too_deep(decode(&unlimited_payload(&tree(1200))));
        });
    }

    /// Option's nesting alone: a level a `Some`.
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    #[serde(transparent)]
    struct Opt(Option<Box<Opt>>);

    /// A newtype of a sequence: two levels a list.
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct L(Vec<L>);

    /// A map's nesting alone: a level a map.
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    #[serde(transparent)]
    struct Map(BTreeMap<u8, Map>);

    /// Tuple and struct variants, and a tuple in a newtype variant.
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    enum Mixed {
        End,
        Pair(u8, Box<Mixed>),
        Named { tag: u8, inner: Box<Mixed> },
        Tuple((Box<Mixed>, u8)),
    }

    /// The deepest of `nested(0)`, `nested(1)`, ... that the decoder takes, written without
    /// the limit. Checks that the encoder takes it too, and that it round trips, and that the
    /// encoder refuses the next one as the decoder does, with the same message, leaving the
    /// buffer as it was.
    fn deepest_both_take<T, F>(nested: F) -> usize
    where
        T: Serialize + DeserializeOwned + PartialEq + Debug,
        F: Fn(usize) -> T,
    {
        let decodes = |n| decode::<T>(&unlimited_payload(&nested(n))).is_ok();
        let deepest = (0..).take_while(|&n| decodes(n)).last().expect("depth 0");
        let mut buf = vec![7, 7, 7];
        encode(&mut buf, &nested(deepest)).expect("encode at the limit");
        let decoded = decode::<T>(&buf[3 + PREFIX..]).expect("decode at the limit");
        assert_eq!(decoded, nested(deepest));
        let before = buf.clone();
        match encode(&mut buf, &nested(deepest + 1)) {
            Err(e @ FrameError::Encode(_)) => assert_eq!(
                e.to_string(),
                format!("cannot encode value: nested more than {MAX_DEPTH} deep")
            ),
            other => panic!("expected the depth limit, got {other:?}"),
        }
        assert_eq!(buf, before);
        deepest
    }

    #[test]
    fn the_encoder_refuses_exactly_what_the_decoder_refuses() {
        // Levels only: the reader and the writer agree on levels, not on stack (the reader
        // takes more), and some of these shapes take more than the budget at the limit in
        // a debug build; the budget is checked on its own (above).
        on_stack(64 << 20, || {
            NO_BUDGET.set(true);
            // A tree of n nodes has its leaf's tag n + 1 levels down, and even a unit
            // variant's tag counts.
            assert_eq!(deepest_both_take(tree), MAX_DEPTH - 1);
            // n `Some`s have a `None`, which is no deeper, n levels down.
            let options = |n: usize| (0..n).fold(Opt(None), |o, _| Opt(Some(Box::new(o))));
            assert_eq!(deepest_both_take(options), MAX_DEPTH);
            // n lists in lists have an empty one 2n levels down, its newtype's contents 2n + 1.
            let lists = |n: usize| (0..n).fold(L(vec![]), |l, _| L(vec![l]));
            assert_eq!(deepest_both_take(lists), MAX_DEPTH / 2 - 1);
            // n maps in maps have an empty one n levels down, which is no deeper.
            let maps =
                |n: usize| (0..n).fold(Map(BTreeMap::new()), |m, _| Map(BTreeMap::from([(1, m)])));
            assert_eq!(deepest_both_take(maps), MAX_DEPTH);
            // Tuple and struct variants are a level a variant, a tuple in a newtype variant two.
            let mixed = |n: usize| {
                (0..n).fold(Mixed::End, |m, i| match i % 3 {
                    0 => Mixed::Pair(1, Box::new(m)),
                    1 => Mixed::Named {
                        tag: 2,
                        inner: Box::new(m),
                    },
                    _ => Mixed::Tuple((Box::new(m), 3)),
                })
            };
            deepest_both_take(mixed);
        });
    }

    #[test]
    fn encoding_a_value_far_too_deep_is_an_error_not_an_overflow() {
        // Within a spawned thread's default stack, in a debug build too. Without the limit,
        // this aborts.
        on_stack(2 << 20, || {
            let deep = tree(200_000);
            let mut buf = Vec::new();
            let encoded = encode(&mut buf, &deep);
            drop_tree(deep);
            match encoded {
                Err(e @ FrameError::Encode(_)) => assert_eq!(
                    e.to_string(),
                    format!("cannot encode value: nested more than {MAX_DEPTH} deep")
                ),
                other => panic!("expected the depth limit, got {other:?}"),
            }
            assert!(buf.is_empty());
        });
    }

    /// A value whose every level holds 1 KiB of arrays: each takes kilobytes of stack as it
    /// decodes, in a debug build 8 KiB.
    // The size is the point: each level's arrays are on the stack as it is encoded.
    #[allow(clippy::large_enum_variant)]
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    enum Heavy {
        Leaf,
        Node([[u64; 32]; 4], Box<Heavy>),
    }

    /// The payload of a [`Heavy`] `depth` levels deep, built and encoded on a large stack.
    fn bytes_of_heavy(depth: usize) -> Vec<u8> {
        on_stack(256 << 20, move || {
            let heavy = (0..depth).fold(Heavy::Leaf, |h, _| Heavy::Node([[7; 32]; 4], Box::new(h)));
            payload(&heavy)
        })
    }

    #[test]
    fn a_value_that_takes_too_much_stack_is_an_error_within_the_limit() {
        // 998 levels, within MAX_DEPTH, and more than 1 MiB of stack to decode.
        let bytes = bytes_of_heavy(MAX_DEPTH - 2);
        // On a spawned thread's 2 MiB, which it overflowed (aborted), and on 256 MiB alike:
        // refused once the decode has taken its budget.
        for size in [2 << 20, 256 << 20] {
            let copy = bytes.clone();
            match on_stack(size, move || decode::<Heavy>(&copy).map(drop)) {
                Err(FrameError::Decode(why)) => assert!(
                    why.starts_with("nested too deep for this thread's stack"),
                    "{why}"
                ),
                other => panic!("expected the stack's limit, got {other:?}"),
            }
        }
        // A shallower one, within the budget, decodes there.
        let shallow = bytes_of_heavy(60);
        assert!(on_stack(2 << 20, move || decode::<Heavy>(&shallow).is_ok()));
    }

    /// A value whose every level takes 16 KiB of stack to encode (a local array), as a
    /// newtype of an option: two levels each.
    struct Fat(Option<Box<Fat>>);

    impl Serialize for Fat {
        fn serialize<S: serde::Serializer>(&self, to: S) -> Result<S::Ok, S::Error> {
            let pad = std::hint::black_box([0u8; 16 << 10]);
            let encoded = to.serialize_newtype_struct("Fat", &self.0);
            std::hint::black_box(&pad);
            encoded
        }
    }

    #[test]
    fn a_value_that_takes_too_much_stack_to_encode_is_refused_by_the_writer() {
        // 400 of them, 800 levels: 6.4 MiB of stack, which overflowed a spawned thread's
        // 2 MiB. Built and dropped on a larger stack: dropping recurses too.
        let fat = on_stack(256 << 20, || {
            (0..400).fold(Fat(None), |f, _| Fat(Some(Box::new(f))))
        });
        let (refused, fat) = on_stack(2 << 20, || {
            let mut buf = Vec::new();
            (encode(&mut buf, &fat).map_err(|e| e.to_string()), fat)
        });
        on_stack(256 << 20, || drop(fat));
        match refused {
            Err(why) => assert!(
                why.contains("nested too deep for this thread's stack"),
                "{why}"
            ),
            Ok(()) => panic!("encoded"),
        }
    }

    /// Where the stack is far from where the encode or decode began (2 GiB above, or below
    /// it), it is another stack (a coroutine switched to or from mid-encode), and only levels
    /// count: measured against the other, a flat value was refused, or a deep one overflowed.
    #[test]
    fn a_stack_far_from_where_it_began_is_another_one() {
        let here = stack_here();
        BEGAN.set(here + (2 << 20));
        let two_mib_taken = stack_low();
        BEGAN.set(here + (2 << 30));
        let far_above = stack_low();
        BEGAN.set(here - (1 << 20));
        let below = stack_low();
        BEGAN.set(0);
        assert_eq!((two_mib_taken, far_above, below), (true, false, false));
    }

    /// A small stack is no reason to refuse a flat value: the budget is of the stack an
    /// encode or decode takes, where a margin of 256 KiB below the thread's bounds refused
    /// every compound value on a stack of 256 KiB or less.
    #[test]
    fn flat_values_go_on_a_small_stack() {
        for size in [64 << 10, 256 << 10] {
            on_stack(size, || {
                round_trip((-7i64, "seven".to_string()));
                round_trip(vec![1u8, 2, 3]);
                round_trip(Some(5u8));
                round_trip(tree(20));
            });
        }
    }

    /// Code that runs on another stack (a coroutine's, here made with makecontext) measures
    /// from where its encode or decode began there: a flat value there was refused ("0
    /// levels") once the thread's bounds were known, and a first use there left the
    /// thread's own stack unchecked for good, when the thread's bounds were the measure.
    #[test]
    fn another_stack_is_not_taken_for_the_threads() {
        use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
        static WENT: AtomicBool = AtomicBool::new(false);
        extern "C" fn on_the_other_stack() {
            let mut buf = Vec::new();
            let went = encode(&mut buf, &(1i64, "one".to_string())).is_ok()
                && decode::<(i64, String)>(&buf[PREFIX..]).is_ok();
            WENT.store(went, SeqCst);
        }
        /// Runs `on_the_other_stack` on a stack of 1 MiB from the heap, and returns.
        fn on_another_stack() -> bool {
            let mut stack = vec![0u8; 1 << 20];
            // SAFETY: both contexts are zeroed, then filled by getcontext; the coroutine's
            // stack is `stack`, alive until after swapcontext returns (the coroutine ends
            // and `uc_link` resumes `back`, which swapcontext filled); the function takes no
            // arguments, as makecontext is told.
            unsafe {
                let mut back: libc::ucontext_t = std::mem::zeroed();
                let mut there: libc::ucontext_t = std::mem::zeroed();
                assert_eq!(libc::getcontext(&mut there), 0);
                there.uc_stack.ss_sp = stack.as_mut_ptr().cast();
                there.uc_stack.ss_size = stack.len();
                there.uc_link = &mut back;
                libc::makecontext(&mut there, on_the_other_stack, 0);
                assert_eq!(libc::swapcontext(&mut back, &there), 0);
            }
            WENT.swap(false, SeqCst)
        }
        // After a decode on the thread's own stack, and before.
        assert!(on_stack(2 << 20, || {
            round_trip(Some(1u8));
            on_another_stack()
        }));
        on_stack(2 << 20, || {
            assert!(on_another_stack());
            let deep = bytes_of_heavy(MAX_DEPTH - 2);
            assert!(matches!(decode::<Heavy>(&deep), Err(FrameError::Decode(_))));
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

    /// A type that encodes itself through `collect_str`.
    struct Shown(u32);

    impl Serialize for Shown {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(&format_args!("#{}", self.0))
        }
    }

    /// Checks that `value` encodes to the same bytes as without the limit.
    fn same_bytes<T: Serialize + ?Sized>(value: &T) {
        assert_eq!(payload(value), unlimited_payload(value));
    }

    #[test]
    fn the_limit_leaves_the_bytes_as_they_were() {
        same_bytes(&(-7i64, "seven".to_string()));
        same_bytes(&vec![(1u8, Some("one".to_string())), (2, None)]);
        same_bytes(&[Some(Box::new(None::<u8>)), None]);
        same_bytes(&(Unit, (), Newtype(3), u128::MAX, 'é', true, 0.5f32));
        same_bytes(&HashMap::from([("a".to_string(), vec![1, -2, 3])]));
        same_bytes(&Drawing {
            name: "sketch",
            id: Newtype(9),
            shapes: vec![
                Shape::Point,
                Shape::Circle(1.5),
                Shape::Line(-1, 1),
                Shape::Rect { w: 3, h: 4 },
            ],
        });
        same_bytes(&tree(50));
        same_bytes(&Shown(42));
        same_bytes("a str");
        same_bytes(&[1u64, 2, 3][..]);
    }
}
