//! Small types that callbacks take and return: flags, capability answers, extents, exports.

use std::fmt;
use std::ops::BitOr;

use crate::abi::{DumpSink, ExportSink, ExtentSink, RStr};
use crate::error::{Errno, Error, Result};

/// Flags nbdkit passes to data callbacks. Unknown bits are kept, never rejected.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Default)]
pub struct Flags(u32);

impl Flags {
    /// `zero` may punch a hole instead of writing zeroes (`NBDKIT_FLAG_MAY_TRIM`).
    pub const MAY_TRIM: Flags = Flags(1 << 0);
    /// Force unit access: the data must be on stable storage before returning (`NBDKIT_FLAG_FUA`).
    /// Passed to `pwrite`, `trim` and `zero` only when `can_fua` answered [`FuaMode::Native`].
    pub const FUA: Flags = Flags(1 << 1);
    /// `extents` may return just one extent (`NBDKIT_FLAG_REQ_ONE`).
    pub const REQ_ONE: Flags = Flags(1 << 2);
    /// `zero` must fail fast with `ENOTSUP` rather than be slower than writing zeroes
    /// (`NBDKIT_FLAG_FAST_ZERO`).
    pub const FAST_ZERO: Flags = Flags(1 << 3);

    /// No flags.
    pub const fn empty() -> Self {
        Flags(0)
    }
    /// Flags from nbdkit's bits, unknown ones included.
    pub const fn from_bits(bits: u32) -> Self {
        Flags(bits)
    }
    /// The raw bits.
    pub const fn bits(self) -> u32 {
        self.0
    }
    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
    /// Bits this crate has no name for.
    pub const fn unknown(self) -> u32 {
        self.0 & !(Self::MAY_TRIM.0 | Self::FUA.0 | Self::REQ_ONE.0 | Self::FAST_ZERO.0)
    }
}

impl BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names = Vec::new();
        for (flag, name) in [
            (Flags::MAY_TRIM, "MAY_TRIM"),
            (Flags::FUA, "FUA"),
            (Flags::REQ_ONE, "REQ_ONE"),
            (Flags::FAST_ZERO, "FAST_ZERO"),
        ] {
            if self.contains(flag) {
                names.push(name.to_string());
            }
        }
        if self.unknown() != 0 {
            names.push(format!("{:#x}", self.unknown()));
        }
        if names.is_empty() {
            f.write_str("(none)")
        } else {
            f.write_str(&names.join("|"))
        }
    }
}

/// How the plugin handles force-unit-access writes (`can_fua`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum FuaMode {
    /// FUA is not advertised.
    None = 0,
    /// nbdkit calls `flush` after each FUA write.
    Emulate = 1,
    /// The plugin sees [`Flags::FUA`] and honours it itself.
    Native = 2,
}

/// How the plugin handles cache requests (`can_cache`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CacheMode {
    /// Cache requests are refused.
    None = 0,
    /// nbdkit reads the range and discards the data.
    Emulate = 1,
    /// The plugin's `cache` callback is called (a no-op when it has none).
    Native = 2,
}

/// How a filter's export handles zero requests (a filter's `can_zero`; a plugin answers a bool).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ZeroMode {
    /// Zero requests are refused (`NBDKIT_ZERO_NONE`).
    None = 0,
    /// nbdkit writes zeroes with `pwrite` (`NBDKIT_ZERO_EMULATE`).
    Emulate = 1,
    /// The `zero` callback is called (`NBDKIT_ZERO_NATIVE`).
    Native = 2,
}

/// `from_raw` for the modes nbdkit numbers 0 (none), 1 (emulate), 2 (native).
macro_rules! modes_from_raw {
    ($($mode:ident),*) => {$(
        impl $mode {
            /// The mode with nbdkit's number, if there is one.
            pub fn from_raw(raw: i32) -> Option<$mode> {
                Some(match raw {
                    0 => $mode::None,
                    1 => $mode::Emulate,
                    2 => $mode::Native,
                    _ => return None,
                })
            }
        }
    )*};
}
modes_from_raw!(FuaMode, CacheMode, ZeroMode);

/// How much concurrency the plugin allows (`thread_model`). Ordered from strictest to loosest.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ThreadModel {
    /// One connection at a time.
    SerializeConnections = 0,
    /// One request at a time across all connections.
    SerializeAllRequests = 1,
    /// One request at a time per connection.
    SerializeRequests = 2,
    /// Any number of concurrent requests, even on one connection.
    Parallel = 3,
}

