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
/// allocates little, large enough that the page table stays small.
const PAGE_SHIFT: u32 = 15;
/// Lock stripes (a power of two): pages `i` and `i + LOCK_STRIPES` share a lock.
const LOCK_STRIPES: u64 = 1024;
/// Nodes below the page table's root have 4096 entries (32 KiB, touched as pages are written).
const NODE_SHIFT: u32 = 12;
/// The root has at most 2²⁰ entries (8 MiB of *virtual* memory): a disk of up to 32 GiB has a
/// flat page table, one load from the page; 2⁶³ − 1 bytes take three levels below the root.
const ROOT_MAX_SHIFT: u32 = 20;

/// A sparse, zero-filled array of bytes that can be shared by the generations of a plugin across
/// hot reloads (see the module docs). Unwritten pages read as zeroes and use no memory: memory
/// follows what is written, not the size, which may be up to 2⁶³ − 1 bytes. Clone to get another
/// handle to the same data.
pub struct SharedPages {
    store: NonNull<PagesStore>,
}

// SAFETY: the store is only accessed under its page locks or through atomics.
unsafe impl Send for SharedPages {}
// SAFETY: as above.
unsafe impl Sync for SharedPages {}

/// `calloc` of `n` values of `T` (plain data, or atomics for which zero is valid), or NULL.
fn calloc<T>(n: u64) -> *mut T {
    match usize::try_from(n) {
        // SAFETY: calloc of plain data; the caller handles NULL.
        Ok(n) => unsafe { libc::calloc(n, std::mem::size_of::<T>()) }.cast(),
        Err(_) => std::ptr::null_mut(),
    }
}

impl SharedPages {
    /// The page size of new stores, in bytes.
    pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;

    /// A new sparse store of `size` bytes, all zero: pages are allocated as they are written,
    /// and freed when trimmed.
    pub fn new(size: u64) -> Result<SharedPages> {
        SharedPages::create(size, None)
    }

    /// A new store of `size` bytes, all zero, whose pages are allocated now, as one block
    /// (nbdkit's `allocator=malloc`), and locked into RAM with `mlock(2)` if `lock`. Trimming
    /// zeroes them; they are freed with the store.
    pub fn new_dense(size: u64, lock: bool) -> Result<SharedPages> {
        SharedPages::create(size, Some(lock))
    }

    fn create(size: u64, dense: Option<bool>) -> Result<SharedPages> {
        let page_count = size.div_ceil(Self::PAGE_SIZE);
        let last = page_count.max(1) - 1;
        let mut top_shift = 0;
        while last >> top_shift >= 1 << ROOT_MAX_SHIFT {
            top_shift += NODE_SHIFT;
        }
        let root = calloc::<AtomicPtr<u8>>((last >> top_shift) + 1);
        // A zero word is a free lock (`page_lock`).
        let locks = calloc::<AtomicU32>(LOCK_STRIPES);
        let store = calloc::<PagesStore>(1);
        if root.is_null() || locks.is_null() || store.is_null() {
            // SAFETY: free(NULL) is a no-op; the others came from calloc.
            unsafe {
                libc::free(root.cast());
                libc::free(locks.cast());
                libc::free(store.cast());
            }
            return Err(Error::new(
                Errno::ENOMEM,
                format!("cannot allocate a page table for {size} bytes"),
            ));
        }
        // SAFETY: `store` is a fresh allocation of the right size and alignment.
        unsafe {
            store.write(PagesStore {
                magic: PAGES_MAGIC,
                layout_version: PAGES_LAYOUT_VERSION,
                page_shift: PAGE_SHIFT,
                size,
                page_count,
                refs: AtomicUsize::new(1),
                root,
                lock_stripes: LOCK_STRIPES,
                locks,
                node_shift: NODE_SHIFT,
                top_shift,
                dense: std::ptr::null_mut(),
                dense_len: 0,
            })
        };
        let pages = SharedPages {
            store: NonNull::new(store).expect("checked above"),
        };
        if let Some(lock) = dense {
            pages.allocate_all(lock)?;
        }
        Ok(pages)
    }

