//! `delay`: delays requests, the twin of nbdkit's `nbdkit-delay-filter` (same keys, same
//! behaviour), to simulate a slow or remote disk.
//!
//! ```text
//! nbdkit --filter=rustshim memory 1G filter=delay delay-read=100ms delay-write=1.5s
//! ```
//!
//! Delays use nbdkit's syntax (`server::parse_delay`: `1`, `1.5s`, `100ms`, `10us`, `1ns`) and
//! sleep with `server::nanosleep`, which ends early when the server shuts down or the client goes.

use std::time::Duration;

use rustshim_plugin_api::prelude::*;

#[derive(Default)]
struct Delay {
    read: Duration,
    write: Duration,
    zero: Duration,
    trim: Duration,
    extents: Duration,
    cache: Duration,
    open: Duration,
    close: Duration,
    /// `delay-fast-zero=false`: a fast zero fails at once with `ENOTSUP` instead of waiting.
    no_fast_zero_delay: bool,
}

/// Waits `delay` (nothing for zero), failing like nbdkit's filter does when the wait is cut
/// short.
fn wait(delay: Duration) -> Result<()> {
    if delay.is_zero() {
        return Ok(());
    }
    server::nanosleep(delay)
}

#[filter]
impl Filter for Delay {
    type Handle = ();

    const NAME: &'static str = "delay";
    const LONGNAME: Option<&'static str> = Some("Rust delay filter");
    const VERSION: Option<&'static str> = Some(env!("CARGO_PKG_VERSION"));
    const DESCRIPTION: Option<&'static str> = Some("Delays requests, like nbdkit's delay filter.");
    const CONFIG_HELP: Option<&'static str> = Some(
        "rdelay=<DELAY>                 Read delay (also delay-read=).
delay-write=<DELAY>            Write delay.
delay-zero=<DELAY>             Zero delay.
delay-trim=<DELAY>             Trim delay.
delay-extents=<DELAY>          Extents delay.
delay-cache=<DELAY>            Cache delay.
wdelay=<DELAY>                 Write, zero and trim delay.
delay-fast-zero=<BOOL>         Delay fast zero requests (default true).
delay-open=<DELAY>             Open delay.
delay-close=<DELAY>            Close delay.",
    );

    fn config(&mut self, next: &mut NextConfig<'_>, key: &str, value: &str) -> Result<()> {
        let delay = || server::parse_delay(key, value);
        match key {
            "rdelay" | "delay-read" | "delay-reads" => self.read = delay()?,
            "wdelay" => {
                // Historically wdelay set all write-related delays.
                self.write = delay()?;
                (self.zero, self.trim) = (self.write, self.write);
            }
            "delay-write" | "delay-writes" => self.write = delay()?,
            "delay-zero" | "delay-zeroes" => self.zero = delay()?,
            "delay-trim" | "delay-trims" | "delay-discard" | "delay-discards" => {
                self.trim = delay()?
            }
            "delay-extent" | "delay-extents" => self.extents = delay()?,
            "delay-cache" => self.cache = delay()?,
            "delay-fast-zero" => self.no_fast_zero_delay = !server::parse_bool(value)?,
            "delay-open" => self.open = delay()?,
            "delay-close" => self.close = delay()?,
            _ => return next.config(key, value),
        }
        Ok(())
    }

    /// A zero delay that fast zero requests skip makes fast zero "supported" here.
    fn can_fast_zero(&self, next: &Next<'_>, _: &()) -> Result<bool> {
        if !self.zero.is_zero() && self.no_fast_zero_delay {
            return Ok(true);
        }
        next.can_fast_zero()
    }

    fn open(
        &self,
        next: &mut NextOpen<'_>,
        readonly: bool,
        export_name: &str,
        _: bool,
    ) -> Result<()> {
        wait(self.open).map_err(|e| e.context("delay"))?;
        next.open(readonly, export_name)
    }

    /// A clean disconnect (`NBD_CMD_DISC`) waits: a plain sleep, since the connection is going
    /// and `nanosleep` would return at once.
    fn finalize(&self, _next: &Next<'_>, _: &()) -> Result<()> {
        std::thread::sleep(self.close);
        Ok(())
    }

    fn pread(
        &self,
        next: &Next<'_>,
        _: &(),
        buf: &mut [u8],
        offset: u64,
        flags: Flags,
    ) -> Result<()> {
        wait(self.read)?;
        next.pread(buf, offset, flags)
    }

    fn pwrite(&self, next: &Next<'_>, _: &(), buf: &[u8], offset: u64, flags: Flags) -> Result<()> {
        wait(self.write)?;
        next.pwrite(buf, offset, flags)
    }

    fn zero(&self, next: &Next<'_>, _: &(), count: u32, offset: u64, flags: Flags) -> Result<()> {
        if flags.contains(Flags::FAST_ZERO) && !self.zero.is_zero() && self.no_fast_zero_delay {
            return Err(Errno::ENOTSUP.into());
        }
        wait(self.zero)?;
        next.zero(count, offset, flags)
    }

    fn trim(&self, next: &Next<'_>, _: &(), count: u32, offset: u64, flags: Flags) -> Result<()> {
        wait(self.trim)?;
        next.trim(count, offset, flags)
    }

    fn extents(
        &self,
        next: &Next<'_>,
        _: &(),
        count: u32,
        offset: u64,
        flags: Flags,
        extents: &mut Extents,
    ) -> Result<()> {
        wait(self.extents)?;
        next.extents(count, offset, flags, extents)
    }

    fn cache(&self, next: &Next<'_>, _: &(), count: u32, offset: u64, flags: Flags) -> Result<()> {
        wait(self.cache)?;
        next.cache(count, offset, flags)
    }
}

export_filter!(Delay);
