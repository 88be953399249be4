//! The layer below a filter, as the filter's callbacks see it: [`Next`] for a connection's
//! requests, and one small type per `next` function of the callbacks outside the data path
//! ([`NextConfig`], [`NextOpen`], …), named after nbdkit's typedefs.
//!
//! Each reaches the shim's `FilterServices` table, which calls nbdkit's own functions: the filter
//! never depends on nbdkit's structs. A failure of the layer below comes back as an [`Error`]
//! with the layer's errno, already logged by that layer (so passing it on with `?` logs nothing
//! twice).

use std::cell::Cell;
use std::marker::PhantomData;

use crate::abi::filter::{query, range};
use crate::abi::{
    BackendPtr, ExportSink, Extent, FilterServicesRef, LayerNext, NextPtr, RStr, RString, RVec,
};
use crate::error::{Errno, Error, Result};
use crate::types::{BlockSize, CacheMode, Exports, Extents, Flags, FuaMode, ZeroMode};

/// The shim's filter services, or `ENOTSUP` outside nbdkit.
#[inline(always)]
fn services() -> Result<FilterServicesRef> {
    crate::host::filter_services()
        .ok_or_else(|| Error::new(Errno::ENOTSUP, "not running inside nbdkit"))
}

/// A status from the shim (`0` or a positive errno) as a result; the cause was logged by the
/// layer below or the shim.
#[inline(always)]
fn status(what: &str, errno: i32) -> Result<()> {
    match errno {
        0 => Ok(()),
        errno => Err(below_failed(what, errno)),
    }
}

#[cold]
#[inline(never)]
fn below_failed(what: &str, errno: i32) -> Error {
    let errno = if errno > 0 { errno } else { Errno::EIO as i32 };
    Error::already_logged(
        Errno::from_raw(errno),
        format!("{what}: the layer below failed"),
    )
}

/// A data request's `(status, err)` as a result.
#[inline(always)]
fn data_status(what: &str, r: i32, err: i32) -> Result<()> {
    if r < 0 {
        return Err(below_failed(what, err));
    }
    Ok(())
}

fn request_len(what: &str, len: usize) -> Result<u32> {
    u32::try_from(len).map_err(|_| {
        Error::invalid(format!(
            "{what}: a request of {len} bytes is larger than NBD allows"
        ))
    })
}

/// The layer below a filter for one connection (nbdkit's `nbdkit_next *`): given to every
/// callback that has a handle, valid for that call.
///
/// Its calls are nbdkit's `next->…` functions: nbdkit checks and caches as it does for every
/// layer (a data request needs the matching `can_*` answer first, which the pass-through of the
/// handshake normally asked).
pub struct Next<'a> {
    ptr: NextPtr,
    /// Prepared: nbdkit's contexts always are; one this filter opened, after [`Next::prepare`]
    /// (nbdkit aborts on a request to an unprepared context).
    ready: Cell<bool>,
    _call: PhantomData<&'a ()>,
}

