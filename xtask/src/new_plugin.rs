//! `cargo xtask new-plugin NAME --path DIR`: writes an out-of-tree plugin crate that builds,
//! serves and tests as it is: a small RAM disk plugin against this checkout's `plugin-api`, a
//! test that serves it with the real nbdkit through `rustshim-harness`, and a README saying how
//! to build, serve, develop and test it.

use std::fs;
use std::path::Path;

use crate::Result;

/// Rust keywords and the crates every program can name: not usable as package names.
const RESERVED: &[&str] = &[
    "abstract",
    "alloc",
    "as",
    "async",
    "await",
    "become",
    "box",
    "break",
    "const",
    "continue",
    "core",
    "crate",
    "do",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "final",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "macro",
    "match",
    "mod",
    "move",
    "mut",
    "override",
    "priv",
    "proc-macro",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "std",
    "struct",
    "super",
    "test",
    "trait",
    "true",
    "try",
    "type",
    "typeof",
    "unsafe",
    "unsized",
    "use",
    "virtual",
    "where",
    "while",
    "yield",
];

/// Writes the crate `name` into `path` (created if missing; refused if it exists and is not an
/// empty directory).
pub fn new_plugin(name: &str, path: &Path) -> Result {
    check_name(name)?;
    match fs::read_dir(path) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(format!(
                    "{} exists and is not empty: give a new or empty directory",
                    path.display()
                ));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        }
        Err(e) => return Err(format!("{}: {e}", path.display())),
    }
    let dir = fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let repo = fs::canonicalize(crate::workspace::workspace())
        .map_err(|e| format!("cannot find this checkout: {e}"))?;

    let lib = name.replace('-', "_");
    let fill = |template: &str| {
        template
            .replace("@NAME@", name)
            .replace("@LIB@", &lib)
            .replace("@REPO@", &repo.display().to_string())
            .replace("@DIR@", &dir.display().to_string())
            .replace(
                "@API@",
                &toml_string(&repo.join("plugin-api").display().to_string()),
            )
            .replace(
                "@HARNESS@",
                &toml_string(&repo.join("harness").display().to_string()),
            )
    };
    let files: [(&str, String); 5] = [
        ("Cargo.toml", fill(CARGO_TOML)),
        ("src/lib.rs", fill(LIB_RS)),
        ("tests/serve.rs", fill(SERVE_RS)),
        ("README.md", fill(README_MD)),
        (".gitignore", "/target\n".to_string()),
    ];
    for (file, contents) in &files {
        write(&dir.join(file), contents)?;
    }
    // The dependency versions this checkout builds and tests with (cargo drops what the new
    // crate does not use): the first build needs no resolution and gets known-good versions.
    let lock = repo.join("Cargo.lock");
    if lock.is_file() {
        fs::copy(&lock, dir.join("Cargo.lock"))
            .map_err(|e| format!("cannot copy {}: {e}", lock.display()))?;
    }

    println!("created the plugin crate {name} in {}", dir.display());
    println!();
    println!("  cd {}", dir.display());
    println!("  cargo build && nbdkit rustshim plugin=./target/debug/lib{lib}.so size=1G");
    println!("  cargo test     # serves it with the real nbdkit (see README.md)");
    println!(
        "  cargo xtask dev {} size=1G   # from {}",
        dir.display(),
        repo.display()
    );
    Ok(())
}

/// A package name: lowercase ASCII letters, digits and `-`, starting with a letter, not ending
/// with `-`, not a Rust keyword or a standard crate.
fn check_name(name: &str) -> Result {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.len() <= 64;
    if !valid {
        return Err(format!(
            "'{name}' is not a valid plugin name: use lowercase letters, digits and '-', \
             starting with a letter (e.g. my-disk)"
        ));
    }
    if RESERVED.contains(&name) {
        return Err(format!(
            "'{name}' is a Rust keyword or a standard crate's name: choose another plugin name"
        ));
    }
    Ok(())
}

