//! `test`: an in-memory disk that implements every callback of the [`Plugin`] trait, for the
//! integration tests. Each callback can be traced, switched, failed or made to panic from the
//! command line, and the server functions are called with their results traced, so a test can
//! see exactly what nbdkit asked of the plugin and what the plugin got back.
//!
//! ```text
//! nbdkit rustshim plugin=librustshim_test.so trace=/tmp/t can_fua=emulate fail=pread:EPERM@512
//! ```
//!
//! Keys (all optional):
//! * `size=SIZE` (also the magic key): the disk's size, default 1M. Data round-trips.
//! * `trace=PATH`: append one line per callback with its arguments (`pwrite count=4096
//!   offset=0 flags=FUA`) and one per server function with its result (`parse_size("1M") =
//!   Ok(1048576)`). Lines from before this key (`load`, earlier `config`) are written when it
//!   arrives.
//! * `can_write= can_flush= is_rotational= can_trim= can_zero= can_multi_conn= can_extents=
//!   can_fast_zero=` `true|false` (default true, except `is_rotational` and `can_multi_conn`);
//!   `can_fua=` and `can_cache=` `none|emulate|native` (default native);
//!   `thread_model=serialize_connections|serialize_all_requests|serialize_requests|parallel`.
//! * `fail=CALLBACK[:ERRNO][@OFFSET]` (repeatable): the callback fails with `ERRNO` (a name
//!   such as `EPERM`, default `EIO`) and the message `test: injected failure in CALLBACK`;
//!   with `@OFFSET` only data requests starting there fail. `fail=config` fails the next key.
//! * `panic=CALLBACK[@OFFSET]` (repeatable): the callback panics with
//!   `test: injected panic in CALLBACK`. `load` panics when the environment has
//!   `RUSTSHIM_TEST_FAIL_LOAD=panic`.
//! * `exports=NAME[:DESC],...`, `default_export=NAME`, `description=TEXT`,
//!   `block_size=MIN:PREF:MAX`.
//! * `parse_size= parse_bool= parse_probability= parse_delay= password= realpath=`: call that
//!   server function on the value and trace the result (a failure does not fail `config`).
//! * `hexdump=START:TEXT`, `hexdiff=START:A:B`: call `debug_hexdump` (prefix `hx: `) or
//!   `debug_hexdiff` (prefix `hd: `) on the bytes of the text, the first at offset `START`;
//!   `nbdkit_has=FUNCTION`: call `nbdkit_has`. Each traces its result.
//! * `on_pread=shutdown|disconnect|disconnect_force|sleep:DELAY`: what `pread` does first.
//! * `trace_outside=true`: see below.
//! * `faults_if=PATH`: the `fail=` and `panic=` faults fire only while the file PATH exists (so
//!   a test can make a later reload's `get_ready` fail, say).
//! * `dump_field=LEN:KEYVALUE` (repeatable): `dump_plugin` also writes the field whose key is
//!   the first LEN bytes of KEYVALUE and whose value is the rest (keys may hold `=` and values
//!   line breaks: the shim must refuse them).
//! * `log=error|warn|info|debug|trace` (repeatable): `get_ready` logs `test: log at LEVEL`
//!   at that level with the `log` crate.
//! * `extents_mode=store|whole|gap`: what `extents` returns: the store's data and holes
//!   (default); one data extent covering the whole disk whatever the request (the shim must
//!   clip it); or 512 bytes of data, then a gap (the shim must refuse it).
//!
//! With `reload=watch`, `hand_over` hands the next build the size as bytes of kind
//! `rustshim-test`, and `take_over` traces what it got and accepts it.
//!
//! Always: `config_complete` and `get_ready` trace `stdio_safe`; `get_ready` traces `version`
//! and `api_version`, `name` and `timestamp` and logs a debug message (`log::debug!`),
//! `after_fork` another (`server::debug`); `open` traces `export_name`, `is_tls`, every `peer_*`
//! function and `timestamp`;
//! `dump_plugin` prints `test_dump=42`. With `trace_outside=true`, `get_ready` also traces the
//! client functions where there is no client (`outside: export_name = …`).

mod helpers;
mod store;
mod trace;

use std::fmt::Debug;
use std::time::Duration;

use rustshim_plugin_api::prelude::*;
use store::{Store, BLOCK};
use trace::*;

