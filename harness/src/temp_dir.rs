//! [`TempDir`]: a private directory that goes away with everything in it.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{HarnessError, Result};

/// A fresh directory only this user can enter (mode 0700), removed with everything in it when
/// dropped. Each [`Server`](crate::Server) has one for its socket, pidfile, log and `TMPDIR`;
/// tests can have their own for files they serve or compare.
///
/// It is made in `$TMPDIR` (or `/tmp` when that path is long: a Unix socket path must fit in
/// 107 bytes).
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new directory named `rustshim-harness-…`.
    pub fn new() -> Result<TempDir> {
        TempDir::with_prefix("rustshim-harness")
    }

    /// A new directory whose name starts with `prefix` (then the process ID, a counter and
    /// the clock, so concurrent tests and processes never share one).
    pub fn with_prefix(prefix: &str) -> Result<TempDir> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let mut base = std::env::temp_dir();
        if base.as_os_str().len() > 60 {
            base = PathBuf::from("/tmp");
        }
        let mut attempts = 0;
        loop {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let dir = base.join(format!(
                "{prefix}-{}-{}-{nanos:x}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(TempDir(dir)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempts < 100 => {
                    attempts += 1;
                }
                Err(e) => {
                    return Err(HarnessError::io(
                        format!("cannot create a directory in {}", base.display()),
                        e,
                    ))
                }
            }
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A path inside the directory.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn is_private_distinct_and_removed_on_drop() {
        let a = TempDir::with_prefix("rustshim-harness-test").unwrap();
        let b = TempDir::with_prefix("rustshim-harness-test").unwrap();
        assert_ne!(a.path(), b.path());
        let mode = std::fs::metadata(a.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        std::fs::write(a.join("file"), "x").unwrap();
        let path = a.path().to_path_buf();
        drop(a);
        assert!(!path.exists());
    }
}
