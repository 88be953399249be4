//! [`SharedPages`]: a sparse page store that several generations of a plugin use at once, so
//! that a disk keeps its data across hot reloads (handed over with
//! [`Handover::pages`](crate::Handover::pages)).
//!
//! Why shared and not copied: after a reload, connections opened before it keep using the old
//! generation while new ones use the new generation. If the new one got a copy of the data,
//! writes on old connections would be lost to new ones. So a disk's data lives in a store with a
//! C layout fixed by `abi::PAGES_LAYOUT_VERSION`, and every generation reads and writes it
//! directly. All of its memory comes from the C allocator, so whichever generation drops the last
//! handle can free it.
//!
//! The `unsafe` here is the boundary itself: memory laid out for other binaries.

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicPtr, AtomicU32, AtomicUsize, Ordering};

use nix::libc;

use crate::abi::{PagesStore, PAGES_LAYOUT_VERSION, PAGES_MAGIC};
use crate::error::{Errno, Error, Result};
use crate::page_lock;

/// Pages of 32 KiB (as nbdkit's sparse allocator): small enough that a first 4 KiB write
/// allocates little, large enough that a 1 TiB disk needs a page table of 256 MiB of *virtual*
/// memory (untouched entries cost nothing).
const PAGE_SHIFT: u32 = 15;
/// Lock stripes (a power of two): pages `i` and `i + LOCK_STRIPES` share a lock.
const LOCK_STRIPES: u64 = 1024;

/// A sparse, zero-filled array of bytes that can be shared by the generations of a plugin across
/// hot reloads (see the module docs). Unwritten pages read as zeroes and use no memory. Clone to
/// get another handle to the same data.
pub struct SharedPages {
    store: NonNull<PagesStore>,
}

// SAFETY: the store is only accessed under its page locks or through atomics.
unsafe impl Send for SharedPages {}
// SAFETY: as above.
unsafe impl Sync for SharedPages {}

impl SharedPages {
    /// The page size of new stores, in bytes.
    pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;

    /// A new store of `size` bytes, all zero.
    pub fn new(size: u64) -> Result<SharedPages> {
        let page_count = size.div_ceil(1 << PAGE_SHIFT);
        let nomem = || {
            Error::new(
                Errno::ENOMEM,
                format!("cannot allocate a page table for {size} bytes"),
            )
        };
        let entries = usize::try_from(page_count.max(1)).map_err(|_| nomem())?;
        // SAFETY: calloc of plain data; a NULL result is handled. Zeroed memory is a valid array
        // of NULL `AtomicPtr`s.
        let pages = unsafe { libc::calloc(entries, std::mem::size_of::<AtomicPtr<u8>>()) }
            .cast::<AtomicPtr<u8>>();
        // SAFETY: as above, for the lock array: a zero word is a free lock (`page_lock`).
        let locks =
            unsafe { libc::calloc(LOCK_STRIPES as usize, std::mem::size_of::<AtomicU32>()) }
                .cast::<AtomicU32>();
        // SAFETY: as above, for the header (written below).
        let store = unsafe { libc::malloc(std::mem::size_of::<PagesStore>()) }.cast::<PagesStore>();
        if pages.is_null() || locks.is_null() || store.is_null() {
            // SAFETY: free(NULL) is a no-op; the others came from calloc/malloc.
            unsafe {
                libc::free(pages.cast());
                libc::free(locks.cast());
                libc::free(store.cast());
            }
            return Err(nomem());
        }
        // SAFETY: `store` is a fresh allocation of the right size and alignment (malloc).
        unsafe {
            store.write(PagesStore {
                magic: PAGES_MAGIC,
                layout_version: PAGES_LAYOUT_VERSION,
                page_shift: PAGE_SHIFT,
                size,
                page_count,
                refs: AtomicUsize::new(1),
                pages,
                lock_stripes: LOCK_STRIPES,
                locks,
            })
        };
        Ok(SharedPages {
            store: NonNull::new(store).expect("checked above"),
        })
    }

    fn header(&self) -> &PagesStore {
        // SAFETY: the store lives while any handle does.
        unsafe { self.store.as_ref() }
    }

    /// The size in bytes.
    pub fn size(&self) -> u64 {
        self.header().size
    }

    /// The page size in bytes (allocation and extent granularity).
    pub fn page_size(&self) -> u64 {
        1 << self.header().page_shift
    }

