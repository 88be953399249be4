//! `minimal`: only the three required callbacks (`open`, `get_size`, `pread`), so the shim must
//! reproduce nbdkit's default for every other one. A 1 MiB read-only disk whose every 512-byte
//! sector holds its sector number (mod 256). Twin: `tests/fixtures/minimal.py`.

use rustshim_plugin_api::prelude::*;

#[derive(Default)]
struct Minimal;

#[plugin]
impl Plugin for Minimal {
    type Handle = ();

    const NAME: &'static str = "minimal";

    fn open(&self, _readonly: bool) -> Result<()> {
        Ok(())
    }

    fn get_size(&self, _: &()) -> Result<u64> {
        Ok(1 << 20)
    }

    fn pread(&self, _: &(), buf: &mut [u8], offset: u64, _flags: Flags) -> Result<()> {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = ((offset + i as u64) / 512 % 256) as u8;
        }
        Ok(())
    }
}

export_plugin!(Minimal);
