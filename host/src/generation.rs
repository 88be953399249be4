//! A `Generation` is one load of a plugin (or filter) file: a private copy of the file, its
//! checked root module, and the instance made from it. Connections hold the generation that
//! opened them (an `Arc`), so a later generation can take over new connections while old ones
//! finish. The same code loads plugins and filters: `M` is the root module's type
//! ([`Module`]).
//!
//! Why a private copy: the dynamic linker hands back the already-loaded object for a path (or
//! inode) it has seen, so a rebuilt plugin at the same path could never be loaded again; and
//! overwriting a loaded `.so` in place (`cp new.so loaded.so`) crashes the process. A copy that
//! only the shim knows about avoids both. The copy is an [`Image`]: the file read once into
//! memory, and everything after (checks, comparison, trial load, `dlopen`) works on those bytes.
//! Copies are never unloaded (see `abi::load`).

use std::ffi::c_void;
use std::fs;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use rustshim_plugin_api::abi::{InstancePtr, PluginModuleRef};
use rustshim_plugin_api::ThreadModel;

use crate::elf;
use crate::failure::Failure;
use crate::image::{Digest, Image};
use crate::locate::{check_permissions, Trust};
use crate::module::Module;
use crate::nbdkit_c;
use crate::probe;
use crate::services;

/// One loaded plugin (or filter) instance.
pub struct Generation<M: Module = PluginModuleRef> {
    /// 1 for the first load, then counting up with each reload.
    pub number: u32,
    /// The plugin file as the user named it, made absolute.
    pub source: PathBuf,
    /// The root module of the private copy.
    pub module: M,
    /// The `rustshim-plugin-api` version the plugin was built against.
    pub abi_version: String,
    /// The plugin's instance.
    pub instance: InstancePtr,
    /// The name the private copy was loaded under (`/proc/self/fd/N`: it is in no directory).
    pub copy: PathBuf,
    /// What identifies the bytes loaded (a reload compares it with the next build).
    pub digest: Digest,
    /// Set once `after_fork` succeeded: the generation has served and needs `cleanup`.
    serving: AtomicBool,
    /// Set once `cleanup` ran.
    cleaned: AtomicBool,
    destroyed: AtomicBool,
    /// A filter's layer below (`nbdkit_backend *`), given at `after_fork`, for its `cleanup`.
    pub backend: AtomicPtr<c_void>,
}

// SAFETY: the instance is the author's `T: Plugin` or `T: Filter`, which is `Send + Sync`; the
// module is immutable static data. The pointers are only dereferenced by the author's own
// adapter (and the backend by nbdkit).
unsafe impl<M: Module> Send for Generation<M> {}
// SAFETY: as above.
unsafe impl<M: Module> Sync for Generation<M> {}

/// A plugin (or filter) file read into memory and checked, not loaded yet (see
/// [`Generation::read`]).
pub struct Build<M: Module = PluginModuleRef> {
    number: u32,
    source: PathBuf,
    image: Image,
    /// The byte ranges the dynamic linker reads: headers and loadable segments.
    loaded: Vec<(u64, u64)>,
    module: PhantomData<M>,
}

impl<M: Module> Build<M> {
    /// What identifies its bytes.
    pub fn digest(&self) -> Digest {
        self.image.digest()
    }
}

impl<M: Module> Generation<M> {
    /// Loads `source` as generation `number` and makes its instance (the author's `load`).
    /// Errors are one line naming the file and the cause.
    pub fn load(number: u32, source: &Path, trust: Trust) -> Result<Generation<M>, Failure> {
        Generation::<M>::read(number, source, trust)?.load()
    }

    /// Reads `source` once into memory and checks what can be checked without loading it.
    pub fn read(number: u32, source: &Path, trust: Trust) -> Result<Build<M>, Failure> {
        let kind = M::WHAT;
        let source = absolute(kind, source)?;
        let mut file = open(kind, &source)?;
        if trust == Trust::CheckPermissions {
            check_permissions(kind, &source)?;
        }
        let label = format!(
            "rustshim-gen{number}-{}",
            source.file_name().unwrap_or_default().to_string_lossy()
        );
        let image = Image::read(&mut file, &label)
            .map_err(|e| format!("{kind} file '{}' cannot be read: {e}", source.display()))?;
        let loaded = precheck(kind, &source, &image)?;
        Ok(Build {
            number,
            source,
            image,
            loaded,
            module: PhantomData,
        })
    }
}

