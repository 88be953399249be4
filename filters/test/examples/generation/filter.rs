// `generation`: a filter that shows in the data it reads which build serves the connection, the
// key it was configured with and how many reads it has served, for the hot-reload tests.
// Included by `filter_generation_1.rs` and `filter_generation_2.rs`, which set `BUILD`.
//
// Every read passes on, then starts with the line `build=BUILD mark=MARK reads=N\n` (cut to the
// read's length): `MARK` is the key `gen-mark=` (empty without it), `N` counts the reads of
// this filter so far, its predecessors' included: `hand_over` gives the next build the count
// (kind `generation-reads`, eight bytes little-endian) and `take_over` adds it.

use std::sync::atomic::{AtomicU64, Ordering};

use rustshim_plugin_api::prelude::*;

/// The kind of state `hand_over` hands over.
const KIND: &str = "generation-reads";

#[derive(Default)]
struct Generation {
    mark: String,
    reads: AtomicU64,
}

#[filter]
impl Filter for Generation {
    type Handle = ();

    const NAME: &'static str = "generation";
    const VERSION: Option<&'static str> = Some(match BUILD {
        1 => "1",
        _ => "2",
    });
    const CONFIG_HELP: Option<&'static str> = Some("gen-mark=TEXT  Shown in every read.");

    fn config(&mut self, next: &mut NextConfig<'_>, key: &str, value: &str) -> Result<()> {
        match key {
            "gen-mark" => self.mark = value.to_owned(),
            _ => return next.config(key, value),
        }
        Ok(())
    }

    fn pread(
        &self,
        next: &Next<'_>,
        _: &(),
        buf: &mut [u8],
        offset: u64,
        flags: Flags,
    ) -> Result<()> {
        next.pread(buf, offset, flags)?;
        let reads = self.reads.fetch_add(1, Ordering::Relaxed) + 1;
        let line = format!("build={BUILD} mark={} reads={reads}\n", self.mark);
        let n = line.len().min(buf.len());
        buf[..n].copy_from_slice(&line.as_bytes()[..n]);
        Ok(())
    }

    fn hand_over(&self) -> Option<Handover> {
        let reads = self.reads.load(Ordering::Relaxed);
        Some(Handover::bytes(KIND, reads.to_le_bytes().to_vec()))
    }

    fn take_over(&mut self, state: Handover) -> Result<bool> {
        if state.kind() != KIND {
            return Ok(false);
        }
        let Some(bytes) = state.into_bytes() else {
            return Ok(false);
        };
        let reads: [u8; 8] = bytes
            .try_into()
            .map_err(|_| Error::invalid("generation: handed-over state is not 8 bytes"))?;
        *self.reads.get_mut() += u64::from_le_bytes(reads);
        Ok(true)
    }
}

export_filter!(Generation);