/// An injected failure or panic.
struct Fault {
    callback: String,
    /// `None` for a panic.
    errno: Option<Errno>,
    /// Only data requests at this offset.
    offset: Option<u64>,
}

/// A fault injected into a share of the data requests of one callback (`fail_rate=`,
/// `panic_rate=`). Which requests is decided by a hash of the offset, so a client that knows
/// the rule (see `injected`) knows exactly which of its requests must fail.
struct RateFault {
    callback: String,
    probability: f64,
    /// `None` for a panic.
    errno: Option<Errno>,
}

/// Whether a `RateFault` of `probability` hits the request of `callback` at `offset`:
/// splitmix64(offset ^ fnv1a(callback)) < probability * 2^64.
fn injected(callback: &str, offset: u64, probability: f64) -> bool {
    let salt = callback.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let mut z = (offset ^ salt).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z as f64) < probability * 18_446_744_073_709_551_616.0
}

/// What `extents` returns.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
enum ExtentsMode {
    #[default]
    Store,
    Whole,
    Gap,
    /// Extents that overlap each other.
    Overlap,
    /// Zero-length extents, then the real one.
    ZeroLength,
    /// One extent starting before the request and ending far after it.
    Beyond,
    /// A later extent first.
    Unsorted,
}

/// What `pread` does before reading.
#[derive(Clone, Copy, Debug)]
enum OnPread {
    Shutdown,
    Disconnect { force: bool },
    Sleep(Duration),
}

struct Test {
    size: u64,
    store: Store,
    trace: Trace,
    can_write: bool,
    can_flush: bool,
    is_rotational: bool,
    can_trim: bool,
    can_zero: bool,
    can_multi_conn: bool,
    can_extents: bool,
    can_fast_zero: bool,
    can_fua: FuaMode,
    can_cache: CacheMode,
    thread_model: ThreadModel,
    faults: Vec<Fault>,
    rate_faults: Vec<RateFault>,
    /// Count the calls of the callbacks without an offset, as keys for `rate_fault`: one
    /// counter each, so that the `n`th open is keyed `n` however opens and flushes interleave,
    /// and which of them fail is fixed by the hash alone.
    open_calls: std::sync::atomic::AtomicU64,
    flush_calls: std::sync::atomic::AtomicU64,
    /// `block_at=OFFSET:DELAY`: a read at OFFSET sleeps that long first.
    block_at: Option<(u64, Duration)>,
    /// `size_raw=`: what `get_size` answers, unchecked.
    size_raw: Option<u64>,
    exports: Option<Vec<(String, Option<String>)>>,
    default_export: Option<String>,
    description: Option<String>,
    block_size: Option<BlockSize>,
    on_pread: Option<OnPread>,
    extents_mode: ExtentsMode,
    log_levels: Vec<log::Level>,
    trace_outside: bool,
    /// `faults_if=PATH`: `fail=` and `panic=` faults fire only while PATH exists.
    faults_if: Option<std::path::PathBuf>,
    /// `dump_field=`: extra lines for `dump_plugin`, as given.
    dump_fields: Vec<(String, String)>,
}

impl Default for Test {
    fn default() -> Self {
        Test {
            size: 1 << 20,
            store: Store::default(),
            trace: Trace::new(),
            can_write: true,
            can_flush: true,
            is_rotational: false,
            can_trim: true,
            can_zero: true,
            can_multi_conn: false,
            can_extents: true,
            can_fast_zero: true,
            can_fua: FuaMode::Native,
            can_cache: CacheMode::Native,
            thread_model: ThreadModel::Parallel,
            faults: Vec::new(),
            rate_faults: Vec::new(),
            open_calls: std::sync::atomic::AtomicU64::new(0),
            flush_calls: std::sync::atomic::AtomicU64::new(0),
            size_raw: None,
            block_at: None,
            exports: None,
            default_export: None,
            description: None,
            block_size: None,
            on_pread: None,
            extents_mode: ExtentsMode::Store,
            log_levels: Vec::new(),
            trace_outside: false,
            faults_if: None,
            dump_fields: Vec::new(),
        }
    }
}

fn parse_bool_key(key: &str, value: &str) -> Result<bool> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(Error::invalid(format!(
            "test: {key} must be true or false, not '{value}'"
        ))),
    }
}

