//! `memory`: a sparse RAM disk, like nbdkit's own memory plugin. Everything is lost when nbdkit
//! exits.
//!
//! ```text
//! nbdkit rustshim plugin=librustshim_memory.so size=1G
//! nbdkit rustshim librustshim_memory.so 1T
//! nbdkit rustshim plugin=librustshim_memory.so size=1G allocator=malloc,mlock=true
//! ```
//!
//! The disk is a [`SharedPages`] store: fixed-size pages, each allocated the first time it is
//! written (`allocator=sparse`, the default), so even the largest disk nbdkit serves
//! (2⁶³ − 1 bytes) starts at once and uses memory only for what was written; a page never
//! written, or trimmed, reads as zeroes. With `allocator=malloc` every page is allocated at
//! start, as one block (locked into RAM with `mlock=true`), as nbdkit's memory plugin does;
//! `allocator=zstd` is refused. Requests run in parallel (the default thread model): the store
//! locks per page, not globally.
//!
//! With `reload=watch` the disk survives a new build of this plugin: the running build hands its
//! store to the next one (`hand_over`/`take_over`), and both use the same pages while
//! connections of the old build finish, so no write is lost.

use rustshim_plugin_api::prelude::*;

/// What a build of this plugin calls its disk when handing it over on a reload.
const HANDOVER_KIND: &str = "rustshim-memory-disk";

/// From `allocator=`, as nbdkit's memory plugin takes it.
#[derive(Default, Clone, Copy, PartialEq, Debug)]
enum Allocator {
    #[default]
    Sparse,
    /// Every page at start; `mlock` them if true.
    Malloc { mlock: bool },
}

impl Allocator {
    fn parse(value: &str) -> Result<Allocator> {
        let (name, params) = value.split_once(',').unwrap_or((value, ""));
        match name {
            "sparse" if params.is_empty() => Ok(Allocator::Sparse),
            "sparse" => Err(Error::invalid(
                "memory: allocator=sparse does not take extra parameters",
            )),
            "malloc" => {
                let mut mlock = false;
                for param in params.split(',').filter(|p| !p.is_empty()) {
                    match param.split_once('=') {
                        Some(("mlock", v)) => mlock = server::parse_bool(v)?,
                        _ => {
                            let key = param.split('=').next().unwrap_or(param);
                            return Err(Error::invalid(format!(
                                "memory: allocator=malloc: unknown parameter {key}"
                            )));
                        }
                    }
                }
                Ok(Allocator::Malloc { mlock })
            }
            "zstd" => Err(Error::invalid(
                "memory: allocator=zstd is not supported by this plugin (no zstd in it): use \
                 allocator=sparse or malloc, or nbdkit's own memory plugin",
            )),
            _ => Err(Error::invalid(format!(
                "memory: unknown allocator \"{value}\""
            ))),
        }
    }
}

#[derive(Default)]
struct Memory {
    /// From `size=`; required.
    size: Option<u64>,
    /// From `allocator=`.
    allocator: Allocator,
    /// Made in `get_ready`, once the size is known and nbdkit is about to serve (or taken over
    /// from the previous build on a reload).
    disk: Option<SharedPages>,
}

#[plugin]
impl Plugin for Memory {
    // The disk is shared by all connections, so there is nothing per connection.
    type Handle = ();

