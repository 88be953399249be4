//! `null`: a disk of the given size that reads as zeroes and throws writes away, like nbdkit's
//! own null plugin. Useful to measure what the shim itself costs.
//!
//! ```text
//! nbdkit rustshim plugin=librustshim_null.so size=1G
//! nbdkit rustshim librustshim_null.so 1G
//! ```

use rustshim_plugin_api::prelude::*;

#[derive(Default)]
struct Null {
    size: u64,
}

#[plugin]
impl Plugin for Null {
    type Handle = ();

    const NAME: &'static str = "null";
    const VERSION: Option<&'static str> = Some(env!("CARGO_PKG_VERSION"));
    const DESCRIPTION: Option<&'static str> =
        Some("A disk that reads as zeroes and discards writes.");
    const CONFIG_HELP: Option<&'static str> = Some("size=<SIZE>  Size of the disk (default 0).");
    // `nbdkit rustshim librustshim_null.so 1G` means size=1G.
    const MAGIC_CONFIG_KEY: Option<&'static str> = Some("size");

    fn config(&mut self, key: &str, value: &str) -> Result<()> {
        match key {
            "size" => self.size = server::parse_size(value)?,
            _ => return Err(Error::invalid(format!("null: unknown parameter '{key}'"))),
        }
        Ok(())
    }

    fn open(&self, _readonly: bool) -> Result<()> {
        Ok(())
    }

    fn get_size(&self, _: &()) -> Result<u64> {
        Ok(self.size)
    }

    // Every connection sees the same (empty) data.
    fn can_multi_conn(&self, _: &()) -> Result<bool> {
        Ok(true)
    }

    fn can_cache(&self, _: &()) -> Result<CacheMode> {
        Ok(CacheMode::Native)
    }

    // Discarding is always fast, as nbdkit's null plugin says too.
    fn can_fast_zero(&self, _: &()) -> Result<bool> {
        Ok(true)
    }

    fn can_fua(&self, _: &()) -> Result<FuaMode> {
        Ok(FuaMode::Native)
    }

    fn pread(&self, _: &(), buf: &mut [u8], _offset: u64, _flags: Flags) -> Result<()> {
        buf.fill(0);
        Ok(())
    }

    fn pwrite(&self, _: &(), _buf: &[u8], _offset: u64, _flags: Flags) -> Result<()> {
        Ok(())
    }

    fn flush(&self, _: &(), _flags: Flags) -> Result<()> {
        Ok(())
    }

    fn trim(&self, _: &(), _count: u32, _offset: u64, _flags: Flags) -> Result<()> {
        Ok(())
    }

    fn zero(&self, _: &(), _count: u32, _offset: u64, _flags: Flags) -> Result<()> {
        Ok(())
    }

    // The whole disk is one hole that reads as zeroes.
    fn extents(
        &self,
        _: &(),
        count: u32,
        offset: u64,
        _flags: Flags,
        extents: &mut Extents,
    ) -> Result<()> {
        extents.add(offset, count.into(), ExtentType::HOLE | ExtentType::ZERO)
    }

    fn cache(&self, _: &(), _count: u32, _offset: u64, _flags: Flags) -> Result<()> {
        Ok(())
    }
}

export_plugin!(Null);
