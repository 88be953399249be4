//! `zero_enotsup`: like `readwrite`, plus a `zero` that always declines with `ENOTSUP`, so the
//! shim must write the zeroes itself with `pwrite` (nbdkit < 1.42.6's own fallback only zeroes
//! the first 64 MiB of a request). Twin: `tests/fixtures/zero_enotsup.py`.

#[path = "../src/store.rs"]
mod store;

use rustshim_plugin_api::prelude::*;
use store::Store;

#[derive(Default)]
struct ZeroEnotsup {
    store: Store,
}

#[plugin]
impl Plugin for ZeroEnotsup {
    type Handle = ();

    const NAME: &'static str = "zero_enotsup";

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

    fn zero(&self, _: &(), _count: u32, _offset: u64, _flags: Flags) -> Result<()> {
        Err(Error::new(
            Errno::ENOTSUP,
            "zero_enotsup: zero is not supported",
        ))
    }
}

export_plugin!(ZeroEnotsup);