impl Next<'_> {
    pub(crate) fn new(ptr: NextPtr) -> Self {
        Next {
            ptr,
            ready: Cell::new(true),
            _call: PhantomData,
        }
    }

    /// The layer below, if it is ready for requests.
    #[inline(always)]
    fn ptr(&self) -> Result<NextPtr> {
        if !self.ready.get() {
            return Err(Error::invalid(
                "a context opened with Backend::open_context must be prepared first",
            ));
        }
        Ok(self.ptr)
    }

    /// The export's size (`next->get_size`).
    pub fn get_size(&self) -> Result<u64> {
        let mut size = 0;
        status("get_size", (services()?.get_size())(self.ptr()?, &mut size))?;
        Ok(size)
    }

    /// The export's description (`next->export_description`); `ENOTSUP` when it has none.
    pub fn export_description(&self) -> Result<String> {
        let mut out = RString::new();
        let errno = (services()?.export_description())(self.ptr()?, &mut out);
        if errno == Errno::ENOTSUP as i32 {
            return Err(Error::new(Errno::ENOTSUP, "no export description"));
        }
        status("export_description", errno)?;
        Ok(out.into_string())
    }

    /// The block size constraints (`next->block_size`).
    pub fn block_size(&self) -> Result<BlockSize> {
        let mut b = BlockSize::default();
        let f = services()?.block_size();
        status(
            "block_size",
            f(
                self.ptr()?,
                &mut b.minimum,
                &mut b.preferred,
                &mut b.maximum,
            ),
        )?;
        Ok(b)
    }

    fn query(&self, which: u32) -> Result<i32> {
        match (services()?.query())(self.ptr()?, which) {
            answer if answer >= 0 => Ok(answer),
            _ => Err(below_failed(
                crate::abi::filter::QUERY_NAMES[which as usize],
                0,
            )),
        }
    }

    fn mode<M>(&self, which: u32, from_raw: fn(i32) -> Option<M>) -> Result<M> {
        let raw = self.query(which)?;
        from_raw(raw).ok_or_else(|| {
            Error::new(
                Errno::EIO,
                format!(
                    "{}: the layer below answered {raw}",
                    crate::abi::filter::QUERY_NAMES[which as usize]
                ),
            )
        })
    }

    /// Whether the export is writable (`next->can_write`).
    pub fn can_write(&self) -> Result<bool> {
        self.query(query::can_write).map(|a| a != 0)
    }
    /// Whether `flush` works (`next->can_flush`).
    pub fn can_flush(&self) -> Result<bool> {
        self.query(query::can_flush).map(|a| a != 0)
    }
    /// Whether the storage is rotational (`next->is_rotational`).
    pub fn is_rotational(&self) -> Result<bool> {
        self.query(query::is_rotational).map(|a| a != 0)
    }
    /// Whether `trim` works (`next->can_trim`).
    pub fn can_trim(&self) -> Result<bool> {
        self.query(query::can_trim).map(|a| a != 0)
    }
    /// How zero requests are handled (`next->can_zero`).
    pub fn can_zero(&self) -> Result<ZeroMode> {
        self.mode(query::can_zero, ZeroMode::from_raw)
    }
    /// Whether fast zero is supported (`next->can_fast_zero`).
    pub fn can_fast_zero(&self) -> Result<bool> {
        self.query(query::can_fast_zero).map(|a| a != 0)
    }
    /// Whether `extents` works (`next->can_extents`).
    pub fn can_extents(&self) -> Result<bool> {
        self.query(query::can_extents).map(|a| a != 0)
    }
    /// How FUA is handled (`next->can_fua`).
    pub fn can_fua(&self) -> Result<FuaMode> {
        self.mode(query::can_fua, FuaMode::from_raw)
    }
    /// Whether several connections see consistent data (`next->can_multi_conn`).
    pub fn can_multi_conn(&self) -> Result<bool> {
        self.query(query::can_multi_conn).map(|a| a != 0)
    }
    /// How cache requests are handled (`next->can_cache`).
    pub fn can_cache(&self) -> Result<CacheMode> {
        self.mode(query::can_cache, CacheMode::from_raw)
    }

    /// Reads `buf.len()` bytes at `offset` (`next->pread`).
    #[inline]
    pub fn pread(&self, buf: &mut [u8], offset: u64, flags: Flags) -> Result<()> {
        let count = request_len("pread", buf.len())?;
        let mut err = 0;
        let r = (services()?.pread())(
            self.ptr()?,
            buf.as_mut_ptr(),
            count,
            offset,
            flags.bits(),
            &mut err,
        );
        data_status("pread", r, err)
    }

    /// Writes `buf` at `offset` (`next->pwrite`).
    #[inline]
    pub fn pwrite(&self, buf: &[u8], offset: u64, flags: Flags) -> Result<()> {
        let count = request_len("pwrite", buf.len())?;
        let mut err = 0;
        let r = (services()?.pwrite())(
            self.ptr()?,
            buf.as_ptr(),
            count,
            offset,
            flags.bits(),
            &mut err,
        );
        data_status("pwrite", r, err)
    }

    /// Flushes (`next->flush`).
    pub fn flush(&self, flags: Flags) -> Result<()> {
        let mut err = 0;
        let r = (services()?.flush())(self.ptr()?, flags.bits(), &mut err);
        data_status("flush", r, err)
    }

    fn range(&self, which: u32, count: u32, offset: u64, flags: Flags) -> Result<()> {
        let mut err = 0;
        let r = (services()?.range())(self.ptr()?, which, count, offset, flags.bits(), &mut err);
        data_status(crate::abi::filter::RANGE_NAMES[which as usize], r, err)
    }

    /// Discards a range (`next->trim`).
    pub fn trim(&self, count: u32, offset: u64, flags: Flags) -> Result<()> {
        self.range(range::trim, count, offset, flags)
    }
    /// Writes zeroes (`next->zero`).
    pub fn zero(&self, count: u32, offset: u64, flags: Flags) -> Result<()> {
        self.range(range::zero, count, offset, flags)
    }
    /// Prefetches a range (`next->cache`).
    pub fn cache(&self, count: u32, offset: u64, flags: Flags) -> Result<()> {
        self.range(range::cache, count, offset, flags)
    }

    /// Adds the layer below's extents from `offset` to `extents`, the list of this filter's own
    /// `extents` call (`next->extents`).
    pub fn extents(
        &self,
        count: u32,
        offset: u64,
        flags: Flags,
        extents: &mut Extents,
    ) -> Result<()> {
        let mut err = 0;
        let f = services()?.extents();
        let r = f(
            self.ptr()?,
            count,
            offset,
            flags.bits(),
            extents.sink(),
            &mut err,
        );
        data_status("extents", r, err)
    }

    /// The extents of the whole range, asking the layer below as often as needed
    /// ([`nbdkit_extents_full`](https://libguestfs.org/nbdkit-filter.3.html#nbdkit_extents_full)).
    pub fn extents_full(&self, count: u32, offset: u64, flags: Flags) -> Result<Vec<Extent>> {
        let mut out = RVec::new();
        let mut err = 0;
        let f = services()?.extents_full();
        let r = f(self.ptr()?, count, offset, flags.bits(), &mut out, &mut err);
        data_status("extents_full", r, err)?;
        Ok(out.into_vec())
    }

    /// Adds the layer below's extents to `extents` with every boundary rounded to `align` (a
    /// power of 2); `offset` and `count` must be multiples of it
    /// ([`nbdkit_extents_aligned`](https://libguestfs.org/nbdkit-filter.3.html#nbdkit_extents_aligned)).
    pub fn extents_aligned(
        &self,
        count: u32,
        offset: u64,
        flags: Flags,
        align: u32,
        extents: &mut Extents,
    ) -> Result<()> {
        let mut err = 0;
        let f = services()?.extents_aligned();
        let r = f(
            self.ptr()?,
            count,
            offset,
            flags.bits(),
            align,
            extents.sink(),
            &mut err,
        );
        data_status("extents_aligned", r, err)
    }

    /// Prepares a context this filter opened itself ([`Backend::open_context`]); nbdkit
    /// prepares the context of the connection itself.
    pub fn prepare(&self) -> Result<()> {
        if !self.ready.get() {
            status("prepare", (services()?.prepare())(self.ptr))?;
            self.ready.set(true);
        }
        Ok(())
    }

    /// Finalizes a context this filter opened itself.
    pub fn finalize(&self) -> Result<()> {
        self.ready.set(false);
        status("finalize", (services()?.finalize())(self.ptr))
    }
}