impl<M: Module> Build<M> {
    /// Loads the checked bytes: a trial load in another process first, then into nbdkit's.
    pub fn load(self) -> Result<Generation<M>, Failure> {
        let kind = M::WHAT;
        let Build {
            number,
            source,
            mut image,
            loaded,
            ..
        } = self;
        let shown = source.display();
        image
            .keep_only(&loaded)
            .map_err(|e| format!("{kind} file '{shown}': cannot prepare its copy: {e}"))?;
        probe::trial_load(image.fd(), &source, kind)?;
        let copy = image
            .loader_path()
            .map_err(|e| format!("{kind} file '{shown}' cannot be loaded: {e}"))?;
        let checked = probe::open_checked::<M>(&copy, &source)?;
        let digest = image.digest();
        drop(image);
        let module = checked.module;
        refuse_unknown_callbacks(&module, &checked.abi_version)
            .map_err(|why| format!("{kind} file '{shown}' {why}"))?;
        if !module.panic_unwinds() {
            nbdkit_c::error(&format!(
                "warning: {kind} '{}' ({shown}) was built with panic = \"abort\": a panic in it will end nbdkit",
                module.name()
            ));
        }

        let mut instance = InstancePtr(std::ptr::null_mut());
        if module.create(&mut instance) != 0 {
            let msg = services::take_error().msg;
            return Err(Failure::invalid(format!(
                "{kind} '{}' ({shown}) failed to load: {msg}",
                module.name()
            )));
        }
        nbdkit_c::debug(&format!(
            "rustshim: loaded generation {number}: {kind} '{}' version {} from {shown} (private copy {}, built against rustshim-plugin-api {})",
            module.name(),
            module.version().map(|v| v.as_str()).unwrap_or("(none)"),
            copy.display(),
            checked.abi_version
        ));
        Ok(Generation {
            number,
            source,
            module,
            abi_version: checked.abi_version,
            instance,
            copy,
            digest,
            serving: AtomicBool::new(false),
            cleaned: AtomicBool::new(false),
            destroyed: AtomicBool::new(false),
            backend: AtomicPtr::new(std::ptr::null_mut()),
        })
    }
}

impl<M: Module> Generation<M> {
    /// What a `thread_model` callback answered (`raw`), as a model: its recorded error when it
    /// failed (not yet reported), one line naming it when the value is none of nbdkit's.
    pub fn thread_model_answer(&self, raw: i32) -> Result<ThreadModel, Failure> {
        if raw < 0 {
            return Err(services::take_error());
        }
        ThreadModel::from_raw(raw).ok_or_else(|| {
            Failure::invalid(format!(
                "{} '{}': thread_model returned invalid value {raw}",
                M::WHAT,
                self.name()
            ))
        })
    }

    /// The author's name for it.
    pub fn name(&self) -> &'static str {
        self.module.name().as_str()
    }

    /// The callbacks the author wrote, by name.
    pub fn implemented(&self) -> impl Iterator<Item = &'static str> {
        let bits = self.module.implemented();
        M::CALLBACK_NAMES
            .iter()
            .enumerate()
            .filter(move |(i, _)| bits & (1 << i) != 0)
            .map(|(_, n)| *n)
    }

    /// Marks the generation as serving: it gets `cleanup` when it retires.
    pub fn set_serving(&self) {
        self.serving.store(true, Ordering::Release);
    }

    /// Runs the author's `cleanup`, once, if the generation has served.
    pub fn cleanup(&self) {
        if self.serving.load(Ordering::Acquire) && !self.cleaned.swap(true, Ordering::AcqRel) {
            // SAFETY: called when no request of this generation runs any more (nbdkit's
            // `.cleanup`, or the last connection of a retired generation has closed).
            unsafe {
                self.module
                    .cleanup(self.instance, self.backend.load(Ordering::Acquire))
            };
            services::log_recorded_error();
        }
    }

    /// Runs the author's `unload` and frees the instance, once; later calls do nothing.
    pub fn destroy(&self) {
        if !self.destroyed.swap(true, Ordering::AcqRel) {
            // SAFETY: the instance was made by this module's `create` and is used no more
            // (nbdkit calls `unload` after all other callbacks).
            unsafe { self.module.destroy(self.instance) };
            services::log_recorded_error();
        }
    }

    /// Whether `build` has the bytes this generation was loaded from (a touched, not rebuilt,
    /// file): then a reload has nothing to load.
    pub fn same_build_as(&self, build: &Build<M>) -> bool {
        self.digest == build.digest()
    }
}