/// `s` as a TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn write(path: &Path, contents: &str) -> Result {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    fs::write(path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

const CARGO_TOML: &str = r##"[package]
name = "@NAME@"
version = "0.1.0"
edition = "2021"
publish = false

# nbdkit loads plugins as shared libraries: `cargo build` makes target/debug/lib@LIB@.so.
[lib]
crate-type = ["cdylib"]

[dependencies]
# The plugin API of nbdkit-rustshim (the checkout this crate was made from).
rustshim-plugin-api = { path = @API@ }
# `log::debug!` and friends reach nbdkit's log.
log = "0.4"

[dev-dependencies]
# Starts the real nbdkit with the shim and this plugin in `cargo test` (tests/serve.rs).
rustshim-harness = { path = @HARNESS@ }

# A workspace of its own, so the crate builds wherever it is.
[workspace]
"##;

const LIB_RS: &str = r##"//! `@NAME@`: an nbdkit plugin written in Rust, served through the rustshim plugin.
//!
//! ```text
//! nbdkit rustshim plugin=./target/debug/lib@LIB@.so size=1G
//! nbdkit rustshim ./target/debug/lib@LIB@.so 1G       # the same: a bare argument is size=
//! ```
//!
//! A RAM disk: what clients write is kept in memory, only the pages written use any, and it is
//! gone when nbdkit exits. Make it yours: the callbacks below are the usual ones; the `Plugin`
//! trait has every other nbdkit callback (`cargo doc --open`), and a callback you leave out
//! behaves as it does for a C plugin without it.

use rustshim_plugin_api::prelude::*;

/// The plugin. nbdkit makes it with `Default` when it loads the plugin, configures it through
/// `&mut self`, then shares it between all connections through `&self`: requests run in
/// parallel, so what changes is behind a lock (`SharedPages` locks per page).
#[derive(Default)]
struct RamDisk {
    /// From `size=`; required.
    size: Option<u64>,
    /// The data, made in `get_ready` (or taken over from the previous build on a hot reload).
    disk: Option<SharedPages>,
}

/// What a build of this plugin calls its disk when handing it to the next build.
const HANDOVER_KIND: &str = "@NAME@-disk";

// `#[plugin]` records which callbacks this impl defines, so the shim forwards just those.
#[plugin]
impl Plugin for RamDisk {
    /// State per connection: none, all connections share the disk.
    type Handle = ();

    const NAME: &'static str = "@NAME@";
    const VERSION: Option<&'static str> = Some(env!("CARGO_PKG_VERSION"));
    const DESCRIPTION: Option<&'static str> = Some("A RAM disk written in Rust.");
    const CONFIG_HELP: Option<&'static str> =
        Some("size=<SIZE>  (required) Size of the disk, e.g. 64M or 1G.");
    // `nbdkit rustshim lib@LIB@.so 1G` means size=1G.
    const MAGIC_CONFIG_KEY: Option<&'static str> = Some("size");

    // ---- Configuration: once, before serving ----

    // Each key=value of the command line. An error stops nbdkit with its message.
    fn config(&mut self, key: &str, value: &str) -> Result<()> {
        match key {
            // nbdkit's size syntax: 512, 64K, 1M, 1G, ...
            "size" => self.size = Some(server::parse_size(value)?),
            _ => {
                let message = format!("{}: unknown parameter '{key}'", Self::NAME);
                return Err(Error::invalid(message));
            }
        }
        Ok(())
    }

    // Every parameter seen: check that nothing is missing.
    fn config_complete(&mut self) -> Result<()> {
        if self.size.is_none() {
            let message = format!("{}: you must give size=<SIZE>", Self::NAME);
            return Err(Error::invalid(message));
        }
        Ok(())
    }