/// A context of the layer below that this filter opened ([`Backend::open_context`]): closed when
/// dropped (`nbdkit_next_context_close`), unless handed to nbdkit with [`NextOpen::set_next`].
pub struct OwnedNext {
    next: Next<'static>,
}

// SAFETY: the pointer is an opaque token that only the shim dereferences, through nbdkit's
// functions; a context opened with `shared` is meant to be used from other threads (nbdkit
// tracks the current connection per thread, so an unshared one belongs to its connection).
unsafe impl Send for OwnedNext {}

impl OwnedNext {
    fn into_raw(self) -> NextPtr {
        let ptr = self.next.ptr;
        std::mem::forget(self);
        ptr
    }
}

impl std::ops::Deref for OwnedNext {
    type Target = Next<'static>;
    fn deref(&self) -> &Next<'static> {
        &self.next
    }
}

impl Drop for OwnedNext {
    fn drop(&mut self) {
        if let Ok(s) = services() {
            (s.context_close())(self.next.ptr);
        }
    }
}

/// The layer below as a whole (nbdkit's `nbdkit_backend *`), for opening contexts of it
/// yourself. Given to `after_fork` and `cleanup`, valid from the one to the other, and by
/// [`NextOpen::backend`].
#[derive(Copy, Clone, Debug)]
pub struct Backend(BackendPtr);

