//! The page locks of a [`crate::SharedPages`] store: a reader-writer lock in one `AtomicU32`,
//! sleeping on Linux's futex, that prefers a waiting writer.
//!
//! Why not `pthread_rwlock_t` (the store's locks until layout version 2): every request took and
//! released it through two calls into libc, which made rustshim's memory plugin dearer than the
//! same RAM disk written with the `nbdkit` crate (BENCHMARKS.md). The uncontended path here is
//! one compare-and-swap to lock and one atomic subtraction to unlock, inlined.
//!
//! Why not std's `RwLock`: its layout and protocol belong to the compiler and the standard
//! library that built each generation, and the generations of a plugin, built by any compiler,
//! lock the same store at once. This protocol is fixed by [`crate::abi::PAGES_LAYOUT_VERSION`],
//! and it sleeps on the kernel's futex table, the one thing that separately loaded copies of a
//! plugin (each with its own statics) share; a lock that parks threads in a table of its own
//! (`parking_lot`) would lose wake-ups between generations.
//!
//! The word (layout version 3):
//! * the low 29 bits ([`READERS`]) count the readers holding it;
//! * [`WRITER`]: a writer holds it;
//! * [`NEXT_WRITER`]: a writer waits and is next. It is set by a writer that finds the lock
//!   held and the bit clear, and cleared only by that writer, in the compare-and-swap that
//!   takes the lock. While it is set no reader is admitted and no other writer takes the lock,
//!   so the waiting writer gets the lock as soon as the holders it found leave: a stream of
//!   readers cannot starve it (version 2 cleared its waiting bit when the last reader left and
//!   woke everyone, and a reader coming straight back got in first: a writer behind 64 busy
//!   readers waited up to 31.8 s). Other writers queue behind it: they compete again, with
//!   readers, once it has released the lock;
//! * [`SLEEPING`]: someone sleeps on the word (or is about to). It is set, before sleeping, only
//!   while something that will end with a release blocks the sleeper (a holder, or a next
//!   writer that will take and release the lock), and every compare-and-swap keeps it; the
//!   release that finds it clears it and wakes every sleeper, who then look again.
//!
//! Critical sections are a memcpy of at most one page, so contention is short: a waiter spins a
//! little before it sleeps.
//!
//! The protocol is written once, over [`Futex`], and run by the store on a real `AtomicU32` and
//! the kernel's futex, and under `cfg(loom)` on loom's atomics and a model of the futex
//! (`loom_model`, which explores every interleaving of a few threads):
//! `RUSTFLAGS="--cfg loom" cargo test -p rustshim-plugin-api --release --lib loom`.

use std::sync::atomic::Ordering::{self, Acquire, Relaxed, Release};

#[cfg(all(test, loom))]
mod loom_model;
#[cfg(test)]
mod tests;

/// Mask of the reader count.
const READERS: u32 = WRITER - 1;
/// A writer holds the lock.
const WRITER: u32 = 1 << 29;
/// A writer waits and takes the lock next: readers and other writers stay out.
const NEXT_WRITER: u32 = 1 << 30;
/// Someone sleeps on the word (or is about to): the release that sees it must wake them.
const SLEEPING: u32 = 1 << 31;
/// How often a waiter looks again before it sleeps.
const SPINS: u32 = 100;

