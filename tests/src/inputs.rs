//! Generated inputs for nbdkit's parsers, the same on every run: the differential tests
//! (`parsers.rs`, `author_parsers.rs`) and nbdkit 1.48.1's recorded answers
//! (`fixtures/nbdkit-1.48.1-server-functions.txt`, `nbdkit_148_answers.rs`) take theirs from here.

/// xorshift: the same numbers on every run; `next(n)` is below `n`.
pub fn generator(seed: u64) -> impl FnMut(usize) -> usize {
    let mut x = seed;
    move |n| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    }
}

/// `count` strings for `nbdkit_parse_probability` and `nbdkit_parse_delay`: numbers in every
/// form C's `%lg` reads (decimal, exponent, hexadecimal, signs, leading blanks, inf/nan), each
/// with a suffix from both syntaxes or a wrong one, plus strings of random characters from the
/// syntax's alphabet. Delays of 2³² seconds and more are in too: nbdkit's C converts them to
/// `unsigned` with undefined behaviour, and the fallback does what nbdkit's x86-64 binaries do.
pub fn probability_and_delay_inputs(count: usize) -> Vec<String> {
    let mut next = generator(0x2545_f491_4f6c_dd1d);
    let numbers = [
        "0",
        "1",
        "2",
        "10",
        "0.5",
        ".5",
        "5.",
        "1e-1",
        "1E2",
        "2e+3",
        "1e",
        "1e+",
        "+1",
        "-0",
        "-1",
        "  3",
        "\t4",
        "0x10",
        "0X1p-2",
        "0x.8",
        "inf",
        "INF",
        "infinity",
        "nan",
        "NaN",
        "nan(1)",
        "1e308",
        "1e309",
        "4e-320",
        "4294967295.5",
        "4294967296",
        "5e9",
        "1e19",
        "2.5e-9",
        "0.5e-9",
        "0.1",
        "123456789",
        "3.14159",
        "007",
        "1.5",
        "1..2",
        ".",
        "+",
        "-",
        "e5",
        "",
    ];
    let suffixes = [
        "", "%", "s", "ms", "us", "μs", "ns", "m", "S", " ", "%%", "/4", ":3", "/0", ":0", "//2",
        "/:2", "/ 2", " /2", "/2x", "/-2", "/0x4", "/1e1", ":inf", "/.5", "sec", "x",
    ];
    let alphabet: Vec<char> = "0123456789.eExXpP+-%:/smunμ \tinfa".chars().collect();
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let s = if next(4) == 0 {
            let len = next(9);
            (0..len).map(|_| alphabet[next(alphabet.len())]).collect()
        } else {
            let mut s = numbers[next(numbers.len())].to_string();
            if next(3) == 0 {
                s = format!("{}.{}", next(100_000), next(1_000_000));
            }
            s + suffixes[next(suffixes.len())]
        };
        out.push(s);
    }
    out
}

/// At least `count` strings for `nbdkit_parse_size`: numbers in every form `strtoimax` reads
/// (blanks, signs, leading zeros, the limits of int64 and beyond, none at all) with every
/// suffix, a wrong one, or two (2,109 of them, all there whatever `count`); then random strings
/// of the syntax's alphabet and random numbers with a suffix, up to `count`.
pub fn size_inputs(count: usize) -> Vec<String> {
    let mut next = generator(0x9e37_79b9_7f4a_7c15);
    let numbers = [
        "0",
        "1",
        "7",
        "8",
        "512",
        "8191",
        "8192",
        "4095",
        "4096",
        "8388607",
        "8388608",
        "8589934591",
        "8589934592",
        "9007199254740991",
        "9007199254740992",
        "9223372036854775807",
        "9223372036854775808",
        "18446744073709551615",
        "99999999999999999999",
        "-0",
        "-1",
        "-9223372036854775808",
        "-99999999999999999999",
        "+5",
        "++5",
        "+-5",
        " 5",
        "\t5",
        "\n5",
        "\x0b\x0c\r5",
        " ",
        "",
        "007",
        "0x10",
        "1.5",
        ".5",
        "1e3",
        "x",
        "-",
        "+",
        "0x",
        "0x1",
        "0X1f",
        "0x7fffffffffffffff",
        "0x8000000000000000",
        "0xg",
        "-0x1",
        "010",
        "08",
        "0b101",
        "0b",
        "0b2",
        "00",
        "_1",
        "1_",
        "1__",
        "0x1_",
    ];
    let suffixes = [
        "", "b", "B", "k", "K", "m", "M", "g", "G", "t", "T", "p", "P", "e", "E", "s", "S", "x",
        " ", "M ", "MB", "MiB", "kk", "Ex", "Es", "bb", "sx", "\t", "%", "KB", "1", "_", "_M",
        "_e", "__k", "_x", "M_",
    ];
    let alphabet: Vec<char> = "0123456789+- \tbkmgtpesKMGTPESx._".chars().collect();
    let mut out: Vec<String> = numbers
        .iter()
        .flat_map(|n| suffixes.iter().map(move |s| format!("{n}{s}")))
        .collect();
    while out.len() < count {
        let s = if next(3) == 0 {
            (0..next(10))
                .map(|_| alphabet[next(alphabet.len())])
                .collect()
        } else {
            format!(
                "{}{}",
                next(1 << 20) as u64 * (1 + next(1 << 30) as u64),
                suffixes[next(suffixes.len())]
            )
        };
        out.push(s);
    }
    out
}

/// Strings for `nbdkit_parse_bool`: every word nbdkit knows in several cases, near misses,
/// blanks, numbers, and 300 random strings of the words' letters.
pub fn bool_inputs() -> Vec<String> {
    let mut next = generator(0x2545_f491_4f6c_dd1d);
    let words = [
        "1", "0", "true", "false", "t", "f", "yes", "no", "y", "n", "on", "off",
    ];
    let mut out = Vec::new();
    for word in words {
        for variant in [
            word.to_string(),
            word.to_uppercase(),
            word.char_indices()
                .map(|(i, c)| {
                    if i % 2 == 0 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect(),
            format!(" {word}"),
            format!("{word} "),
            format!("{word}{word}"),
            format!("+{word}"),
            format!("0{word}"),
            word[..word.len() - 1].to_string(),
        ] {
            out.push(variant);
        }
    }
    out.extend(["2", "-1", "01", "enable", "disable", "ok", "nope", "oui"].map(String::from));
    let alphabet: Vec<char> = "01tTrRuUeEfFaAlLsSyYnNoO ".chars().collect();
    for _ in 0..300 {
        out.push(
            (0..next(6))
                .map(|_| alphabet[next(alphabet.len())])
                .collect(),
        );
    }
    out
}
