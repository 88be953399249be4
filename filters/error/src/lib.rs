//! `error`: injects errors, the twin of nbdkit's `nbdkit-error-filter` (same keys, same errors
//! as the client sees them, same log line), to test how clients cope.
//!
//! ```text
//! nbdkit --filter=rustshim memory 1G filter=error error=ENOSPC error-pwrite-rate=10%
//! nbdkit --filter=rustshim memory 1G filter=error error-rate=1 error-file=/tmp/inject
//! ```
//!
//! `error=` names the error (`EPERM`, `EIO`, `ENOMEM`, `EINVAL`, `ENOSPC`, `ESHUTDOWN`; default
//! `EIO`), `error-rate=` how often (nbdkit's probability syntax: `10%`, `0.1`, `1:10`; default
//! never), `error-file=` makes it happen only while that file exists; `error-pread=`,
//! `error-pwrite-rate=`, `error-zero-file=`, … set one kind of request only (`pread`, `pwrite`,
//! `trim`, `zero`, `extents`, `cache`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use rustshim_plugin_api::prelude::*;

/// The errors `error=` knows, as nbdkit's filter names them.
const ERRORS: [(&str, Errno); 6] = [
    ("EPERM", Errno::EPERM),
    ("EIO", Errno::EIO),
    ("ENOMEM", Errno::ENOMEM),
    ("EINVAL", Errno::EINVAL),
    ("ENOSPC", Errno::ENOSPC),
    ("ESHUTDOWN", Errno::ESHUTDOWN),
];

/// The kinds of request, in the order of [`ErrorFilter::settings`].
const OPS: [&str; 6] = ["pread", "pwrite", "trim", "zero", "extents", "cache"];

/// What to inject into one kind of request.
#[derive(Clone)]
struct Settings {
    error: (&'static str, Errno),
    /// 0.0 never … 1.0 always.
    rate: f64,
    /// Inject only while this file exists.
    file: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            error: ERRORS[1],
            rate: 0.0,
            file: None,
        }
    }
}

struct ErrorFilter {
    settings: [Settings; 6],
    /// xorshift64 state.
    random: AtomicU64,
}

impl Default for ErrorFilter {
    fn default() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        ErrorFilter {
            settings: Default::default(),
            random: AtomicU64::new(seed),
        }
    }
}

fn parse_error(key: &str, value: &str) -> Result<(&'static str, Errno)> {
    ERRORS
        .iter()
        .find(|(name, _)| *name == value)
        .copied()
        .ok_or_else(|| Error::invalid(format!("{key}: unknown error name '{value}'")))
}

fn parse_rate(key: &str, value: &str) -> Result<f64> {
    let rate = server::parse_probability(key, value)?;
    if rate > 1.0 {
        return Err(Error::invalid(format!(
            "{key}: rate out of range: '{value}' parsed as {rate}"
        )));
    }
    Ok(rate)
}

fn parse_file(value: &str) -> Result<PathBuf> {
    // Relative to where nbdkit was started (it changes to / before serving); the file need not
    // exist yet.
    Ok(std::path::absolute(value)?)
}

impl ErrorFilter {
    /// The settings `key` (`error-pread-rate`, `error-rate`, …) names: one kind of request, or
    /// all, and which setting.
    fn targets(key: &str) -> Option<(Option<usize>, &str)> {
        let rest = key.strip_prefix("error")?;
        let (op, what) = match rest.strip_prefix('-') {
            None if rest.is_empty() => (None, ""),
            None => return None,
            Some(rest) => match OPS.iter().position(|op| rest.split('-').next() == Some(op)) {
                Some(i) => (Some(i), rest[OPS[i].len()..].trim_start_matches('-')),
                None => (None, rest),
            },
        };
        matches!(what, "" | "rate" | "file").then_some((op, what))
    }

    fn next_random(&self) -> u32 {
        let mut x = self.random.load(Ordering::Relaxed);
        loop {
            let mut y = x;
            y ^= y << 13;
            y ^= y >> 7;
            y ^= y << 17;
            match self
                .random
                .compare_exchange_weak(x, y, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return (y >> 32) as u32,
                Err(now) => x = now,
            }
        }
    }

