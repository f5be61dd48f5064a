//! `repr` beside Python's own `repr`, for many floats and tricky strings.

// A failed unwrap is a failed test here, as in #[test] functions.
#![allow(clippy::unwrap_used)]
// 3.1415927 is the article's number, not an attempt at pi.
#![allow(clippy::approx_constant)]

use std::io::Write;
use std::process::Stdio;

use common::repr;
use testkit::python3;

/// Runs `program` in python3 with `input` on stdin; `None` (said on the terminal) without it.
fn python(program: &str, input: &str) -> Option<String> {
    let mut child = python3("repr parity")?
        .args(["-c", program])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Written from a thread while this one reads, so that neither pipe fills up and stalls.
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success());
    Some(String::from_utf8(out.stdout).unwrap())
}

/// A small deterministic generator (xorshift64*), so that a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn floats_print_as_python_prints_them() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut values = vec![
        0.0,
        -0.0,
        1.0,
        0.1,
        3.1415927,
        1e16,
        1e15,
        9999999999999998.0,
    ];
    values.extend([
        1e-4,
        1e-5,
        0.00012345,
        123456789012345680.0,
        5e-324,
        f64::MAX,
    ]);
    values.extend([
        f64::MIN_POSITIVE,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
    ]);
    for _ in 0..20_000 {
        // Any bit pattern: every exponent and sign.
        values.push(f64::from_bits(rng.next()));
        // Short decimals near the switch to exponents, as people write them.
        let digits = (rng.next() % 100_000) as f64;
        let scale = 10f64.powi((rng.next() % 44) as i32 - 22);
        values.push(digits * scale);
    }
    let input: String = values
        .iter()
        .map(|v| format!("{:016x}\n", v.to_bits()))
        .collect();
    let program = "import sys, struct\n\
        for line in sys.stdin:\n    \
        print(repr(struct.unpack('>d', bytes.fromhex(line.strip()))[0]))";
    let Some(expected) = python(program, &input) else {
        return;
    };
    for (value, want) in values.iter().zip(expected.lines()) {
        assert_eq!(
            repr(value).to_string(),
            want,
            "bits {:016x}",
            value.to_bits()
        );
    }
    assert_eq!(expected.lines().count(), values.len());
}

#[test]
fn strings_print_as_python_prints_them() {
    let mut values: Vec<String> = [
        "",
        "hello",
        "it's",
        "say \"hi\"",
        "both ' and \"",
        "back\\slash",
        "tab\tnew\nret\r",
        "\x00\x01\x1b\x7f",
        "\u{80}\u{9f}\u{a0}\u{ad}\u{ff}",
        "é",
        "e\u{301}",
        "\u{301}",
        "\u{2028}\u{2029}\u{200b}\u{feff}",
        "日本語",
        "\u{e000}",
        "\u{fffe}",
        "😀",
        "\u{1d400}",
        "\u{e0001}",
        "\u{10ffff}",
        "\u{3000}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Every character of the first planes, a few at a time.
    let chars: Vec<char> = (0..0x3_0000u32).filter_map(char::from_u32).collect();
    values.extend(chars.chunks(7).map(|c| c.iter().collect()));
    let input: String = values
        .iter()
        .map(|s| s.bytes().map(|b| format!("{b:02x}")).collect::<String>() + "\n")
        .collect();
    // Each line: whether the text has a character Python's Unicode does not know, then repr.
    let program = "import sys, unicodedata\n\
        print(unicodedata.unidata_version)\n\
        for line in sys.stdin:\n    \
        s = bytes.fromhex(line.strip()).decode()\n    \
        print(int(any(unicodedata.category(c) == 'Cn' for c in s)), repr(s))";
    let Some(expected) = python(program, &input) else {
        return;
    };
    let mut expected = expected.lines();
    let unicode = expected.next().unwrap();
    let mut compared = 0;
    let mut differ = Vec::new();
    for (value, line) in values.iter().zip(expected) {
        let (unknown, want) = line.split_once(' ').unwrap();
        // Rust's tables are of a newer Unicode than Python 3.11's 14.0: a character assigned
        // since then is printable in Rust and unprintable in Python. Only those may differ.
        if unknown == "1" {
            continue;
        }
        compared += 1;
        let got = repr(value.as_str()).to_string();
        if got != want {
            differ.push((value.clone(), got, want.to_owned()));
        }
    }
    assert!(compared > 20_000, "only {compared} strings compared");
    assert!(
        differ.is_empty(),
        "Unicode {unicode}: {} differ, e.g. {:?}",
        differ.len(),
        &differ[..differ.len().min(5)]
    );
}
