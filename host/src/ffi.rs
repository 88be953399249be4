//! What the plugin half ([`crate::plugin`]) and the filter half ([`crate::filter`]) share at
//! nbdkit's C ABI: the guard around a cold callback, statuses and errnos as nbdkit expects
//! them, the one conversion of nbdkit's C strings to UTF-8, and the lines of `--dump-plugin`
//! (a loaded plugin's or filter's, `dump_generation`).
//!
//! # The contract behind the `unsafe` here
//! nbdkit's: strings it passes are NUL-terminated and valid for the call (`config` keys and
//! values for the process); `printf` is C stdio, so the lines stay in order with nbdkit's own.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use rustshim_plugin_api::abi::{DumpSink, ROption, RStr};

use crate::failure::Failure;
use crate::generation::Generation;
use crate::module::Module;
use crate::nbdkit_c;
use crate::services::{self, report_failure};

/// Runs a cold callback body, turning a panic in the shim itself into an error instead of an
/// abort (the plugin's own panics are already caught on its side).
pub(crate) fn guarded<R>(callback: &str, on_panic: R, body: impl FnOnce() -> R) -> R {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| {
        let text = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Failure::new(
            libc::EIO,
            format!("rustshim: internal error in {callback}: {text}"),
        )
        .report();
        on_panic
    })
}

/// `Ok` → 0; `Err` → reported, -1.
pub(crate) fn status(result: Result<(), Failure>) -> c_int {
    match result {
        Ok(()) => 0,
        Err(failure) => {
            failure.report();
            -1
        }
    }
}

/// Like [`status`], for the steps that configure and load the plugin: their messages are the
/// shim's (`rustshim: …`).
pub(crate) fn shim_status(result: Result<(), Failure>) -> c_int {
    status(result.map_err(Failure::from_shim))
}

/// Fails with this errno and no message, as nbdkit does for a callback a plugin lacks.
pub(crate) fn fail(errno: i32) -> c_int {
    nbdkit_c::set_errno(errno);
    -1
}

/// Converts a plugin status (0 / -1 with the error recorded) into nbdkit's.
#[inline(always)]
pub(crate) fn forward(r: i32) -> c_int {
    if r < 0 {
        report_failure();
        -1
    } else {
        r
    }
}

/// A C string from nbdkit as UTF-8, or a one-line error naming it.
///
/// # Safety
/// `s` is NULL or a NUL-terminated string that lives as long as the plugin (as nbdkit's
/// `config` arguments do).
pub(crate) unsafe fn utf8<'a>(what: &str, s: *const c_char) -> Result<&'a str, Failure> {
    if s.is_null() {
        return Err(Failure::invalid(format!("{what} is missing")));
    }
    // SAFETY: the caller's contract.
    let s = unsafe { CStr::from_ptr(s) };
    s.to_str().map_err(|_| {
        Failure::invalid(format!(
            "{what} '{}' is not valid UTF-8",
            s.to_string_lossy()
        ))
    })
}

/// One `key=value` line of `--dump-plugin` output.
pub(crate) fn print_line(key: &str, value: &str) {
    let (k, v) = (nbdkit_c::cstring_lossy(key), nbdkit_c::cstring_lossy(value));
    // SAFETY: a constant format with two NUL-terminated strings. C stdio, not Rust's, so the
    // lines stay in order with the ones nbdkit prints.
    unsafe { libc::printf(c"%s=%s\n".as_ptr(), k.as_ptr(), v.as_ptr()) };
}

/// One `key=value` line of the plugin's `dump_plugin`, unless it would read as something else:
/// a key that is empty or has `=`, a blank or a control character, or a value with a line
/// break, could forge lines of nbdkit's or the shim's (`rustshim_plugin_version=…`). Such a
/// line is left out, and one error line names its key.
pub(crate) extern "C" fn dump_line(_ctx: *mut c_void, key: RStr<'_>, value: RStr<'_>) {
    let (key, value) = (key.as_str(), value.as_str());
    match dump_line_problem(key, value) {
        None => print_line(key, value),
        Some(why) => Failure::invalid(format!(
            "rustshim: dump_plugin: the plugin's line for key '{}' is left out: {why}",
            key.escape_debug()
        ))
        .report(),
    }
}

/// Why `key=value` cannot be a line of `--dump-plugin` output, if it cannot.
fn dump_line_problem(key: &str, value: &str) -> Option<&'static str> {
    if key.is_empty() {
        Some("the key is empty")
    } else if key.contains('=') {
        Some("a key cannot contain '='")
    } else if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("a key cannot contain blanks or control characters")
    } else if value.contains(['\n', '\r']) {
        Some("a value cannot contain a line break")
    } else {
        None
    }
}

/// The `--dump-plugin` lines that describe a loaded plugin or filter: `{prefix}_path`, `_name`,
/// its facts (`_longname`, `_version`, `_description`, then `facts`), `_api_version` (what it
/// was built against) and `_build`, then `kind_lines`, `_config_help_N`, `{has}CALLBACK=1` for
/// each callback its author wrote, and its own `dump_plugin` lines.
pub(crate) fn dump_generation<M: Module>(
    g: &Generation<M>,
    prefix: &str,
    has: &str,
    facts: &[(&str, ROption<RStr<'static>>)],
    kind_lines: impl FnOnce(),
) {
    let m = &g.module;
    print_line(&format!("{prefix}_path"), &g.source.display().to_string());
    print_line(&format!("{prefix}_name"), m.name().as_str());
    let common = [
        ("longname", m.longname()),
        ("version", m.version()),
        ("description", m.description()),
    ];
    let common = common.map(|(key, value)| (format!("{prefix}_{key}"), value));
    let facts = facts.iter().map(|(key, value)| (key.to_string(), *value));
    for (key, value) in common.into_iter().chain(facts) {
        if let ROption::RSome(v) = value {
            print_line(&key, v.as_str());
        }
    }
    print_line(&format!("{prefix}_api_version"), &g.abi_version);
    print_line(&format!("{prefix}_build"), m.build_info().as_str());
    kind_lines();
    if let ROption::RSome(help) = m.config_help() {
        for (i, line) in help.as_str().lines().enumerate() {
            print_line(&format!("{prefix}_config_help_{i}"), line);
        }
    }
    for name in g.implemented() {
        print_line(&format!("{has}{name}"), "1");
    }
    if let Some(f) = m.dump_plugin() {
        let sink = DumpSink {
            ctx: std::ptr::null_mut(),
            line: dump_line,
        };
        // SAFETY: the generation's own instance.
        unsafe { f(g.instance, sink) };
        services::log_recorded_error();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_lines_that_could_forge_others_are_refused() {
        for (key, value) in [
            ("test_dump", "42"),
            ("k", "a=b c"),
            ("ключ", ""),
            ("k", "\t"),
        ] {
            assert_eq!(dump_line_problem(key, value), None, "{key:?}={value:?}");
        }
        for (key, value) in [
            ("", "1"),
            ("a=b", "1"),
            ("a b", "1"),
            ("a\tb", "1"),
            ("a\nrustshim_plugin_version", "9"),
            ("k", "1\nrustshim_plugin_version=9"),
            ("k", "1\r"),
        ] {
            assert!(dump_line_problem(key, value).is_some(), "{key:?}={value:?}");
        }
    }
}
