//! The compatibility promise, proven with separately built binaries (see "Compatibility" in the
//! README): within a major version of `rustshim-plugin-api`, an old plugin runs on a new shim and
//! a new plugin on an old shim (unless it implements something the old shim cannot call, which
//! is refused by name); builds with other profiles, optimisation levels, panic strategy and a
//! randomised Rust struct layout (standing in for another compiler) load and work.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rustshim_tests::fixtures::{
    build, build_plugin, next_minor, ApiCopy, Workspace, MINIMAL_PLUGIN, SAME_API,
};
use rustshim_tests::*;

/// `plugin-api`'s next minor release ([`next_minor`]) as it may change it: a callback and a host
/// service appended
/// after the `last_prefix_field` markers (see the rules in `plugin-api/src/abi/mod.rs`). Each
/// edit inserts before one of the "... go here" marker comments.
const API_1_1_EDITS: &[(&str, &str, &str)] = &[
    (
        "src/abi/mod.rs",
        "            // Callbacks added in later minor versions go here",
        "            /// Added in 1.1.\n            [36] new_callback: (Option<unsafe extern \"C\" fn(instance: InstancePtr) -> i32>),\n            // Callbacks added in later minor versions go here",
    ),
    (
        "src/abi/mod.rs",
        "    // Services added in later minor versions go here.",
        "    /// Added in 1.1.\n    pub added_in_1_1: extern \"C\" fn() -> i32,\n    // Services added in later minor versions go here.",
    ),
    (
        "src/plugin.rs",
        "    // ---- Shutting down ----",
        "    /// Added in 1.1.\n    fn new_callback(&self) -> Result<()> {\n        Ok(())\n    }\n\n    // ---- Shutting down ----",
    ),
    (
        "src/adapter/mod.rs",
        "// Callbacks added in later minor versions go here.",
        "unsafe extern \"C\" fn new_callback<T: Plugin>(i: InstancePtr) -> i32 {\n    let p = unsafe { instance::<T>(i) };\n    status(guard(T::NAME, \"new_callback\", || p.new_callback()))\n}\n\n// Callbacks added in later minor versions go here.",
    ),
];

/// The shim built against 1.1 fills the new host service.
const SHIM_1_1_EDITS: &[(&str, &str, &str)] = &[
    (
        "src/services.rs",
        "            // Services added in later minor versions go here.",
        "            added_in_1_1,\n            // Services added in later minor versions go here.",
    ),
    (
        "src/services.rs",
        "// The functions of services added in later minor versions go here.",
        "extern \"C\" fn added_in_1_1() -> i32 {\n    11\n}\n\n// The functions of services added in later minor versions go here.",
    ),
];

struct V11 {
    shim: PathBuf,
    plain_plugin: PathBuf,
    plugin_using_new_callback: PathBuf,
}

fn v1_1() -> &'static V11 {
    static BUILT: OnceLock<V11> = OnceLock::new();
    BUILT.get_or_init(|| {
        let uses_new = MINIMAL_PLUGIN.replace(
            "    fn open(&self, _readonly: bool)",
            "    fn new_callback(&self) -> Result<()> { Ok(()) }\n    fn open(&self, _readonly: bool)",
        );
        let built = build(&Workspace {
            name: "compat_1_1",
            api: &ApiCopy { version: &next_minor(), edits: API_1_1_EDITS },
            plugins: &[("plain_1_1", MINIMAL_PLUGIN), ("uses_new_1_1", &uses_new)],
            shim_edits: Some(SHIM_1_1_EDITS),
            ..Workspace::default()
        });
        V11 {
            shim: built.shim.unwrap(),
            plain_plugin: built.plugins[0].clone(),
            plugin_using_new_callback: built.plugins[1].clone(),
        }
    })
}

/// `nbdkit -s SHIM plugin=PLUGIN size=1M` under a Python client reading 4 bytes: what it prints
/// (fixture plugins ignore the size; `null` needs one).
fn read_through(shim: &Path, plugin: &Path) -> Run {
    let mut nbdkit = ServerBuilder::new()
        .shim(shim)
        .nbdkit_args(["-s", "--exit-with-parent"])
        .arg(format!("plugin={}", plugin.display()));
    if plugin.ends_with("librustshim_null.so") {
        nbdkit = nbdkit.arg("size=1M");
    }
    let argv = argv(&nbdkit);
    python(&format!(
        "h = nbd.NBD()\nh.connect_command({argv:?})\nprint(h.pread(4, 0).hex())\n"
    ))
}