    const NAME: &'static str = "memory";
    const LONGNAME: Option<&'static str> = Some("Rust sparse RAM disk");
    const VERSION: Option<&'static str> = Some(env!("CARGO_PKG_VERSION"));
    const DESCRIPTION: Option<&'static str> =
        Some("A sparse RAM disk: memory is used only for the pages written.");
    const CONFIG_HELP: Option<&'static str> = Some(
        "size=<SIZE>                 (required) Size of the disk, e.g. 1G or 1T.\n\
         allocator=sparse|malloc[,mlock=true]  How the disk is stored (default sparse).",
    );
    // `nbdkit rustshim librustshim_memory.so 1G` means size=1G.
    const MAGIC_CONFIG_KEY: Option<&'static str> = Some("size");

    fn config(&mut self, key: &str, value: &str) -> Result<()> {
        match key {
            "size" => self.size = Some(server::parse_size(value)?),
            "allocator" => self.allocator = Allocator::parse(value)?,
            _ => return Err(Error::invalid(format!("memory: unknown parameter '{key}'"))),
        }
        Ok(())
    }

    // Like nbdkit's memory plugin, there is no default size: a forgotten size= would otherwise
    // serve an empty disk that every client refuses to use, far from the cause.
    fn config_complete(&mut self) -> Result<()> {
        if self.size.is_none() {
            return Err(Error::invalid(
                "memory: you must specify size=<SIZE> on the command line",
            ));
        }
        Ok(())
    }

    // Allocated here, not in `Default`, so that `--dump-plugin` and `--help` cost nothing.
    // Sparse: only the root of the page table is made now (virtual memory, touched as pages are
    // written). Malloc: the whole disk.
    fn get_ready(&mut self) -> Result<()> {
        if self.disk.is_none() {
            let size = self.size.unwrap_or(0);
            self.disk = Some(match self.allocator {
                Allocator::Sparse => SharedPages::new(size)?,
                Allocator::Malloc { mlock } => SharedPages::new_dense(size, mlock)
                    .map_err(|e| e.context("memory: allocator=malloc"))?,
            });
        }
        Ok(())
    }

    // nbdkit's memory plugin says which optional allocators it has: `mlock=yes` (this one
    // has `allocator=malloc,mlock=true`), `zstd=yes` (this one has no zstd).
    fn dump_plugin(&self, dump: &mut Dump) {
        dump.field("memory_page_size", SharedPages::PAGE_SIZE);
        dump.field("mlock", "yes");
        dump.field("zstd", "no");
    }

    fn open(&self, _readonly: bool) -> Result<()> {
        Ok(())
    }

    fn get_size(&self, _: &()) -> Result<u64> {
        Ok(self.disk().size())
    }

    // As nbdkit's memory plugin (1.42 on) says: any size works, a page is best, no limit.
    fn block_size(&self, _: &()) -> Result<BlockSize> {
        Ok(BlockSize {
            minimum: 1,
            preferred: SharedPages::PAGE_SIZE as u32,
            maximum: u32::MAX,
        })
    }

    // Every connection reads and writes the same pages, and a write is visible to all as soon as
    // it returns.
    fn can_multi_conn(&self, _: &()) -> Result<bool> {
        Ok(true)
    }

    // Nothing is ever more durable than it is now, so FUA is trivially honoured.
    fn can_fua(&self, _: &()) -> Result<FuaMode> {
        Ok(FuaMode::Native)
    }

    // Everything is already in memory: native caching without a `cache` method makes nbdkit
    // answer cache requests with a no-op (as nbdkit's memory plugin does).
    fn can_cache(&self, _: &()) -> Result<CacheMode> {
        Ok(CacheMode::Native)
    }

    // Zeroing is at worst a memset and usually a deallocation, always faster than writing zeroes.
    fn can_fast_zero(&self, _: &()) -> Result<bool> {
        Ok(true)
    }

    fn pread(&self, _: &(), buf: &mut [u8], offset: u64, _flags: Flags) -> Result<()> {
        self.disk().read_at(buf, offset)
    }

    // FUA needs nothing more: see `can_fua`.
    fn pwrite(&self, _: &(), buf: &[u8], offset: u64, _flags: Flags) -> Result<()> {
        self.disk().write_at(buf, offset)
    }

    fn flush(&self, _: &(), _flags: Flags) -> Result<()> {
        Ok(())
    }

    // Trimming frees the pages wholly inside the range, which then read as zeroes; the partial
    // pages at its ends are zeroed to match, so a trimmed range always reads back as zeroes, as
    // with nbdkit's memory plugin.
    fn trim(&self, _: &(), count: u32, offset: u64, _flags: Flags) -> Result<()> {
        self.disk().trim(offset, count.into())
    }

    // Fast whatever the flags, so FAST_ZERO needs no check. Whole pages are freed only when the
    // client allows holes (MAY_TRIM, i.e. no NBD_CMD_FLAG_NO_HOLE); otherwise allocated pages
    // stay allocated and are zeroed in place.
    fn zero(&self, _: &(), count: u32, offset: u64, flags: Flags) -> Result<()> {
        if flags.contains(Flags::MAY_TRIM) {
            self.disk().trim(offset, count.into())
        } else {
            self.disk().zero(offset, count.into())
        }
    }

    // Unallocated pages are holes that read as zeroes, allocated pages are data; neighbouring
    // pages of the same kind are reported as one extent.
    fn extents(
        &self,
        _: &(),
        count: u32,
        offset: u64,
        flags: Flags,
        extents: &mut Extents,
    ) -> Result<()> {
        for (start, len, allocated) in self.disk().runs(offset, count.into()) {
            let kind = if allocated {
                ExtentType::DATA
            } else {
                ExtentType::HOLE | ExtentType::ZERO
            };
            extents.add(start, len, kind)?;
            // One extent is all the client asked for.
            if flags.contains(Flags::REQ_ONE) {
                break;
            }
        }
        Ok(())
    }

    // ---- Hot reload ----

    // The next build gets this very store: connections still on this build and new ones on the
    // next see the same data.
    fn hand_over(&self) -> Option<Handover> {
        self.disk
            .as_ref()
            .map(|disk| Handover::pages(HANDOVER_KIND, disk))
    }

    // Called before `get_ready`: adopting the store means `get_ready` makes none. A store of
    // another size (size= changed? not on a reload, but a different build might round it) is
    // refused and the disk starts empty.
    fn take_over(&mut self, state: Handover) -> Result<bool> {
        if state.kind() != HANDOVER_KIND {
            return Ok(false);
        }
        match state.into_pages() {
            Some(disk)
                if Some(disk.size()) == self.size
                    && disk.is_dense() == (self.allocator != Allocator::Sparse) =>
            {
                self.disk = Some(disk);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
impl Memory {
    fn disk(&self) -> &SharedPages {
        self.disk
            .as_ref()
            .expect("nbdkit calls get_ready before serving")
    }
}

export_plugin!(Memory);