    // About to serve: allocate now, not in `config`, so `--help` and `--dump-plugin` cost
    // nothing. Only a page table is made; pages are allocated as they are written.
    fn get_ready(&mut self) -> Result<()> {
        if self.disk.is_none() {
            let size = self.size.unwrap_or(0);
            self.disk = Some(SharedPages::new(size)?);
            // Shown with `nbdkit -v`.
            log::debug!("{}: a RAM disk of {size} bytes", Self::NAME);
        }
        Ok(())
    }

    // ---- Each connection ----

    fn open(&self, _readonly: bool) -> Result<()> {
        Ok(())
    }

    fn get_size(&self, _: &()) -> Result<u64> {
        Ok(self.disk().size())
    }

    // Every connection sees every write at once, so a client may open several.
    fn can_multi_conn(&self, _: &()) -> Result<bool> {
        Ok(true)
    }

    // ---- Data ----

    fn pread(&self, _: &(), buf: &mut [u8], offset: u64, _flags: Flags) -> Result<()> {
        self.disk().read_at(buf, offset)
    }

    // Having `pwrite` makes the disk writable; without it, it would be read-only.
    fn pwrite(&self, _: &(), buf: &[u8], offset: u64, _flags: Flags) -> Result<()> {
        self.disk().write_at(buf, offset)
    }

    // Memory needs no flushing, but having `flush` tells clients that flushing works (and
    // nbdkit then honours FUA writes with it).
    fn flush(&self, _: &(), _flags: Flags) -> Result<()> {
        Ok(())
    }

    // Discard: the range reads as zeroes afterwards, and the pages wholly inside it are freed.
    fn trim(&self, _: &(), count: u32, offset: u64, _flags: Flags) -> Result<()> {
        self.disk().trim(offset, count.into())
    }

    // Without `zero`, nbdkit would send buffers of zeroes to `pwrite`.
    fn zero(&self, _: &(), count: u32, offset: u64, _flags: Flags) -> Result<()> {
        self.disk().zero(offset, count.into())
    }

    // ---- Hot reload: `nbdkit ... reload=watch`, `cargo xtask dev` ----

    // The next build of this plugin gets this very disk, so its contents survive your edits.
    fn hand_over(&self) -> Option<Handover> {
        self.disk
            .as_ref()
            .map(|disk| Handover::pages(HANDOVER_KIND, disk))
    }

