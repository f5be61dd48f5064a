//! What proxies ask the server, and what it answers: each a bincode frame on the socket.

use std::collections::HashMap;
use std::fmt::Write;

use common::{PyRepr, PyValue};
use serde::{Deserialize, Serialize};

/// A shared object's number in the server.
pub(crate) type Id = u32;

#[derive(Serialize, Deserialize)]
pub(crate) enum Request {
    NewDict,
    NewList(Vec<PyValue>),
    /// `d[key] = value`, `l[index] = value`
    SetItem(Id, PyValue, PyValue),
    /// `d[key]`, `l[index]`
    GetItem(Id, PyValue),
    Len(Id),
    /// A copy of the whole object.
    Copy(Id),
    Append(Id, PyValue),
    Reverse(Id),
}

#[derive(Serialize, Deserialize)]
pub(crate) enum Response {
    Done,
    New(Id),
    Value(PyValue),
    Len(u64),
    Dict(Vec<(PyValue, PyValue)>),
    List(Vec<PyValue>),
    /// What Python would raise: `KeyError: 1`.
    Error(String),
    /// Why the server will not serve this connection (a bad request, no descriptor left);
    /// it closes the connection after this.
    Refused(String),
}

/// A dict's items, in insertion order: what `DictProxy::copy` returns, and prints as Python
/// prints a dict: `{1: '1', '2': 2, 0.25: None}`.
#[derive(Clone, Debug, PartialEq)]
pub struct PyDict(pub Vec<(PyValue, PyValue)>);

impl PyRepr for PyDict {
    fn fmt_repr(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_char('{')?;
        for (i, (key, value)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            key.fmt_repr(f)?;
            f.write_str(": ")?;
            value.fmt_repr(f)?;
        }
        f.write_char('}')
    }
}

/// A dict key as Python compares keys: `1`, `1.0` and `True` are one key.
#[derive(Hash, PartialEq, Eq)]
enum Key {
    None,
    Int(i64),
    Float(u64),
    Str(String),
}

/// 2^63, exactly, as a float: the first whole float past `i64::MAX`.
const TWO_63: f64 = 9_223_372_036_854_775_808.0;

/// `None` for a NaN, which is equal to no key, itself included. (Python finds a key that is
/// the very object looked up, NaN or not; but a key sent to a manager's server is a fresh
/// object each time, so there each NaN set is an item of its own, and a NaN is never found.)
fn key(value: &PyValue) -> Option<Key> {
    Some(match value {
        PyValue::None => Key::None,
        PyValue::Bool(b) => Key::Int(i64::from(*b)),
        PyValue::Int(i) => Key::Int(*i),
        PyValue::Float(x) if x.is_nan() => return None,
        // A whole float in i64's range is the int of the same value: -2^63 <= x < 2^63.
        PyValue::Float(x) if x.fract() == 0.0 && (-TWO_63..TWO_63).contains(x) => {
            Key::Int(*x as i64)
        }
        PyValue::Float(x) => Key::Float(x.to_bits()),
        PyValue::Str(s) => Key::Str(s.clone()),
    })
}

/// A dict that keeps insertion order, as Python's does.
#[derive(Default)]
pub(crate) struct Dict {
    items: Vec<(PyValue, PyValue)>,
    index: HashMap<Key, usize>,
}

impl Dict {
    pub(crate) fn set(&mut self, k: PyValue, v: PyValue) {
        let Some(found) = key(&k) else {
            self.items.push((k, v));
            return;
        };
        match self.index.get(&found) {
            // Python keeps the first key object and replaces the value.
            Some(&at) => self.items[at].1 = v,
            None => {
                self.index.insert(found, self.items.len());
                self.items.push((k, v));
            }
        }
    }

    pub(crate) fn get(&self, k: &PyValue) -> Result<PyValue, String> {
        let at = key(k)
            .and_then(|found| self.index.get(&found))
            .ok_or_else(|| format!("KeyError: {}", common::repr(k)))?;
        Ok(self.items[*at].1.clone())
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn items(&self) -> Vec<(PyValue, PyValue)> {
        self.items.clone()
    }
}

/// A list index as Python reads one: negative counts from the end. `assigning` for
/// `l[i] = v`, whose error Python words differently.
pub(crate) fn list_index(list: &[PyValue], i: &PyValue, assigning: bool) -> Result<usize, String> {
    let PyValue::Int(i) = *i else {
        return Err("TypeError: list indices must be integers".into());
    };
    let len = list.len() as i64;
    let at = if i < 0 { i + len } else { i };
    if (0..len).contains(&at) {
        Ok(at as usize)
    } else {
        let what = if assigning {
            "list assignment index"
        } else {
            "list index"
        };
        Err(format!("IndexError: {what} out of range"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_as_in_python() {
        let mut d = Dict::default();
        d.set(1.into(), "1".into());
        d.set("2".into(), 2.into());
        d.set(0.25.into(), PyValue::None);
        d.set(1.0.into(), "one".into());
        d.set(true.into(), "true".into());
        // Whole floats up to the edge of i64 are the same key as the equal int.
        d.set(9_200_000_000_000_000_000i64.into(), "a".into());
        assert_eq!(d.get(&9.2e18.into()).unwrap(), PyValue::from("a"));
        d.set((-(2f64.powi(63))).into(), "b".into());
        assert_eq!(d.get(&i64::MIN.into()).unwrap(), PyValue::from("b"));
        assert!(d.get(&(2f64.powi(63)).into()).is_err());
        d.items.truncate(3);
        d.index.retain(|_, at| *at < 3);
        assert_eq!(d.len(), 3);
        assert_eq!(d.get(&1.into()).unwrap(), PyValue::from("true"));
        assert_eq!(
            common::repr(&PyDict(d.items())).to_string(),
            "{1: 'true', '2': 2, 0.25: None}"
        );
        assert_eq!(d.get(&3.into()).unwrap_err(), "KeyError: 3");
        assert_eq!(d.get(&"3".into()).unwrap_err(), "KeyError: '3'");
    }

    #[test]
    fn list_indices_as_in_python() {
        let l: Vec<PyValue> = (0..3).map(PyValue::from).collect();
        assert_eq!(list_index(&l, &(-1).into(), false), Ok(2));
        assert_eq!(list_index(&l, &0.into(), true), Ok(0));
        assert!(list_index(&l, &(-4).into(), false).is_err());
        assert!(list_index(&l, &"0".into(), false).is_err());
        // Python's words: `l[3]` and `l[3] = v`.
        assert_eq!(
            list_index(&l, &3.into(), false),
            Err("IndexError: list index out of range".into())
        );
        assert_eq!(
            list_index(&l, &3.into(), true),
            Err("IndexError: list assignment index out of range".into())
        );
    }

    #[test]
    fn each_nan_key_is_an_item_of_its_own_and_never_found() {
        // What a Python manager's dict does: `d[nan] = 1; d[nan] = 2` gives
        // `{nan: 1, nan: 2}`, and `d[nan]` raises `KeyError: nan`.
        let mut d = Dict::default();
        d.set(f64::NAN.into(), 1.into());
        d.set(f64::NAN.into(), 2.into());
        d.set(f64::INFINITY.into(), 3.into());
        d.set(f64::INFINITY.into(), 4.into());
        assert_eq!(
            common::repr(&PyDict(d.items())).to_string(),
            "{nan: 1, nan: 2, inf: 4}"
        );
        assert_eq!(d.get(&f64::NAN.into()).unwrap_err(), "KeyError: nan");
    }
}