    /// Allocates every page now, as one block (see [`SharedPages::new_dense`]).
    fn allocate_all(&self, lock: bool) -> Result<()> {
        let h = self.store.as_ptr();
        let len = self.header().page_count << PAGE_SHIFT;
        let block = calloc::<u8>(len);
        if block.is_null() {
            return Err(Error::new(
                Errno::ENOMEM,
                format!("cannot allocate {len} bytes: {}", Errno::ENOMEM.desc()),
            ));
        }
        // SAFETY: the store is not shared yet; `block` is recorded at once so that drop frees it.
        unsafe {
            (*h).dense = block;
            (*h).dense_len = len;
        }
        // SAFETY: `block` has `len` bytes.
        if lock && unsafe { libc::mlock(block.cast(), len as usize) } != 0 {
            let errno = Errno::last();
            return Err(Error::new(errno, format!("mlock: {}", errno.desc())));
        }
        for index in 0..self.header().page_count {
            // SAFETY: page `index` of the block lies within it.
            let page = unsafe { block.add((index << PAGE_SHIFT) as usize) };
            self.entry_or_make(index)?.store(page, Ordering::Release);
        }
        Ok(())
    }

    /// Whether all pages were allocated at once ([`SharedPages::new_dense`]).
    pub fn is_dense(&self) -> bool {
        !self.header().dense.is_null()
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

    /// The entry of page `index` in the page table, if the nodes above it exist.
    #[inline]
    fn entry(&self, index: u64) -> Option<&AtomicPtr<u8>> {
        let h = self.header();
        debug_assert!(index < h.page_count);
        let mut shift = h.top_shift;
        // SAFETY: `index < page_count` (callers check the range), so `index >> top_shift` is
        // within the root; lower nodes have `1 << node_shift` entries and are indexed masked.
        // Nodes live as long as the store.
        let mut entry = unsafe { &*h.root.add((index >> shift) as usize) };
        while shift != 0 {
            let node = entry.load(Ordering::Acquire);
            if node.is_null() {
                return None;
            }
            shift -= h.node_shift;
            let i = (index >> shift) & ((1 << h.node_shift) - 1);
            // SAFETY: as above.
            entry = unsafe { &*node.cast::<AtomicPtr<u8>>().add(i as usize) };
        }
        Some(entry)
    }

    /// Page `index`, or NULL (a hole). The read path: one load per level of the table.
    #[inline]
    fn page(&self, index: u64) -> *mut u8 {
        let h = self.header();
        let mut shift = h.top_shift;
        // SAFETY: as in `entry`.
        let mut p = unsafe { &*h.root.add((index >> shift) as usize) }.load(Ordering::Acquire);
        while shift != 0 && !p.is_null() {
            shift -= h.node_shift;
            let i = (index >> shift) & ((1 << h.node_shift) - 1);
            // SAFETY: as in `entry`.
            p = unsafe { &*p.cast::<AtomicPtr<u8>>().add(i as usize) }.load(Ordering::Acquire);
        }
        p
    }

    /// The entry of page `index`, making the nodes above it that do not exist yet.
    fn entry_or_make(&self, index: u64) -> Result<&AtomicPtr<u8>> {
        let h = self.header();
        let mut shift = h.top_shift;
        // SAFETY: as in `entry`.
        let mut entry = unsafe { &*h.root.add((index >> shift) as usize) };
        while shift != 0 {
            let mut node = entry.load(Ordering::Acquire);
            if node.is_null() {
                let new = calloc::<AtomicPtr<u8>>(1 << h.node_shift).cast::<u8>();
                if new.is_null() {
                    return Err(Error::new(
                        Errno::ENOMEM,
                        "out of memory for the page table",
                    ));
                }
                node = match entry.compare_exchange(
                    std::ptr::null_mut(),
                    new,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => new,
                    Err(theirs) => {
                        // SAFETY: ours, never published.
                        unsafe { libc::free(new.cast()) };
                        theirs
                    }
                };
            }
            shift -= h.node_shift;
            let i = (index >> shift) & ((1 << h.node_shift) - 1);
            // SAFETY: as in `entry`.
            entry = unsafe { &*node.cast::<AtomicPtr<u8>>().add(i as usize) };
        }
        Ok(entry)
    }

    /// Runs `f` with page `index`'s lock held (the write lock if `write`).
    #[inline]
    fn locked<R>(&self, index: u64, write: bool, f: impl FnOnce() -> R) -> R {
        let h = self.header();
        // SAFETY: `lock_stripes` locks exist, living as long as the store.
        // A mask, not `%`: no division on the request path.
        let lock = unsafe { &*h.locks.add((index & (h.lock_stripes - 1)) as usize) };
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
        f()
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
            self.locked(index, false, || {
                let page = self.page(index);
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
        let page_size = self.page_size();
        let mut failed = None;
        self.pieces(offset, buf.len(), |index, in_page, range| {
            if failed.is_some() {
                return;
            }
            self.locked(index, true, || {
                let entry = match self.entry_or_make(index) {
                    Ok(entry) => entry,
                    Err(e) => return failed = Some(e),
                };
                let mut page = entry.load(Ordering::Acquire);
                if page.is_null() {
                    page = calloc::<u8>(page_size);
                    if page.is_null() {
                        return failed =
                            Some(Error::new(Errno::ENOMEM, "out of memory for a new page"));
                    }
                    entry.store(page, Ordering::Release);
                }
                // SAFETY: as in `read_at`; the write lock makes this the only access.
                let dst = unsafe { std::slice::from_raw_parts_mut(page.add(in_page), range.len()) };
                dst.copy_from_slice(&buf[range]);
            })
        });
        failed.map_or(Ok(()), Err)
    }

    /// Makes `[offset, offset + len)` read as zeroes, freeing the pages wholly inside it (they
    /// become holes) and zeroing the partial ones at its ends. (A dense store's pages are zeroed.)
    pub fn trim(&self, offset: u64, len: u64) -> Result<()> {
        self.clear(offset, len, !self.is_dense())
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
            let (allocated, span) = self.span_at(index);
            if !allocated {
                // A hole, maybe a whole subtree of them: nothing to clear.
                pos = ((index + span) * page_size).min(end);
                continue;
            }
            let in_page = (pos % page_size) as usize;
            let n = (page_size - in_page as u64).min(end - pos) as usize;
            self.locked(index, true, || {
                let Some(entry) = self.entry(index) else {
                    return;
                };
                let page = entry.load(Ordering::Acquire);
                if page.is_null() {
                    return;
                }
                // Whole: the page, or all of the disk's last, shorter page.
                let whole =
                    in_page == 0 && (n as u64 == page_size || pos + n as u64 == self.size());
                if free_whole_pages && whole {
                    entry.store(std::ptr::null_mut(), Ordering::Release);
                    // SAFETY: allocated with calloc; no one else can reach it (write lock, entry
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

    /// Whether page `index` is allocated (a hint: it may change at once), and for how many
    /// pages from it that is sure to hold: 1 for a page, the rest of a subtree never written.
    fn span_at(&self, index: u64) -> (bool, u64) {
        let h = self.header();
        let mut shift = h.top_shift;
        // SAFETY: as in `entry`; only pointer values are read, atomically.
        let mut entry = unsafe { &*h.root.add((index >> shift) as usize) };
        loop {
            let p = entry.load(Ordering::Acquire);
            if p.is_null() {
                let span = 1u64 << shift;
                return (false, span - (index & (span - 1)));
            }
            if shift == 0 {
                return (true, 1);
            }
            shift -= h.node_shift;
            let i = (index >> shift) & ((1 << h.node_shift) - 1);
            // SAFETY: as in `entry`.
            entry = unsafe { &*p.cast::<AtomicPtr<u8>>().add(i as usize) };
        }
    }

    /// Whether the page holding byte `offset` is allocated (a hint: it may change at once).
    pub fn is_allocated(&self, offset: u64) -> bool {
        offset < self.size() && self.span_at(offset >> self.header().page_shift).0
    }

    /// The allocated and unallocated runs of `[offset, offset + len)`, as
    /// `(offset, length, allocated)`, adjacent runs of the same kind merged.
    pub fn runs(&self, offset: u64, len: u64) -> Vec<(u64, u64, bool)> {
        let page_size = self.page_size();
        let end = offset.saturating_add(len).min(self.size());
        let mut runs: Vec<(u64, u64, bool)> = Vec::new();
        let mut pos = offset;
        while pos < end {
            let index = pos / page_size;
            let (allocated, span) = self.span_at(index);
            let next = (index + span).saturating_mul(page_size).min(end);
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
        // Lazily: a handle made and dropped here would release a reference to a store this
        // build cannot read (version 2's `then_some` did, and the caller released it again).
        .then(|| SharedPages { store })
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
        // allocated with the C allocator as laid out in `create`.
        unsafe {
            let h = &*h;
            let root_entries = ((h.page_count.max(1) - 1) >> h.top_shift) + 1;
            free_table(h, h.root, root_entries, h.top_shift);
            libc::free(h.dense.cast());
            libc::free(h.locks.cast());
        }
        // SAFETY: as above; `h` is not used after this.
        unsafe { libc::free(h.cast()) };
    }
}

/// Frees `node` (of `entries` entries, indexed by page index bits from `shift` up) and what is
/// below it: nodes, and pages unless the store is dense.
///
/// # Safety
/// The store is no longer shared; `node` and everything below it came from calloc.
unsafe fn free_table(h: &PagesStore, node: *mut AtomicPtr<u8>, entries: u64, shift: u32) {
    for i in 0..entries as usize {
        let p = (*node.add(i)).load(Ordering::Relaxed);
        if p.is_null() {
            continue;
        }
        if shift > 0 {
            free_table(h, p.cast(), 1 << h.node_shift, shift - h.node_shift);
        } else if h.dense.is_null() {
            libc::free(p.cast());
        }
    }
    libc::free(node.cast());
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

#[cfg(test)]
mod sparse_tests {
    use super::*;

    /// The largest sizes nbdkit serves: a page table of three levels below the root, made as
    /// the end is written; reads around it see the write and zeroes.
    #[test]
    fn the_largest_disks_are_served_sparsely_to_the_very_end() {
        for size in [
            i64::MAX as u64,
            9_223_372_035_781_033_984,
            (1 << 40) + 12345,
        ] {
            let pages = SharedPages::new(size).unwrap();
            let data: Vec<u8> = (0..70_000u32).map(|i| (i % 253) as u8).collect();
            let at = size - data.len() as u64;
            pages.write_at(&data, at).unwrap();
            let mut back = vec![0u8; data.len()];
            pages.read_at(&mut back, at).unwrap();
            assert_eq!(back, data, "size {size}");
            let mut before = vec![1u8; 4096];
            pages.read_at(&mut before, at - 4096).unwrap();
            assert!(before.iter().all(|&b| b == 0));
            assert!(pages.write_at(&[1], size).is_err(), "beyond the end");
            // Holes are reported a subtree at a time: few runs, fast, whatever the size.
            let runs = pages.runs(0, size);
            assert!(runs.last().unwrap().2);
            assert_eq!(runs.iter().map(|r| r.1).sum::<u64>(), size);
            assert!(runs.len() <= 3, "{runs:?}");
            pages
                .trim(
                    at - at % SharedPages::PAGE_SIZE,
                    size - (at - at % SharedPages::PAGE_SIZE),
                )
                .unwrap();
            assert_eq!(pages.runs(0, size), vec![(0, size, false)]);
        }
    }

    #[test]
    fn a_dense_store_is_all_data_and_trim_zeroes_it() {
        let pages = SharedPages::new_dense(100_000, false).unwrap();
        assert!(pages.is_dense());
        assert_eq!(pages.runs(0, 100_000), vec![(0, 100_000, true)]);
        pages.write_at(&[7u8; 50_000], 10).unwrap();
        pages.trim(0, 100_000).unwrap();
        assert_eq!(pages.runs(0, 100_000), vec![(0, 100_000, true)]);
        let mut back = vec![1u8; 100_000];
        pages.read_at(&mut back, 0).unwrap();
        assert!(back.iter().all(|&b| b == 0));
        assert!(SharedPages::new_dense(i64::MAX as u64, false).is_err());
    }

    /// A store of another layout version (a build before the page table or the page lock
    /// changed) is not adopted: the successor starts fresh instead of misreading it.
    #[test]
    fn a_store_of_another_layout_version_is_refused() {
        let pages = SharedPages::new(1 << 20).unwrap();
        let handover = crate::Handover::pages("disk", &pages);
        assert!(handover.into_pages().is_some());
        let raw = pages.clone().into_raw();
        for version in [2, PAGES_LAYOUT_VERSION + 1] {
            // SAFETY: `raw` is the live store this test holds; only its header is changed.
            unsafe { (*(raw as *mut PagesStore)).layout_version = version };
            assert!(
                SharedPages::from_raw(raw).is_none(),
                "version {version} adopted"
            );
            // The refusal takes no reference: the caller releases the one it was handed.
            assert_eq!(
                pages.header().refs.load(Ordering::Relaxed),
                2,
                "a reference was dropped"
            );
        }
        // SAFETY: as above; put back so that the reference `raw` carries can be dropped.
        unsafe { (*(raw as *mut PagesStore)).layout_version = PAGES_LAYOUT_VERSION };
        drop(SharedPages::from_raw(raw).unwrap());
    }
}
