//! `test`: a filter that implements every callback of the [`Filter`] trait, for the integration
//! tests. Each callback traces its arguments and what the layer below answered, then passes the
//! call on; any callback can be made to fail or panic from the command line.
//!
//! ```text
//! nbdkit --filter=rustshim memory 1M filter=librustshim_filter_test.so tf-trace=/tmp/t tf-fail=pread:EPERM
//! ```
//!
//! Keys (all start with `tf-`, so a plugin's keys pass through untouched):
//! * `tf-trace=PATH`: append one line per callback, `LABEL CALLBACK args… -> answer`. Lines from
//!   before this key are written when it arrives.
//! * `tf-label=TEXT`: the label (default `test`), to tell stacked instances apart.
//! * `tf-fail=CALLBACK[:ERRNO]` (repeatable): the callback fails with `ERRNO` (default `EIO`)
//!   and the message `test filter: injected failure in CALLBACK`.
//! * `tf-panic=CALLBACK` (repeatable): the callback panics (`test filter: injected panic in
//!   CALLBACK`).
//! * `tf-thread-model=NAME`: what `thread_model` answers (default: the layer below's, or
//!   parallel).
//! * `tf-contexts=true`: `open` opens the layer below itself (`Backend::open_context`,
//!   `NextOpen::set_next`) instead of `next.open`, and `after_fork` opens a shared context,
//!   asks its size and closes it.
//! * `tf-extents=full`: `extents` answers from `Next::extents_full`.
//! * `tf-xor=BYTE`: reads and writes are XORed with BYTE (data changed both ways).
//!
//! Keys that make the filter ask the layer below for what nbdkit would abort on (the shim must
//! refuse it with an errno):
//! * `tf-claim=CAPABILITY` (repeatable: `write`, `flush`, `trim`, `zero`, `fast_zero`, `cache`,
//!   `fua`): the filter answers yes (native) without asking the layer below, so the client
//!   sends requests the layer below may not take, and the filter passes them on.
//! * `tf-past-end=true`: every data request the filter passes on starts at its offset plus the
//!   layer below's size, past its end.
//! * `tf-pread-writes=true`: `pread` writes what it read back at the same offset
//!   (`next.pwrite`) and fails with that write's error.
//!
//! The data callbacks trace what the layer below answered (`pread -> Err(ENOSPC)`).
//!
//! Every instance counts its connections (`open` traces `connection=N`), so two stacked
//! instances show they have state of their own. `dump_plugin` prints `tf_dump=LABEL`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rustshim_plugin_api::prelude::*;

/// What `tf-claim=` accepts.
const CLAIMS: &[&str] = &[
    "write",
    "flush",
    "trim",
    "zero",
    "fast_zero",
    "cache",
    "fua",
];

const ERRNOS: &[(&str, Errno)] = &[
    ("EPERM", Errno::EPERM),
    ("EIO", Errno::EIO),
    ("ENOMEM", Errno::ENOMEM),
    ("ENOSPC", Errno::ENOSPC),
    ("ESHUTDOWN", Errno::ESHUTDOWN),
    ("EINVAL", Errno::EINVAL),
    ("EROFS", Errno::EROFS),
    ("ENOTSUP", Errno::ENOTSUP),
];

#[derive(Default)]
struct TestFilter {
    label: Option<String>,
    file: Option<Mutex<File>>,
    /// Lines traced before `tf-trace=`.
    early: Vec<String>,
    fail: Vec<(String, Errno)>,
    panic: Vec<String>,
    thread_model: Option<ThreadModel>,
    contexts: bool,
    extents_full: bool,
    xor: u8,
    claim: Vec<String>,
    past_end: bool,
    pread_writes: bool,
    connections: AtomicU64,
}

/// One connection.
#[derive(Default)]
struct Handle {
    number: u64,
}

fn model_by_name(name: &str) -> Option<ThreadModel> {
    [
        ThreadModel::SerializeConnections,
        ThreadModel::SerializeAllRequests,
        ThreadModel::SerializeRequests,
        ThreadModel::Parallel,
    ]
    .into_iter()
    .find(|m| m.name() == name)
}

impl TestFilter {
    fn label(&self) -> &str {
        self.label.as_deref().unwrap_or("test")
    }

    fn write(&self, line: &str) {
        if let Some(file) = &self.file {
            let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
            let _ = f.write_all(format!("{} {line}\n", self.label()).as_bytes());
        }
    }

    /// Traces a callback, then fails or panics if told to.
    fn enter(&self, callback: &str, args: std::fmt::Arguments<'_>) -> Result<()> {
        self.write(&format!("{callback}{args}"));
        self.injected(callback)
    }

