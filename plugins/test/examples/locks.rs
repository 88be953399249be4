//! `locks`: a 64 KiB RAM disk whose data is behind one `std::sync::Mutex`, and whose `pwrite`
//! panics while holding it when a write starts at offset 4096: what a plugin bug does to a std
//! lock, and the pattern that keeps it to one failed request (see "Panics and locks" in the
//! `rustshim-plugin-api` docs).
//!
//! * `lock=unwrap` (the default): `self.data.lock().unwrap()`. The panic poisons the lock, so
//!   every later request panics at `unwrap` and fails with `EIO`, until nbdkit restarts.
//! * `lock=recover`: `lock(&self.data)`, below: a poisoned lock is taken anyway. Here that is
//!   sound because every change is complete before anything can panic (the buggy write
//!   panics before it copies), so the data is never half-changed; only the panicking request
//!   fails.

use std::sync::{Mutex, MutexGuard, PoisonError};

use rustshim_plugin_api::prelude::*;

/// The pattern: take a std lock whatever an earlier panic left behind. Use it where the data
/// cannot be left half-changed (or repair it, then `Mutex::clear_poison`).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Locks {
    data: Mutex<Vec<u8>>,
    recover: bool,
}

impl Default for Locks {
    fn default() -> Self {
        Locks {
            data: Mutex::new(vec![0; 64 << 10]),
            recover: false,
        }
    }
}

impl Locks {
    fn data(&self) -> MutexGuard<'_, Vec<u8>> {
        if self.recover {
            lock(&self.data)
        } else {
            self.data.lock().unwrap()
        }
    }
}

#[plugin]
impl Plugin for Locks {
    type Handle = ();
    const NAME: &'static str = "locks";

    fn config(&mut self, key: &str, value: &str) -> Result<()> {
        match (key, value) {
            ("lock", "unwrap") => self.recover = false,
            ("lock", "recover") => self.recover = true,
            _ => {
                return Err(Error::invalid(format!(
                    "locks: unknown parameter '{key}={value}'"
                )))
            }
        }
        Ok(())
    }

    fn open(&self, _readonly: bool) -> Result<()> {
        Ok(())
    }

    fn get_size(&self, _: &()) -> Result<u64> {
        Ok(self.data().len() as u64)
    }

    fn pread(&self, _: &(), buf: &mut [u8], offset: u64, _flags: Flags) -> Result<()> {
        let data = self.data();
        let at = offset as usize;
        buf.copy_from_slice(&data[at..at + buf.len()]);
        Ok(())
    }

    fn pwrite(&self, _: &(), buf: &[u8], offset: u64, _flags: Flags) -> Result<()> {
        let mut data = self.data();
        // The bug, with the guard alive.
        if offset == 4096 {
            panic!("locks: a bug in pwrite");
        }
        let at = offset as usize;
        data[at..at + buf.len()].copy_from_slice(buf);
        Ok(())
    }
}

export_plugin!(Locks);
