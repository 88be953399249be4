//! nbdkit's server functions, callable from any plugin method.
//!
//! These reach the running nbdkit through the shim. Functions newer than the running nbdkit
//! either work anyway (the shim parses probabilities and delays itself on nbdkit < 1.36/1.40) or
//! fail with `ENOTSUP` and a message naming the function and the server's version; they never
//! stop the plugin from loading.
//!
//! Outside nbdkit (in a plugin's unit tests, say) the four parsers, [`parse_size`],
//! [`parse_bool`], [`parse_probability`] and [`parse_delay`], answer as the newest nbdkit does
//! (the same syntax, limits and error messages, `EINVAL` for a refusal), so a plugin's `config`
//! can be tested with `cargo test` alone:
//!
//! ```
//! use rustshim_plugin_api::{server, Errno};
//! assert_eq!(server::parse_size("64K").unwrap(), 65536);
//! assert!(server::parse_bool("on").unwrap());
//! let e = server::parse_size("1MiB").unwrap_err();
//! assert_eq!(e.errno(), Errno::EINVAL);
//! assert_eq!(e.message(), "could not parse size: unknown suffix: iB");
//! ```
//!
//! Every other function fails there with `ENOTSUP` (`not running inside nbdkit`).
//!
//! Functions about the client (`export_name`, `is_tls`, `peer_*`) only work on the thread nbdkit
//! called the plugin on, from `open` to `close`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::socket::{SockaddrLike, SockaddrStorage};
use nix::unistd::{Gid, Pid, Uid};

use crate::abi::{HostServicesRef, RStr, RString, RVec};
use crate::error::{Errno, Error, Result};
use crate::host::host;

fn with_host<R>(function: &str, f: impl FnOnce(HostServicesRef) -> (i32, R)) -> Result<R> {
    let Some(h) = host() else {
        return Err(Error::new(
            Errno::ENOTSUP,
            format!("{function}: not running inside nbdkit"),
        ));
    };
    match f(h) {
        (0, value) => Ok(value),
        (errno, _) if errno == Errno::ENOTSUP as i32 => Err(Error::new(
            Errno::ENOTSUP,
            format!(
                "{function} is not supported by this nbdkit ({})",
                version().unwrap_or_default()
            ),
        )),
        (errno, _) => Err(Error::already_logged(
            Errno::from_raw(errno),
            format!("{function} failed"),
        )),
    }
}

/// Logs a debug message (shown with `nbdkit -v`), like [`nbdkit_debug`](https://libguestfs.org/nbdkit_debug.3.html). The `log` crate's
/// macros reach the same place.
pub fn debug(msg: &str) {
    if let Some(h) = host() {
        (h.log())(log::Level::Debug as u32, RStr::from_str(msg));
    }
}

/// A parser's answer outside nbdkit: nbdkit's own algorithm, done here (see [the module](self)).
fn parsed_here<T>(parsed: std::result::Result<T, String>) -> Result<T> {
    parsed.map_err(Error::invalid)
}

/// Parses a size such as `512`, `1M`, `2G`, `100s` (512-byte sectors) as a number of bytes, at
/// most 2⁶³−1 ([`nbdkit_parse_size`](https://libguestfs.org/nbdkit_parse_size.3.html)).
/// Inside nbdkit, nbdkit parses and logs the reason for a refusal; outside it, the same parser
/// runs here and the reason is the error's message.
pub fn parse_size(s: &str) -> Result<u64> {
    if host().is_none() {
        return parsed_here(crate::parse::parse_size(s));
    }
    with_host("nbdkit_parse_size", |h| {
        let mut out = 0;
        ((h.parse_size())(RStr::from_str(s), &mut out), out)
    })
}

/// Parses a boolean: `1`, `true`, `t`, `yes`, `y`, `on` or `0`, `false`, `f`, `no`, `n`, `off`,
/// in any case ([`nbdkit_parse_bool`](https://libguestfs.org/nbdkit_parse_bool.3.html); also
/// outside nbdkit, see [`parse_size`]).
pub fn parse_bool(s: &str) -> Result<bool> {
    if host().is_none() {
        return parsed_here(crate::parse::parse_bool(s));
    }
    with_host("nbdkit_parse_bool", |h| {
        let mut out = false;
        ((h.parse_bool())(RStr::from_str(s), &mut out), out)
    })
}

