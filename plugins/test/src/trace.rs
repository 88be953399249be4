//! The trace file and the errno names it prints.

use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;

use rustshim_plugin_api::prelude::*;

/// Errno names accepted by `fail=`, and used to print errors in the trace.
pub(crate) const ERRNOS: &[(&str, Errno)] = &[
    ("EPERM", Errno::EPERM),
    ("EIO", Errno::EIO),
    ("ENOMEM", Errno::ENOMEM),
    ("ENOSPC", Errno::ENOSPC),
    ("ESHUTDOWN", Errno::ESHUTDOWN),
    ("EINVAL", Errno::EINVAL),
    ("EROFS", Errno::EROFS),
    ("ENOTSUP", Errno::ENOTSUP),
    ("EOPNOTSUPP", Errno::EOPNOTSUPP),
    ("EFBIG", Errno::EFBIG),
    ("EDQUOT", Errno::EDQUOT),
    ("EOVERFLOW", Errno::EOVERFLOW),
    ("ENOENT", Errno::ENOENT),
    ("EACCES", Errno::EACCES),
    ("EBADF", Errno::EBADF),
    ("EAGAIN", Errno::EAGAIN),
    ("EBUSY", Errno::EBUSY),
    ("ERANGE", Errno::ERANGE),
];

pub(crate) fn errno_by_name(name: &str) -> Result<Errno> {
    ERRNOS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, e)| *e)
        .ok_or_else(|| Error::invalid(format!("test: unknown errno name '{name}'")))
}

pub(crate) fn errno_name(errno: Errno) -> String {
    ERRNOS
        .iter()
        .find(|(_, e)| *e == errno)
        .map(|(n, _)| n.to_string())
        .unwrap_or_else(|| format!("{errno:?}"))
}

/// A server function's result as the trace shows it: `Ok(value)` or `Err(ERRNO: message)`.
pub(crate) fn show<T: Debug>(r: &Result<T>) -> String {
    match r {
        Ok(v) => format!("Ok({v:?})"),
        Err(e) => format!("Err({}: {})", errno_name(e.errno()), e.message()),
    }
}

/// The trace file, and the lines traced before it was named.
#[derive(Default)]
pub(crate) struct Trace {
    file: Option<Mutex<File>>,
    /// Lines waiting for `trace=`; `None` once configuration ended without it.
    early: Option<Vec<String>>,
}

impl Trace {
    /// No file yet: lines wait for `trace=`.
    pub(crate) fn new() -> Trace {
        Trace {
            file: None,
            early: Some(Vec::new()),
        }
    }

    pub(crate) fn line(&self, line: impl Into<String>) {
        let mut line = line.into();
        line.push('\n');
        if let Some(file) = &self.file {
            let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
            // One write per line, so concurrent callbacks never interleave inside a line.
            let _ = f.write_all(line.as_bytes());
        }
    }

    /// Buffers a line from configuration (when the file may not be known yet).
    pub(crate) fn early_line(&mut self, line: impl Into<String>) {
        match (&self.file, &mut self.early) {
            (None, Some(early)) => early.push(line.into()),
            _ => self.line(line),
        }
    }

    pub(crate) fn open(&mut self, path: &str) -> Result<()> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::from(e).context(format!("test: trace file '{path}'")))?;
        self.file = Some(Mutex::new(file));
        for line in self.early.take().unwrap_or_default() {
            self.line(line);
        }
        Ok(())
    }

    /// Configuration is over: stop buffering.
    pub(crate) fn end_of_config(&mut self) {
        self.early = None;
    }
}