    /// Fails the request of kind `op` (index into [`OPS`]) if an error is due.
    fn maybe_fail(&self, op: usize) -> Result<()> {
        let s = &self.settings[op];
        if s.rate <= 0.0 {
            return Ok(());
        }
        if let Some(file) = &s.file {
            if !file.exists() {
                return Ok(());
            }
        }
        if s.rate < 1.0 && f64::from(self.next_random()) >= s.rate * f64::from(u32::MAX) {
            return Ok(());
        }
        let (name, errno) = s.error;
        Err(Error::new(
            errno,
            format!("injecting {name} error into {}", OPS[op]),
        ))
    }
}

#[filter]
impl Filter for ErrorFilter {
    type Handle = ();

    const NAME: &'static str = "error";
    const LONGNAME: Option<&'static str> = Some("Rust error injection filter");
    const VERSION: Option<&'static str> = Some(env!("CARGO_PKG_VERSION"));
    const DESCRIPTION: Option<&'static str> = Some("Injects errors, like nbdkit's error filter.");
    const CONFIG_HELP: Option<&'static str> = Some(
        "error=EPERM|EIO|ENOMEM|EINVAL|ENOSPC|ESHUTDOWN
                               The error indication to return.
error-rate=0%..100%|0..1       Rate of errors to generate.
error-file=TRIGGER             Set trigger filename.
error-pread*, error-pwrite*, error-trim*, error-zero*, error-extents*, error-cache*
                               Apply settings only to read/write/etc",
    );

    fn config(&mut self, next: &mut NextConfig<'_>, key: &str, value: &str) -> Result<()> {
        let Some((op, what)) = Self::targets(key) else {
            return next.config(key, value);
        };
        let ops = match op {
            Some(i) => i..i + 1,
            None => 0..OPS.len(),
        };
        match what {
            "" => {
                let error = parse_error(key, value)?;
                ops.for_each(|i| self.settings[i].error = error);
            }
            "rate" => {
                let rate = parse_rate(key, value)?;
                ops.for_each(|i| self.settings[i].rate = rate);
            }
            _ => {
                let file = parse_file(value)?;
                ops.for_each(|i| self.settings[i].file = Some(file.clone()));
            }
        }
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
        self.maybe_fail(0)?;
        next.pread(buf, offset, flags)
    }

    fn pwrite(&self, next: &Next<'_>, _: &(), buf: &[u8], offset: u64, flags: Flags) -> Result<()> {
        self.maybe_fail(1)?;
        next.pwrite(buf, offset, flags)
    }

    fn trim(&self, next: &Next<'_>, _: &(), count: u32, offset: u64, flags: Flags) -> Result<()> {
        self.maybe_fail(2)?;
        next.trim(count, offset, flags)
    }

    fn zero(&self, next: &Next<'_>, _: &(), count: u32, offset: u64, flags: Flags) -> Result<()> {
        self.maybe_fail(3)?;
        next.zero(count, offset, flags)
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
        self.maybe_fail(4)?;
        next.extents(count, offset, flags, extents)
    }

    fn cache(&self, next: &Next<'_>, _: &(), count: u32, offset: u64, flags: Flags) -> Result<()> {
        self.maybe_fail(5)?;
        next.cache(count, offset, flags)
    }
}

export_filter!(ErrorFilter);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_their_settings() {
        assert_eq!(ErrorFilter::targets("error"), Some((None, "")));
        assert_eq!(ErrorFilter::targets("error-rate"), Some((None, "rate")));
        assert_eq!(ErrorFilter::targets("error-file"), Some((None, "file")));
        assert_eq!(ErrorFilter::targets("error-pread"), Some((Some(0), "")));
        assert_eq!(
            ErrorFilter::targets("error-pwrite-rate"),
            Some((Some(1), "rate"))
        );
        assert_eq!(
            ErrorFilter::targets("error-cache-file"),
            Some((Some(5), "file"))
        );
        assert_eq!(ErrorFilter::targets("errors"), None);
        assert_eq!(ErrorFilter::targets("error-bogus"), None);
        assert_eq!(ErrorFilter::targets("size"), None);
    }
}