    fn check_range(&self, offset: u64, len: u64) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size() => Ok(()),
            _ => Err(Error::new(
                Errno::EINVAL,
                format!("range {offset}+{len} is beyond the end ({})", self.size()),
            )),
        }
    }

    /// Runs `f` with page `index`'s slot under its lock (write lock if `write`).
    fn with_page<R>(&self, index: u64, write: bool, f: impl FnOnce(&AtomicPtr<u8>) -> R) -> R {
        let h = self.header();
        debug_assert!(index < h.page_count);
        // SAFETY: `index < page_count` (callers check the range) and `lock_stripes` locks exist,
        // living as long as the store.
        let (lock, slot) = unsafe {
            (
                // A mask, not `%`: no division on the request path.
                &*h.locks.add((index & (h.lock_stripes - 1)) as usize),
                &*h.pages.add(index as usize),
            )
        };
        // Released even if `f` panics (it does not: it copies or fills within checked bounds),
        // so that a lock shared by every generation is never left held.
        struct Release<'a>(&'a AtomicU32, bool);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                if self.1 {
                    page_lock::write_unlock(self.0)
                } else {
                    page_lock::read_unlock(self.0)
                }
            }
        }
        if write {
            page_lock::write_lock(lock);
        } else {
            page_lock::read_lock(lock);
        }
        let _release = Release(lock, write);
        f(slot)
    }

    /// Calls `f(page index, offset in page, range of the caller's buffer)` for each page piece
    /// of `[offset, offset + len)`.
    fn pieces(
        &self,
        offset: u64,
        len: usize,
        mut f: impl FnMut(u64, usize, std::ops::Range<usize>),
    ) {
        let shift = self.header().page_shift;
        let page_size = 1usize << shift;
        let mut done = 0;
        while done < len {
            let pos = offset + done as u64;
            let in_page = (pos & (page_size as u64 - 1)) as usize;
            let n = (page_size - in_page).min(len - done);
            f(pos >> shift, in_page, done..done + n);
            done += n;
        }
    }

    /// Reads `buf.len()` bytes at `offset`.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.check_range(offset, buf.len() as u64)?;
        self.pieces(offset, buf.len(), |index, in_page, range| {
            self.with_page(index, false, |slot| {
                let page = slot.load(Ordering::Acquire);
                if page.is_null() {
                    buf[range].fill(0);
                } else {
                    // SAFETY: the page has `page_size` bytes and `in_page + range.len()` fits;
                    // the read lock keeps writers and frees out.
                    let src = unsafe { std::slice::from_raw_parts(page.add(in_page), range.len()) };
                    buf[range].copy_from_slice(src);
                }
            })
        });
        Ok(())
    }

    /// Writes `buf` at `offset`, allocating pages as needed.
    pub fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.check_range(offset, buf.len() as u64)?;
        let page_size = self.page_size() as usize;
        let mut failed = false;
        self.pieces(offset, buf.len(), |index, in_page, range| {
            if failed {
                return;
            }
            self.with_page(index, true, |slot| {
                let mut page = slot.load(Ordering::Acquire);
                if page.is_null() {
                    // SAFETY: calloc of plain bytes; NULL is handled.
                    page = unsafe { libc::calloc(1, page_size) }.cast::<u8>();
                    if page.is_null() {
                        failed = true;
                        return;
                    }
                    slot.store(page, Ordering::Release);
                }
                // SAFETY: as in `read_at`; the write lock makes this the only access.
                let dst = unsafe { std::slice::from_raw_parts_mut(page.add(in_page), range.len()) };
                dst.copy_from_slice(&buf[range]);
            })
        });
        if failed {
            return Err(Error::new(Errno::ENOMEM, "out of memory for a new page"));
        }
        Ok(())
    }

    /// Makes `[offset, offset + len)` read as zeroes, freeing the pages wholly inside it (they
    /// become holes) and zeroing the partial ones at its ends.
    pub fn trim(&self, offset: u64, len: u64) -> Result<()> {
        self.clear(offset, len, true)
    }

    /// Makes `[offset, offset + len)` read as zeroes without changing what is allocated:
    /// allocated pages are zeroed in place, holes stay holes.
    pub fn zero(&self, offset: u64, len: u64) -> Result<()> {
        self.clear(offset, len, false)
    }

    fn clear(&self, offset: u64, len: u64, free_whole_pages: bool) -> Result<()> {
        self.check_range(offset, len)?;
        let page_size = self.page_size();
        let mut pos = offset;
        let end = offset + len;
        while pos < end {
            let index = pos / page_size;
            let in_page = (pos % page_size) as usize;
            let n = (page_size - in_page as u64).min(end - pos) as usize;
            self.with_page(index, true, |slot| {
                let page = slot.load(Ordering::Acquire);
                if page.is_null() {
                    return;
                }
                if free_whole_pages && n as u64 == page_size {
                    slot.store(std::ptr::null_mut(), Ordering::Release);
                    // SAFETY: allocated with calloc; no one else can reach it (write lock, slot
                    // cleared).
                    unsafe { libc::free(page.cast()) };
                } else {
                    // SAFETY: as in `write_at`.
                    unsafe { std::ptr::write_bytes(page.add(in_page), 0, n) };
                }
            });
            pos += n as u64;
        }
        Ok(())
    }

    /// Whether the page holding byte `offset` is allocated (a hint: it may change at once).
    pub fn is_allocated(&self, offset: u64) -> bool {
        let h = self.header();
        let index = offset >> h.page_shift;
        // SAFETY: bounds checked; only the pointer value is read, atomically.
        index < h.page_count
            && !unsafe { &*h.pages.add(index as usize) }
                .load(Ordering::Relaxed)
                .is_null()
    }

    /// The allocated and unallocated runs of `[offset, offset + len)`, as
    /// `(offset, length, allocated)`, adjacent runs of the same kind merged.
    pub fn runs(&self, offset: u64, len: u64) -> Vec<(u64, u64, bool)> {
        let page_size = self.page_size();
        let end = offset.saturating_add(len).min(self.size());
        let mut runs: Vec<(u64, u64, bool)> = Vec::new();
        let mut pos = offset;
        while pos < end {
            let next = ((pos / page_size + 1) * page_size).min(end);
            let allocated = self.is_allocated(pos);
            match runs.last_mut() {
                Some(last) if last.2 == allocated => last.1 += next - pos,
                _ => runs.push((pos, next - pos, allocated)),
            }
            pos = next;
        }
        runs
    }

    /// This handle as the `state` of a handover: its reference goes with the pointer.
    pub(crate) fn into_raw(self) -> *const c_void {
        let state = self.store.as_ptr() as *const c_void;
        std::mem::forget(self);
        state
    }

    /// Takes over the reference that `state` (from [`SharedPages::into_raw`], maybe of another
    /// build) carries, if its layout is one this build knows.
    pub(crate) fn from_raw(state: *const c_void) -> Option<SharedPages> {
        let store = NonNull::new(state as *mut PagesStore)?;
        // SAFETY: a handover of format HANDOVER_PAGES points at a live store (we hold its
        // reference); the magic and version say whether we understand its layout.
        let h = unsafe { store.as_ref() };
        (h.magic == PAGES_MAGIC
            && h.layout_version == PAGES_LAYOUT_VERSION
            && h.lock_stripes.is_power_of_two())
        .then_some(SharedPages { store })
    }
}

