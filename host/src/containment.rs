//! Containing a plugin that answers nonsense. Plugins report extents, exports and dump lines
//! through sinks (`abi::ExtentSink`, `ExportSink`, `DumpSink`), and return strings and block
//! sizes, so the shim sees each item before nbdkit does and refuses, clips or cuts what nbdkit
//! would choke on (some nbdkit versions assert on it), with a message naming the plugin.

use std::ffi::{c_char, c_void, CString};
use std::ptr;

use rustshim_plugin_api::abi::{ExportSink, ExtentSink, ROption, RStr};

use crate::failure::Failure;
use crate::nbdkit_c::{self, server, NbdkitExports, NbdkitExtents};

/// The longest export name or description nbdkit accepts (longer ones it ignores).
pub const MAX_STRING: usize = 4096;

/// Hands a plugin string to nbdkit: interned (nbdkit frees it at the right time), or NULL with
/// an error if it cannot be a C string.
pub fn intern(callback: &str, s: &str) -> *const c_char {
    let Ok(c) = CString::new(s) else {
        Failure::invalid(format!(
            "rustshim: {callback}: the plugin returned a string with a NUL byte: '{}'",
            s.escape_debug()
        ))
        .report();
        return ptr::null();
    };
    match server().strdup_intern {
        // SAFETY: a NUL-terminated string; nbdkit copies it and owns the copy.
        Some(f) => unsafe { f(c.as_ptr()) },
        // Only nbdkit < 1.24 lacks interning (and calls neither callback): keep it forever.
        None => c.into_raw(),
    }
}

/// A description is only informative: cut it to what NBD carries, on a character boundary,
/// rather than lose it.
pub fn cut_description<'a>(plugin: &str, text: &'a str) -> &'a str {
    if text.len() <= MAX_STRING {
        return text;
    }
    let mut end = MAX_STRING;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    nbdkit_c::debug(&format!(
        "rustshim: {plugin}: export description of {} bytes cut to {end}",
        text.len()
    ));
    &text[..end]
}

/// A `block_size` answer for nbdkit: 0, or -1 after one line naming `who` (`filter 'x'`,
/// `rustshim: plugin 'x'`) when nbdkit would refuse it ([`check_block_size`]).
pub fn block_size_answer(who: &str, minimum: u32, preferred: u32, maximum: u32) -> i32 {
    match check_block_size(minimum, preferred, maximum) {
        Ok(()) => 0,
        Err(why) => {
            Failure::invalid(format!(
                "{who}: block_size returned minimum {minimum} preferred {preferred} maximum {maximum}: {why}"
            ))
            .report();
            -1
        }
    }
}

/// A `default_export` answer for nbdkit: the name interned, or NULL after one line naming
/// `who` when NBD cannot carry it.
pub fn default_export_answer(who: &str, name: &str) -> *const c_char {
    if name.len() > MAX_STRING {
        Failure::invalid(format!(
            "{who}: default_export returned a name of {} bytes, longer than NBD allows ({MAX_STRING})",
            name.len()
        ))
        .report();
        return ptr::null();
    }
    intern("default_export", name)
}

/// nbdkit's rules for block size constraints (all zero: none), checked before nbdkit sees them
/// so the message can name the plugin and the values. `tests/tests/plugins/block_size_vs_nbdkit.rs`
/// holds them to what each nbdkit's own check accepts and refuses.
pub fn check_block_size(minimum: u32, preferred: u32, maximum: u32) -> Result<(), &'static str> {
    if (minimum, preferred, maximum) == (0, 0, 0) {
        return Ok(());
    }
    if !(1..=65536).contains(&minimum) || !minimum.is_power_of_two() {
        return Err("the minimum must be a power of 2 from 1 to 64K");
    }
    if !(512..=32 << 20).contains(&preferred) || !preferred.is_power_of_two() {
        return Err("the preferred size must be a power of 2 from 512 to 32M");
    }
    if maximum != u32::MAX && maximum % minimum != 0 {
        return Err("the maximum must be a multiple of the minimum, or u32::MAX for no limit");
    }
    if minimum > preferred || preferred > maximum {
        return Err("they must be ordered minimum <= preferred <= maximum");
    }
    Ok(())
}

// ---- Extents ----

/// The state of one `extents` call: nbdkit's list and the range still to be covered.
pub struct ExtentClip {
    list: *mut NbdkitExtents,
    /// Where the next extent must start.
    next: u64,
    /// End of the requested range.
    end: u64,
}

