//! The examples' command lines: nothing, or one word from a short list.
//!
//! `-h` or `--help` prints the usage and exits 0; anything else prints what was wrong and the
//! usage on stderr and exits 2, the conventional status for a usage error.

use std::process;

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

/// The process's own arguments, without the program's name. One that is not UTF-8 comes
/// with U+FFFD in place of its bad bytes, to be refused as unknown, where
/// `std::env::args()` would panic.
pub fn own() -> impl Iterator<Item = String> {
    std::env::args_os()
        .skip(1)
        .map(|arg| arg.to_string_lossy().into_owned())
}

/// The process's own arguments, read with [`parse`]: returns the choice, or exits. Being
/// every example's first call, it also makes a failure to print a one-line error
/// ([`unprintable::explain`](crate::unprintable::explain)).
pub fn one_of(usage: &str, choices: &[&'static str]) -> Option<&'static str> {
    crate::unprintable::explain();
    match parse(own(), choices) {
        Parsed::Run(choice) => choice,
        Parsed::Help => {
            println!("{usage}");
            process::exit(0)
        }
        Parsed::Wrong(why) => {
            crate::say!("error: {why}\n{usage}");
            process::exit(2)
        }
    }
}

/// For an example that takes no arguments: returns if there are none, or exits.
pub fn none(usage: &str) {
    one_of(usage, &[]);
}

#[cfg(test)]
mod tests {
    use super::*;

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
