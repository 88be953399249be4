//! The test plugin's trace file: what nbdkit asked of it, in order.

use std::path::PathBuf;

use rustshim_harness::TempDir;

use crate::files::temp_dir;

/// The callbacks nbdkit calls once per connection during the handshake (any order).
pub const HANDSHAKE: [&str; 12] = [
    "get_size",
    "can_write",
    "can_flush",
    "is_rotational",
    "can_trim",
    "can_zero",
    "can_fua",
    "can_multi_conn",
    "can_extents",
    "can_cache",
    "can_fast_zero",
    "block_size",
];

/// The data callbacks, as the trace names them.
const DATA_CALLBACKS: [&str; 7] = [
    "pread", "pwrite", "flush", "trim", "zero", "extents", "cache",
];

/// The test plugin's trace file (`trace=PATH`), in its own temporary directory.
pub struct Trace {
    dir: TempDir,
}

impl Trace {
    pub fn new(tag: &str) -> Trace {
        Trace { dir: temp_dir(tag) }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("trace")
    }

    /// Another file in the same directory (for log files, sockets, passwords…).
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The `trace=PATH` argument.
    pub fn arg(&self) -> String {
        format!("trace={}", self.path().display())
    }

    /// Every traced line.
    pub fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.path())
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The lines recording a callback (not a server function's result).
    pub fn calls(&self) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| !l.contains(" = ") && !l.ends_with("()"))
            .collect()
    }

    /// The callback names, in call order.
    pub fn names(&self) -> Vec<String> {
        self.calls()
            .iter()
            .map(|l| l.split(' ').next().unwrap_or_default().to_owned())
            .collect()
    }

    /// The traced calls of the data callbacks, in order.
    pub fn data_calls(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|l| DATA_CALLBACKS.contains(&l.split(' ').next().unwrap_or_default()))
            .collect()
    }

    /// How many times a callback was called.
    pub fn count(&self, name: &str) -> usize {
        self.names().iter().filter(|n| *n == name).count()
    }

    /// How many traced lines start with `prefix` (`"injected open"`, `"blocking at"`).
    pub fn count_prefixed(&self, prefix: &str) -> usize {
        self.lines()
            .iter()
            .filter(|l| l.starts_with(prefix))
            .count()
    }

    /// The value traced for a server function in `NAME = VALUE` lines, in order.
    pub fn results(&self, name: &str) -> Vec<String> {
        let prefix = format!("{name} = ");
        self.lines()
            .iter()
            .filter_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
            .collect()
    }

    /// The one traced result of a server function.
    #[track_caller]
    pub fn result(&self, name: &str) -> String {
        let results = self.results(name);
        assert_eq!(
            results.len(),
            1,
            "{name} traced once in {:#?}",
            self.lines()
        );
        results[0].clone()
    }
}
