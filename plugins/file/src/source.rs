//! What the file plugin serves (`file=`, `dir=`, `fd=` or `dirfd=`, exactly one, as nbdkit's
//! file plugin takes them) and how it opens it for a connection.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, openat, FcntlArg, OFlag};
use nix::sys::stat::Mode;
use rustshim_plugin_api::prelude::*;

use crate::failed;

/// The one source of the data.
pub(crate) enum Source {
    /// `file=`: one file or block device, made absolute (nbdkit changes directory to `/`).
    File(PathBuf),
    /// `dir=`: the regular files and block devices in a directory, one export each, named by
    /// the export name.
    Dir(PathBuf),
    /// `fd=`: a file or block device open on a file descriptor inherited from nbdkit's parent.
    Fd(RawFd),
    /// `dirfd=`: like `dir=`, a directory open on an inherited file descriptor.
    DirFd(RawFd),
}

/// A connection's open file, and whether it may be written.
pub(crate) struct Opened {
    pub file: File,
    pub writable: bool,
}

impl Source {
    /// Parses one of the four keys (`directory=` is nbdkit's other name for `dir=`).
    pub(crate) fn parse(key: &str, value: &str) -> Result<Option<Source>> {
        Ok(Some(match key {
            // Resolved now, while relative paths still mean what the user meant; this also
            // reports a missing file at once instead of at the first connection.
            "file" => Source::File(realpath(value)?),
            "dir" | "directory" => Source::Dir(realpath(value)?),
            "fd" => Source::Fd(parse_fd("fd", value)?),
            "dirfd" => Source::DirFd(parse_fd("dirfd", value)?),
            _ => return Ok(None),
        }))
    }

    /// The checks nbdkit's file plugin makes before serving.
    pub(crate) fn check(&self) -> Result<()> {
        match self {
            Source::File(path) => match std::fs::metadata(path) {
                Ok(m) if m.is_dir() => Err(Error::invalid(format!(
                    "file: use dir= to serve files within {}",
                    path.display()
                ))),
                Ok(m) if m.is_file() || m.file_type().is_block_device() => Ok(()),
                _ => Err(Error::invalid(format!(
                    "file: file is not regular or block device: {}",
                    path.display()
                ))),
            },
            Source::Dir(path) => match std::fs::metadata(path) {
                Ok(m) if m.is_dir() => Ok(()),
                _ => Err(Error::invalid(format!(
                    "file: expecting a directory: {}",
                    path.display()
                ))),
            },
            Source::Fd(fd) => match fd_metadata(*fd) {
                Some(m) if m.is_file() || m.file_type().is_block_device() => Ok(()),
                _ => Err(Error::invalid(format!(
                    "file: fd is not regular or block device: {fd}"
                ))),
            },
            Source::DirFd(fd) => match fd_metadata(*fd) {
                Some(m) if m.is_dir() => Ok(()),
                _ => Err(Error::invalid(format!(
                    "file: dirfd is not a directory: {fd}"
                ))),
            },
        }
    }

    /// The exports: the default one for a file, one per regular file or block device (links
    /// followed) in a directory, in the directory's order.
    pub(crate) fn list(&self, exports: &mut Exports) -> Result<()> {
        let dir = match self {
            Source::File(_) | Source::Fd(_) => return exports.add("", None),
            Source::Dir(path) => path.clone(),
            // The directory of an open descriptor, as the kernel names it.
            Source::DirFd(fd) => PathBuf::from(format!("/proc/self/fd/{fd}")),
        };
        for entry in std::fs::read_dir(&dir).map_err(failed("readdir"))? {
            let entry = entry.map_err(failed("readdir"))?;
            let served = match std::fs::metadata(entry.path()) {
                Ok(m) => m.is_file() || m.file_type().is_block_device(),
                Err(_) => false,
            };
            if served {
                if let Some(name) = entry.file_name().to_str() {
                    exports.add(name, None)?;
                }
            }
        }
        Ok(())
    }

