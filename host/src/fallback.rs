//! Server functions the shim does itself when the running nbdkit is too old to have them, with
//! nbdkit's syntax, numbers, formats and error messages.
//!
//! The parsers (`nbdkit_parse_probability(3)`, nbdkit ≥ 1.36; `nbdkit_parse_delay(3)`, nbdkit ≥
//! 1.40) are `rustshim_plugin_api::parse`'s, the one copy plugins also use outside nbdkit:
//! nbdkit's own algorithm (server/public.c) down to the C library calls. The differential test
//! `tests/tests/plugins/parsers.rs` holds them to nbdkit's answers on 10,000 inputs.

pub use rustshim_plugin_api::parse::{parse_delay, parse_probability};

/// `-D rustshim.fallback=1`: nbdkit sets `<plugin>_debug_<flag>` symbols of a plugin after
/// loading it, so this makes the shim answer with its own versions of the functions below even
/// where nbdkit has them: how the suite holds each fallback to nbdkit's own answer.
#[no_mangle]
pub static rustshim_debug_fallback: std::sync::atomic::AtomicI32 =
    std::sync::atomic::AtomicI32::new(0);

/// `f`, unless `-D rustshim.fallback=1` asks for the shim's own version.
pub fn native<T>(f: Option<T>) -> Option<T> {
    f.filter(|_| rustshim_debug_fallback.load(std::sync::atomic::Ordering::Relaxed) == 0)
}

/// One row of nbdkit's hexdump: `PREFIX` `MARKER` `%08x: ` then 16 columns of `xx ` (an extra
/// space after the eighth), ` |`, the printable characters, `|`. Absent columns are blank.
fn hexdump_row(prefix: &str, marker: &str, row: u64, cells: &[Option<u8>; 16]) -> String {
    use std::fmt::Write;
    let mut line = format!("{prefix}{marker}{row:08x}: ");
    for (column, cell) in cells.iter().enumerate() {
        match cell {
            Some(byte) => write!(line, "{byte:02x} ").expect("writing to a String"),
            None => line.push_str("   "),
        }
        if column == 7 {
            line.push(' ');
        }
    }
    line.push_str(" |");
    line.extend(cells.iter().map(|cell| match cell {
        Some(byte @ 0x20..=0x7e) => char::from(*byte),
        Some(_) => '.',
        None => ' ',
    }));
    line.push('|');
    line
}

/// The rows `buf` occupies when its first byte is at offset `start`: rows are 16-byte aligned
/// (so the first may start part-way), and offsets wrap at 2⁶⁴, as nbdkit's do.
fn rows(buf: &[u8], start: u64) -> Vec<(u64, [Option<u8>; 16])> {
    let mut rows: Vec<(u64, [Option<u8>; 16])> = Vec::new();
    for (i, &byte) in buf.iter().enumerate() {
        let at = start.wrapping_add(i as u64);
        let row = at & !15;
        if rows.last().map_or(true, |(r, _)| *r != row) {
            rows.push((row, [None; 16]));
        }
        rows.last_mut().expect("pushed above").1[(at & 15) as usize] = Some(byte);
    }
    rows
}

/// `nbdkit_debug_hexdump`'s lines (nbdkit ≥ 1.46 has it), in nbdkit 1.48's exact format.
pub fn hexdump(buf: &[u8], prefix: &str, start: u64) -> Vec<String> {
    rows(buf, start)
        .iter()
        .map(|(row, cells)| hexdump_row(prefix, "", *row, cells))
        .collect()
}

/// `nbdkit_debug_hexdiff`'s lines (nbdkit ≥ 1.48 has it): a row the same in both buffers once,
/// marked ` `; a row that differs as `-` with `a`'s bytes, then `+` with only the bytes of `b`
/// that differ.
pub fn hexdiff(a: &[u8], b: &[u8], prefix: &str, start: u64) -> Vec<String> {
    let mut lines = Vec::new();
    for ((row, old), (_, new)) in rows(a, start).iter().zip(rows(b, start)) {
        if *old == new {
            lines.push(hexdump_row(prefix, " ", *row, old));
        } else {
            let changed = std::array::from_fn(|i| new[i].filter(|&byte| old[i] != Some(byte)));
            lines.push(hexdump_row(prefix, "-", *row, old));
            lines.push(hexdump_row(prefix, "+", *row, &changed));
        }
    }
    lines
}

