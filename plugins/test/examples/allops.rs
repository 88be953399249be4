//! `allops`: every data callback (`pwrite`, `flush`, `trim`, `zero`, `extents`, `cache`) but no
//! `can_*` callback, so every capability is the shim's emulation of nbdkit's default. A 1 MiB
//! in-memory disk. Twin: `tests/fixtures/allops.py`.

#[path = "../src/store.rs"]
mod store;

use rustshim_plugin_api::prelude::*;
use store::Store;

#[derive(Default)]
struct AllOps {
    store: Store,
}

#[plugin]
impl Plugin for AllOps {
    type Handle = ();

    const NAME: &'static str = "allops";

    fn open(&self, _readonly: bool) -> Result<()> {
        Ok(())
    }

    fn get_size(&self, _: &()) -> Result<u64> {
        Ok(1 << 20)
    }

    fn pread(&self, _: &(), buf: &mut [u8], offset: u64, _flags: Flags) -> Result<()> {
        self.store.read(buf, offset);
        Ok(())
    }

    fn pwrite(&self, _: &(), buf: &[u8], offset: u64, _flags: Flags) -> Result<()> {
        self.store.write(buf, offset);
        Ok(())
    }

    fn flush(&self, _: &(), _flags: Flags) -> Result<()> {
        Ok(())
    }

    fn trim(&self, _: &(), count: u32, offset: u64, _flags: Flags) -> Result<()> {
        self.store.zero(count.into(), offset);
        Ok(())
    }

    fn zero(&self, _: &(), count: u32, offset: u64, _flags: Flags) -> Result<()> {
        self.store.zero(count.into(), offset);
        Ok(())
    }

    fn extents(
        &self,
        _: &(),
        count: u32,
        offset: u64,
        _flags: Flags,
        extents: &mut Extents,
    ) -> Result<()> {
        extents.add(offset, count.into(), ExtentType::DATA)
    }

    fn cache(&self, _: &(), _count: u32, _offset: u64, _flags: Flags) -> Result<()> {
        Ok(())
    }
}

export_plugin!(AllOps);
