//! `swab`: swaps the bytes of every 16-, 32- or 64-bit word, the twin of nbdkit's
//! `nbdkit-swab-filter`: reads are swapped after the layer below answers, writes before they
//! reach it, so data goes through [`Next`] changed both ways. Requests must be aligned to the
//! word size; the size is rounded down to it and extents are aligned to it
//! (`nbdkit_extents_aligned`).
//!
//! ```text
//! nbdkit --filter=rustshim file disk.img filter=swab swab-bits=32
//! ```

use rustshim_plugin_api::prelude::*;

struct Swab {
    /// 8 (nothing to swap), 16, 32 or 64.
    bits: u32,
}

impl Default for Swab {
    fn default() -> Self {
        Swab { bits: 16 }
    }
}

impl Swab {
    fn word(&self) -> u32 {
        self.bits / 8
    }

    /// Requests to this filter must be aligned (use the blocksize filter above for finer ones).
    fn check_aligned(&self, count: u64, offset: u64) -> Result<()> {
        let word = u64::from(self.word());
        if count % word != 0 || offset % word != 0 {
            return Err(Error::invalid(
                "swab: requests to this filter must be aligned",
            ));
        }
        Ok(())
    }

    /// Swaps the bytes of each word of `buf` in place.
    fn swap(&self, buf: &mut [u8]) {
        match self.bits {
            16 => buf.chunks_exact_mut(2).for_each(|w| w.reverse()),
            32 => buf.chunks_exact_mut(4).for_each(|w| w.reverse()),
            64 => buf.chunks_exact_mut(8).for_each(|w| w.reverse()),
            _ => {}
        }
    }
}

#[filter]
impl Filter for Swab {
    type Handle = ();

    const NAME: &'static str = "swab";
    const LONGNAME: Option<&'static str> = Some("Rust byte-swapping filter");
    const VERSION: Option<&'static str> = Some(env!("CARGO_PKG_VERSION"));
    const DESCRIPTION: Option<&'static str> =
        Some("Swaps the bytes of every word, like nbdkit's swab filter.");
    const CONFIG_HELP: Option<&'static str> =
        Some("swab-bits=8|16|32|64       Size of byte swap (default 16).");

    fn config(&mut self, next: &mut NextConfig<'_>, key: &str, value: &str) -> Result<()> {
        if key != "swab-bits" {
            return next.config(key, value);
        }
        match value.trim().parse::<u32>() {
            Ok(bits @ (8 | 16 | 32 | 64)) => {
                self.bits = bits;
                Ok(())
            }
            _ => Err(Error::invalid("invalid swab-bits, must be 8, 16, 32 or 64")),
        }
    }

    /// Rounded down to the word size, so the last partial word is never seen.
    fn get_size(&self, next: &Next<'_>, _: &()) -> Result<u64> {
        let size = next.get_size()?;
        Ok(size - size % u64::from(self.word()))
    }

    fn block_size(&self, next: &Next<'_>, _: &()) -> Result<BlockSize> {
        let mut b = next.block_size()?;
        if b.minimum == 0 {
            // No constraints below: a word at least.
            b = BlockSize {
                minimum: self.word(),
                preferred: 512,
                maximum: u32::MAX,
            };
        } else {
            b.minimum = b.minimum.max(self.word());
        }
        Ok(b)
    }

    fn pread(
        &self,
        next: &Next<'_>,
        _: &(),
        buf: &mut [u8],
        offset: u64,
        flags: Flags,
    ) -> Result<()> {
        self.check_aligned(buf.len() as u64, offset)?;
        next.pread(buf, offset, flags)?;
        self.swap(buf);
        Ok(())
    }

    fn pwrite(&self, next: &Next<'_>, _: &(), buf: &[u8], offset: u64, flags: Flags) -> Result<()> {
        self.check_aligned(buf.len() as u64, offset)?;
        let mut swapped = buf.to_vec();
        self.swap(&mut swapped);
        next.pwrite(&swapped, offset, flags)
    }

    fn trim(&self, next: &Next<'_>, _: &(), count: u32, offset: u64, flags: Flags) -> Result<()> {
        self.check_aligned(count.into(), offset)?;
        next.trim(count, offset, flags)
    }

    fn zero(&self, next: &Next<'_>, _: &(), count: u32, offset: u64, flags: Flags) -> Result<()> {
        self.check_aligned(count.into(), offset)?;
        next.zero(count, offset, flags)
    }

    fn extents(
        &self,
        next: &Next<'_>,
        _: &(),
        count: u32,
        offset: u64,
        flags: Flags,
        extents: &mut Extents,
    ) -> Result<()> {
        self.check_aligned(count.into(), offset)?;
        next.extents_aligned(count, offset, flags, self.word(), extents)
    }

    fn cache(&self, next: &Next<'_>, _: &(), count: u32, offset: u64, flags: Flags) -> Result<()> {
        self.check_aligned(count.into(), offset)?;
        next.cache(count, offset, flags)
    }
}

export_filter!(Swab);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swaps_words_of_each_size() {
        let data: Vec<u8> = (0..16).collect();
        for (bits, first) in [(8, 0u8), (16, 1), (32, 3), (64, 7)] {
            let mut buf = data.clone();
            Swab { bits }.swap(&mut buf);
            assert_eq!(buf[0], first, "{bits}");
            Swab { bits }.swap(&mut buf);
            assert_eq!(buf, data, "{bits}: swapping twice restores");
        }
    }
}