// SAFETY: an opaque token that only the shim dereferences, through nbdkit's functions, which
// may be called from any thread.
unsafe impl Send for Backend {}
// SAFETY: as above.
unsafe impl Sync for Backend {}

impl Backend {
    pub(crate) fn new(ptr: BackendPtr) -> Self {
        Backend(ptr)
    }

    /// Opens a context of the layer below (`nbdkit_next_context_open`): within a connection it
    /// belongs to that connection unless `shared`; outside one (a background thread started in
    /// `after_fork`) it is shared. Prepare it before use ([`Next::prepare`]).
    pub fn open_context(
        &self,
        readonly: bool,
        export_name: &str,
        shared: bool,
    ) -> Result<OwnedNext> {
        let mut out = NextPtr(std::ptr::null_mut());
        let f = services()?.context_open();
        status(
            "nbdkit_next_context_open",
            f(
                self.0,
                readonly,
                RStr::from_str(export_name),
                shared,
                &mut out,
            ),
        )?;
        let next = Next::new(out);
        next.ready.set(false);
        Ok(OwnedNext { next })
    }
}

/// `config`'s `next`: passes a key this filter does not own to the layer below.
pub struct NextConfig<'a> {
    next: LayerNext,
    _call: PhantomData<&'a ()>,
}

impl NextConfig<'_> {
    pub(crate) fn new(next: LayerNext) -> Self {
        NextConfig {
            next,
            _call: PhantomData,
        }
    }

    /// Gives `key=value` to the layer below.
    pub fn config(&mut self, key: &str, value: &str) -> Result<()> {
        let f = services()?.config();
        status(
            "config",
            f(self.next, RStr::from_str(key), RStr::from_str(value)),
        )
    }
}

/// `config_complete`'s `next`.
pub struct NextConfigComplete<'a> {
    next: LayerNext,
    _call: PhantomData<&'a ()>,
}

impl NextConfigComplete<'_> {
    pub(crate) fn new(next: LayerNext) -> Self {
        NextConfigComplete {
            next,
            _call: PhantomData,
        }
    }

    /// Completes the configuration of the layer below.
    pub fn config_complete(&mut self) -> Result<()> {
        status(
            "config_complete",
            (services()?.config_complete())(self.next),
        )
    }
}

/// `preconnect`'s `next`.
pub struct NextPreconnect<'a> {
    next: LayerNext,
    _call: PhantomData<&'a ()>,
}

impl NextPreconnect<'_> {
    pub(crate) fn new(next: LayerNext) -> Self {
        NextPreconnect {
            next,
            _call: PhantomData,
        }
    }

    /// Lets the layer below accept or refuse the client.
    pub fn preconnect(&self, readonly: bool) -> Result<()> {
        status(
            "preconnect",
            (services()?.preconnect())(self.next, readonly),
        )
    }
}

/// One export of the layer below.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Export {
    /// Its name.
    pub name: String,
    /// Its description, if it has one.
    pub description: Option<String>,
}

/// `list_exports`'s `next`.
pub struct NextListExports<'a> {
    next: LayerNext,
    _call: PhantomData<&'a ()>,
}

