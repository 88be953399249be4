//! A sparse in-memory disk shared by the test plugin and its variants (the examples include this
//! file with `#[path]`): blocks are allocated only when non-zero data is written to them, so a
//! disk of hundreds of MiB costs nothing until used and writing zeroes over holes is free.

// The variants use only part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Mutex;

/// Bytes per block.
pub const BLOCK: u64 = 64 * 1024;

/// The disk's contents: allocated blocks by number; a missing block reads as zeroes.
#[derive(Default)]
pub struct Store {
    blocks: Mutex<HashMap<u64, Box<[u8]>>>,
}

/// Calls `f(block, start_in_block, len, position_in_range)` for every block piece of a range.
fn pieces(offset: u64, len: u64, mut f: impl FnMut(u64, usize, usize, usize)) {
    let mut done = 0u64;
    while done < len {
        let at = offset + done;
        let block = at / BLOCK;
        let start = at % BLOCK;
        let n = (BLOCK - start).min(len - done);
        f(block, start as usize, n as usize, done as usize);
        done += n;
    }
}

impl Store {
    /// Fills `buf` with the data at `offset`.
    pub fn read(&self, buf: &mut [u8], offset: u64) {
        let blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        pieces(offset, buf.len() as u64, |block, start, n, pos| {
            let out = &mut buf[pos..pos + n];
            match blocks.get(&block) {
                Some(data) => out.copy_from_slice(&data[start..start + n]),
                None => out.fill(0),
            }
        });
    }

    /// Writes `buf` at `offset`; zeroes written over holes allocate nothing.
    pub fn write(&self, buf: &[u8], offset: u64) {
        let mut blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        pieces(offset, buf.len() as u64, |block, start, n, pos| {
            let data = &buf[pos..pos + n];
            if let Some(existing) = blocks.get_mut(&block) {
                existing[start..start + n].copy_from_slice(data);
            } else if data.iter().any(|&b| b != 0) {
                let mut fresh = vec![0u8; BLOCK as usize].into_boxed_slice();
                fresh[start..start + n].copy_from_slice(data);
                blocks.insert(block, fresh);
            }
        });
    }

    /// Zeroes a range, freeing the blocks it covers whole.
    pub fn zero(&self, count: u64, offset: u64) {
        let mut blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        pieces(offset, count, |block, start, n, _| {
            if n as u64 == BLOCK {
                blocks.remove(&block);
            } else if let Some(existing) = blocks.get_mut(&block) {
                existing[start..start + n].fill(0);
            }
        });
    }

    /// Whether the block holding `offset` is allocated.
    pub fn allocated(&self, offset: u64) -> bool {
        let blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        blocks.contains_key(&(offset / BLOCK))
    }
}