impl ThreadModel {
    /// nbdkit's name for the model, as printed by `--dump-plugin`.
    pub fn name(self) -> &'static str {
        match self {
            ThreadModel::SerializeConnections => "serialize_connections",
            ThreadModel::SerializeAllRequests => "serialize_all_requests",
            ThreadModel::SerializeRequests => "serialize_requests",
            ThreadModel::Parallel => "parallel",
        }
    }
    /// The model with nbdkit's number, if there is one.
    pub fn from_raw(raw: i32) -> Option<ThreadModel> {
        Some(match raw {
            0 => ThreadModel::SerializeConnections,
            1 => ThreadModel::SerializeAllRequests,
            2 => ThreadModel::SerializeRequests,
            3 => ThreadModel::Parallel,
            _ => return None,
        })
    }
}

/// The block size constraints of an export (`block_size`); all zero means "no constraints".
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub struct BlockSize {
    /// Smallest I/O size, a power of 2 from 1 to 64 KiB.
    pub minimum: u32,
    /// Preferred I/O size, a power of 2 from 512 to 32 MiB.
    pub preferred: u32,
    /// Largest I/O size, a multiple of `minimum`, or `u32::MAX` for no limit.
    pub maximum: u32,
}

/// The type of an extent returned by `extents`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub struct ExtentType(u32);

impl ExtentType {
    /// Allocated data.
    pub const DATA: ExtentType = ExtentType(0);
    /// Not allocated (`NBDKIT_EXTENT_HOLE`).
    pub const HOLE: ExtentType = ExtentType(1);
    /// Reads as zeroes (`NBDKIT_EXTENT_ZERO`).
    pub const ZERO: ExtentType = ExtentType(2);
    /// The type with nbdkit's bits (as [`Extent::kind`](crate::filter::Extent) has them).
    pub const fn from_bits(bits: u32) -> ExtentType {
        ExtentType(bits)
    }
    /// The raw bits.
    pub const fn bits(self) -> u32 {
        self.0
    }
}

impl BitOr for ExtentType {
    type Output = ExtentType;
    fn bitor(self, rhs: ExtentType) -> ExtentType {
        ExtentType(self.0 | rhs.0)
    }
}

/// The list an `extents` callback fills, in ascending, contiguous order starting at the
/// requested offset. The shim clips extents to the requested range.
pub struct Extents {
    sink: ExtentSink,
}

impl Extents {
    pub(crate) fn new(sink: ExtentSink) -> Self {
        Extents { sink }
    }

    /// The sink, for a filter passing this list to the layer below.
    pub(crate) fn sink(&self) -> ExtentSink {
        self.sink
    }

    /// Adds the extent `[offset, offset + length)`.
    pub fn add(&mut self, offset: u64, length: u64, kind: ExtentType) -> Result<()> {
        match (self.sink.add)(self.sink.ctx, offset, length, kind.0) {
            0 => Ok(()),
            errno => Err(Error::already_logged(
                Errno::from_raw(errno),
                "extents: extent rejected",
            )),
        }
    }
}

/// The list a `list_exports` callback fills.
pub struct Exports {
    sink: ExportSink,
}

impl Exports {
    pub(crate) fn new(sink: ExportSink) -> Self {
        Exports { sink }
    }

    /// The sink, for a filter passing this list to the layer below.
    pub(crate) fn sink(&self) -> ExportSink {
        self.sink
    }

    /// Adds an export with an optional description.
    pub fn add(&mut self, name: &str, description: Option<&str>) -> Result<()> {
        let description = description.map(RStr::from_str).into();
        match (self.sink.add)(self.sink.ctx, RStr::from_str(name), description) {
            0 => Ok(()),
            errno => Err(Error::already_logged(
                Errno::from_raw(errno),
                format!("export '{name}' rejected"),
            )),
        }
    }

    /// Adds what nbdkit lists for a plugin without `list_exports` (`nbdkit_use_default_export`).
    pub fn use_default(&mut self) -> Result<()> {
        match (self.sink.use_default)(self.sink.ctx) {
            0 => Ok(()),
            errno => Err(Error::already_logged(
                Errno::from_raw(errno),
                "default export rejected",
            )),
        }
    }
}