    /// Opens what this connection serves: for writing unless `readonly`, and read-only if
    /// writing is refused (a file the user may not write, a read-only file system), as nbdkit's
    /// file plugin does; the client then sees a read-only export.
    pub(crate) fn open(&self, readonly: bool) -> Result<Opened> {
        match self {
            Source::File(path) => open_at(None, path.as_os_str().as_bytes(), readonly),
            Source::Dir(path) => {
                let name = export_file_name()?;
                let dir = File::open(path).map_err(failed(format!("open {}", path.display())))?;
                open_at(Some(dir.as_raw_fd()), name.as_bytes(), readonly)
            }
            Source::DirFd(fd) => {
                let name = export_file_name()?;
                open_at(Some(*fd), name.as_bytes(), readonly)
            }
            Source::Fd(fd) => {
                // SAFETY: `check` saw it open; it stays open for nbdkit's life (ours to use).
                let borrowed = unsafe { BorrowedFd::borrow_raw(*fd) };
                let file = File::from(
                    borrowed
                        .try_clone_to_owned()
                        .map_err(failed(format!("dup fd={fd}")))?,
                );
                // A descriptor opened read-only is served read-only, not failed at each write.
                let flags = fcntl(file.as_raw_fd(), FcntlArg::F_GETFL).map_err(failed("fcntl"))?;
                let access = OFlag::from_bits_truncate(flags) & OFlag::O_ACCMODE;
                if access == OFlag::O_WRONLY {
                    log::debug!("file: fd={fd} is write-only: reads will fail");
                }
                Ok(Opened {
                    writable: !readonly && access != OFlag::O_RDONLY,
                    file,
                })
            }
        }
    }
}

/// The export name as a file in the served directory: not empty, no `/`.
fn export_file_name() -> Result<String> {
    let name = server::export_name()?;
    if name.is_empty() {
        return Err(Error::new(
            Errno::ENOENT,
            "file: open: cannot use empty file name or export name (\"\")",
        ));
    }
    if name.contains('/') {
        return Err(Error::invalid("file: exportname cannot contain /"));
    }
    Ok(name)
}

/// Opens `name` (relative to `dir`, or absolute), read-write unless `readonly`, falling back to
/// read-only when writing is refused.
fn open_at(dir: Option<RawFd>, name: &[u8], readonly: bool) -> Result<Opened> {
    let shown = String::from_utf8_lossy(name).into_owned();
    let path = CString::new(name).map_err(|_| Error::invalid("file: a NUL in the name"))?;
    // Serving a terminal would be odd, but opening one must not make it ours.
    let flags = OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
    let open = |access: OFlag| {
        openat(dir, path.as_c_str(), flags | access, Mode::empty())
            // SAFETY: a descriptor openat just returned, owned by nothing else.
            .map(|fd| File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
    };
    if !readonly {
        match open(OFlag::O_RDWR) {
            Ok(file) => {
                return Ok(Opened {
                    file,
                    writable: true,
                })
            }
            Err(e) => log::debug!(
                "file: open O_RDWR failed, falling back to read-only: {shown}: {}",
                e.desc()
            ),
        }
    }
    let file = open(OFlag::O_RDONLY).map_err(failed(format!("open: {shown}")))?;
    Ok(Opened {
        file,
        writable: false,
    })
}

/// The absolute path with links resolved; the file must exist (as with `nbdkit_realpath`). A
/// relative path is taken relative to `server::realpath(".")`, nbdkit's working directory: on
/// hot reload the shim answers that with the directory nbdkit was started in, as at the first
/// load, where the process's own (`std::fs::canonicalize` alone) is `/` once a background
/// nbdkit has changed there. The refusal is the plugin's one line.
fn realpath(value: &str) -> Result<PathBuf> {
    let path = Path::new(value);
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        server::realpath(".")?.join(path)
    };
    std::fs::canonicalize(absolute).map_err(failed(format!("file: realpath: {value}")))
}

/// `fd=`/`dirfd=`: a number above 2 (nbdkit keeps 0–2).
fn parse_fd(what: &str, value: &str) -> Result<RawFd> {
    let fd: RawFd = value
        .parse()
        .map_err(|_| Error::invalid(format!("file: {what}: could not parse number: {value}")))?;
    if fd <= 2 {
        return Err(Error::invalid(
            "file: file descriptor must be > 2 because stdin, stdout and stderr are reserved \
             for nbdkit",
        ));
    }
    Ok(fd)
}

/// `fstat` of a descriptor, if it is open.
fn fd_metadata(fd: RawFd) -> Option<std::fs::Metadata> {
    std::fs::metadata(format!("/proc/self/fd/{fd}")).ok()
}
