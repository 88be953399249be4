//! The version of the nbdkit the harness runs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use crate::error::{HarnessError, Result};
use crate::process;
use crate::shim;

/// The version of the nbdkit the harness runs ([`nbdkit_program`](crate::nbdkit_program),
/// inside the root of [`ROOT_ENV`](crate::ROOT_ENV) if set), as `(major, minor, patch)`:
/// `(1, 32, 5)` for Debian 12's. From `nbdkit --version`, asked once per process for each
/// program and root.
///
/// For what depends on the version: nbdkit gives filters `--dump-plugin` (so
/// [`dump_plugin`](crate::dump_plugin) of a Rust filter) only from 1.36, say.
///
/// ```no_run
/// # fn main() -> Result<(), rustshim_harness::HarnessError> {
/// if rustshim_harness::nbdkit_version()? >= (1, 36, 0) {
///     // ... dump the filter's fields
/// }
/// # Ok(()) }
/// ```
pub fn nbdkit_version() -> Result<(u32, u32, u32)> {
    /// The program and the root asked, and the answer.
    type Asked = HashMap<(PathBuf, Option<PathBuf>), (u32, u32, u32)>;
    static ASKED: OnceLock<Mutex<Asked>> = OnceLock::new();
    let nbdkit = shim::nbdkit_program();
    let key = (nbdkit.clone(), process::root());
    let mut asked = ASKED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(version) = asked.get(&key) {
        return Ok(*version);
    }
    let mut cmd = process::command(&nbdkit);
    cmd.arg("--version");
    let out = process::run(&mut cmd, crate::DEFAULT_TIMEOUT)?;
    let shown = format!("`{} --version`", nbdkit.display());
    if !out.success() {
        return Err(HarnessError::Unexpected(format!(
            "{shown} failed ({}): {}",
            out.status,
            out.stderr.trim()
        )));
    }
    let version = parse(&out.stdout).ok_or_else(|| {
        HarnessError::Unexpected(format!(
            "{shown} printed no `nbdkit MAJOR.MINOR.PATCH`: {:?}",
            out.stdout.trim()
        ))
    })?;
    asked.insert(key, version);
    Ok(version)
}

/// `nbdkit 1.42.3` (the first line; anything after the version is ignored).
fn parse(stdout: &str) -> Option<(u32, u32, u32)> {
    let mut words = stdout.lines().next()?.split_whitespace();
    if words.next()? != "nbdkit" {
        return None;
    }
    let mut numbers = words.next()?.split('.').map(|n| {
        let digits: String = n.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u32>().ok()
    });
    let major = numbers.next()??;
    let minor = numbers.next()??;
    let patch = numbers.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn reads_nbdkits_version_line() {
        assert_eq!(parse("nbdkit 1.32.5\n"), Some((1, 32, 5)));
        assert_eq!(parse("nbdkit 1.48.1 (nbdkit-1.48.1-1)\n"), Some((1, 48, 1)));
        assert_eq!(parse("nbdkit 1.43\n"), Some((1, 43, 0)));
        assert_eq!(parse("qemu-nbd 8.0\n"), None);
        assert_eq!(parse(""), None);
    }
}