extern "C" fn collect_export(
    ctx: *mut std::ffi::c_void,
    name: RStr<'_>,
    description: crate::abi::ROption<RStr<'_>>,
) -> i32 {
    // SAFETY: `ctx` is the `Vec<Export>` of `NextListExports::exports`, borrowed for the call.
    let list = unsafe { &mut *(ctx as *mut Vec<Export>) };
    list.push(Export {
        name: name.to_string(),
        description: description.into_option().map(|d| d.to_string()),
    });
    0
}

extern "C" fn collect_default(_ctx: *mut std::ffi::c_void) -> i32 {
    // The shim resolves the default export to its name before adding it.
    Errno::EINVAL as i32
}

impl NextListExports<'_> {
    pub(crate) fn new(next: LayerNext) -> Self {
        NextListExports {
            next,
            _call: PhantomData,
        }
    }

    /// Adds the layer below's exports to `exports`.
    pub fn list_exports(&self, readonly: bool, exports: &mut Exports) -> Result<()> {
        let f = services()?.list_exports();
        status("list_exports", f(self.next, readonly, exports.sink()))
    }

    /// The layer below's exports.
    pub fn exports(&self, readonly: bool) -> Result<Vec<Export>> {
        let mut list: Vec<Export> = Vec::new();
        let sink = ExportSink {
            ctx: (&mut list as *mut Vec<Export>).cast(),
            add: collect_export,
            use_default: collect_default,
        };
        let f = services()?.list_exports();
        status("list_exports", f(self.next, readonly, sink))?;
        Ok(list)
    }
}

/// `default_export`'s `next`.
pub struct NextDefaultExport<'a> {
    next: LayerNext,
    _call: PhantomData<&'a ()>,
}

impl NextDefaultExport<'_> {
    pub(crate) fn new(next: LayerNext) -> Self {
        NextDefaultExport {
            next,
            _call: PhantomData,
        }
    }

    /// The layer below's default export name.
    pub fn default_export(&self, readonly: bool) -> Result<String> {
        let mut out = RString::new();
        let f = services()?.default_export();
        status("default_export", f(self.next, readonly, &mut out))?;
        Ok(out.into_string())
    }
}

/// `open`'s `next`: opens the layer below for this connection, once.
pub struct NextOpen<'a> {
    next: LayerNext,
    attached: bool,
    _call: PhantomData<&'a ()>,
}

impl NextOpen<'_> {
    pub(crate) fn new(next: LayerNext) -> Self {
        NextOpen {
            next,
            attached: false,
            _call: PhantomData,
        }
    }

    /// Opens the layer below, maybe with another `readonly` or export name. Call it once (a
    /// second call fails with `EINVAL`); a filter that does not open the layer below (nor
    /// [`set_next`](NextOpen::set_next)s one) has nothing to pass requests to, and every request
    /// it passes on fails with `EIO`.
    pub fn open(&mut self, readonly: bool, export_name: &str) -> Result<()> {
        if self.attached {
            return Err(Error::invalid(
                "open: the layer below is already open for this connection",
            ));
        }
        let f = services()?.open();
        status("open", f(self.next, readonly, RStr::from_str(export_name)))?;
        self.attached = true;
        Ok(())
    }

    /// The layer below as a whole (`nbdkit_context_get_backend`), to open contexts of it
    /// yourself.
    pub fn backend(&self) -> Result<Backend> {
        let f = services()?.context_get_backend();
        Ok(Backend::new(f(crate::abi::ContextPtr(self.next.data))))
    }

    /// Makes `next` the layer below of this connection (`nbdkit_context_set_next`), returning
    /// the one it replaces, now yours to close.
    pub fn set_next(&mut self, next: OwnedNext) -> Result<Option<OwnedNext>> {
        let f = services()?.context_set_next();
        let old = f(crate::abi::ContextPtr(self.next.data), next.into_raw());
        self.attached = true;
        Ok((!old.0.is_null()).then(|| OwnedNext {
            next: Next::new(old),
        }))
    }
}