fn parse_mode(key: &str, value: &str) -> Result<u8> {
    match value {
        "none" => Ok(0),
        "emulate" => Ok(1),
        "native" => Ok(2),
        _ => Err(Error::invalid(format!(
            "test: {key} must be none, emulate or native, not '{value}'"
        ))),
    }
}

fn parse_u32(key: &str, value: &str) -> Result<u32> {
    value
        .parse()
        .map_err(|_| Error::invalid(format!("test: {key}: '{value}' is not a number")))
}

/// `on_pread=`: what the plugin does at a read.
fn parse_on_pread(value: &str) -> Result<OnPread> {
    Ok(match value {
        "shutdown" => OnPread::Shutdown,
        "disconnect" => OnPread::Disconnect { force: false },
        "disconnect_force" => OnPread::Disconnect { force: true },
        _ => match value.strip_prefix("sleep:") {
            Some(delay) => OnPread::Sleep(server::parse_delay("on_pread", delay)?),
            None => {
                return Err(Error::invalid(format!(
                    "test: unknown on_pread action '{value}'"
                )))
            }
        },
    })
}

/// `extents_mode=`: how `extents` answers.
fn parse_extents_mode(value: &str) -> Result<ExtentsMode> {
    Ok(match value {
        "store" => ExtentsMode::Store,
        "whole" => ExtentsMode::Whole,
        "gap" => ExtentsMode::Gap,
        "overlap" => ExtentsMode::Overlap,
        "zero_length" => ExtentsMode::ZeroLength,
        "beyond" => ExtentsMode::Beyond,
        "unsorted" => ExtentsMode::Unsorted,
        _ => {
            return Err(Error::invalid(format!(
                "test: unknown extents_mode '{value}'"
            )))
        }
    })
}

/// `block_size=MIN:PREF:MAX`.
fn parse_block_size(key: &str, value: &str) -> Result<BlockSize> {
    let parts: Vec<&str> = value.split(':').collect();
    let [min, pref, max] = parts[..] else {
        return Err(Error::invalid(format!(
            "test: block_size must be MIN:PREF:MAX, not '{value}'"
        )));
    };
    Ok(BlockSize {
        minimum: parse_u32(key, min)?,
        preferred: parse_u32(key, pref)?,
        maximum: parse_u32(key, max)?,
    })
}

impl Test {
    /// The keys that call one server function with `value` and trace its answer
    /// (`parse_size=1M`: `parse_size("1M") = Ok(1048576)`).
    fn call_server_function(&mut self, key: &str, value: &str) -> Result<()> {
        match key {
            "parse_size" => {
                let r = server::parse_size(value);
                self.trace
                    .early_line(format!("parse_size({value:?}) = {}", show(&r)));
            }
            "parse_bool" => {
                let r = server::parse_bool(value);
                self.trace
                    .early_line(format!("parse_bool({value:?}) = {}", show(&r)));
            }
            "parse_probability" => {
                let r = server::parse_probability("parse_probability", value);
                self.trace
                    .early_line(format!("parse_probability({value:?}) = {}", show(&r)));
            }
            "parse_delay" => {
                let r = server::parse_delay("parse_delay", value)
                    .map(|d| format!("{}s+{}ns", d.as_secs(), d.subsec_nanos()));
                self.trace
                    .early_line(format!("parse_delay({value:?}) = {}", show(&r)));
            }
            "password" => {
                let r = server::read_password(value);
                self.trace
                    .early_line(format!("read_password({value:?}) = {}", show(&r)));
            }
            "realpath" => {
                let r = server::realpath(value).map(|p| p.display().to_string());
                self.trace
                    .early_line(format!("realpath({value:?}) = {}", show(&r)));
            }
            "hexdump" => {
                let (start, text) = value.split_once(':').unwrap_or(("0", value));
                let start = start
                    .parse()
                    .map_err(|_| Error::invalid("test: hexdump=START:TEXT"))?;
                let r = server::debug_hexdump(text.as_bytes(), "hx: ", start);
                self.trace
                    .early_line(format!("debug_hexdump({value:?}) = {}", show(&r)));
            }
            "hexdiff" => {
                let mut parts = value.splitn(3, ':');
                let (Some(start), Some(a), Some(b)) = (parts.next(), parts.next(), parts.next())
                else {
                    return Err(Error::invalid("test: hexdiff=START:A:B"));
                };
                let start = start
                    .parse()
                    .map_err(|_| Error::invalid("test: hexdiff=START:A:B"))?;
                let r = server::debug_hexdiff(a.as_bytes(), b.as_bytes(), "hd: ", start);
                self.trace
                    .early_line(format!("debug_hexdiff({value:?}) = {}", show(&r)));
            }
            "nbdkit_has" => {
                let r = server::nbdkit_has(value);
                self.trace
                    .early_line(format!("nbdkit_has({value:?}) = {}", show(&r)));
            }
            _ => unreachable!("config routes only these keys here"),
        }
        Ok(())
    }
}