/// Parses a probability such as `0.1`, `10%`, `1:10` or `1/10` ([`nbdkit_parse_probability`](https://libguestfs.org/nbdkit_parse_probability.3.html));
/// `what` names the parameter in error messages (also outside nbdkit, see [`parse_size`]).
pub fn parse_probability(what: &str, s: &str) -> Result<f64> {
    if host().is_none() {
        return parsed_here(crate::parse::parse_probability(what, s));
    }
    with_host("nbdkit_parse_probability", |h| {
        let mut out = 0.0;
        (
            (h.parse_probability())(RStr::from_str(what), RStr::from_str(s), &mut out),
            out,
        )
    })
}

/// Parses a delay such as `1`, `1.5s`, `120ms`, `10us` or `1ns` ([`nbdkit_parse_delay`](https://libguestfs.org/nbdkit_parse_delay.3.html));
/// `what` names the parameter in error messages (also outside nbdkit, see [`parse_size`]).
pub fn parse_delay(what: &str, s: &str) -> Result<Duration> {
    if host().is_none() {
        return parsed_here(crate::parse::parse_delay(what, s))
            .map(|(sec, nsec)| Duration::new(sec.into(), nsec));
    }
    with_host("nbdkit_parse_delay", |h| {
        let (mut sec, mut nsec) = (0, 0);
        let status =
            (h.parse_delay())(RStr::from_str(what), RStr::from_str(s), &mut sec, &mut nsec);
        (status, Duration::new(sec.into(), nsec))
    })
}

/// Reads a password given as a parameter: the value itself, `-` (prompt on the terminal),
/// `+FILE` or `-FD` ([`nbdkit_read_password`](https://libguestfs.org/nbdkit_read_password.3.html)).
pub fn read_password(value: &str) -> Result<String> {
    with_host("nbdkit_read_password", |h| {
        let mut out = RString::new();
        (
            (h.read_password())(RStr::from_str(value), &mut out),
            out.into_string(),
        )
    })
}

/// The canonical absolute path of an existing file ([`nbdkit_realpath`](https://libguestfs.org/nbdkit_realpath.3.html)). Call it during
/// configuration: nbdkit changes directory to `/` before serving.
pub fn realpath(path: impl AsRef<Path>) -> Result<PathBuf> {
    let path = path.as_ref();
    let utf8 = path
        .to_str()
        .ok_or_else(|| Error::invalid(format!("path is not valid UTF-8: {}", path.display())))?;
    with_host("nbdkit_realpath", |h| {
        let mut out = RString::new();
        (
            (h.realpath())(RStr::from_str(utf8), &mut out),
            PathBuf::from(out.into_string()),
        )
    })
}

/// Whether the plugin may use stdin/stdout during configuration ([`nbdkit_stdio_safe`](https://libguestfs.org/nbdkit_stdio_safe.3.html)): false
/// with `nbdkit -s`.
pub fn stdio_safe() -> bool {
    with_host("nbdkit_stdio_safe", |h| {
        let mut out = false;
        ((h.stdio_safe())(&mut out), out)
    })
    .unwrap_or(false)
}

/// Asks the server to shut down once current requests finish ([`nbdkit_shutdown`](https://libguestfs.org/nbdkit_shutdown.3.html)).
pub fn shutdown() {
    let _ = with_host("nbdkit_shutdown", |h| ((h.shutdown())(), ()));
}

/// Disconnects the current client, at once if `force` ([`nbdkit_disconnect`](https://libguestfs.org/nbdkit_disconnect.3.html), nbdkit ≥ 1.34).
pub fn disconnect(force: bool) -> Result<()> {
    with_host("nbdkit_disconnect", |h| ((h.disconnect())(force), ()))
}

/// The export name the client asked for ([`nbdkit_export_name`](https://libguestfs.org/nbdkit_export_name.3.html)), which may be `""`.
pub fn export_name() -> Result<String> {
    let bytes = export_name_bytes()?;
    String::from_utf8(bytes).map_err(|_| Error::invalid("the export name is not valid UTF-8"))
}

/// The export name the client asked for, as raw bytes.
pub fn export_name_bytes() -> Result<Vec<u8>> {
    with_host("nbdkit_export_name", |h| {
        let mut out = RVec::new();
        ((h.export_name())(&mut out), out.into_vec())
    })
}

/// Whether the client negotiated TLS ([`nbdkit_is_tls`](https://libguestfs.org/nbdkit_is_tls.3.html)).
pub fn is_tls() -> Result<bool> {
    with_host("nbdkit_is_tls", |h| {
        let mut out = false;
        ((h.is_tls())(&mut out), out)
    })
}