impl Generation<PluginModuleRef> {
    /// The plugin's thread model (its `thread_model` callback, or parallel without one). On
    /// failure returns the plugin's errno and message, not yet reported.
    pub fn thread_model(&self) -> Result<ThreadModel, Failure> {
        let Some(f) = self.module.thread_model() else {
            return Ok(ThreadModel::Parallel);
        };
        // SAFETY: the instance belongs to this module; `&self` callback.
        self.thread_model_answer(unsafe { f(self.instance) })
    }

    /// Runs one of the plugin's single-threaded lifecycle callbacks (`config_complete`,
    /// `get_ready`, `after_fork`), if it has it. On failure returns the plugin's errno and
    /// message, not yet reported.
    pub fn lifecycle(&self, callback: Lifecycle) -> Result<(), Failure> {
        let m = &self.module;
        let slot = match callback {
            Lifecycle::ConfigComplete => m.config_complete(),
            Lifecycle::GetReady => m.get_ready(),
            Lifecycle::AfterFork => m.after_fork(),
        };
        if let Some(f) = slot {
            // SAFETY: the instance belongs to this module; the shim calls these before the
            // generation serves, while nothing else uses the instance.
            if unsafe { f(self.instance) } < 0 {
                return Err(services::take_error());
            }
        }
        if callback == Lifecycle::AfterFork {
            self.set_serving();
        }
        Ok(())
    }
}

/// A plugin (or filter) built against a newer minor version of the ABI loads, unless it
/// implements callbacks this shim cannot call: then it would silently lose behaviour its author
/// wrote, so it is refused, naming them.
fn refuse_unknown_callbacks<M: Module>(module: &M, abi_version: &str) -> Result<(), String> {
    let known = M::CALLBACK_NAMES.len();
    let bits = module.implemented();
    let names = module.callback_names();
    let unknown: Vec<String> = (known..64)
        .filter(|i| bits & (1 << i) != 0)
        .map(|i| {
            names
                .get(i)
                .map_or_else(|| format!("callback #{i}"), |n| n.to_string())
        })
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(format!(
        "implements callbacks this shim cannot call: {} (the {} was built against rustshim-plugin-api {abi_version}, this shim speaks {}): use a newer shim",
        unknown.join(", "),
        M::WHAT,
        rustshim_plugin_api::abi::ABI_VERSION
    ))
}

/// A generation is dropped when nothing refers to it any more: for a generation replaced by a
/// reload, when its last connection closes. It then gets `cleanup` and `unload`, once.
impl<M: Module> Drop for Generation<M> {
    fn drop(&mut self) {
        self.cleanup();
        if !self.destroyed.load(Ordering::Acquire) {
            self.destroy();
            nbdkit_c::debug(&format!(
                "rustshim: generation {} retired (cleanup and unload done)",
                self.number
            ));
        }
    }
}

/// The single-threaded callbacks that prepare a generation.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum Lifecycle {
    ConfigComplete,
    GetReady,
    AfterFork,
}

fn absolute(kind: &str, path: &Path) -> Result<PathBuf, String> {
    if path.as_os_str().is_empty() {
        return Err(format!("{kind}= is empty: give the path of a {kind} file"));
    }
    std::path::absolute(path).map_err(|e| format!("{kind} file '{}': {e}", path.display()))
}

