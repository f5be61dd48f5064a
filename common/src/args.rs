//! The examples' command lines: nothing, one word from a short list, or `--sleep SECONDS`.
//!
//! `-h` or `--help` prints the usage and exits 0; anything else prints what was wrong and the
//! usage on stderr and exits 2, the conventional status for a usage error.

use std::process;
use std::time::Duration;

/// What a command line asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Run with this choice, or with none (`None`): the example's default.
    Run(Option<&'static str>),
    /// Print the usage and stop.
    Help,
    /// The command line was wrong; the text says how.
    Wrong(String),
}

/// Reads `args` (without the program name) against `choices`.
pub fn parse(args: impl IntoIterator<Item = String>, choices: &[&'static str]) -> Parsed {
    let mut args = args.into_iter();
    let Some(first) = args.next() else {
        return Parsed::Run(None);
    };
    if first == "-h" || first == "--help" {
        return Parsed::Help;
    }
    let Some(&choice) = choices.iter().find(|&&c| c == first) else {
        return Parsed::Wrong(format!("unknown argument '{first}'"));
    };
    match args.next() {
        None => Parsed::Run(Some(choice)),
        Some(extra) => Parsed::Wrong(format!("unexpected argument '{extra}'")),
    }
}

/// The process's own arguments, read with [`parse`]: returns the choice, or exits.
pub fn one_of(usage: &str, choices: &[&'static str]) -> Option<&'static str> {
    match parse(std::env::args().skip(1), choices) {
        Parsed::Run(choice) => choice,
        Parsed::Help => {
            println!("{usage}");
            process::exit(0)
        }
        Parsed::Wrong(why) => {
            eprintln!("error: {why}\n{usage}");
            process::exit(2)
        }
    }
}

/// For an example that takes no arguments: returns if there are none, or exits.
pub fn none(usage: &str) {
    one_of(usage, &[]);
}

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
/// as [`one_of`] does.
pub fn sleep(usage: &str) -> Option<Duration> {
    match parse_sleep(std::env::args().skip(1)) {
        Ok(sleep) => sleep,
        Err(None) => {
            println!("{usage}");
            process::exit(0)
        }
        Err(Some(why)) => {
            eprintln!("error: {why}\n{usage}");
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

    fn p(args: &[&str]) -> Parsed {
        parse(
            args.iter().map(|s| s.to_string()),
            &["threads", "processes"],
        )
    }

    #[test]
    fn reads_nothing_or_one_choice() {
        assert_eq!(p(&[]), Parsed::Run(None));
        assert_eq!(p(&["threads"]), Parsed::Run(Some("threads")));
        assert_eq!(p(&["--help"]), Parsed::Help);
        assert_eq!(p(&["-h", "x"]), Parsed::Help);
    }

    #[test]
    fn refuses_anything_else() {
        assert_eq!(
            p(&["thread"]),
            Parsed::Wrong("unknown argument 'thread'".into())
        );
        assert_eq!(
            p(&["threads", "processes"]),
            Parsed::Wrong("unexpected argument 'processes'".into())
        );
        assert_eq!(
            parse(["x".to_string()], &[]),
            Parsed::Wrong("unknown argument 'x'".into())
        );
    }
}
