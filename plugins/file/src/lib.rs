//! `file`: serves a file or a block device, or the files of a directory, like nbdkit's own
//! file plugin.
//!
//! ```text
//! nbdkit rustshim plugin=librustshim_file.so file=disk.img
//! nbdkit -r rustshim librustshim_file.so disk.img                # read-only: nbdkit's -r
//! nbdkit rustshim plugin=librustshim_file.so dir=/var/tmp/exports     # one export per file
//! nbdkit rustshim plugin=librustshim_file.so fd=3                     # an inherited descriptor
//! ```
//!
//! Reads and writes are positional (`pread`/`pwrite`), so requests run in parallel on one file
//! descriptor. Trimming and zeroing use `fallocate`, and extents come from `lseek` with
//! `SEEK_DATA`/`SEEK_HOLE`, so sparse files stay sparse and clients can skip their holes. A file
//! that cannot be opened for writing is served read-only. `fadvise=` hints the access pattern to
//! the kernel, `cache=none` keeps the data out of the page cache.

use std::fmt::Display;
use std::fs::File;
use std::io::{ErrorKind, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::fcntl::{fallocate, posix_fadvise, FallocateFlags, PosixFadviseAdvice};
use nix::unistd::{lseek, Whence};
use rustshim_plugin_api::prelude::*;

mod evict;
mod source;

use evict::Evictor;
use source::Source;

#[derive(Default)]
struct FilePlugin {
    /// From `file=`, `dir=`, `fd=` or `dirfd=`: exactly one.
    source: Option<Source>,
    /// From `fadvise=`: the hint given for each connection's file.
    fadvise: Option<PosixFadviseAdvice>,
    /// With `cache=none`: what was written recently.
    evictor: Option<Evictor>,
}

/// One connection's open file.
struct Handle {
    /// Shared with `cache=none`'s list of recent writes.
    file: Arc<File>,
    /// Whether the file was opened for writing.
    writable: bool,
    is_block_device: bool,
    /// Whether `fallocate` may still be supported for each mode: cleared the first time the
    /// file system says no, so an unsupported call is not made again for every request.
    can_punch_hole: AtomicBool,
    can_zero_range: AtomicBool,
}

#[plugin]
impl Plugin for FilePlugin {
    type Handle = Handle;

    const NAME: &'static str = "file";
    const LONGNAME: Option<&'static str> = Some("Rust file plugin");
    const VERSION: Option<&'static str> = Some(env!("CARGO_PKG_VERSION"));
    const DESCRIPTION: Option<&'static str> = Some("Serves a file or a block device.");
    const CONFIG_HELP: Option<&'static str> = Some(
        "[file=]<FILENAME>       The file or block device to serve\n\
         fd=<FILE_DESCRIPTOR>    Serve the file open on this inherited descriptor\n\
         dir=<DIRNAME>           Serve the files of a directory, one export each\n\
         dirfd=<FILE_DESCRIPTOR> Serve the directory open on this inherited descriptor\n\
         cache=default|none      Keep served data out of the page cache (none)\n\
         fadvise=normal|random|sequential  Hint the access pattern to the kernel",
    );
    // `nbdkit rustshim librustshim_file.so disk.img` means file=disk.img.
    const MAGIC_CONFIG_KEY: Option<&'static str> = Some("file");

    fn config(&mut self, key: &str, value: &str) -> Result<()> {
        if let Some(source) = Source::parse(key, value)? {
            if self.source.is_some() {
                return Err(Error::invalid(
                    "file: file|dir|fd|dirfd parameter can only appear once on the command line",
                ));
            }
            self.source = Some(source);
            return Ok(());
        }
        match key {
            "fadvise" => {
                self.fadvise = Some(match value {
                    "normal" => PosixFadviseAdvice::POSIX_FADV_NORMAL,
                    "random" => PosixFadviseAdvice::POSIX_FADV_RANDOM,
                    "sequential" => PosixFadviseAdvice::POSIX_FADV_SEQUENTIAL,
                    _ => {
                        return Err(Error::invalid(format!(
                            "file: unknown fadvise mode: {value}"
                        )))
                    }
                })
            }
            "cache" => {
                self.evictor = match value {
                    "default" => None,
                    "none" => Some(Evictor::new()),
                    _ => return Err(Error::invalid(format!("file: unknown cache mode: {value}"))),
                }
            }
            // nbdkit 1.48's name for cache=none.
            "reduce-memory-pressure" => {
                self.evictor = server::parse_bool(value)?.then(Evictor::new);
            }
            "rdelay" | "wdelay" => {
                return Err(Error::invalid(
                    "file: add --filter=delay on the command line",
                ))
            }
            _ => return Err(Error::invalid(format!("file: unknown parameter '{key}'"))),
        }
        Ok(())
    }

    fn config_complete(&mut self) -> Result<()> {
        match &self.source {
            Some(source) => source.check(),
            None => Err(Error::invalid(
                "file: you must supply [file=]<FILENAME>, dir=<DIRNAME> or fd=<FD> parameter \
                 after the plugin name on the command line",
            )),
        }
    }

    // What nbdkit's file plugin reports about how it was built, for what this one does too.
    fn dump_plugin(&self, dump: &mut Dump) {
        dump.field("file_extents", "yes");
        dump.field("file_falloc_fl_punch_hole", "yes");
        dump.field("file_falloc_fl_zero_range", "yes");
    }

    // A file is the default export; a directory has one export per file.
    fn list_exports(&self, _readonly: bool, _is_tls: bool, exports: &mut Exports) -> Result<()> {
        self.source().list(exports)
    }

    // The file is opened once per connection, as nbdkit's file plugin does: each connection
    // then opens it with the access it needs (read-only for `nbdkit -r` or a read-only
    // client, or when writing is refused), and a file replaced between connections is picked
    // up by the next one.
    fn open(&self, readonly: bool) -> Result<Handle> {
        let opened = self.source().open(readonly)?;
        let metadata = opened.file.metadata().map_err(failed("fstat"))?;
        let is_block_device = metadata.file_type().is_block_device();
        if !metadata.is_file() && !is_block_device {
            return Err(Error::invalid("file: file is not regular or block device"));
        }
        if let Some(advice) = self.fadvise {
            // A hint: a file system that ignores it is fine.
            if let Err(e) = posix_fadvise(opened.file.as_raw_fd(), 0, 0, advice) {
                log::debug!("file: posix_fadvise: {} (ignored)", e.desc());
            }
        }
        Ok(Handle {
            file: Arc::new(opened.file),
            writable: opened.writable,
            is_block_device,
            can_punch_hole: AtomicBool::new(true),
            can_zero_range: AtomicBool::new(true),
        })
    }

    // Asked every time, so a file that grew between connections is served whole. A block
    // device's `st_size` is 0: its size is where its end is.
    fn get_size(&self, h: &Handle) -> Result<u64> {
        if h.is_block_device {
            Ok((&*h.file).seek(SeekFrom::End(0)).map_err(failed("lseek"))?)
        } else {
            Ok(h.file.metadata().map_err(failed("fstat"))?.len())
        }
    }

    fn can_write(&self, h: &Handle) -> Result<bool> {
        Ok(h.writable)
    }

    // All connections share the kernel's page cache for the file, so what one writes the others
    // read, and `fdatasync` on any descriptor flushes the file for all of them.
    fn can_multi_conn(&self, _: &Handle) -> Result<bool> {
        Ok(true)
    }

    // Native: a FUA request is followed by `fdatasync` before it is acknowledged. That is what
    // nbdkit's emulation would do through `flush`, without the extra call through the server.
    fn can_fua(&self, _: &Handle) -> Result<FuaMode> {
        Ok(FuaMode::Native)
    }

    // A trim punches a hole, which only a regular file can have. (nbdkit's file plugin discards
    // on block devices with BLKDISCARD, an ioctl; this plugin leaves their trims unadvertised.)
    fn can_trim(&self, h: &Handle) -> Result<bool> {
        Ok(!h.is_block_device)
    }

    // Like nbdkit's file plugin, fast zero is not advertised (nbdkit's default when `zero` is
    // defined), so clients do not send FAST_ZERO.

    // Native: `cache` asks the kernel to read ahead (`POSIX_FADV_WILLNEED`).
    fn can_cache(&self, _: &Handle) -> Result<CacheMode> {
        Ok(CacheMode::Native)
    }

    fn cache(&self, h: &Handle, count: u32, offset: u64, _flags: Flags) -> Result<()> {
        posix_fadvise(
            h.file.as_raw_fd(),
            to_off(offset),
            count.into(),
            PosixFadviseAdvice::POSIX_FADV_WILLNEED,
        )
        .map_err(failed("posix_fadvise"))
    }

    // nbdkit never asks past the size it was given, so running out of file means the file
    // shrank under us: an error, not zeroes.
    fn pread(&self, h: &Handle, buf: &mut [u8], offset: u64, _flags: Flags) -> Result<()> {
        h.file.read_exact_at(buf, offset).map_err(|e| {
            if e.kind() == ErrorKind::UnexpectedEof {
                Error::new(Errno::EIO, "pread: unexpected end of file")
            } else {
                failed("pread")(e)
            }
        })?;
        if self.evictor.is_some() {
            Evictor::after_read(&h.file, offset, buf.len() as u64);
        }
        Ok(())
    }

    fn pwrite(&self, h: &Handle, buf: &[u8], offset: u64, flags: Flags) -> Result<()> {
        h.file.write_all_at(buf, offset).map_err(failed("pwrite"))?;
        sync_if_fua(h, flags)?;
        match &self.evictor {
            Some(evictor) => evictor.after_write(&h.file, offset, buf.len() as u64),
            None => Ok(()),
        }
    }

    // Only the data needs to reach the disk: metadata such as timestamps does not matter to
    // the client.
    fn flush(&self, h: &Handle, _flags: Flags) -> Result<()> {
        h.file.sync_data().map_err(failed("fdatasync"))
    }

    // A trim is only a hint: where holes cannot be punched, doing nothing is correct.
    fn trim(&self, h: &Handle, count: u32, offset: u64, flags: Flags) -> Result<()> {
        if h.can_punch_hole.load(Ordering::Relaxed) {
            let punch = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
            if !try_fallocate(h, &h.can_punch_hole, punch, count, offset)? {
                log::debug!("file: trim ignored: the file system cannot punch holes");
            }
        }
        sync_if_fua(h, flags)
    }

    // Tried in order of what the client allows and what frees the most space: punch a hole
    // (only with MAY_TRIM, as the client may want the space kept allocated), then zero the range
    // in place. If neither is supported, ENOTSUP makes the shim write zeroes itself, or, with
    // FAST_ZERO, tells the client that zeroing would be no faster than writing.
    fn zero(&self, h: &Handle, count: u32, offset: u64, flags: Flags) -> Result<()> {
        if flags.contains(Flags::MAY_TRIM) && h.can_punch_hole.load(Ordering::Relaxed) {
            let punch = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
            if try_fallocate(h, &h.can_punch_hole, punch, count, offset)? {
                return sync_if_fua(h, flags);
            }
        }
        // On a block device the kernel may carry out ZERO_RANGE by writing zeroes, which is not
        // fast; punching holes there (above) never falls back to writing.
        let fast_only = flags.contains(Flags::FAST_ZERO) && h.is_block_device;
        if !fast_only && h.can_zero_range.load(Ordering::Relaxed) {
            let zero_range = FallocateFlags::FALLOC_FL_ZERO_RANGE;
            if try_fallocate(h, &h.can_zero_range, zero_range, count, offset)? {
                return sync_if_fua(h, flags);
            }
        }
        Err(Error::new(
            Errno::ENOTSUP,
            "zero: the file system cannot zero a range without writing",
        ))
    }

    // Holes (from `SEEK_HOLE` to the next `SEEK_DATA`) read as zeroes; the rest is data.
    fn extents(
        &self,
        h: &Handle,
        count: u32,
        offset: u64,
        flags: Flags,
        extents: &mut Extents,
    ) -> Result<()> {
        let fd = h.file.as_raw_fd();
        let end = offset + u64::from(count);
        let mut pos = offset;
        while pos < end {
            let data_start = match lseek(fd, to_off(pos), Whence::SeekData) {
                Ok(data_start) => data_start as u64,
                // No data after `pos`: a hole up to the end of the file.
                Err(Errno::ENXIO) => end,
                // The file system cannot tell holes: everything is data, as nbdkit assumes for
                // a plugin without extents.
                Err(Errno::EINVAL | Errno::EOPNOTSUPP) => {
                    return extents.add(pos, end - pos, ExtentType::DATA);
                }
                Err(e) => return Err(failed("lseek SEEK_DATA")(e)),
            };
            if data_start > pos {
                extents.add(pos, data_start - pos, ExtentType::HOLE | ExtentType::ZERO)?;
                pos = data_start;
            } else {
                let data_end = match lseek(fd, to_off(pos), Whence::SeekHole) {
                    Ok(hole_start) => hole_start as u64,
                    // `pos` is past the end: the file shrank; leave the rest to the next round.
                    Err(Errno::ENXIO) => pos,
                    Err(e) => return Err(failed("lseek SEEK_HOLE")(e)),
                };
                if data_end == pos {
                    // Nothing more to learn (the file shrank or changed under us): call the
                    // rest data, which is always a safe answer.
                    return extents.add(pos, end - pos, ExtentType::DATA);
                }
                extents.add(pos, data_end - pos, ExtentType::DATA)?;
                pos = data_end;
            }
            // One extent is all the client asked for.
            if flags.contains(Flags::REQ_ONE) {
                break;
            }
        }
        Ok(())
    }
}

