//! [`PyValue`]: a value of the few kinds the article's programs print, for lists and dicts
//! that mix them as Python's do.

use std::fmt::{self, Formatter};

use super::PyRepr;

/// One value of the few kinds the article's programs use, for lists and dicts that mix them
/// as Python's do: `[0, 'hello']`. It crosses process boundaries as serde data, its lists
/// nested at most [`MAX_DEPTH`](super::MAX_DEPTH) deep: a deeper one is an error, never a stack overflow.
#[derive(Clone, Debug, PartialEq)]
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
    /// `list`
    List(Vec<PyValue>),
}

impl PyRepr for PyValue {
    fn fmt_repr(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            PyValue::None => f.write_str("None"),
            PyValue::Bool(b) => b.fmt_repr(f),
            PyValue::Int(i) => i.fmt_repr(f),
            PyValue::Float(x) => x.fmt_repr(f),
            PyValue::Str(s) => s.fmt_repr(f),
            PyValue::List(items) => items.fmt_repr(f),
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

impl<T: Into<PyValue>> From<Vec<T>> for PyValue {
    fn from(items: Vec<T>) -> Self {
        PyValue::List(items.into_iter().map(Into::into).collect())
    }
}

impl<T: Into<PyValue>> From<Option<T>> for PyValue {
    fn from(value: Option<T>) -> Self {
        value.map_or(PyValue::None, Into::into)
    }
}