/// Opens the plugin (or filter) file, with the messages for the common mistakes.
fn open(kind: &str, path: &Path) -> Result<fs::File, String> {
    let shown = path.display();
    let meta = fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{kind} file '{shown}' does not exist"),
        _ => format!("{kind} file '{shown}' cannot be accessed: {e}"),
    })?;
    if meta.is_dir() {
        return Err(format!(
            "{kind} file '{shown}' is a directory, not a {kind} (give the path of the .so file)"
        ));
    }
    fs::File::open(path).map_err(|e| format!("{kind} file '{shown}' cannot be read: {e}"))
}

/// Checks the bytes before handing them to the dynamic linker, whose messages are cryptic, and
/// returns the ranges it will read.
fn precheck(kind: &str, path: &Path, image: &Image) -> Result<Vec<(u64, u64)>, String> {
    let shown = path.display();
    let mut header = [0u8; 64];
    let read = image
        .read_at(&mut header, 0)
        .map_err(|e| format!("{kind} file '{shown}' cannot be read: {e}"))?;
    if read == 0 {
        return Err(format!("{kind} file '{shown}' is empty"));
    }
    if read < 4 || &header[..4] != b"\x7fELF" {
        return Err(format!(
            "{kind} file '{shown}' is not a shared object (no ELF header): expected a Rust {kind} built as a cdylib"
        ));
    }
    check_elf_segments(image, &header[..read])
        .map_err(|why| format!("{kind} file '{shown}' is not a loadable shared object: {why}"))
}

/// Checks that every loadable segment of a 64-bit little-endian ELF shared object lies within
/// the file, and returns their byte ranges with the headers'. The dynamic linker maps segments
/// without checking that the file is long enough, and touching a page past the end of a
/// truncated file kills the process with SIGBUS. (Everything else the linker reads is tried in
/// a trial process: see `probe`.)
fn check_elf_segments(image: &Image, header: &[u8]) -> Result<Vec<(u64, u64)>, String> {
    let file_len = image.len();
    if header.len() < 64 {
        return Err(format!(
            "the file is truncated ({file_len} bytes, shorter than an ELF header)"
        ));
    }
    if header[4] != 2 || header[5] != 1 {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let u16_at = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
    let u64_at =
        |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    const ET_DYN: u16 = 3;
    if u16_at(header, 16) != ET_DYN {
        return Err("it is an executable or object file, not a shared library".into());
    }
    let (phoff, phentsize, phnum) = (
        u64_at(header, 0x20),
        u64::from(u16_at(header, 0x36)),
        u64::from(u16_at(header, 0x38)),
    );
    let table_end = phoff.saturating_add(phentsize * phnum);
    if phentsize < 56 || table_end > file_len {
        return Err("the file is truncated (program headers missing)".into());
    }
    let mut table = vec![0u8; (phentsize * phnum) as usize];
    if image
        .read_at(&mut table, phoff)
        .map_err(|e| e.to_string())?
        < table.len()
    {
        return Err("the file is truncated (program headers missing)".into());
    }
    let mut ranges = vec![(0, 64), (phoff, table_end)];
    let (mut segments, mut dynamic) = (Vec::new(), None);
    const PT_LOAD: u32 = 1;
    const PT_DYNAMIC: u32 = 2;
    for entry in table.chunks_exact(phentsize as usize) {
        let kind = u32::from_le_bytes(entry[..4].try_into().expect("4 bytes"));
        let (offset, size) = (u64_at(entry, 8), u64_at(entry, 0x20));
        if kind == PT_LOAD {
            if offset.saturating_add(size) > file_len {
                return Err(format!(
                    "the file is truncated ({file_len} bytes, but a segment ends at byte {})",
                    offset.saturating_add(size)
                ));
            }
            ranges.push((offset, offset + size));
            segments.push(elf::Segment {
                vaddr: u64_at(entry, 0x10),
                offset,
                filesz: size,
                memsz: u64_at(entry, 0x28),
            });
        } else if kind == PT_DYNAMIC {
            dynamic = Some((offset, size));
        }
    }
    if let Some(dynamic) = dynamic {
        const EM_X86_64: u16 = 62;
        let x86_64 = u16_at(header, 18) == EM_X86_64;
        elf::check_dynamic(
            &|buf, at| image.read_at(buf, at),
            &segments,
            dynamic,
            x86_64,
        )
        .map_err(|why| format!("it is damaged: {why}"))?;
    }
    Ok(ranges)
}