impl FilePlugin {
    fn source(&self) -> &Source {
        self.source
            .as_ref()
            .expect("config_complete checked the source")
    }
}

/// Makes a FUA request durable before it is acknowledged (see `can_fua`).
fn sync_if_fua(h: &Handle, flags: Flags) -> Result<()> {
    if flags.contains(Flags::FUA) {
        h.file.sync_data().map_err(failed("fdatasync"))?;
    }
    Ok(())
}

/// `fallocate` in `mode`: true if done, false if the file system does not support the mode
/// (and then `supported` is cleared), an error otherwise.
fn try_fallocate(
    h: &Handle,
    supported: &AtomicBool,
    mode: FallocateFlags,
    count: u32,
    offset: u64,
) -> Result<bool> {
    match fallocate(h.file.as_raw_fd(), mode, to_off(offset), count.into()) {
        Ok(()) => Ok(true),
        // Old kernels say ENODEV for block devices where newer ones say EOPNOTSUPP.
        Err(Errno::EOPNOTSUPP | Errno::ENODEV) => {
            supported.store(false, Ordering::Relaxed);
            Ok(false)
        }
        Err(e) => Err(failed(format!("fallocate {mode:?}"))(e)),
    }
}

/// An offset as `off_t`. nbdkit never passes one beyond `i64::MAX` (the largest size it serves).
fn to_off(offset: u64) -> i64 {
    i64::try_from(offset).expect("nbdkit offsets fit in off_t")
}

/// Names what failed in an OS error's message; the errno reaches the client unchanged.
pub(crate) fn failed<E: Into<Error>>(what: impl Display) -> impl FnOnce(E) -> Error {
    move |e| e.into().context(what)
}

export_plugin!(FilePlugin);
