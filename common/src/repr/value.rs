//! [`PyValue`]: a value of the few kinds the article's programs print, for lists and dicts
//! that mix them as Python's do.

use std::fmt::{self, Formatter};

use serde::{Deserialize, Serialize};

use super::PyRepr;

/// One value of the few kinds the article's programs use, for lists and dicts that mix them
/// as Python's do: `[0, 'hello']` is a `Vec<PyValue>`. It crosses process boundaries as
/// serde data.
///
/// It holds no list of its own, on purpose: decoding a type that contains itself recurses,
/// so a few hundred kilobytes of `[[[[...]]]]` in one frame would overflow the stack of the
/// process that reads it (a manager's server, serving every process of the program). Python's
/// pickle has a recursion limit for that; here the type cannot nest at all, so no frame can.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PyValue {
    /// `None`
    None,
    /// `True`, `False`
    Bool(bool),
    /// `int`
    Int(i64),
    /// `float`
    Float(f64),
    /// `str`
    Str(String),
}

impl PyRepr for PyValue {
    fn fmt_repr(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            PyValue::None => f.write_str("None"),
            PyValue::Bool(b) => b.fmt_repr(f),
            PyValue::Int(i) => i.fmt_repr(f),
            PyValue::Float(x) => x.fmt_repr(f),
            PyValue::Str(s) => s.fmt_repr(f),
        }
    }
}

impl From<()> for PyValue {
    fn from((): ()) -> Self {
        PyValue::None
    }
}

impl From<bool> for PyValue {
    fn from(b: bool) -> Self {
        PyValue::Bool(b)
    }
}

impl From<i64> for PyValue {
    fn from(i: i64) -> Self {
        PyValue::Int(i)
    }
}

impl From<i32> for PyValue {
    fn from(i: i32) -> Self {
        PyValue::Int(i.into())
    }
}

impl From<f64> for PyValue {
    fn from(x: f64) -> Self {
        PyValue::Float(x)
    }
}

impl From<&str> for PyValue {
    fn from(s: &str) -> Self {
        PyValue::Str(s.to_owned())
    }
}

impl From<String> for PyValue {
    fn from(s: String) -> Self {
        PyValue::Str(s)
    }
}

impl<T: Into<PyValue>> From<Option<T>> for PyValue {
    fn from(value: Option<T>) -> Self {
        value.map_or(PyValue::None, Into::into)
    }
}