    fn injected(&self, callback: &str) -> Result<()> {
        if self.panic.iter().any(|c| c == callback) {
            panic!("test filter: injected panic in {callback}");
        }
        if let Some((_, errno)) = self.fail.iter().find(|(c, _)| c == callback) {
            return Err(Error::new(
                *errno,
                format!("test filter: injected failure in {callback}"),
            ));
        }
        Ok(())
    }

    /// Traces what the layer below answered.
    fn answer<T: std::fmt::Debug>(&self, callback: &str, answer: Result<T>) -> Result<T> {
        match &answer {
            Ok(v) => self.write(&format!("{callback} -> {v:?}")),
            Err(e) => self.write(&format!("{callback} -> Err({:?})", e.errno())),
        }
        answer
    }

    /// Whether `tf-claim=` named this capability.
    fn claims(&self, capability: &str) -> bool {
        self.claim.iter().any(|c| c == capability)
    }

    /// Where a request at `offset` goes below: past the end with `tf-past-end=true`.
    fn below(&self, next: &Next<'_>, offset: u64) -> Result<u64> {
        if !self.past_end {
            return Ok(offset);
        }
        Ok(offset + next.get_size()?)
    }

    fn xor(&self, buf: &mut [u8]) {
        if self.xor != 0 {
            buf.iter_mut().for_each(|b| *b ^= self.xor);
        }
    }
}

#[filter]
impl Filter for TestFilter {
    type Handle = Handle;

    const NAME: &'static str = "test";
    const LONGNAME: Option<&'static str> = Some("Rust test filter");
    const VERSION: Option<&'static str> = Some(env!("CARGO_PKG_VERSION"));
    const DESCRIPTION: Option<&'static str> = Some("Traces every filter callback (for tests).");
    const CONFIG_HELP: Option<&'static str> = Some("tf-trace=PATH  Trace every callback.");

    fn load(&mut self) {
        self.early.push("load".into());
    }

    fn config(&mut self, next: &mut NextConfig<'_>, key: &str, value: &str) -> Result<()> {
        let line = format!("config key={key} value={value}");
        if self.file.is_some() {
            self.write(&line);
        } else {
            self.early.push(line);
        }
        self.injected("config")?;
        match key {
            "tf-trace" => {
                let file = OpenOptions::new().create(true).append(true).open(value)?;
                self.file = Some(Mutex::new(file));
                for line in std::mem::take(&mut self.early) {
                    self.write(&line);
                }
            }
            "tf-label" => self.label = Some(value.to_owned()),
            "tf-fail" => {
                let (callback, errno) = value.split_once(':').unwrap_or((value, "EIO"));
                let errno = ERRNOS
                    .iter()
                    .find(|(n, _)| *n == errno)
                    .map(|(_, e)| *e)
                    .ok_or_else(|| Error::invalid(format!("tf-fail: unknown errno {errno}")))?;
                self.fail.push((callback.to_owned(), errno));
            }
            "tf-panic" => self.panic.push(value.to_owned()),
            "tf-thread-model" => {
                self.thread_model = Some(model_by_name(value).ok_or_else(|| {
                    Error::invalid(format!("tf-thread-model: unknown model {value}"))
                })?)
            }
            "tf-contexts" => self.contexts = server::parse_bool(value)?,
            "tf-extents" => self.extents_full = value == "full",
            "tf-claim" => {
                if !CLAIMS.contains(&value) {
                    return Err(Error::invalid(format!(
                        "tf-claim: unknown capability {value} (one of {})",
                        CLAIMS.join(", ")
                    )));
                }
                self.claim.push(value.to_owned());
            }
            "tf-past-end" => self.past_end = server::parse_bool(value)?,
            "tf-pread-writes" => self.pread_writes = server::parse_bool(value)?,
            "tf-xor" => {
                self.xor = value
                    .parse()
                    .map_err(|_| Error::invalid(format!("tf-xor: not a byte: {value}")))?
            }
            _ => return next.config(key, value),
        }
        Ok(())
    }

    fn config_complete(&mut self, next: &mut NextConfigComplete<'_>) -> Result<()> {
        self.enter("config_complete", format_args!(""))?;
        next.config_complete()
    }

    fn thread_model(&self, next_model: Option<ThreadModel>) -> Result<ThreadModel> {
        let shown = next_model.map_or("unknown", ThreadModel::name);
        self.enter("thread_model", format_args!(" next={shown}"))?;
        Ok(self
            .thread_model
            .or(next_model)
            .unwrap_or(ThreadModel::Parallel))
    }

    fn get_ready(&mut self, thread_model: ThreadModel) -> Result<()> {
        log::debug!("test filter: log from get_ready");
        self.enter(
            "get_ready",
            format_args!(" thread_model={}", thread_model.name()),
        )
    }

