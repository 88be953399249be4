//! A `log` backend that forwards records to the shim, which maps them onto nbdkit's two levels
//! (the table is in the crate docs, "Logging").
//!
//! Each loaded copy of a plugin has its own `log` globals, so the shim cannot install this for
//! the plugin: the adapter does, once per copy. `RUSTSHIM_LOG=off|error|warn|info|debug|trace`
//! sets the level (default `debug`). Outside nbdkit (a unit test) records go to stderr as
//! `LEVEL: message`.

use log::{LevelFilter, Log, Metadata, Record};

use crate::abi::RStr;

struct HostLogger;

static LOGGER: HostLogger = HostLogger;

impl Log for HostLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let msg = record.args().to_string();
        match crate::host::host() {
            Some(host) => (host.log())(record.level() as u32, RStr::from_str(&msg)),
            None => eprintln!("{}: {msg}", record.level()),
        }
    }

    fn flush(&self) {}
}

/// Installs the logger unless the plugin installed its own first.
pub(crate) fn install() {
    if log::set_logger(&LOGGER).is_ok() {
        let level = std::env::var("RUSTSHIM_LOG")
            .ok()
            .and_then(|v| v.parse::<LevelFilter>().ok())
            .unwrap_or(LevelFilter::Debug);
        log::set_max_level(level);
    }
}
