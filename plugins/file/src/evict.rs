//! `cache=none` (nbdkit ≥ 1.48: `reduce-memory-pressure=true`): keep what clients read and write
//! out of the page cache, as nbdkit's file plugin does. A read drops its pages at once
//! (`POSIX_FADV_DONTNEED`). A write starts its writeback at once, and its pages are dropped
//! eight writes later, when the writeback has had time to finish, so that writes still stream.

use std::collections::VecDeque;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::{Mutex, Weak};

use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
use rustshim_plugin_api::prelude::*;

/// Writes whose pages are not dropped yet.
const WINDOWS: usize = 8;

/// The recent writes (of any connection): the file (gone if its connection closed), offset,
/// length.
pub(crate) struct Evictor {
    windows: Mutex<VecDeque<(Weak<File>, u64, u64)>>,
}

impl Evictor {
    pub(crate) fn new() -> Evictor {
        Evictor {
            windows: Mutex::new(VecDeque::with_capacity(WINDOWS + 1)),
        }
    }

    /// After a read: drops its pages (a hint; failures do not matter).
    pub(crate) fn after_read(file: &File, offset: u64, len: u64) {
        let _ = posix_fadvise(
            file.as_raw_fd(),
            offset as i64,
            len as i64,
            PosixFadviseAdvice::POSIX_FADV_DONTNEED,
        );
    }

    /// After a write: starts writing it back, and drops the pages of the oldest write.
    pub(crate) fn after_write(
        &self,
        file: &std::sync::Arc<File>,
        offset: u64,
        len: u64,
    ) -> Result<()> {
        sync_range(file, offset, len, nix::libc::SYNC_FILE_RANGE_WRITE).map_err(|e| {
            Error::from(e).context("sync_file_range: cache=none: starting eviction")
        })?;
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        windows.push_back((std::sync::Arc::downgrade(file), offset, len));
        if windows.len() > WINDOWS {
            let (old, offset, len) = windows.pop_front().expect("more than WINDOWS");
            if let Some(old) = old.upgrade() {
                let all = nix::libc::SYNC_FILE_RANGE_WAIT_BEFORE
                    | nix::libc::SYNC_FILE_RANGE_WRITE
                    | nix::libc::SYNC_FILE_RANGE_WAIT_AFTER;
                sync_range(&old, offset, len, all).map_err(|e| {
                    Error::from(e).context("sync_file_range: cache=none: evicting oldest window")
                })?;
                Evictor::after_read(&old, offset, len);
            }
        }
        Ok(())
    }
}

fn sync_range(file: &File, offset: u64, len: u64, flags: u32) -> nix::Result<()> {
    // SAFETY: sync_file_range on a descriptor `file` keeps open; no memory is passed.
    let r =
        unsafe { nix::libc::sync_file_range(file.as_raw_fd(), offset as i64, len as i64, flags) };
    nix::errno::Errno::result(r).map(drop)
}