#[plugin]
impl Plugin for Test {
    type Handle = ();

    const NAME: &'static str = "test";
    const LONGNAME: Option<&'static str> = Some("rustshim test plugin");
    const VERSION: Option<&'static str> = Some(env!("CARGO_PKG_VERSION"));
    const DESCRIPTION: Option<&'static str> =
        Some("An in-memory disk that implements every callback and traces each call.");
    const CONFIG_HELP: Option<&'static str> = Some(
        "size=<SIZE>  Size of the disk (default 1M).\n\
         trace=<PATH> Append one line per callback to PATH.\n\
         See the crate documentation for the other keys.",
    );
    const MAGIC_CONFIG_KEY: Option<&'static str> = Some("size");

    fn load(&mut self) {
        self.trace.early_line("load");
        if std::env::var("RUSTSHIM_TEST_FAIL_LOAD").as_deref() == Ok("panic") {
            panic!("test: injected panic in load");
        }
    }

    fn config(&mut self, key: &str, value: &str) -> Result<()> {
        self.trace.early_line(format!("config {key}={value}"));
        self.check("config", None)?;
        match key {
            "size" => self.size = server::parse_size(value)?,
            "trace" => self.trace.open(value)?,
            "can_write" => self.can_write = parse_bool_key(key, value)?,
            "can_flush" => self.can_flush = parse_bool_key(key, value)?,
            "is_rotational" => self.is_rotational = parse_bool_key(key, value)?,
            "can_trim" => self.can_trim = parse_bool_key(key, value)?,
            "can_zero" => self.can_zero = parse_bool_key(key, value)?,
            "can_multi_conn" => self.can_multi_conn = parse_bool_key(key, value)?,
            "can_extents" => self.can_extents = parse_bool_key(key, value)?,
            "can_fast_zero" => self.can_fast_zero = parse_bool_key(key, value)?,
            "can_fua" => {
                self.can_fua = [FuaMode::None, FuaMode::Emulate, FuaMode::Native]
                    [parse_mode(key, value)? as usize]
            }
            "can_cache" => {
                self.can_cache = [CacheMode::None, CacheMode::Emulate, CacheMode::Native]
                    [parse_mode(key, value)? as usize]
            }
            "thread_model" => {
                self.thread_model = (0..4)
                    .filter_map(ThreadModel::from_raw)
                    .find(|m| m.name() == value)
                    .ok_or_else(|| {
                        Error::invalid(format!("test: unknown thread model '{value}'"))
                    })?
            }
            "fail" => self.add_fault(value, false)?,
            "fail_rate" => self.add_rate_fault(key, value, false)?,
            "panic_rate" => self.add_rate_fault(key, value, true)?,
            "block_at" => {
                let (at, delay) = value
                    .split_once(':')
                    .ok_or_else(|| Error::invalid("test: block_at must be OFFSET:DELAY"))?;
                let at = at
                    .parse()
                    .map_err(|_| Error::invalid(format!("test: block_at offset '{at}'")))?;
                self.block_at = Some((at, server::parse_delay(key, delay)?));
            }
            "size_raw" => {
                let raw = value
                    .parse()
                    .map_err(|_| Error::invalid(format!("test: size_raw={value}")))?;
                self.size_raw = Some(raw);
            }
            "panic" => self.add_fault(value, true)?,
            "exports" => {
                self.exports = Some(
                    value
                        .split(',')
                        .filter(|e| !e.is_empty())
                        .map(|e| match e.split_once(':') {
                            Some((name, desc)) => (name.to_owned(), Some(desc.to_owned())),
                            None => (e.to_owned(), None),
                        })
                        .collect(),
                )
            }
            "default_export" => self.default_export = Some(value.to_owned()),
            "description" => self.description = Some(value.to_owned()),
            "block_size" => self.block_size = Some(parse_block_size(key, value)?),
            "parse_size" | "parse_bool" | "parse_probability" | "parse_delay" | "password"
            | "realpath" | "hexdump" | "hexdiff" | "nbdkit_has" => {
                self.call_server_function(key, value)?
            }
            "on_pread" => self.on_pread = Some(parse_on_pread(value)?),
            "trace_outside" => self.trace_outside = parse_bool_key(key, value)?,
            "faults_if" => self.faults_if = Some(value.into()),
            "dump_field" => {
                let bad =
                    || Error::invalid(format!("test: dump_field=LEN:KEYVALUE, not '{value}'"));
                let (len, field) = value.split_once(':').ok_or_else(bad)?;
                let len: usize = len.parse().map_err(|_| bad())?;
                if !field.is_char_boundary(len.min(field.len())) || len > field.len() {
                    return Err(bad());
                }
                let (k, v) = field.split_at(len);
                self.dump_fields.push((k.to_owned(), v.to_owned()));
            }
            "log" => self.log_levels.push(
                value
                    .parse()
                    .map_err(|_| Error::invalid(format!("test: unknown log level '{value}'")))?,
            ),
            "extents_mode" => self.extents_mode = parse_extents_mode(value)?,
            _ => return Err(Error::invalid(format!("test: unknown parameter '{key}'"))),
        }
        Ok(())
    }

    fn config_complete(&mut self) -> Result<()> {
        self.trace.early_line("config_complete");
        self.trace.end_of_config();
        self.check("config_complete", None)?;
        self.trace
            .line(format!("stdio_safe = {}", server::stdio_safe()));
        Ok(())
    }

    fn thread_model(&self) -> Result<ThreadModel> {
        self.trace.line("thread_model");
        self.check("thread_model", None)?;
        Ok(self.thread_model)
    }

    fn get_ready(&mut self) -> Result<()> {
        self.trace.line("get_ready");
        self.check("get_ready", None)?;
        log::debug!("test: get_ready: the test plugin is ready");
        for level in &self.log_levels {
            log::log!(*level, "test: log at {level}");
        }
        self.trace
            .line(format!("version = {}", show(&server::version())));
        self.trace
            .line(format!("api_version = {}", server::api_version()));
        self.trace.line(format!("name = {}", show(&server::name())));
        self.trace
            .line(format!("timestamp = {}", show(&server::timestamp())));
        self.trace
            .line(format!("stdio_safe = {}", server::stdio_safe()));
        if self.trace_outside {
            self.trace_outside_a_connection();
        }
        Ok(())
    }

    fn after_fork(&mut self) -> Result<()> {
        self.trace.line("after_fork");
        self.check("after_fork", None)?;
        server::debug("test: after_fork: server::debug works");
        Ok(())
    }

    fn dump_plugin(&self, dump: &mut Dump) {
        self.trace.line("dump_plugin");
        self.check_panic("dump_plugin");
        dump.field("test_dump", 42);
        for (key, value) in &self.dump_fields {
            dump.field(key, value);
        }
    }

    fn preconnect(&self, readonly: bool) -> Result<()> {
        self.trace.line(format!("preconnect readonly={readonly}"));
        self.check("preconnect", None)
    }

    fn list_exports(&self, readonly: bool, is_tls: bool, exports: &mut Exports) -> Result<()> {
        self.trace
            .line(format!("list_exports readonly={readonly} is_tls={is_tls}"));
        self.check("list_exports", None)?;
        match &self.exports {
            Some(list) => {
                for (name, desc) in list {
                    exports.add(name, desc.as_deref())?;
                }
                Ok(())
            }
            None => exports.use_default(),
        }
    }

    fn default_export(&self, readonly: bool, is_tls: bool) -> Result<String> {
        self.trace.line(format!(
            "default_export readonly={readonly} is_tls={is_tls}"
        ));
        self.check("default_export", None)?;
        // A command line cannot carry a NUL byte: `\\0` in the value stands for one.
        Ok(self
            .default_export
            .clone()
            .unwrap_or_default()
            .replace("\\0", "\0"))
    }

    fn open(&self, readonly: bool) -> Result<()> {
        let t = &self.trace;
        t.line(format!("open readonly={readonly}"));
        t.line(format!("export_name = {}", show(&server::export_name())));
        t.line(format!("is_tls = {}", show(&server::is_tls())));
        t.line(format!(
            "peer_pid = {}",
            show(&server::peer_pid().map(|p| p.as_raw()))
        ));
        t.line(format!(
            "peer_uid = {}",
            show(&server::peer_uid().map(|u| u.as_raw()))
        ));
        t.line(format!(
            "peer_gid = {}",
            show(&server::peer_gid().map(|g| g.as_raw()))
        ));
        t.line(format!(
            "peer_name = {}",
            show(&server::peer_name().map(|a| match a.as_unix_addr() {
                Some(_) => "unix".to_owned(),
                None => a.to_string(),
            }))
        ));
        t.line(format!(
            "peer_security_context = {}",
            show(&server::peer_security_context())
        ));
        t.line(format!("peer_tls_dn = {}", show(&server::peer_tls_dn())));
        t.line(format!("timestamp(open) = {}", show(&server::timestamp())));
        t.line(format!(
            "peer_tls_issuer_dn = {}",
            show(&server::peer_tls_issuer_dn())
        ));
        self.rate_fault("open", Self::next_call(&self.open_calls))?;
        self.check("open", None)
    }

    fn close(&self, _: ()) {
        self.trace.line("close");
        self.check_panic("close");
    }

    fn get_size(&self, _: &()) -> Result<u64> {
        self.capability("get_size", self.size_raw.unwrap_or(self.size))
    }

    fn export_description(&self, _: &()) -> Result<String> {
        self.trace.line("export_description");
        self.check("export_description", None)?;
        // Without a description, fail silently: the client gets none, as from a C plugin
        // returning NULL.
        self.description
            .clone()
            .ok_or_else(|| Error::already_logged(Errno::ENOTSUP, ""))
    }

    fn block_size(&self, _: &()) -> Result<BlockSize> {
        self.capability("block_size", self.block_size.unwrap_or_default())
    }

    fn can_write(&self, _: &()) -> Result<bool> {
        self.capability("can_write", self.can_write)
    }

    fn can_flush(&self, _: &()) -> Result<bool> {
        self.capability("can_flush", self.can_flush)
    }

    fn is_rotational(&self, _: &()) -> Result<bool> {
        self.capability("is_rotational", self.is_rotational)
    }

    fn can_trim(&self, _: &()) -> Result<bool> {
        self.capability("can_trim", self.can_trim)
    }

    fn can_zero(&self, _: &()) -> Result<bool> {
        self.capability("can_zero", self.can_zero)
    }

    fn can_fua(&self, _: &()) -> Result<FuaMode> {
        self.capability("can_fua", self.can_fua)
    }

    fn can_multi_conn(&self, _: &()) -> Result<bool> {
        self.capability("can_multi_conn", self.can_multi_conn)
    }

    fn can_extents(&self, _: &()) -> Result<bool> {
        self.capability("can_extents", self.can_extents)
    }

    fn can_cache(&self, _: &()) -> Result<CacheMode> {
        self.capability("can_cache", self.can_cache)
    }

    fn can_fast_zero(&self, _: &()) -> Result<bool> {
        self.capability("can_fast_zero", self.can_fast_zero)
    }

    fn pread(&self, _: &(), buf: &mut [u8], offset: u64, flags: Flags) -> Result<()> {
        let count = buf.len();
        self.data_call(
            "pread",
            format!("pread count={count} offset={offset} flags={flags:?}"),
            offset,
        )?;
        if let Some(action) = self.on_pread {
            self.on_pread(action)?;
        }
        if let Some((at, delay)) = self.block_at {
            if at == offset {
                self.trace.line(format!("blocking at {offset}"));
                server::nanosleep(delay)?;
                self.trace.line(format!("unblocked at {offset}"));
            }
        }
        self.store.read(buf, offset);
        Ok(())
    }

    fn pwrite(&self, _: &(), buf: &[u8], offset: u64, flags: Flags) -> Result<()> {
        let count = buf.len();
        self.data_call(
            "pwrite",
            format!("pwrite count={count} offset={offset} flags={flags:?}"),
            offset,
        )?;
        self.store.write(buf, offset);
        Ok(())
    }

    fn flush(&self, _: &(), flags: Flags) -> Result<()> {
        self.trace.line(format!("flush flags={flags:?}"));
        self.rate_fault("flush", Self::next_call(&self.flush_calls))?;
        self.check("flush", None)
    }

    fn trim(&self, _: &(), count: u32, offset: u64, flags: Flags) -> Result<()> {
        self.data_call(
            "trim",
            format!("trim count={count} offset={offset} flags={flags:?}"),
            offset,
        )?;
        self.store.zero(count.into(), offset);
        Ok(())
    }

    fn zero(&self, _: &(), count: u32, offset: u64, flags: Flags) -> Result<()> {
        self.data_call(
            "zero",
            format!("zero count={count} offset={offset} flags={flags:?}"),
            offset,
        )?;
        self.store.zero(count.into(), offset);
        Ok(())
    }

    fn extents(
        &self,
        _: &(),
        count: u32,
        offset: u64,
        flags: Flags,
        extents: &mut Extents,
    ) -> Result<()> {
        self.data_call(
            "extents",
            format!("extents count={count} offset={offset} flags={flags:?}"),
            offset,
        )?;
        match self.extents_mode {
            ExtentsMode::Store => {}
            ExtentsMode::Whole => return extents.add(0, self.size, ExtentType::DATA),
            ExtentsMode::Gap => {
                extents.add(offset, 512, ExtentType::DATA)?;
                return extents.add(offset + 1024, 512, ExtentType::DATA);
            }
            ExtentsMode::Overlap => {
                extents.add(offset, 1024, ExtentType::DATA)?;
                extents.add(offset + 512, 1024, ExtentType::HOLE | ExtentType::ZERO)?;
                return extents.add(offset, u64::from(count), ExtentType::DATA);
            }
            ExtentsMode::ZeroLength => {
                extents.add(offset, 0, ExtentType::HOLE)?;
                extents.add(offset, 0, ExtentType::DATA)?;
                return extents.add(
                    offset,
                    u64::from(count),
                    ExtentType::HOLE | ExtentType::ZERO,
                );
            }
            ExtentsMode::Beyond => {
                return extents.add(offset.saturating_sub(4096), u64::MAX / 2, ExtentType::DATA);
            }
            ExtentsMode::Unsorted => {
                extents.add(offset + 1024, 1024, ExtentType::DATA)?;
                return extents.add(offset, 1024, ExtentType::DATA);
            }
        }
        // One extent per run of allocated (data) or unallocated (hole) blocks.
        let end = offset + u64::from(count);
        let mut at = offset;
        while at < end {
            let allocated = self.store.allocated(at);
            let mut stop = (at / BLOCK + 1) * BLOCK;
            while stop < end && self.store.allocated(stop) == allocated {
                stop += BLOCK;
            }
            let stop = stop.min(end);
            let kind = if allocated {
                ExtentType::DATA
            } else {
                ExtentType::HOLE | ExtentType::ZERO
            };
            extents.add(at, stop - at, kind)?;
            if flags.contains(Flags::REQ_ONE) {
                break;
            }
            at = stop;
        }
        Ok(())
    }

    fn cache(&self, _: &(), count: u32, offset: u64, flags: Flags) -> Result<()> {
        self.data_call(
            "cache",
            format!("cache count={count} offset={offset} flags={flags:?}"),
            offset,
        )
    }

    fn hand_over(&self) -> Option<Handover> {
        self.trace.line("hand_over");
        self.check_panic("hand_over");
        Some(Handover::bytes(
            "rustshim-test",
            self.size.to_string().into_bytes(),
        ))
    }

    fn take_over(&mut self, state: Handover) -> Result<bool> {
        let kind = state.kind().to_owned();
        let bytes = state
            .into_bytes()
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        self.trace
            .line(format!("take_over kind={kind:?} bytes={bytes:?}"));
        self.check("take_over", None)?;
        Ok(true)
    }

    fn cleanup(&mut self) {
        self.trace.line("cleanup");
        self.check_panic("cleanup");
    }

    fn unload(&mut self) {
        self.trace.line("unload");
        self.check_panic("unload");
    }
}

export_plugin!(Test);