/// The client's socket address ([`nbdkit_peer_name`](https://libguestfs.org/nbdkit_peer_name.3.html)).
pub fn peer_name() -> Result<SockaddrStorage> {
    let raw = with_host("nbdkit_peer_name", |h| {
        let mut out = RVec::new();
        ((h.peer_name())(&mut out), out.into_vec())
    })?;
    let len = raw
        .len()
        .min(std::mem::size_of::<nix::libc::sockaddr_storage>());
    // SAFETY: `raw` holds `len` bytes of a `struct sockaddr` written by getpeername(2);
    // `from_raw` reads at most `len` bytes and checks the family.
    unsafe { SockaddrStorage::from_raw(raw.as_ptr().cast(), Some(len as u32)) }
        .ok_or_else(|| Error::new(Errno::EINVAL, "nbdkit_peer_name: unknown address family"))
}

/// The client's process ID, on a Unix socket ([`nbdkit_peer_pid`](https://libguestfs.org/nbdkit_peer_pid.3.html)).
pub fn peer_pid() -> Result<Pid> {
    peer_id("nbdkit_peer_pid", |h| h.peer_pid()).map(|v| Pid::from_raw(v as i32))
}

/// The client's user ID, on a Unix socket ([`nbdkit_peer_uid`](https://libguestfs.org/nbdkit_peer_uid.3.html)).
pub fn peer_uid() -> Result<Uid> {
    peer_id("nbdkit_peer_uid", |h| h.peer_uid()).map(|v| Uid::from_raw(v as u32))
}

/// The client's group ID, on a Unix socket ([`nbdkit_peer_gid`](https://libguestfs.org/nbdkit_peer_gid.3.html)).
pub fn peer_gid() -> Result<Gid> {
    peer_id("nbdkit_peer_gid", |h| h.peer_gid()).map(|v| Gid::from_raw(v as u32))
}

fn peer_id(
    function: &str,
    f: impl FnOnce(HostServicesRef) -> extern "C" fn(&mut i64) -> i32,
) -> Result<i64> {
    with_host(function, |h| {
        let mut out = -1;
        ((f(h))(&mut out), out)
    })
}

fn string_service(
    function: &str,
    f: impl FnOnce(HostServicesRef) -> extern "C" fn(&mut RString) -> i32,
) -> Result<String> {
    with_host(function, |h| {
        let mut out = RString::new();
        ((f(h))(&mut out), out.into_string())
    })
}

/// The client's security context, e.g. an SELinux label ([`nbdkit_peer_security_context`](https://libguestfs.org/nbdkit_peer_security_context.3.html),
/// nbdkit ≥ 1.36). A connection without one (no SELinux, IPSEC or NetLabel label on the socket)
/// is `ENOPROTOOPT`.
pub fn peer_security_context() -> Result<String> {
    let function = "nbdkit_peer_security_context";
    string_service(function, |h| h.peer_security_context()).map_err(|e| {
        if e.errno() == Errno::ENOPROTOOPT {
            Error::new(
                Errno::ENOPROTOOPT,
                format!(
                    "{function}: this connection has no security label (getsockopt SO_PEERSEC: \
                     Protocol not available)"
                ),
            )
        } else {
            e
        }
    })
}

/// The Distinguished Name of the client's TLS certificate, `""` without one
/// ([`nbdkit_peer_tls_dn`](https://libguestfs.org/nbdkit_peer_tls_dn.3.html), nbdkit ≥ 1.40).
pub fn peer_tls_dn() -> Result<String> {
    string_service("nbdkit_peer_tls_dn", |h| h.peer_tls_dn())
}

/// The Distinguished Name of the issuer of the client's TLS certificate
/// ([`nbdkit_peer_tls_issuer_dn`](https://libguestfs.org/nbdkit_peer_tls_issuer_dn.3.html), nbdkit ≥ 1.40).
pub fn peer_tls_issuer_dn() -> Result<String> {
    string_service("nbdkit_peer_tls_issuer_dn", |h| h.peer_tls_issuer_dn())
}

/// Sleeps, but returns early with `ESHUTDOWN` when the server shuts down or the client
/// disconnects ([`nbdkit_nanosleep`](https://libguestfs.org/nbdkit_nanosleep.3.html)).
pub fn nanosleep(duration: Duration) -> Result<()> {
    let sec = u32::try_from(duration.as_secs()).unwrap_or(u32::MAX);
    with_host("nbdkit_nanosleep", |h| {
        ((h.nanosleep())(sec, duration.subsec_nanos()), ())
    })
}