fn dump(shim: &Path, plugin: &Path) -> Run {
    run_nbdkit(
        shim_nbdkit()
            .shim(shim)
            .arg(format!("plugin={}", plugin.display()))
            .arg("--dump-plugin"),
    )
}

#[test]
fn an_old_plugin_runs_on_a_newer_shim() {
    // This project's null plugin on a shim built against the next minor: abi_stable's own
    // checker refuses this (its issue #118); the shim's loader must not.
    let out = read_through(&v1_1().shim, &plugin("null")).ok();
    assert_eq!(out.stdout.trim(), "00000000");
    let out = dump(&v1_1().shim, &plugin("null")).ok();
    assert!(
        out.stdout
            .contains(&format!("rustshim_api_version={}", next_minor())),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains(&format!("rustshim_plugin_api_version={API_VERSION}")),
        "{}",
        out.stdout
    );
}

#[test]
fn a_newer_plugin_runs_on_an_older_shim_if_it_uses_only_what_the_shim_has() {
    let out = read_through(&shim(), &v1_1().plain_plugin).ok();
    assert_eq!(out.stdout.trim(), "5a5a5a5a");
    let out = dump(&shim(), &v1_1().plain_plugin).ok();
    assert!(
        out.stdout
            .contains(&format!("rustshim_plugin_api_version={}", next_minor())),
        "{}",
        out.stdout
    );
}

#[test]
fn a_newer_plugin_that_needs_more_than_the_older_shim_has_is_refused_by_name() {
    let out = nbdkit(&[
        format!("plugin={}", v1_1().plugin_using_new_callback.display()),
        "--run".into(),
        "true".into(),
    ])
    .failed();
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("cannot call"))
        .unwrap_or_else(|| panic!("{}", out.stderr));
    assert!(
        line.contains("new_callback") && line.contains(&next_minor()) && line.contains(API_VERSION),
        "{line}"
    );
    // The shim of its own version takes it.
    assert_eq!(
        read_through(&v1_1().shim, &v1_1().plugin_using_new_callback)
            .ok()
            .stdout
            .trim(),
        "5a5a5a5a"
    );
}

