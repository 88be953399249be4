//! The page locks of a [`crate::SharedPages`] store: a reader-writer lock in one `AtomicU32`,
//! sleeping on Linux's futex.
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
//! The word: the low 30 bits count readers, [`WRITER`] is set while a writer holds it, and
//! [`WAITING`] is set by a thread about to sleep, only while someone holds the lock, so that
//! the holder who releases it last wakes every sleeper (they then compete again). Readers do not
//! take the lock while [`WAITING`] is set, so a waiting writer is not starved by a stream of
//! readers. Critical sections are a memcpy of at most one page, so contention is short: a
//! waiter spins a little before it sleeps.

use std::sync::atomic::{AtomicU32, Ordering};

use nix::libc;

/// Mask of the reader count.
const READERS: u32 = WRITER - 1;
/// A writer holds the lock.
const WRITER: u32 = 1 << 30;
/// Someone sleeps on the word (or is about to): the last to release must wake them.
const WAITING: u32 = 1 << 31;
/// How often a waiter looks again before it sleeps.
const SPINS: u32 = 100;

/// Takes `word` for reading.
#[inline]
pub(crate) fn read_lock(word: &AtomicU32) {
    let s = word.load(Ordering::Relaxed);
    if !(can_read(s)
        && word
            .compare_exchange_weak(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
            .is_ok())
    {
        lock_contended(word, can_read, 1);
    }
}

/// Releases a read lock taken with [`read_lock`].
#[inline]
pub(crate) fn read_unlock(word: &AtomicU32) {
    let before = word.fetch_sub(1, Ordering::Release);
    if before & READERS == 1 && before & WAITING != 0 {
        wake_all(word);
    }
}

/// Takes `word` for writing.
#[inline]
pub(crate) fn write_lock(word: &AtomicU32) {
    let s = word.load(Ordering::Relaxed);
    if !(can_write(s)
        && word
            .compare_exchange_weak(s, s | WRITER, Ordering::Acquire, Ordering::Relaxed)
            .is_ok())
    {
        lock_contended(word, can_write, WRITER);
    }
}

/// Releases a write lock taken with [`write_lock`].
#[inline]
pub(crate) fn write_unlock(word: &AtomicU32) {
    let before = word.fetch_and(!(WRITER | WAITING), Ordering::Release);
    if before & WAITING != 0 {
        futex_wake_all(word);
    }
}

fn can_read(s: u32) -> bool {
    s & (WRITER | WAITING) == 0 && s & READERS != READERS
}

fn can_write(s: u32) -> bool {
    s & (WRITER | READERS) == 0
}

#[cold]
fn lock_contended(word: &AtomicU32, can_take: fn(u32) -> bool, add: u32) {
    let mut spins = 0;
    let mut s = word.load(Ordering::Relaxed);
    loop {
        if can_take(s) {
            match word.compare_exchange_weak(s, s + add, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return,
                Err(now) => {
                    s = now;
                    continue;
                }
            }
        }
        if spins < SPINS {
            spins += 1;
            std::hint::spin_loop();
            s = word.load(Ordering::Relaxed);
            continue;
        }
        // Say so before sleeping, so that the release that makes the lock free wakes us. The
        // bit is set only while the lock is held (`can_take` failed on this very value), so a
        // release is still to come and will see it.
        if s & WAITING == 0 {
            if let Err(now) =
                word.compare_exchange_weak(s, s | WAITING, Ordering::Relaxed, Ordering::Relaxed)
            {
                s = now;
                continue;
            }
            s |= WAITING;
        }
        futex_wait(word, s);
        s = word.load(Ordering::Relaxed);
    }
}

/// The last reader is gone and someone sleeps: clear the bit, then wake them all.
#[cold]
fn wake_all(word: &AtomicU32) {
    word.fetch_and(!WAITING, Ordering::Relaxed);
    futex_wake_all(word);
}

/// Sleeps while `word` still holds `expected` (the kernel checks, so a change made before the
/// sleep starts returns at once).
fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: FUTEX_WAIT on a valid, aligned u32 that lives as long as the store; no timeout.
    // Any result (woken, EAGAIN because the word changed, EINTR) means: look again.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            std::ptr::null::<libc::timespec>(),
        );
    }
}

