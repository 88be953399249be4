//! The environment of a run: the built artifacts, the scratch directory and its files (the disk
//! image, the python script), and the nbdkit command line of each way of serving a disk.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use rustshim_harness::FILTER_SHIM_INSTALLED;

use super::matrix::{Kind, Settings};
use super::placement::Placement;
use super::server::{Launch, Server};
use super::{write_file, Result};
use crate::workspace::{filter_path, plugin_path, target_dir, workspace, SHIM};

/// The size of every disk.
const SIZE: &str = "1G";
const SIZE_BYTES: u64 = 1 << 30;
/// The bench-only crate: a RAM disk written with the `nbdkit` crate.
pub const CRATE_PACKAGE: &str = "nbdkit-crate-ramdisk";
pub const CRATE_PLUGIN: &str = "libnbdkit_crate_ramdisk.so";
/// nbdkit's python plugin serving a RAM disk, as a python author would write one.
pub const PYTHON_RAMDISK: &str = include_str!("ramdisk.py");

pub struct Env {
    /// Scratch directory (the disk image, the python script, callgrind output; each server
    /// has a directory of its own, made by the harness).
    pub dir: PathBuf,
    artifacts: PathBuf,
    disk_image: PathBuf,
    python_script: PathBuf,
    /// The shim's copy that serves as the filter shim (see [`filter_shim`]).
    filter_shim: PathBuf,
    /// `None` on a machine with one CPU: then nothing is pinned.
    pub placement: Option<Placement>,
}

impl Env {
    pub fn new(release: bool, settings: &Settings) -> Result<Env> {
        let dir = std::env::temp_dir().join(format!("rustshim-bench-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let env = Env {
            disk_image: dir.join("disk.img"),
            python_script: dir.join("ramdisk.py"),
            filter_shim: dir.join(FILTER_SHIM_INSTALLED),
            dir,
            artifacts: target_dir(release),
            placement: Placement::probe(),
        };
        if settings.uses(Kind::Python) {
            write_file(&env.python_script, PYTHON_RAMDISK)?;
        }
        if settings.uses(Kind::CFile) {
            make_disk_image(&env.disk_image)?;
        }
        if settings.uses(Kind::NullRustFilter) {
            filter_shim(&env.artifacts.join(SHIM), &env.filter_shim)?;
        }
        Ok(env)
    }

    /// The shim the servers load.
    pub fn shim(&self) -> PathBuf {
        self.artifacts.join(SHIM)
    }

    /// How to serve a disk this way, run by `wrapper` (e.g. valgrind) if not empty.
    pub fn launch(&self, kind: Kind, wrapper: &[OsString]) -> Launch {
        Launch {
            label: kind.label().to_string(),
            wrapper: wrapper.to_vec(),
            args: self.server_args(kind),
            env: Vec::new(),
        }
    }

    /// A server of this kind, listening.
    pub fn start(&self, kind: Kind, wrapper: &[OsString]) -> Result<Server> {
        Server::start(&self.launch(kind, wrapper))
    }

    /// A server of this kind, just spawned.
    pub fn spawn(&self, kind: Kind) -> Result<Server> {
        Server::spawn(&self.launch(kind, &[]))
    }

    /// What follows `nbdkit -f --exit-with-parent -U SOCKET -P PIDFILE`.
    fn server_args(&self, kind: Kind) -> Vec<OsString> {
        let shim = |plugin: &str| -> Vec<OsString> {
            vec![
                self.artifacts.join(SHIM).into(),
                format!("plugin={}", plugin_path(&self.artifacts, plugin).display()).into(),
            ]
        };
        let size: OsString = format!("size={SIZE}").into();
        let file: OsString = format!("file={}", self.disk_image.display()).into();
        let mut args: Vec<OsString> = match kind {
            Kind::CNull => vec!["null".into()],
            Kind::ShimNull => shim("null"),
            Kind::CMemory => vec!["memory".into()],
            Kind::ShimMemory => shim("memory"),
            Kind::CFile => vec!["file".into()],
            Kind::ShimFile => shim("file"),
            Kind::Crate => vec![self.artifacts.join(CRATE_PLUGIN).into()],
            Kind::Python => vec!["python".into(), self.python_script.clone().into()],
            Kind::NullCFilter => vec!["--filter=nofilter".into(), "null".into()],
            Kind::NullRustFilter => vec![
                format!("--filter={}", self.filter_shim.display()).into(),
                "null".into(),
                format!(
                    "filter={}",
                    filter_path(&self.artifacts, "passthrough").display()
                )
                .into(),
            ],
        };
        args.push(if matches!(kind, Kind::CFile | Kind::ShimFile) {
            file
        } else {
            size
        });
        args
    }

    /// A path or argument as the report shows it: the scratch directory as `$BENCH`, the
    /// workspace as a relative path.
    pub fn shown(&self, arg: &OsStr) -> String {
        let text = arg.to_string_lossy();
        let root = format!("{}/", workspace().display());
        text.replace(&*self.dir.to_string_lossy(), "$BENCH")
            .replace(&root, "")
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The filter shim: a copy of the shim named as `cargo xtask install` names it in nbdkit's filter
/// directory. The same file would serve as well (the shim keeps its plugin and filter state
/// apart), but callgrind names objects by file, and a copy of its own lets `callgrind::part_of`
/// tell the filter shim's instructions from the plugin shim's.
fn filter_shim(shim: &Path, copy: &Path) -> Result {
    fs::copy(shim, copy)
        .map(|_| ())
        .map_err(|e| format!("cannot copy {} to {}: {e}", shim.display(), copy.display()))
}

/// A 1 GiB file of pseudo-random bytes, read once so that it is in the page cache.
fn make_disk_image(path: &Path) -> Result {
    let fail = |e: io::Error| format!("cannot make {}: {e}", path.display());
    let mut file = File::create(path).map_err(fail)?;
    let mut chunk = vec![0u8; 1 << 20];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..SIZE_BYTES >> 20 {
        for word in chunk.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        file.write_all(&chunk).map_err(fail)?;
    }
    drop(file);
    let mut file = File::open(path).map_err(fail)?;
    while file.read(&mut chunk).map_err(fail)? > 0 {}
    Ok(())
}