#[test]
fn a_release_shim_loads_a_debug_plugin() {
    cargo_build(
        &["--release", "-p", "nbdkit-rustshim-plugin"],
        "the release shim",
    );
    let release_shim = workspace().join("target/release/libnbdkit_rustshim_plugin.so");
    let debug_plugin = build_plugin("fixture_debug", &SAME_API, MINIMAL_PLUGIN, &[]);
    assert_eq!(
        read_through(&release_shim, &debug_plugin)
            .ok()
            .stdout
            .trim(),
        "5a5a5a5a"
    );
    let out = dump(&release_shim, &debug_plugin).ok();
    assert!(
        out.stdout.contains("profile=debug; opt-level=0"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_debug_shim_loads_a_release_plugin() {
    let release_plugin = build_plugin("fixture_ok", &SAME_API, MINIMAL_PLUGIN, &["--release"]);
    assert_eq!(
        read_through(&shim(), &release_plugin).ok().stdout.trim(),
        "5a5a5a5a"
    );
    let out = dump(&shim(), &release_plugin).ok();
    assert!(
        out.stdout.contains("profile=release; opt-level=3"),
        "{}",
        out.stdout
    );
}

/// The minimal plugin, panicking when asked for offset 512.
fn panicking_plugin() -> String {
    MINIMAL_PLUGIN.replace(
        "        buf.fill(0x5a);",
        "        if _offset == 512 { panic!(\"asked for 512\"); }\n        buf.fill(0x5a);",
    )
}

#[test]
fn a_panic_abort_plugin_with_another_opt_level_loads_with_a_warning() {
    let built = build(&Workspace {
        name: "abort_small",
        plugins: &[("abort_small", &panicking_plugin())],
        cargo_args: &[
            "--config",
            "profile.dev.opt-level=\"s\"",
            "--config",
            "profile.dev.panic=\"abort\"",
        ],
        target: "target-abort",
        ..Workspace::default()
    });
    let so = &built.plugins[0];
    let out = dump(&shim(), so).ok();
    assert!(
        out.stdout.contains("rustshim_plugin_panic=abort"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("opt-level=s"), "{}", out.stdout);
    assert!(
        out.stderr
            .contains("was built with panic = \"abort\": a panic in it will end nbdkit"),
        "the shim warns at load:\n{}",
        out.stderr
    );
    assert_eq!(
        read_through(&shim(), so).ok().stdout.trim(),
        "5a5a5a5a",
        "it serves"
    );
}

#[test]
fn a_plugin_with_randomised_struct_layout_works() {
    // -Zrandomize-layout reorders every non-repr(C) struct: if any Rust-layout type crossed the
    // boundary, the shim would read garbage. It stands in for a different rustc.
    let wide = r#"
use rustshim_plugin_api::prelude::*;
#[derive(Default)]
struct Wide { size: u64, name: String }
#[plugin]
impl Plugin for Wide {
    type Handle = Vec<u8>;
    const NAME: &'static str = "wide";
    const VERSION: Option<&'static str> = Some("7.7");
    fn config(&mut self, key: &str, value: &str) -> Result<()> {
        match key {
            "size" => self.size = server::parse_size(value)?,
            "name" => self.name = value.to_string(),
            _ => return Err(Error::invalid(format!("unknown parameter '{key}'"))),
        }
        Ok(())
    }
    fn list_exports(&self, _ro: bool, _tls: bool, exports: &mut Exports) -> Result<()> {
        exports.add(&self.name, Some("described"))?;
        exports.add("second", None)
    }
    fn open(&self, _readonly: bool) -> Result<Vec<u8>> { Ok(self.name.as_bytes().to_vec()) }
    fn get_size(&self, _: &Vec<u8>) -> Result<u64> { Ok(self.size) }
    fn export_description(&self, h: &Vec<u8>) -> Result<String> { Ok(format!("export of {} bytes named {}", self.size, String::from_utf8_lossy(h))) }
    fn pread(&self, h: &Vec<u8>, buf: &mut [u8], offset: u64, _f: Flags) -> Result<()> {
        for (i, b) in buf.iter_mut().enumerate() { *b = h[(offset as usize + i) % h.len()]; }
        Ok(())
    }
    fn extents(&self, _: &Vec<u8>, count: u32, offset: u64, _f: Flags, e: &mut Extents) -> Result<()> {
        e.add(offset, u64::from(count) / 2, ExtentType::DATA)?;
        e.add(offset + u64::from(count) / 2, u64::from(count) - u64::from(count) / 2, ExtentType::HOLE | ExtentType::ZERO)
    }
}
export_plugin!(Wide);
"#;
    let built = build(&Workspace {
        name: "randomized",
        plugins: &[("randomized", wide)],
        env: &[
            ("RUSTC_BOOTSTRAP", "1"),
            ("RUSTFLAGS", "-Zrandomize-layout -Zlayout-seed=20261125"),
        ],
        target: "target-randomized",
        ..Workspace::default()
    });
    let so = built.plugins[0].display().to_string();
    let args = [
        format!("plugin={so}"),
        "size=1M".into(),
        "name=rustshim".into(),
    ];
    let out = nbdsh(&args, "print(h.pread(8, 0).decode())\nprint(h.get_size())").ok();
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        ["rustshim", "1048576"]
    );
    let out = nbdinfo(&["--list", "--json"], &args).ok();
    assert!(
        out.stdout.contains("\"export-name\": \"rustshim\"")
            && out.stdout.contains("\"described\""),
        "{}",
        out.stdout
    );
    let out = nbdinfo(&["--json"], &args).ok();
    assert!(
        out.stdout
            .contains("export of 1048576 bytes named rustshim"),
        "{}",
        out.stdout
    );
    let out = nbdinfo(&["--map"], &args).ok();
    assert!(
        out.stdout.lines().count() >= 2 && out.stdout.contains("hole"),
        "{}",
        out.stdout
    );
    let out = dump(&shim(), &built.plugins[0]).ok();
    assert!(
        out.stdout.contains("rustshim_plugin_version=7.7"),
        "{}",
        out.stdout
    );
}

/// A RAM disk that takes `size=`, reads and writes: the plugin of
/// [`a_plugin_built_with_fat_lto_one_codegen_unit_opt_level_s_and_another_edition_serves`], in
/// the idioms of its edition's `NAME` (`ram2018`, `ram2024`).
fn ram_plugin(name: &str) -> String {
    r#"
#[allow(unused_imports)]
use std::convert::TryFrom; // not in the 2018 prelude
use std::sync::Mutex;
use rustshim_plugin_api::prelude::*;
#[derive(Default)]
struct Ram { disk: Mutex<Vec<u8>> }
impl Ram {
    fn disk(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.disk.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
#[plugin]
impl Plugin for Ram {
    type Handle = ();
    const NAME: &'static str = "@NAME@";
    fn config(&mut self, key: &str, value: &str) -> Result<()> {
        match key {
            "size" => {
                let size = usize::try_from(server::parse_size(value)?).map_err(|_| Error::invalid("too big"))?;
                self.disk().resize(size, 0);
                Ok(())
            }
            _ => Err(Error::invalid(format!("unknown parameter '{key}'"))),
        }
    }
    fn open(&self, _readonly: bool) -> Result<()> { Ok(()) }
    fn get_size(&self, _: &()) -> Result<u64> { Ok(self.disk().len() as u64) }
    fn pread(&self, _: &(), buf: &mut [u8], offset: u64, _flags: Flags) -> Result<()> {
        let at = offset as usize;
        buf.copy_from_slice(&self.disk()[at..at + buf.len()]);
        Ok(())
    }
    fn pwrite(&self, _: &(), buf: &[u8], offset: u64, _flags: Flags) -> Result<()> {
        let at = offset as usize;
        self.disk()[at..at + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn flush(&self, _: &(), _flags: Flags) -> Result<()> { Ok(()) }
}
export_plugin!(Ram);
"#
    .replace("@NAME@", name)
}

#[test]
fn a_plugin_built_with_fat_lto_one_codegen_unit_opt_level_s_and_another_edition_serves() {
    // The shim is the debug build (no LTO, 256 codegen units, opt-level 0, edition 2021); the
    // plugins are release builds with every setting that changes code generation the other
    // way, one crate of edition 2018 and one of 2024 (whose rules for `no_mangle` and `unsafe
    // extern` differ: the export macros must hold under both).
    let (r2018, r2024) = (ram_plugin("ram2018"), ram_plugin("ram2024"));
    let built = build(&Workspace {
        name: "lto_editions",
        plugins: &[("ram2018", &r2018), ("ram2024", &r2024)],
        editions: &[("ram2018", "2018"), ("ram2024", "2024")],
        cargo_args: &[
            "--release",
            "--config",
            "profile.release.lto=\"fat\"",
            "--config",
            "profile.release.codegen-units=1",
            "--config",
            "profile.release.opt-level=\"s\"",
        ],
        target: "target-lto",
        ..Workspace::default()
    });
    for (name, so) in ["ram2018", "ram2024"].iter().zip(&built.plugins) {
        let out = dump(&shim(), so).ok();
        assert!(
            out.stdout.contains("profile=release; opt-level=s")
                && out
                    .stdout
                    .lines()
                    .any(|l| l == format!("rustshim_plugin_name={name}")),
            "{}",
            out.stdout
        );
        let args = [format!("plugin={}", so.display()), "size=1M".into()];
        let out = nbdsh(
            &args,
            "data = bytes((i * 13 + 1) % 256 for i in range(65536))\n\
             h.pwrite(data, 131072)\n\
             h.flush()\n\
             print(h.get_size())\n\
             print(h.pread(65536, 131072) == data)\n\
             print(h.pread(512, 0) == bytes(512))",
        )
        .ok();
        assert_eq!(
            out.stdout.lines().collect::<Vec<_>>(),
            ["1048576", "True", "True"],
            "{name}: {}",
            out.stderr
        );
    }
}
