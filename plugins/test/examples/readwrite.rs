//! `readwrite`: `open`, `get_size`, `pread` and `pwrite` only: a 256 MiB sparse in-memory disk
//! without `zero`, `trim`, `flush`, `extents` or `cache`. Twin: `tests/fixtures/readwrite.py`.

#[path = "../src/store.rs"]
mod store;

use rustshim_plugin_api::prelude::*;
use store::Store;

#[derive(Default)]
struct ReadWrite {
    store: Store,
}

#[plugin]
impl Plugin for ReadWrite {
    type Handle = ();

    const NAME: &'static str = "readwrite";

    fn open(&self, _readonly: bool) -> Result<()> {
        Ok(())
    }

    fn get_size(&self, _: &()) -> Result<u64> {
        Ok(256 << 20)
    }

    fn pread(&self, _: &(), buf: &mut [u8], offset: u64, _flags: Flags) -> Result<()> {
        self.store.read(buf, offset);
        Ok(())
    }

    fn pwrite(&self, _: &(), buf: &[u8], offset: u64, _flags: Flags) -> Result<()> {
        self.store.write(buf, offset);
        Ok(())
    }
}

export_plugin!(ReadWrite);