/// The version of the running nbdkit, e.g. `1.32.5` (read from the server, not fixed at build
/// time).
pub fn version() -> Result<String> {
    let h = host().ok_or_else(|| Error::new(Errno::ENOTSUP, "not running inside nbdkit"))?;
    let mut out = RString::new();
    match (h.version())(&mut out) {
        0 => Ok(out.into_string()),
        errno => Err(Error::new(
            Errno::from_raw(errno),
            "the nbdkit version could not be read",
        )),
    }
}

/// A service the shim added in a later minor version of this crate than the running shim was
/// built with: `ENOTSUP` naming the function.
fn newer_than_the_shim(function: &str) -> Error {
    Error::new(
        Errno::ENOTSUP,
        format!(
            "{function} is not supported by this rustshim (it predates rustshim-plugin-api 1.1)"
        ),
    )
}

/// Logs `buf` as a canonical hexdump at debug level, each line starting with `prefix` and the
/// offsets starting at `start` ([`nbdkit_debug_hexdump`](https://libguestfs.org/nbdkit_debug_hexdump.3.html),
/// nbdkit ≥ 1.46; on older ones the shim writes the same lines through `nbdkit_debug`).
pub fn debug_hexdump(buf: &[u8], prefix: &str, start: u64) -> Result<()> {
    let function = "nbdkit_debug_hexdump";
    with_host(function, |h| match h.debug_hexdump() {
        Some(f) => (f(buf.into(), RStr::from_str(prefix), start), Ok(())),
        None => (0, Err(newer_than_the_shim(function))),
    })?
}

/// Logs the differences between `a` and `b` (of the same length) as a hexdump at debug level
/// ([`nbdkit_debug_hexdiff`](https://libguestfs.org/nbdkit_debug_hexdiff.3.html), nbdkit ≥ 1.48;
/// on older ones the shim writes the same lines). Buffers of different lengths are `EINVAL`.
pub fn debug_hexdiff(a: &[u8], b: &[u8], prefix: &str, start: u64) -> Result<()> {
    let function = "nbdkit_debug_hexdiff";
    with_host(function, |h| match h.debug_hexdiff() {
        Some(f) => (f(a.into(), b.into(), RStr::from_str(prefix), start), Ok(())),
        None => (0, Err(newer_than_the_shim(function))),
    })?
}

/// The name given with `nbdkit --name`, if any ([`nbdkit_name`](https://libguestfs.org/nbdkit_name.3.html),
/// nbdkit ≥ 1.48; on older ones the shim reads nbdkit's command line, and before 1.46 nbdkit has
/// no `--name`).
pub fn name() -> Result<Option<String>> {
    let function = "nbdkit_name";
    with_host(function, |h| match h.name() {
        Some(f) => {
            let mut out = crate::abi::ROption::RNone;
            let status = f(&mut out);
            (status, Ok(out.into_option().map(RString::into_string)))
        }
        None => (0, Err(newer_than_the_shim(function))),
    })?
}

/// A timestamp for messages, `2026-01-01 12:00:00.000333` in UTC ([`nbdkit_timestamp`](https://libguestfs.org/nbdkit_timestamp.3.html),
/// nbdkit ≥ 1.48; on older ones the shim makes it). nbdkit 1.48's own returns `!` when called
/// outside a connection's thread (in `config`, say).
pub fn timestamp() -> Result<String> {
    let function = "nbdkit_timestamp";
    with_host(function, |h| match h.timestamp() {
        Some(f) => {
            let mut out = RString::new();
            (f(&mut out), Ok(out.into_string()))
        }
        None => (0, Err(newer_than_the_shim(function))),
    })?
}

/// Whether the running nbdkit itself has the server function `nbdkit_<function>` (`"disconnect"`,
/// `"timestamp"`, …), without calling it. Where it does not, [`server`](self) functions use the
/// shim's own version (parsers, hexdumps, name, timestamp) or fail with `ENOTSUP`. A name the shim
/// does not know is `ENOENT`.
pub fn nbdkit_has(function: &str) -> Result<bool> {
    let name = format!("nbdkit_{function}");
    with_host(&name, |h| match h.nbdkit_has() {
        Some(f) => {
            let mut out = false;
            match f(RStr::from_str(function), &mut out) {
                libc_enoent if libc_enoent == Errno::ENOENT as i32 => (
                    0,
                    Err(Error::new(
                        Errno::ENOENT,
                        format!("{name} is not a server function the shim knows"),
                    )),
                ),
                status => (status, Ok(out)),
            }
        }
        None => (0, Err(newer_than_the_shim(&name))),
    })?
}

/// The nbdkit plugin API version the shim speaks to nbdkit (2).
pub fn api_version() -> i32 {
    host().map(|h| (h.api_version())()).unwrap_or(2)
}