impl ExtentClip {
    /// For a request of `count` bytes at `offset`, filling nbdkit's `list`.
    pub fn new(list: *mut NbdkitExtents, count: u32, offset: u64) -> ExtentClip {
        ExtentClip {
            list,
            next: offset,
            end: offset.saturating_add(count.into()),
        }
    }

    /// The sink the plugin reports extents to; it must not outlive `self`.
    pub fn sink(&mut self) -> ExtentSink {
        ExtentSink {
            ctx: (self as *mut ExtentClip).cast(),
            add: add_extent,
        }
    }

    /// Adds one extent, as the plugin would through the sink: `0` or a positive errno.
    pub fn add(&mut self, offset: u64, length: u64, kind: u32) -> i32 {
        add_extent((self as *mut ExtentClip).cast(), offset, length, kind)
    }
}

/// Adds one plugin extent, clipped to the requested range and to what is already covered:
/// nbdkit never sees an extent outside the request (nbdkit < 1.44 can assert on one,
/// CVE-2025-47711) or overlapping a previous one. A gap is refused.
extern "C" fn add_extent(ctx: *mut c_void, offset: u64, length: u64, kind: u32) -> i32 {
    // SAFETY: `ctx` is the `ExtentClip` of the running `extents` call (`ExtentClip::sink`).
    let clip = unsafe { &mut *(ctx as *mut ExtentClip) };
    let (start, stop) = match clip_extent(clip.next, clip.end, offset, length) {
        Clipped::Skip => return 0,
        Clipped::Gap => {
            nbdkit_c::error(&format!(
                "rustshim: extents: the plugin left a gap: extent at {offset} but the previous one ended at {}",
                clip.next
            ));
            return libc::ERANGE;
        }
        Clipped::Add { start, stop } => (start, stop),
    };
    let Some(add) = server().add_extent else {
        return libc::ENOTSUP;
    };
    // SAFETY: `list` is nbdkit's extents list for this call; nbdkit validates again.
    if unsafe { add(clip.list, start, stop - start, kind & 3) } != 0 {
        return libc::ERANGE;
    }
    clip.next = stop;
    0
}

/// What becomes of one extent a plugin reports.
#[derive(Debug, PartialEq, Eq)]
pub enum Clipped {
    /// Nothing of it is new (zero length, already covered, or past the end).
    Skip,
    /// It starts after the covered part ends.
    Gap,
    /// Pass `[start, stop)` on.
    Add { start: u64, stop: u64 },
}

/// Clips the extent `[offset, offset + length)` to the part after `next` (the end of what is
/// covered so far) and before `end` (the end of the request).
pub fn clip_extent(next: u64, end: u64, offset: u64, length: u64) -> Clipped {
    let stop = offset.saturating_add(length).min(end);
    if stop <= next {
        Clipped::Skip
    } else if offset > next {
        Clipped::Gap
    } else {
        Clipped::Add { start: next, stop }
    }
}

// ---- Exports ----

/// The sink a plugin's `list_exports` reports to, adding to nbdkit's `list`.
pub fn export_sink(list: *mut NbdkitExports) -> ExportSink {
    ExportSink {
        ctx: list.cast(),
        add: add_export,
        use_default: use_default_export,
    }
}

/// Adds what nbdkit lists for a plugin without `list_exports`: `0` or a positive errno.
pub fn add_default_export(list: *mut NbdkitExports) -> i32 {
    use_default_export(list.cast())
}

/// Adds one export, refusing names and descriptions that cannot be C strings.
extern "C" fn add_export(ctx: *mut c_void, name: RStr<'_>, description: ROption<RStr<'_>>) -> i32 {
    let Some(add) = server().add_export else {
        return libc::ENOTSUP;
    };
    let Ok(name_c) = CString::new(name.as_str()) else {
        nbdkit_c::error(&format!(
            "rustshim: list_exports: export name '{}' contains a NUL byte",
            name.as_str().escape_debug()
        ));
        return libc::EINVAL;
    };
    let description_c = match description.into_option().map(|d| CString::new(d.as_str())) {
        None => None,
        Some(Ok(d)) => Some(d),
        Some(Err(_)) => {
            nbdkit_c::error(&format!(
                "rustshim: list_exports: description of '{}' contains a NUL byte",
                name.as_str()
            ));
            return libc::EINVAL;
        }
    };
    let description_p = description_c.as_ref().map_or(ptr::null(), |d| d.as_ptr());
    // SAFETY: `ctx` is the `nbdkit_exports` list of this call; nbdkit copies both strings.
    match unsafe { add(ctx.cast(), name_c.as_ptr(), description_p) } {
        0 => 0,
        _ => libc::EINVAL,
    }
}