    fn after_fork(&mut self, backend: Backend) -> Result<()> {
        self.enter("after_fork", format_args!(""))?;
        if self.contexts {
            let own = backend.open_context(true, "", true)?;
            own.prepare()?;
            let size = own.get_size();
            self.answer("after_fork context get_size", size)?;
            own.finalize()?;
        }
        Ok(())
    }

    fn cleanup(&mut self, _backend: Backend) {
        let _ = self.enter("cleanup", format_args!(""));
    }

    fn dump_plugin(&self, dump: &mut Dump) {
        dump.field("tf_dump", self.label());
    }

    fn preconnect(&self, next: &NextPreconnect<'_>, readonly: bool) -> Result<()> {
        self.enter("preconnect", format_args!(" readonly={readonly}"))?;
        next.preconnect(readonly)
    }

    fn list_exports(
        &self,
        next: &NextListExports<'_>,
        readonly: bool,
        is_tls: bool,
        exports: &mut Exports,
    ) -> Result<()> {
        self.enter(
            "list_exports",
            format_args!(" readonly={readonly} is_tls={is_tls}"),
        )?;
        let below = self.answer("list_exports", next.exports(readonly))?;
        for e in below {
            exports.add(&e.name, e.description.as_deref())?;
        }
        Ok(())
    }

    fn default_export(
        &self,
        next: &NextDefaultExport<'_>,
        readonly: bool,
        is_tls: bool,
    ) -> Result<String> {
        self.enter(
            "default_export",
            format_args!(" readonly={readonly} is_tls={is_tls}"),
        )?;
        self.answer("default_export", next.default_export(readonly))
    }

    fn open(
        &self,
        next: &mut NextOpen<'_>,
        readonly: bool,
        export_name: &str,
        is_tls: bool,
    ) -> Result<Handle> {
        let number = self.connections.fetch_add(1, Ordering::Relaxed) + 1;
        self.enter(
            "open",
            format_args!(
                " readonly={readonly} export={export_name:?} is_tls={is_tls} connection={number}"
            ),
        )?;
        if self.contexts {
            let own = next.backend()?.open_context(readonly, export_name, false)?;
            let old = next.set_next(own)?;
            self.write(&format!("open set_next replaced={}", old.is_some()));
        } else {
            next.open(readonly, export_name)?;
        }
        Ok(Handle { number })
    }

    fn close(&self, handle: Handle) {
        let _ = self.enter("close", format_args!(" connection={}", handle.number));
    }

    fn prepare(&self, next: &Next<'_>, h: &Handle, readonly: bool) -> Result<()> {
        self.enter(
            "prepare",
            format_args!(" readonly={readonly} connection={}", h.number),
        )?;
        self.answer("prepare get_size", next.get_size()).map(drop)
    }

    fn finalize(&self, _next: &Next<'_>, h: &Handle) -> Result<()> {
        self.enter("finalize", format_args!(" connection={}", h.number))
    }

    fn get_size(&self, next: &Next<'_>, _: &Handle) -> Result<u64> {
        self.enter("get_size", format_args!(""))?;
        self.answer("get_size", next.get_size())
    }

    fn export_description(&self, next: &Next<'_>, _: &Handle) -> Result<String> {
        self.enter("export_description", format_args!(""))?;
        self.answer("export_description", next.export_description())
    }

    fn block_size(&self, next: &Next<'_>, _: &Handle) -> Result<BlockSize> {
        self.enter("block_size", format_args!(""))?;
        self.answer("block_size", next.block_size())
    }