    // Called on the new build before `get_ready`: adopt the previous build's disk if it is one
    // of ours, of the same size (`Ok(false)`: start with a fresh disk).
    fn take_over(&mut self, state: Handover) -> Result<bool> {
        if state.kind() != HANDOVER_KIND {
            return Ok(false);
        }
        match state.into_pages() {
            Some(disk) if Some(disk.size()) == self.size => {
                self.disk = Some(disk);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

impl RamDisk {
    fn disk(&self) -> &SharedPages {
        self.disk
            .as_ref()
            .expect("nbdkit calls get_ready before serving")
    }
}

// What the shim loads: the plugin's entry point and its ABI description.
export_plugin!(RamDisk);
"##;

const SERVE_RS: &str = r##"//! Serves the plugin with the real nbdkit, through the rustshim plugin, and checks it with real
//! NBD clients. `rustshim-harness` builds the plugin's cdylib, starts nbdkit on a private Unix
//! socket, and stops it at the end of each test.
//!
//! It needs nbdkit, python3-libnbd and libnbd-bin, and the shim: the one `cargo xtask install`
//! put in nbdkit's plugin directory, or `RUSTSHIM_SHIM=/path/to/libnbdkit_rustshim_plugin.so`.

use rustshim_harness::{plugin_path, HarnessError, Server};

#[test]
fn the_disk_has_the_size_given() -> Result<(), HarnessError> {
    let server = Server::start(plugin_path!(), &["size=1M"])?;
    assert_eq!(server.size()?, 1 << 20);
    Ok(())
}

#[test]
fn a_bare_argument_is_the_size() -> Result<(), HarnessError> {
    let server = Server::start(plugin_path!(), &["64K"])?;
    assert_eq!(server.size()?, 64 << 10);
    Ok(())
}

#[test]
fn reads_back_what_was_written_and_zeroes_elsewhere() -> Result<(), HarnessError> {
    let server = Server::start(plugin_path!(), &["size=1M"])?;
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    server.write(4096 + 7, &data)?;
    assert_eq!(server.read(4096 + 7, data.len())?, data);
    assert_eq!(server.read(0, 4096)?, vec![0; 4096]);
    Ok(())
}

#[test]
fn trimmed_and_zeroed_ranges_read_as_zeroes() -> Result<(), HarnessError> {
    let server = Server::start(plugin_path!(), &["size=1M"])?;
    // Any libnbd call, in Python: `h` is a handle connected to the server.
    let out = server.python(
        r#"
        h.pwrite(b"\xff" * 131072, 0)
        h.trim(65536, 0)
        h.zero(4096, 100000)
        data = h.pread(131072, 0)
        assert data[:65536] == bytes(65536)
        assert data[100000:104096] == bytes(4096)
        assert data[65536:100000] == b"\xff" * 34464
        h.flush()
        print(h.can_trim(), h.can_zero(), h.can_multi_conn())
        "#,
    )?;
    assert_eq!(out.trim(), "True True True");
    Ok(())
}

#[test]
fn without_a_size_nbdkit_refuses_to_start() {
    let error = Server::start(plugin_path!(), &[])
        .err()
        .expect("nbdkit should not start without size=");
    assert!(error.to_string().contains("you must give size="), "{error}");
}
"##;

const README_MD: &str = r##"# @NAME@

An [nbdkit](https://libguestfs.org/nbdkit.1.html) plugin written in Rust: a RAM disk
(`src/lib.rs`). It is built as a `cdylib` against `rustshim-plugin-api` and served by nbdkit
through the `rustshim` plugin (the *shim*) of nbdkit-rustshim, the checkout at `@REPO@`
(made there with `cargo xtask new-plugin`).

## Build

```
cargo build              # target/debug/lib@LIB@.so
cargo build --release    # target/release/lib@LIB@.so
```

## Serve

```
nbdkit rustshim plugin=./target/debug/lib@LIB@.so size=1G
nbdkit rustshim ./target/debug/lib@LIB@.so 1G      # the same: a bare argument is size=
nbdkit -U - rustshim plugin=./target/debug/lib@LIB@.so size=1G --run 'nbdinfo "$uri"'
nbdkit rustshim plugin=./target/debug/lib@LIB@.so --dump-plugin
```

`nbdkit rustshim` finds the shim in nbdkit's plugin directory: install it once with
`cargo xtask install` in `@REPO@`, or name it by path:
`nbdkit @REPO@/target/debug/libnbdkit_rustshim_plugin.so plugin=... size=1G`.

The shim refuses a plugin file that users other than you (or root) could change, like ssh does
with keys: keep the crate's directories writable by you only (see the shim's README).

## Develop

In `@REPO@`:

```
cargo xtask dev @DIR@ size=1G
```

serves the plugin with `reload=watch` on a Unix socket (it prints the URI) and rebuilds it
whenever a source file changes; the running nbdkit serves each good build to new connections,
and the disk keeps its contents across builds (`hand_over`/`take_over` in `src/lib.rs`).

## Test

```
cargo test
```

`tests/serve.rs` serves the plugin with the real nbdkit through the shim and checks it with
real NBD clients, using `rustshim-harness`. It needs nbdkit, python3-libnbd and libnbd-bin
(Debian: `apt-get install nbdkit python3-libnbd libnbd-bin`), and the shim: the installed one,
or one given by path:

```
RUSTSHIM_SHIM=@REPO@/target/debug/libnbdkit_rustshim_plugin.so cargo test
```
"##;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["ramdisk", "my-disk", "disk2", "a-b-c"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "", "My", "2disk", "-disk", "disk-", "my_disk", "my disk", "self", "test",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string(r#"/a "b"\c"#), r#""/a \"b\"\\c""#);
    }
}
