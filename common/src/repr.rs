//! Python-style printing: `repr(&x)` shows a value the way Python's `print` shows it,
//! to the byte: `0.0`, `3.1415927`, `1e-05`, `'hello'`, `None`, `[1, 4, 9]`, `[0, 'hello']`.

use std::fmt::{self, Display, Formatter, Write};

mod value;

pub use value::PyValue;

/// A value that Python would print this way. Containers print their items with `repr`,
/// as Python's `print([...])` does.
pub trait PyRepr {
    /// Writes the value as Python's `repr()` writes it.
    fn fmt_repr(&self, f: &mut Formatter<'_>) -> fmt::Result;
}

/// Shows `value` as Python prints it: `println!("{}", repr(&info_list))` prints `[0, 1]`.
pub fn repr<T: PyRepr + ?Sized>(value: &T) -> Repr<'_, T> {
    Repr(value)
}

/// The [`Display`] adapter that [`repr`] returns.
pub struct Repr<'a, T: ?Sized>(&'a T);

impl<T: PyRepr + ?Sized> Display for Repr<'_, T> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        self.0.fmt_repr(f)
    }
}

macro_rules! int_repr {
    ($($t:ty)*) => {$(
        impl PyRepr for $t {
            fn fmt_repr(&self, f: &mut Formatter<'_>) -> fmt::Result {
                Display::fmt(self, f)
            }
        }
    )*};
}
int_repr!(i8 i16 i32 i64 i128 isize u8 u16 u32 u64 u128 usize);

impl PyRepr for bool {
    fn fmt_repr(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(if *self { "True" } else { "False" })
    }
}

/// Python's `None`.
impl PyRepr for () {
    fn fmt_repr(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str("None")
    }
}

/// Python's `repr(float)`: the shortest digits that read back as the same number, in
/// positional notation when the decimal exponent is from -4 to 15, else as `1e-05`, `1e+16`.
impl PyRepr for f64 {
    fn fmt_repr(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.is_nan() {
            return f.write_str("nan");
        }
        if self.is_infinite() {
            return f.write_str(if *self > 0.0 { "inf" } else { "-inf" });
        }
        // Rust's `{:e}` gives the fewest digits that read back as the same number: `-1.2345e-7`.
        // Where two such strings are equally near, Python takes the even one and Rust may not,
        // so the number is also rounded to that many digits, half to even; Python's choice is
        // that, if it reads back as the same number.
        let shortest = format!("{self:e}");
        let digits = shortest.find('e').unwrap_or(0) - usize::from(shortest.contains('.'));
        let digits = digits - usize::from(self.is_sign_negative());
        let nearest = format!("{self:.*e}", digits.saturating_sub(1));
        let sci = if nearest.parse::<f64>() == Ok(*self) {
            nearest
        } else {
            shortest
        };
        let (mantissa, exponent) = sci.split_once('e').ok_or(fmt::Error)?;
        let exponent: i32 = exponent.parse().map_err(|_| fmt::Error)?;
        let (sign, mantissa) = match mantissa.strip_prefix('-') {
            Some(m) => ("-", m),
            None => ("", mantissa),
        };
        let digits: String = mantissa.chars().filter(|&c| c != '.').collect();
        // Where the decimal point goes, counted in digits from the left.
        let point = exponent + 1;
        f.write_str(sign)?;
        if !(-3..=16).contains(&point) {
            let (first, rest) = digits.split_at(1);
            let dot = if rest.is_empty() { "" } else { "." };
            let exp_sign = if exponent < 0 { '-' } else { '+' };
            write!(f, "{first}{dot}{rest}e{exp_sign}{:02}", exponent.abs())
        } else if point <= 0 {
            write!(f, "0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
        } else {
            let point = point as usize;
            if point >= digits.len() {
                write!(f, "{digits}{}.0", "0".repeat(point - digits.len()))
            } else {
                let (whole, fraction) = digits.split_at(point);
                write!(f, "{whole}.{fraction}")
            }
        }
    }
}

/// Printed as Python prints a C float read from shared memory: widened to a double.
impl PyRepr for f32 {
    fn fmt_repr(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f64::from(*self).fmt_repr(f)
    }
}

/// Python's `repr(str)`: single quotes unless the text holds `'` and no `"`; escapes for
/// backslash, the quote, `\t`, `\n`, `\r` and other unprintable characters.
impl PyRepr for str {
    fn fmt_repr(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let quote = if self.contains('\'') && !self.contains('"') {
            '"'
        } else {
            '\''
        };
        f.write_char(quote)?;
        for c in self.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '\t' => f.write_str("\\t")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                c if c == quote => write!(f, "\\{c}")?,
                ' '..='~' => f.write_char(c)?,
                c if c.is_ascii() => write!(f, "\\x{:02x}", c as u32)?,
                c if is_printable(c) => f.write_char(c)?,
                c if (c as u32) <= 0xff => write!(f, "\\x{:02x}", c as u32)?,
                c if (c as u32) <= 0xffff => write!(f, "\\u{:04x}", c as u32)?,
                c => write!(f, "\\U{:08x}", c as u32)?,
            }
        }
        f.write_char(quote)
    }
}