    fn can_write(&self, next: &Next<'_>, _: &Handle) -> Result<bool> {
        self.enter("can_write", format_args!(""))?;
        if self.claims("write") {
            return Ok(true);
        }
        self.answer("can_write", next.can_write())
    }
    fn can_flush(&self, next: &Next<'_>, _: &Handle) -> Result<bool> {
        self.enter("can_flush", format_args!(""))?;
        if self.claims("flush") {
            return Ok(true);
        }
        self.answer("can_flush", next.can_flush())
    }
    fn is_rotational(&self, next: &Next<'_>, _: &Handle) -> Result<bool> {
        self.enter("is_rotational", format_args!(""))?;
        self.answer("is_rotational", next.is_rotational())
    }
    fn can_trim(&self, next: &Next<'_>, _: &Handle) -> Result<bool> {
        self.enter("can_trim", format_args!(""))?;
        if self.claims("trim") {
            return Ok(true);
        }
        self.answer("can_trim", next.can_trim())
    }
    fn can_zero(&self, next: &Next<'_>, _: &Handle) -> Result<ZeroMode> {
        self.enter("can_zero", format_args!(""))?;
        if self.claims("zero") {
            return Ok(ZeroMode::Native);
        }
        self.answer("can_zero", next.can_zero())
    }
    fn can_fast_zero(&self, next: &Next<'_>, _: &Handle) -> Result<bool> {
        self.enter("can_fast_zero", format_args!(""))?;
        if self.claims("fast_zero") {
            return Ok(true);
        }
        self.answer("can_fast_zero", next.can_fast_zero())
    }
    fn can_extents(&self, next: &Next<'_>, _: &Handle) -> Result<bool> {
        self.enter("can_extents", format_args!(""))?;
        self.answer("can_extents", next.can_extents())
    }
    fn can_fua(&self, next: &Next<'_>, _: &Handle) -> Result<FuaMode> {
        self.enter("can_fua", format_args!(""))?;
        if self.claims("fua") {
            return Ok(FuaMode::Native);
        }
        self.answer("can_fua", next.can_fua())
    }
    fn can_multi_conn(&self, next: &Next<'_>, _: &Handle) -> Result<bool> {
        self.enter("can_multi_conn", format_args!(""))?;
        self.answer("can_multi_conn", next.can_multi_conn())
    }
    fn can_cache(&self, next: &Next<'_>, _: &Handle) -> Result<CacheMode> {
        self.enter("can_cache", format_args!(""))?;
        if self.claims("cache") {
            return Ok(CacheMode::Native);
        }
        self.answer("can_cache", next.can_cache())
    }

    fn pread(
        &self,
        next: &Next<'_>,
        _: &Handle,
        buf: &mut [u8],
        offset: u64,
        flags: Flags,
    ) -> Result<()> {
        self.enter(
            "pread",
            format_args!(" count={} offset={offset} flags={flags:?}", buf.len()),
        )?;
        let below = self.below(next, offset)?;
        self.answer("pread", next.pread(buf, below, flags))?;
        if self.pread_writes {
            self.answer("pread write-back", next.pwrite(buf, below, Flags::empty()))?;
        }
        self.xor(buf);
        Ok(())
    }

    fn pwrite(
        &self,
        next: &Next<'_>,
        _: &Handle,
        buf: &[u8],
        offset: u64,
        flags: Flags,
    ) -> Result<()> {
        self.enter(
            "pwrite",
            format_args!(" count={} offset={offset} flags={flags:?}", buf.len()),
        )?;
        let below = self.below(next, offset)?;
        if self.xor == 0 {
            return self.answer("pwrite", next.pwrite(buf, below, flags));
        }
        let mut changed = buf.to_vec();
        self.xor(&mut changed);
        self.answer("pwrite", next.pwrite(&changed, below, flags))
    }

    fn flush(&self, next: &Next<'_>, _: &Handle, flags: Flags) -> Result<()> {
        self.enter("flush", format_args!(" flags={flags:?}"))?;
        self.answer("flush", next.flush(flags))
    }

    fn trim(
        &self,
        next: &Next<'_>,
        _: &Handle,
        count: u32,
        offset: u64,
        flags: Flags,
    ) -> Result<()> {
        self.enter(
            "trim",
            format_args!(" count={count} offset={offset} flags={flags:?}"),
        )?;
        let below = self.below(next, offset)?;
        self.answer("trim", next.trim(count, below, flags))
    }

    fn zero(
        &self,
        next: &Next<'_>,
        _: &Handle,
        count: u32,
        offset: u64,
        flags: Flags,
    ) -> Result<()> {
        self.enter(
            "zero",
            format_args!(" count={count} offset={offset} flags={flags:?}"),
        )?;
        let below = self.below(next, offset)?;
        self.answer("zero", next.zero(count, below, flags))
    }

    fn extents(
        &self,
        next: &Next<'_>,
        _: &Handle,
        count: u32,
        offset: u64,
        flags: Flags,
        extents: &mut Extents,
    ) -> Result<()> {
        self.enter(
            "extents",
            format_args!(" count={count} offset={offset} flags={flags:?}"),
        )?;
        let below = self.below(next, offset)?;
        if !self.extents_full {
            return self.answer("extents", next.extents(count, below, flags, extents));
        }
        let full = self.answer("extents", next.extents_full(count, below, flags))?;
        self.write(&format!("extents full={}", full.len()));
        for e in full {
            extents.add(e.offset, e.length, ExtentType::from_bits(e.kind))?;
        }
        Ok(())
    }

    fn cache(
        &self,
        next: &Next<'_>,
        _: &Handle,
        count: u32,
        offset: u64,
        flags: Flags,
    ) -> Result<()> {
        self.enter(
            "cache",
            format_args!(" count={count} offset={offset} flags={flags:?}"),
        )?;
        let below = self.below(next, offset)?;
        self.answer("cache", next.cache(count, below, flags))
    }

    fn unload(&mut self) {
        self.write("unload");
    }
}

export_filter!(TestFilter);
