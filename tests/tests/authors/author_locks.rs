//! A panic while a plugin holds a std `Mutex` poisons it: with `lock().unwrap()` every later
//! request fails, not just the one that panicked, as the plugin API's docs now say ("Panics and
//! locks"); with the pattern they show (take the lock with `unwrap_or_else(PoisonError::
//! into_inner)` where the data cannot be half-changed), only the panicking request fails. The
//! `locks` example plugin (`plugins/test/examples/locks.rs`) does both, on every nbdkit.

use rustshim_tests::*;

/// One connection: a write, the write that panics (at 4096), a read, another write, and the
/// data read back; then whether a new connection can still be made.
const SCRIPT: &str = "\
h.connect_unix(SOCKET)
print(attempt(h.pwrite, b'a' * 512, 0), attempt(h.pwrite, b'b' * 512, 4096),
      attempt(h.pread, 512, 0) == b'a' * 512, attempt(h.pwrite, b'c' * 512, 512))
h2 = nbd.NBD()
try:
    h2.connect_unix(SOCKET)
    print('connects', h2.pread(1024, 0) == b'a' * 512 + b'c' * 512)
except nbd.Error:
    print('refused')
";

fn run(lock: &str) -> (String, String) {
    let server = serve(&[], &[variant("locks"), format!("lock={lock}")]);
    let out = server.client(SCRIPT).ok();
    (out.stdout.trim().to_string(), server.log())
}

#[test]
fn a_panic_under_a_std_lock_fails_every_later_request() {
    let (out, log) = run("unwrap");
    // The panicking write fails; so does every request after it, and new connections (get_size
    // takes the lock too).
    assert_eq!(out, "ok EIO False EIO\nrefused", "{log}");
    assert!(
        log.contains("locks: panic in pwrite: locks: a bug in pwrite"),
        "{log}"
    );
    assert!(
        log.contains(
            "locks: panic in pread: called `Result::unwrap()` on an `Err` value: PoisonError"
        ),
        "{log}"
    );
}

#[test]
fn with_the_documented_pattern_only_the_panicking_request_fails() {
    let (out, log) = run("recover");
    assert_eq!(out, "ok EIO True ok\nconnects True", "{log}");
    assert_eq!(log.matches("panic in").count(), 1, "{log}");
}