impl Clone for SharedPages {
    fn clone(&self) -> Self {
        self.header().refs.fetch_add(1, Ordering::Relaxed);
        SharedPages { store: self.store }
    }
}

impl Drop for SharedPages {
    fn drop(&mut self) {
        if self.header().refs.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        fence(Ordering::Acquire);
        let h = self.store.as_ptr();
        // SAFETY: this was the last handle: nothing else can reach the store. Everything was
        // allocated with the C allocator as laid out in `new`.
        unsafe {
            for i in 0..(*h).page_count as usize {
                libc::free((*(*h).pages.add(i)).load(Ordering::Relaxed).cast());
            }
            libc::free((*h).pages.cast());
            libc::free((*h).locks.cast());
            libc::free(h.cast());
        }
    }
}

impl std::fmt::Debug for SharedPages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedPages")
            .field("size", &self.size())
            .field("page_size", &self.page_size())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwritten_reads_zero_and_writes_read_back_across_pages() {
        let pages = SharedPages::new(1 << 20).unwrap();
        let mut buf = vec![1u8; 70_000];
        pages.read_at(&mut buf, 10).unwrap();
        assert!(buf.iter().all(|&b| b == 0));
        let data: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        pages.write_at(&data, 30_000).unwrap();
        pages.read_at(&mut buf, 30_000).unwrap();
        assert_eq!(buf, data);
        assert!(
            pages.write_at(&data, (1 << 20) - 10).is_err(),
            "beyond the end"
        );
    }

    #[test]
    fn trim_frees_whole_pages_and_zero_keeps_them() {
        let pages = SharedPages::new(1 << 20).unwrap();
        let ps = pages.page_size();
        pages.write_at(&vec![7u8; 3 * ps as usize], 0).unwrap();
        pages.zero(0, 3 * ps).unwrap();
        assert_eq!(
            pages.runs(0, 3 * ps),
            vec![(0, 3 * ps, true)],
            "zero keeps the allocation"
        );
        pages.write_at(&vec![7u8; 3 * ps as usize], 0).unwrap();
        pages.trim(ps / 2, 2 * ps).unwrap();
        // Half of page 0, all of page 1, half of page 2: only page 1 is wholly covered.
        assert_eq!(
            pages.runs(0, 3 * ps),
            vec![(0, ps, true), (ps, ps, false), (2 * ps, ps, true)]
        );
        pages.trim(0, 3 * ps).unwrap();
        assert_eq!(pages.runs(0, 3 * ps), vec![(0, 3 * ps, false)]);
        let mut buf = vec![1u8; 3 * ps as usize];
        pages.read_at(&mut buf, 0).unwrap();
        assert!(buf.iter().all(|&b| b == 0));
    }
}