/// Where [`Plugin::dump_plugin`](crate::Plugin::dump_plugin) writes its `key=value` lines (by
/// convention keys start with the plugin's name: `mydisk_pages=12`).
pub struct Dump {
    sink: DumpSink,
}

impl Dump {
    pub(crate) fn new(sink: DumpSink) -> Self {
        Dump { sink }
    }

    /// Prints the line `key=value`.
    ///
    /// Each field must be one line that reads back as that key and value, so the shim leaves
    /// out a field whose key is empty or contains `=`, a blank or a control character, or
    /// whose value contains a line break (either could forge other lines, such as the shim's
    /// `rustshim_plugin_version=`), and logs one error line naming the key instead.
    pub fn field(&mut self, key: &str, value: impl fmt::Display) {
        let value = value.to_string();
        (self.sink.line)(self.sink.ctx, RStr::from_str(key), RStr::from_str(&value));
    }
}

/// The set of callbacks a plugin or filter implements, generated by [`macro@crate::plugin`] and
/// [`macro@crate::filter`]: bits numbered by the callback table it belongs to
/// ([`crate::abi::CALLBACK_NAMES`] or [`crate::abi::FILTER_CALLBACK_NAMES`]).
#[derive(Copy, Clone, PartialEq, Eq)]
pub struct Callbacks {
    bits: u64,
    table: &'static [&'static str],
}

impl Callbacks {
    /// The plugin callbacks with these names. A name that is not a callback fails the build.
    pub const fn from_names(names: &[&str]) -> Self {
        Self::in_table(&crate::abi::CALLBACK_NAMES, names)
    }

    /// The callbacks of `table` with these names. A name not in it fails the build.
    pub const fn in_table(table: &'static [&'static str], names: &[&str]) -> Self {
        let mut bits = 0u64;
        let mut i = 0;
        while i < names.len() {
            bits |= 1 << index_of(table, names[i]);
            i += 1;
        }
        Callbacks { bits, table }
    }

    /// Whether the callback named `name` is in the set.
    pub const fn has(self, name: &str) -> bool {
        self.bits & (1 << index_of(self.table, name)) != 0
    }

    /// The raw bit set, numbered by the table.
    pub const fn bits(self) -> u64 {
        self.bits
    }
}

const fn index_of(table: &[&str], name: &str) -> usize {
    let mut i = 0;
    while i < table.len() {
        if str_eq(table[i], name) {
            return i;
        }
        i += 1;
    }
    panic!("not a callback name")
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_flag_bits_are_kept() {
        let f = Flags::from_bits(0x2 | 0x100);
        assert!(f.contains(Flags::FUA));
        assert_eq!(f.unknown(), 0x100);
        assert_eq!(f.bits(), 0x102);
        assert_eq!(format!("{f:?}"), "FUA|0x100");
    }

    #[test]
    fn callbacks_by_name() {
        const C: Callbacks = Callbacks::from_names(&["pread", "zero"]);
        assert!(C.has("pread") && C.has("zero") && !C.has("pwrite"));
        assert_eq!(C.bits().count_ones(), 2);
    }

    #[test]
    fn thread_models_order_strict_to_loose() {
        assert!(ThreadModel::SerializeConnections < ThreadModel::Parallel);
        assert_eq!(
            ThreadModel::from_raw(2),
            Some(ThreadModel::SerializeRequests)
        );
        assert_eq!(ThreadModel::from_raw(7), None);
    }

    #[test]
    fn every_flag_word_round_trips_and_prints() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let bits = x as u32;
            let f = Flags::from_bits(bits);
            assert_eq!(f.bits(), bits);
            assert_eq!(f.unknown() | (bits & 0xf), bits);
            assert_eq!(f.contains(Flags::FUA), bits & 2 != 0);
            let _ = format!("{f:?}");
        }
    }

    #[test]
    fn any_subset_of_callback_names_round_trips() {
        let names = crate::abi::CALLBACK_NAMES;
        let mut x = 7u64;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let chosen: Vec<&str> = names
                .iter()
                .enumerate()
                .filter(|(i, _)| x & (1 << i) != 0)
                .map(|(_, n)| *n)
                .collect();
            let set = Callbacks::from_names(&chosen);
            for (i, name) in names.iter().enumerate() {
                assert_eq!(set.has(name), x & (1 << i) != 0, "{name}");
            }
        }
    }
}
