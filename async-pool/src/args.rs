//! Section 7's one argument, `--sleep SECONDS`: how long `f` sleeps, so that a test (or an
//! impatient reader) need not wait the article's second per call. Both programs of the
//! section, `main.rs` and `bin/apply.rs`, include this file.

use std::process;
use std::time::Duration;

/// The longest `--sleep` accepted, in seconds.
pub const MAX_SLEEP: f64 = 60.0;

/// Reads `[--sleep SECONDS]` from `args`: `Ok(None)` when absent. SECONDS is a decimal
/// number from 0 to [`MAX_SLEEP`]; `--help` is `Err(None)`, a wrong line `Err(Some(why))`.
pub fn parse_sleep(
    args: impl IntoIterator<Item = String>,
) -> Result<Option<Duration>, Option<String>> {
    let mut args = args.into_iter();
    let Some(first) = args.next() else {
        return Ok(None);
    };
    let value = match first.as_str() {
        "-h" | "--help" => return Err(None),
        "--sleep" => args.next(),
        _ => match first.strip_prefix("--sleep=") {
            Some(value) => Some(value.to_string()),
            None => return Err(Some(format!("unknown argument '{first}'"))),
        },
    };
    let Some(value) = value else {
        return Err(Some("--sleep needs a number of seconds".into()));
    };
    let seconds = value
        .parse::<f64>()
        .ok()
        .filter(|s| (0.0..=MAX_SLEEP).contains(s))
        .ok_or_else(|| {
            format!("--sleep takes seconds from 0 to {MAX_SLEEP}, as in 0.05; not '{value}'")
        })?;
    if let Some(extra) = args.next() {
        return Err(Some(format!("unexpected argument '{extra}'")));
    }
    Ok(Some(Duration::from_secs_f64(seconds)))
}

/// The process's own `[--sleep SECONDS]`, read with [`parse_sleep`]: returns it, or exits
/// as [`common::args::one_of`] does (a failure to print included: a one-line error).
pub fn sleep(usage: &str) -> Option<Duration> {
    common::unprintable::explain();
    match parse_sleep(common::args::own()) {
        Ok(sleep) => sleep,
        Err(None) => {
            println!("{usage}");
            process::exit(0)
        }
        Err(Some(why)) => {
            common::say!("error: {why}\n{usage}");
            process::exit(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleep(args: &[&str]) -> Result<Option<Duration>, Option<String>> {
        parse_sleep(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn reads_sleep_seconds() {
        assert_eq!(sleep(&[]), Ok(None));
        assert_eq!(
            sleep(&["--sleep", "0.05"]),
            Ok(Some(Duration::from_millis(50)))
        );
        assert_eq!(sleep(&["--sleep=2"]), Ok(Some(Duration::from_secs(2))));
        assert_eq!(sleep(&["--sleep", "0"]), Ok(Some(Duration::ZERO)));
        assert_eq!(sleep(&["--help"]), Err(None));
    }

    #[test]
    fn refuses_nonsense_seconds() {
        for wrong in ["abc", "-1", "NaN", "inf", "61", "1e9", ""] {
            let err = sleep(&["--sleep", wrong]).unwrap_err().unwrap();
            assert!(err.contains("--sleep takes seconds from 0 to 60"), "{err}");
        }
        assert_eq!(
            sleep(&["--sleep"]),
            Err(Some("--sleep needs a number of seconds".into()))
        );
        assert_eq!(
            sleep(&["--slep", "1"]),
            Err(Some("unknown argument '--slep'".into()))
        );
        assert_eq!(
            sleep(&["--sleep", "1", "2"]),
            Err(Some("unexpected argument '2'".into()))
        );
    }
}