/// A lock word and the futex operations on it: the kernel's for the store, a model under loom.
pub(crate) trait Futex {
    fn load(&self, order: Ordering) -> u32;
    fn compare_exchange_weak(
        &self,
        current: u32,
        new: u32,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u32, u32>;
    fn fetch_sub(&self, value: u32, order: Ordering) -> u32;
    fn fetch_and(&self, value: u32, order: Ordering) -> u32;
    /// Sleeps while the word still holds `expected` (checked atomically with the sleep, so a
    /// change made before it returns at once). May return early: callers look again.
    fn wait(&self, expected: u32);
    /// Wakes every thread sleeping in [`Futex::wait`] on this word.
    fn wake_all(&self);
    /// One round of spinning.
    fn spin(&self);
    /// How often a waiter looks again before it sleeps.
    const SPINS: u32 = SPINS;
}

/// Takes `word` for reading.
#[inline]
pub(crate) fn read_lock<F: Futex>(word: &F) {
    let s = word.load(Relaxed);
    if !(can_read(s)
        && word
            .compare_exchange_weak(s, s + 1, Acquire, Relaxed)
            .is_ok())
    {
        read_contended(word);
    }
}

/// Releases a read lock taken with [`read_lock`].
#[inline]
pub(crate) fn read_unlock<F: Futex>(word: &F) {
    let before = word.fetch_sub(1, Release);
    if before & READERS == 1 && before & SLEEPING != 0 {
        wake_sleepers(word);
    }
}

/// Takes `word` for writing.
#[inline]
pub(crate) fn write_lock<F: Futex>(word: &F) {
    let s = word.load(Relaxed);
    if !(s & (READERS | WRITER | NEXT_WRITER) == 0
        && word
            .compare_exchange_weak(s, s | WRITER, Acquire, Relaxed)
            .is_ok())
    {
        write_contended(word);
    }
}

/// Releases a write lock taken with [`write_lock`]. A next writer's bit stays: it takes the lock
/// before anyone else.
#[inline]
pub(crate) fn write_unlock<F: Futex>(word: &F) {
    let before = word.fetch_and(!(WRITER | SLEEPING), Release);
    if before & SLEEPING != 0 {
        word.wake_all();
    }
}

/// A reader may enter: no writer holds the lock or is next, and the count has room.
fn can_read(s: u32) -> bool {
    s & (WRITER | NEXT_WRITER) == 0 && s & READERS != READERS
}

#[cold]
fn read_contended<F: Futex>(word: &F) {
    let mut spins = 0;
    let mut s = word.load(Relaxed);
    loop {
        if can_read(s) {
            match word.compare_exchange_weak(s, s + 1, Acquire, Relaxed) {
                Ok(_) => return,
                Err(now) => s = now,
            }
        } else if s & (WRITER | NEXT_WRITER) == 0 {
            // 2²⁹ − 1 readers (more threads than Linux's pid_max allows): no release is
            // promised to wake us, so do not sleep.
            std::thread::yield_now();
            s = word.load(Relaxed);
        } else if spins < F::SPINS {
            spins += 1;
            word.spin();
            s = word.load(Relaxed);
        } else {
            s = sleep(word, s);
        }
    }
}

#[cold]
fn write_contended<F: Futex>(word: &F) {
    // Whether this writer set NEXT_WRITER (and so must clear it when it takes the lock).
    let mut next = false;
    let mut spins = 0;
    let mut s = word.load(Relaxed);
    loop {
        let free = s & (READERS | WRITER) == 0;
        if free && (next || s & NEXT_WRITER == 0) {
            // Take it; the next writer clears its bit. SLEEPING stays: our release wakes them.
            match word.compare_exchange_weak(s, (s & !NEXT_WRITER) | WRITER, Acquire, Relaxed) {
                Ok(_) => return,
                Err(now) => s = now,
            }
        } else if !free && !next && s & NEXT_WRITER == 0 {
            // Be next: from now on no reader gets in before us.
            match word.compare_exchange_weak(s, s | NEXT_WRITER, Relaxed, Relaxed) {
                Ok(_) => {
                    next = true;
                    s |= NEXT_WRITER;
                }
                Err(now) => s = now,
            }
        } else if spins < F::SPINS {
            spins += 1;
            word.spin();
            s = word.load(Relaxed);
        } else {
            s = sleep(word, s);
        }
    }
}

/// Sleeps until `word` changes from `s`, a state that blocks the caller and that a release will
/// end: says so first (SLEEPING), so that the release wakes it. Returns the word as it is now.
fn sleep<F: Futex>(word: &F, s: u32) -> u32 {
    if s & SLEEPING == 0 {
        if let Err(now) = word.compare_exchange_weak(s, s | SLEEPING, Relaxed, Relaxed) {
            return now;
        }
    }
    word.wait(s | SLEEPING);
    word.load(Relaxed)
}

/// The last reader is gone and someone sleeps: clear the bit, then wake them all.
#[cold]
fn wake_sleepers<F: Futex>(word: &F) {
    word.fetch_and(!SLEEPING, Relaxed);
    word.wake_all();
}

/// The atomic operations of a [`Futex`] impl, forwarded to an atomic `u32`: `self` itself, or
/// the field named.
macro_rules! forward_atomics {
    ($($field:tt)*) => {
        #[inline]
        fn load(&self, order: Ordering) -> u32 {
            self$($field)*.load(order)
        }
        #[inline]
        fn compare_exchange_weak(
            &self,
            current: u32,
            new: u32,
            success: Ordering,
            failure: Ordering,
        ) -> Result<u32, u32> {
            self$($field)*.compare_exchange_weak(current, new, success, failure)
        }
        #[inline]
        fn fetch_sub(&self, value: u32, order: Ordering) -> u32 {
            self$($field)*.fetch_sub(value, order)
        }
        #[inline]
        fn fetch_and(&self, value: u32, order: Ordering) -> u32 {
            self$($field)*.fetch_and(value, order)
        }
    };
}
#[cfg(all(test, loom))]
use forward_atomics;

/// The store's locks: the kernel's futex on the word itself.
impl Futex for std::sync::atomic::AtomicU32 {
    forward_atomics!();

    fn wait(&self, expected: u32) {
        // SAFETY: FUTEX_WAIT on a valid, aligned u32 that lives as long as the store; no
        // timeout. Any result (woken, EAGAIN because the word changed, EINTR) means: look again.
        unsafe {
            nix::libc::syscall(
                nix::libc::SYS_futex,
                self.as_ptr(),
                nix::libc::FUTEX_WAIT | nix::libc::FUTEX_PRIVATE_FLAG,
                expected,
                std::ptr::null::<nix::libc::timespec>(),
            );
        }
    }

    fn wake_all(&self) {
        // SAFETY: FUTEX_WAKE on a valid, aligned u32; it only wakes threads sleeping on it.
        unsafe {
            nix::libc::syscall(
                nix::libc::SYS_futex,
                self.as_ptr(),
                nix::libc::FUTEX_WAKE | nix::libc::FUTEX_PRIVATE_FLAG,
                i32::MAX,
            );
        }
    }

    #[inline]
    fn spin(&self) {
        std::hint::spin_loop();
    }
}