/// `nbdkit_timestamp`'s text for `time` (nbdkit ≥ 1.48 has it): UTC, `YYYY-MM-DD HH:MM:SS.uuuuuu`.
/// (nbdkit 1.48.1's own gives `!` outside a connection's thread; this one always has the time.)
pub fn timestamp(time: std::time::SystemTime) -> String {
    let since = time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm, for the proleptic
    // Gregorian calendar).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:06}",
        rest / 3_600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_micros()
    )
}

/// `nbdkit_name` (nbdkit ≥ 1.48 has it): the value of `--name` on nbdkit's command line (`args`
/// without the program), which nbdkit ≥ 1.46 accepts and older ones refuse, so `None` there.
pub fn name(args: &[String]) -> Option<String> {
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        if arg == "--name" {
            return args.next().cloned();
        }
        if let Some(name) = arg.strip_prefix("--name=") {
            return Some(name.to_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// nbdkit 1.48.1's own output for the same calls (captured with `nbdkit -v` in the forky
    /// root); the suite compares with the running nbdkit too.
    #[test]
    fn hexdump_and_hexdiff_in_nbdkits_format() {
        assert_eq!(
            hexdump(b"1234567812345678123456781234567", "data: ", 0),
            [
                "data: 00000000: 31 32 33 34 35 36 37 38  31 32 33 34 35 36 37 38  |1234567812345678|",
                "data: 00000010: 31 32 33 34 35 36 37 38  31 32 33 34 35 36 37     |123456781234567 |",
            ]
        );
        assert_eq!(
            hexdump(b"ab\x00\xff\n\t zZ~\x7f", "", 7),
            [
                "00000000:                      61  62 00 ff 0a 09 20 7a 5a  |       ab.... zZ|",
                "00000010: 7e 7f                                             |~.              |",
            ]
        );
        assert_eq!(
            hexdump(b"\x80\xc3\xa9", "", 0xffff_ffff_ffff_fffe),
            [
                "fffffffffffffff0:                                            80 c3  |              ..|",
                "00000000: a9                                                |.               |",
            ]
        );
        assert!(hexdump(b"", "empty: ", 0).is_empty());
        let a = [&b"A"[..]; 16].concat();
        let (a, b) = (
            [a.clone(), vec![b'B'; 16], vec![b'C'; 16]].concat(),
            [a, vec![b'b'; 16], vec![b'C'; 16]].concat(),
        );
        assert_eq!(
            hexdiff(&a, &b, "", 0),
            [
                " 00000000: 41 41 41 41 41 41 41 41  41 41 41 41 41 41 41 41  |AAAAAAAAAAAAAAAA|",
                "-00000010: 42 42 42 42 42 42 42 42  42 42 42 42 42 42 42 42  |BBBBBBBBBBBBBBBB|",
                "+00000010: 62 62 62 62 62 62 62 62  62 62 62 62 62 62 62 62  |bbbbbbbbbbbbbbbb|",
                " 00000020: 43 43 43 43 43 43 43 43  43 43 43 43 43 43 43 43  |CCCCCCCCCCCCCCCC|",
            ]
        );
        assert_eq!(
            hexdiff(b"12345678123456", b"12345678987654", "d: ", 3)[1],
            "d: +00000000:                                   39 38 37 36     |           9876 |"
        );
    }

    #[test]
    fn timestamps_and_names() {
        let at = std::time::UNIX_EPOCH + std::time::Duration::new(1_796_315_471, 424_774_999);
        assert_eq!(timestamp(at), "2026-12-03 16:31:11.424774");
        assert_eq!(
            timestamp(std::time::UNIX_EPOCH),
            "1970-01-01 00:00:00.000000"
        );
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(951_782_400);
        assert_eq!(timestamp(at), "2000-02-29 00:00:00.000000");
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            name(&args(&["-f", "--name=disk7", "rustshim"])),
            Some("disk7".into())
        );
        assert_eq!(name(&args(&["--name", "d", "rustshim"])), Some("d".into()));
        assert_eq!(name(&args(&["-f", "rustshim", "plugin=x"])), None);
        assert_eq!(name(&args(&["--", "--name=x"])), None);
    }
}
