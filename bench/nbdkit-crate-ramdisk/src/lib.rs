//! Bench only: a sparse RAM disk written natively with the [`nbdkit`] crate (0.3.0), the way a
//! plugin author would without rustshim. `cargo xtask bench` compares it with rustshim's memory
//! plugin (`plugins/memory`), which it mirrors: pages of 32 KiB allocated on first write (an
//! unwritten page reads as zeroes), each behind its own read-write lock so that requests run in
//! parallel, one disk shared by every connection, multi-conn.
//!
//! ```text
//! nbdkit ./target/release/libnbdkit_crate_ramdisk.so size=1G
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{OnceLock, RwLock};

use nbdkit::*;

/// Page size, as in rustshim's memory plugin and nbdkit's sparse allocator.
const PAGE_SIZE: usize = 32 * 1024;

/// From `size=`; `u64::MAX` until given.
static SIZE: AtomicU64 = AtomicU64::new(u64::MAX);
/// Made in `get_ready`.
static DISK: OnceLock<Disk> = OnceLock::new();

type Page = RwLock<Option<Box<[u8]>>>;

struct Disk {
    size: u64,
    pages: Vec<Page>,
}

impl Disk {
    fn new(size: u64) -> Disk {
        let count = size.div_ceil(PAGE_SIZE as u64) as usize;
        Disk {
            size,
            pages: (0..count).map(|_| RwLock::new(None)).collect(),
        }
    }

    fn check(&self, len: usize, offset: u64) -> Result<()> {
        match offset.checked_add(len as u64) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(Error::new(
                libc::EINVAL,
                "request beyond the end of the disk",
            )),
        }
    }

    /// Calls `f(page, offset in page, range of the request)` for each page piece of the request.
    fn pieces(
        &self,
        len: usize,
        offset: u64,
        mut f: impl FnMut(&Page, usize, std::ops::Range<usize>),
    ) {
        let mut done = 0;
        while done < len {
            let pos = offset + done as u64;
            let in_page = (pos % PAGE_SIZE as u64) as usize;
            let n = (PAGE_SIZE - in_page).min(len - done);
            f(
                &self.pages[(pos / PAGE_SIZE as u64) as usize],
                in_page,
                done..done + n,
            );
            done += n;
        }
    }

    fn read(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.check(buf.len(), offset)?;
        self.pieces(buf.len(), offset, |page, at, range| {
            let page = page.read().unwrap_or_else(|e| e.into_inner());
            match page.as_deref() {
                Some(data) => buf[range.clone()].copy_from_slice(&data[at..at + range.len()]),
                None => buf[range].fill(0),
            }
        });
        Ok(())
    }

    fn write(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.check(buf.len(), offset)?;
        self.pieces(buf.len(), offset, |page, at, range| {
            let mut page = page.write().unwrap_or_else(|e| e.into_inner());
            let data = page.get_or_insert_with(|| vec![0; PAGE_SIZE].into_boxed_slice());
            data[at..at + range.len()].copy_from_slice(&buf[range]);
        });
        Ok(())
    }
}

fn disk() -> &'static Disk {
    DISK.get().expect("nbdkit calls get_ready before serving")
}

/// One connection: the disk is shared, so there is nothing in it.
#[derive(Default)]
struct RamDisk {
    // A zero-sized type would make `Box::new` allocate nothing, which nbdkit's handle (the
    // crate boxes it again) does not mind; the field only keeps the crate's own example's shape.
    _unused: u8,
}

impl Server for RamDisk {
    fn name() -> &'static str {
        "nbdkit-crate-ramdisk"
    }

    fn config(key: &str, value: &str) -> Result<()> {
        match key {
            "size" => {
                SIZE.store(parse_size(value)? as u64, Ordering::Relaxed);
                Ok(())
            }
            _ => Err(Error::new(
                libc::EINVAL,
                format!("unknown parameter '{key}'"),
            )),
        }
    }

    fn config_complete() -> Result<()> {
        if SIZE.load(Ordering::Relaxed) == u64::MAX {
            return Err(Error::new(libc::EINVAL, "you must specify size=<SIZE>"));
        }
        Ok(())
    }

    fn get_ready() -> Result<()> {
        let _ = DISK.set(Disk::new(SIZE.load(Ordering::Relaxed)));
        Ok(())
    }

    fn thread_model() -> Result<ThreadModel> {
        Ok(ThreadModel::Parallel)
    }

    fn open(_readonly: bool) -> Result<Box<dyn Server>> {
        Ok(Box::<RamDisk>::default())
    }

    fn get_size(&self) -> Result<i64> {
        Ok(disk().size as i64)
    }

    fn can_multi_conn(&self) -> Result<bool> {
        Ok(true)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        disk().read(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64, _flags: Flags) -> Result<()> {
        disk().write(buf, offset)
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }
}

plugin!(RamDisk {
    config,
    config_complete,
    get_ready,
    thread_model,
    can_multi_conn,
    write_at,
    flush
});
