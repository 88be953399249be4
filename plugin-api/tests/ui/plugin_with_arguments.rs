// `#[plugin]` takes no arguments.
use rustshim_plugin_api::prelude::*;

#[derive(Default)]
struct Disk;

#[plugin(fast)]
impl Plugin for Disk {
    type Handle = ();
    const NAME: &'static str = "disk";
    fn open(&self, _readonly: bool) -> Result<()> {
        Ok(())
    }
    fn get_size(&self, _: &()) -> Result<u64> {
        Ok(512)
    }
    fn pread(&self, _: &(), buf: &mut [u8], _offset: u64, _flags: Flags) -> Result<()> {
        buf.fill(0);
        Ok(())
    }
}

fn main() {}