fn futex_wake_all(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE on a valid, aligned u32; it only wakes threads sleeping on it.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::UnsafeCell;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    /// Two counters that writers always change together, so a reader that sees them differ saw
    /// a write half done.
    struct Guarded {
        lock: AtomicU32,
        pair: UnsafeCell<(u64, u64)>,
    }
    // SAFETY: `pair` is only touched under `lock`, which is what the test checks.
    unsafe impl Sync for Guarded {}

    #[test]
    fn writers_exclude_everyone_and_readers_share() {
        const WRITERS: usize = 4;
        const READERS_N: usize = 4;
        const ROUNDS: u64 = 20_000;
        let g = Arc::new(Guarded {
            lock: AtomicU32::new(0),
            pair: UnsafeCell::new((0, 0)),
        });
        let done = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..READERS_N)
            .map(|_| {
                let (g, done) = (g.clone(), done.clone());
                std::thread::spawn(move || {
                    let mut reads = 0u64;
                    while !done.load(Ordering::Relaxed) {
                        read_lock(&g.lock);
                        // SAFETY: read lock held; writers are excluded.
                        let (a, b) = unsafe { std::ptr::read_volatile(g.pair.get()) };
                        read_unlock(&g.lock);
                        assert_eq!(a, b, "a reader saw a write half done");
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        let writers: Vec<_> = (0..WRITERS)
            .map(|_| {
                let g = g.clone();
                std::thread::spawn(move || {
                    for _ in 0..ROUNDS {
                        write_lock(&g.lock);
                        // SAFETY: write lock held: no one else touches the pair.
                        unsafe {
                            let p = g.pair.get();
                            std::ptr::write_volatile(&mut (*p).0, (*p).0 + 1);
                            std::thread::yield_now();
                            std::ptr::write_volatile(&mut (*p).1, (*p).1 + 1);
                        }
                        write_unlock(&g.lock);
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, Ordering::Relaxed);
        let reads: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
        // SAFETY: every thread has finished.
        let (a, b) = unsafe { *g.pair.get() };
        assert_eq!((a, b), (WRITERS as u64 * ROUNDS, WRITERS as u64 * ROUNDS));
        assert!(reads > 0);
        assert_eq!(
            g.lock.load(Ordering::Relaxed),
            0,
            "left unlocked, no one waiting"
        );
    }

    #[test]
    fn readers_hold_it_together_and_a_writer_waits_for_them() {
        let lock = Arc::new(AtomicU32::new(0));
        read_lock(&lock);
        read_lock(&lock);
        assert_eq!(lock.load(Ordering::Relaxed), 2);
        let wrote = Arc::new(AtomicBool::new(false));
        let writer = {
            let (lock, wrote) = (lock.clone(), wrote.clone());
            std::thread::spawn(move || {
                write_lock(&lock);
                wrote.store(true, Ordering::Relaxed);
                write_unlock(&lock);
            })
        };
        // The writer spins, then sleeps with WAITING set.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while lock.load(Ordering::Relaxed) & WAITING == 0 {
            assert!(
                std::time::Instant::now() < deadline && !wrote.load(Ordering::Relaxed),
                "the writer did not wait for the readers"
            );
            std::thread::yield_now();
        }
        assert!(!wrote.load(Ordering::Relaxed));
        read_unlock(&lock);
        assert!(!wrote.load(Ordering::Relaxed), "one reader still holds it");
        read_unlock(&lock);
        writer.join().unwrap();
        assert!(wrote.load(Ordering::Relaxed));
        assert_eq!(lock.load(Ordering::Relaxed), 0);
    }
}