/// Python's `str.isprintable()` for one character beyond ASCII.
fn is_printable(c: char) -> bool {
    // Rust's Debug escapes the same categories that Python calls unprintable (Cc, Cf, Cs, Co,
    // Cn, Zl, Zp, and Zs but the space), and a combining mark only at the start of a string:
    // behind an `a`, `c` is escaped exactly when Python would escape it.
    let mut buf = [0u8; 5];
    buf[0] = b'a';
    let len = 1 + c.encode_utf8(&mut buf[1..]).len();
    std::str::from_utf8(&buf[..len])
        .map(|s| s.escape_debug().nth(1) != Some('\\'))
        .unwrap_or(false)
}

impl PyRepr for String {
    fn fmt_repr(&self, f: &mut Formatter<'_>) -> fmt::Result {
        self.as_str().fmt_repr(f)
    }
}

impl<T: PyRepr + ?Sized> PyRepr for &T {
    fn fmt_repr(&self, f: &mut Formatter<'_>) -> fmt::Result {
        (**self).fmt_repr(f)
    }
}

fn fmt_items<'a, T: PyRepr + 'a>(
    f: &mut Formatter<'_>,
    items: impl IntoIterator<Item = &'a T>,
) -> fmt::Result {
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        item.fmt_repr(f)?;
    }
    Ok(())
}

/// A Python list: `[1, 4, 9]`.
impl<T: PyRepr> PyRepr for [T] {
    fn fmt_repr(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_char('[')?;
        fmt_items(f, self)?;
        f.write_char(']')
    }
}

impl<T: PyRepr, const N: usize> PyRepr for [T; N] {
    fn fmt_repr(&self, f: &mut Formatter<'_>) -> fmt::Result {
        self.as_slice().fmt_repr(f)
    }
}

impl<T: PyRepr> PyRepr for Vec<T> {
    fn fmt_repr(&self, f: &mut Formatter<'_>) -> fmt::Result {
        self.as_slice().fmt_repr(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r<T: PyRepr + ?Sized>(value: &T) -> String {
        repr(value).to_string()
    }

    #[test]
    #[allow(clippy::approx_constant)] // 3.1415927 is the article's number, not pi.
    fn the_articles_values() {
        assert_eq!(r(&0.0), "0.0");
        assert_eq!(r(&3.1415927), "3.1415927");
        assert_eq!(r("hello"), "'hello'");
        assert_eq!(r(&PyValue::None), "None");
        assert_eq!(r(&vec![1, 4, 9]), "[1, 4, 9]");
        assert_eq!(
            r(&[PyValue::from(0), PyValue::from("hello")]),
            "[0, 'hello']"
        );
        assert_eq!(
            r(&[0, -1, -2, -3, -4, -5, -6, -7, -8, -9]),
            "[0, -1, -2, -3, -4, -5, -6, -7, -8, -9]"
        );
    }

    #[test]
    fn floats_switch_to_exponents_where_python_does() {
        assert_eq!(r(&1e16), "1e+16");
        assert_eq!(r(&1e15), "1000000000000000.0");
        assert_eq!(r(&1.5e16), "1.5e+16");
        assert_eq!(r(&0.0001), "0.0001");
        assert_eq!(r(&0.00001), "1e-05");
        assert_eq!(r(&-2.5e-100), "-2.5e-100");
        assert_eq!(r(&123.456), "123.456");
        assert_eq!(r(&-0.0), "-0.0");
        assert_eq!(r(&0.1), "0.1");
        assert_eq!(r(&f64::NAN), "nan");
        assert_eq!(r(&f64::NEG_INFINITY), "-inf");
        assert_eq!(r(&0.1f32), "0.10000000149011612");
    }

    #[test]
    fn strings_quote_and_escape_like_python() {
        assert_eq!(r("it's"), r#""it's""#);
        assert_eq!(r(r#"it's "x""#), r#"'it\'s "x"'"#);
        assert_eq!(r("a\\b\tc\nd\re\x00\x7f"), r"'a\\b\tc\nd\re\x00\x7f'");
        assert_eq!(
            r("é\u{301}\u{a0}\u{2028}\u{1f600}"),
            "'é\u{301}\\xa0\\u2028\u{1f600}'"
        );
    }

    #[test]
    fn containers_nest() {
        assert_eq!(r(&Vec::<i32>::new()), "[]");
        assert_eq!(r(&vec![vec![true], vec![]]), "[[True], []]");
        assert_eq!(
            r(&[PyValue::from(Some(1.5)), None::<f64>.into()]),
            "[1.5, None]"
        );
    }
}