extern "C" fn use_default_export(ctx: *mut c_void) -> i32 {
    let Some(f) = server().use_default_export else {
        return libc::ENOTSUP;
    };
    // SAFETY: `ctx` is the `nbdkit_exports` list of this call.
    match unsafe { f(ctx.cast()) } {
        0 => 0,
        _ => libc::EINVAL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift64*), so the properties need no extra crate.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Whatever a plugin reports, what reaches nbdkit is ascending, contiguous, starts at the
    /// request's offset, stays inside the request, and covers every byte the plugin covered
    /// contiguously from the start.
    #[test]
    fn clipped_extents_are_always_valid() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        for _ in 0..20_000 {
            let offset = match rng.below(3) {
                0 => rng.below(1 << 20),
                1 => u64::MAX - rng.below(1 << 20),
                _ => rng.next(),
            };
            let end = offset.saturating_add(rng.below(1 << 20) + 1);
            let mut next = offset;
            let mut passed: Vec<(u64, u64)> = Vec::new();
            let mut gap = false;
            for _ in 0..rng.below(8) {
                // Extents near the request, some sane, some not.
                let start = match rng.below(4) {
                    0 => next,
                    1 => next.saturating_sub(rng.below(4096)),
                    2 => next.saturating_add(rng.below(4096)),
                    _ => rng.next(),
                };
                let length = match rng.below(4) {
                    0 => 0,
                    1 => u64::MAX - rng.below(10),
                    _ => rng.below(1 << 19),
                };
                match clip_extent(next, end, start, length) {
                    Clipped::Skip => assert!(start.saturating_add(length).min(end) <= next),
                    Clipped::Gap => {
                        assert!(start > next);
                        gap = true;
                        break;
                    }
                    Clipped::Add { start: s, stop } => {
                        assert_eq!(s, next, "contiguous");
                        assert!(s < stop && stop <= end, "inside the request");
                        assert!(
                            start <= s && stop <= start.saturating_add(length),
                            "part of what the plugin said"
                        );
                        passed.push((s, stop));
                        next = stop;
                    }
                }
            }
            if let Some(first) = passed.first() {
                assert_eq!(first.0, offset, "the first extent covers the offset");
            }
            assert!(gap || passed.windows(2).all(|w| w[0].1 == w[1].0));
        }
    }

    #[test]
    fn sane_extents_pass_unchanged() {
        assert_eq!(
            clip_extent(100, 200, 100, 50),
            Clipped::Add {
                start: 100,
                stop: 150
            }
        );
        assert_eq!(
            clip_extent(150, 200, 150, 500),
            Clipped::Add {
                start: 150,
                stop: 200
            }
        );
        assert_eq!(clip_extent(100, 200, 100, 0), Clipped::Skip);
        assert_eq!(clip_extent(100, 200, 120, 10), Clipped::Gap);
    }

    #[test]
    fn block_size_rules_match_nbdkits() {
        assert_eq!(check_block_size(0, 0, 0), Ok(()));
        assert_eq!(check_block_size(1, 512, u32::MAX), Ok(()));
        assert_eq!(check_block_size(512, 4096, 32 << 20), Ok(()));
        assert!(check_block_size(0, 512, 4096).is_err());
        assert!(check_block_size(1 << 17, 1 << 17, 1 << 17).is_err());
        assert!(check_block_size(512, 1000, 4096).is_err());
        assert!(check_block_size(512, 64 << 20, u32::MAX).is_err());
        assert!(check_block_size(512, 4096, 4097).is_err());
        assert!(check_block_size(4096, 512, 4096).is_err());
        // Random triples never panic, and accepted ones satisfy every rule.
        let mut rng = Rng(42);
        for _ in 0..100_000 {
            let pick = |rng: &mut Rng| match rng.below(3) {
                0 => 1u32 << rng.below(32),
                1 => rng.next() as u32,
                _ => u32::MAX,
            };
            let (a, b, c) = (pick(&mut rng), pick(&mut rng), pick(&mut rng));
            if check_block_size(a, b, c).is_ok() && (a, b, c) != (0, 0, 0) {
                assert!(
                    a.is_power_of_two()
                        && a <= 65536
                        && b.is_power_of_two()
                        && (512..=32 << 20).contains(&b)
                );
                assert!(a <= b && b <= c && (c == u32::MAX || c % a == 0));
            }
        }
    }
}
