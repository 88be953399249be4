//! Measures nbdkit's structs in real headers so unit tests can compare the shim's mirrors with
//! them field by field: `struct nbdkit_plugin` in the installed `<nbdkit-plugin.h>`, and
//! `struct nbdkit_filter` and `struct nbdkit_next_ops` in the `<nbdkit-filter.h>` of every nbdkit
//! at hand (the host's, and those of the Debian roots `cargo xtask roots` makes). The field names
//! come from the mirrors' own declarations (`src/nbdkit_c/plugin_struct.rs`, `filter_struct.rs`);
//! the C compiler gives each one's offset. A missing header does not stop the build: the test
//! that needs it fails, saying so.

use std::fmt::Write;
use std::path::{Path, PathBuf};

/// The plugin mirror's declaration, reduced to the C struct's name and the field names.
mod plugin_mirror {
    macro_rules! c_struct {
        (
            $(#[$meta:meta])*
            pub struct $name:ident = $c_name:ident {
                $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)*
            }
        ) => {
            pub const C_NAME: &str = stringify!($c_name);
            pub const FIELDS: &[&str] = &[$(stringify!($field)),*];
        };
    }
    include!("src/nbdkit_c/plugin_struct.rs");
}

/// The filter mirrors' declaration, reduced likewise: each field with the nbdkit version it
/// appeared in, if newer than 1.32.
mod filter_mirror {
    macro_rules! filter_struct {
        (@since) => { None };
        (@since $since:literal) => { Some(stringify!($since)) };
        (
            $(#[$meta:meta])*
            pub struct $old:ident, $new:ident = $c_name:ident {
                $($(#[$fmeta:meta])* $([$since:literal])? pub $field:ident: $ty:ty,)*
            }
        ) => {
            pub const FILTER_C_NAME: &str = stringify!($c_name);
            pub const FILTER_FIELDS: &[(&str, Option<&str>)] =
                &[$((stringify!($field), filter_struct!(@since $($since)?))),*];
        };
    }
    macro_rules! c_struct {
        (
            $(#[$meta:meta])*
            pub struct $name:ident = $c_name:ident {
                $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)*
            }
        ) => {
            pub const NEXT_OPS_C_NAME: &str = stringify!($c_name);
            pub const NEXT_OPS_FIELDS: &[&str] = &[$(stringify!($field)),*];
        };
    }
    include!("src/nbdkit_c/filter_struct.rs");
}

/// Where `cargo xtask roots` keeps the Debian roots (`RUSTSHIM_ROOTS` overrides it).
const ROOTS: &str = "/var/cache/rustshim/roots";

fn main() {
    // The shim runs as a program for trial loads of plugin files (`src/probe.rs`): its entry.
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if arch == "x86_64" || arch == "aarch64" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-e,rustshim_probe_entry");
    }
    println!("cargo::rustc-check-cfg=cfg(rustshim_nbdkit_header)");
    println!("cargo::rustc-check-cfg=cfg(rustshim_filter_header, values(\"host\", \"trixie\", \"forky\"))");
    println!("cargo:rerun-if-changed=src/nbdkit_c/plugin_struct.rs");
    println!("cargo:rerun-if-changed=src/nbdkit_c/filter_struct.rs");
    println!("cargo:rerun-if-env-changed=RUSTSHIM_ROOTS");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));

    let include = Path::new("/usr/include");
    if watch(&include.join("nbdkit-plugin.h")) {
        let file = out.join("layout.c");
        std::fs::write(&file, plugin_layout_c()).expect("writing layout.c");
        cc::Build::new().file(&file).compile("rustshim_layout");
        println!("cargo:rustc-cfg=rustshim_nbdkit_header");
    }

    let roots =
        std::env::var_os("RUSTSHIM_ROOTS").map_or_else(|| PathBuf::from(ROOTS), PathBuf::from);
    for (tag, include) in [
        ("host", include.to_path_buf()),
        ("trixie", roots.join("trixie/usr/include")),
        ("forky", roots.join("forky/usr/include")),
    ] {
        if !watch(&include.join("nbdkit-filter.h")) || !watch(&include.join("nbdkit-version.h")) {
            continue;
        }
        let minor = header_minor(&include.join("nbdkit-version.h"));
        let file = out.join(format!("filter_layout_{tag}.c"));
        std::fs::write(&file, filter_layout_c(tag, minor)).expect("writing the filter layout");
        // Headers of newer nbdkits have declarations today's gcc warns about.
        cc::Build::new()
            .file(&file)
            .include(&include)
            .warnings(false)
            .compile(&format!("rustshim_filter_layout_{tag}"));
        println!("cargo:rustc-cfg=rustshim_filter_header=\"{tag}\"");
    }
}

/// Whether `header` exists; rebuilds when it changes.
fn watch(header: &Path) -> bool {
    println!("cargo:rerun-if-changed={}", header.display());
    header.exists()
}

/// `NBDKIT_VERSION_MINOR` of a `<nbdkit-version.h>`.
fn header_minor(file: &Path) -> u32 {
    let text = std::fs::read_to_string(file).expect("reading nbdkit-version.h");
    text.lines()
        .find_map(|l| l.strip_prefix("#define NBDKIT_VERSION_MINOR "))
        .and_then(|v| v.trim().parse().ok())
        .expect("nbdkit-version.h defines NBDKIT_VERSION_MINOR")
}

/// C lines that list `fields` of `c_struct` with their offsets, as `name`.
fn field_table(c: &mut String, name: &str, c_struct: &str, fields: &[&str]) {
    writeln!(c, "const size_t {name}_size = sizeof ({c_struct});").unwrap();
    writeln!(c, "const struct rustshim_c_field {name}_fields[] = {{").unwrap();
    for field in fields {
        writeln!(c, "  {{ \"{field}\", offsetof ({c_struct}, {field}) }},").unwrap();
    }
    writeln!(
        c,
        "}};\nconst size_t {name}_field_count = {};",
        fields.len()
    )
    .unwrap();
}

fn plugin_layout_c() -> String {
    let mut c = "/* Written by build.rs from src/nbdkit_c/plugin_struct.rs. */\n\
         #include <stddef.h>\n\
         #define NBDKIT_API_VERSION 2\n\
         #include <nbdkit-plugin.h>\n\
         struct rustshim_c_field { const char *name; size_t offset; };\n"
        .to_string();
    let c_struct = format!("struct {}", plugin_mirror::C_NAME);
    field_table(
        &mut c,
        "rustshim_c_plugin",
        &c_struct,
        plugin_mirror::FIELDS,
    );
    c
}

/// The C file measuring the filter structs of the header of nbdkit 1.`minor`: only the fields
/// that version has.
fn filter_layout_c(tag: &str, minor: u32) -> String {
    let mut c = format!(
        "/* Written by build.rs from src/nbdkit_c/filter_struct.rs. */\n\
         #include <stddef.h>\n\
         #include <nbdkit-filter.h>\n\
         struct rustshim_c_field {{ const char *name; size_t offset; }};\n\
         const unsigned rustshim_c_filter_{tag}_minor = {minor};\n"
    );
    let fields: Vec<&str> = filter_mirror::FILTER_FIELDS
        .iter()
        .filter(|(_, since)| since.map_or(true, |s| since_minor(s) <= minor))
        .map(|(name, _)| *name)
        .collect();
    let filter = format!("struct {}", filter_mirror::FILTER_C_NAME);
    field_table(
        &mut c,
        &format!("rustshim_c_filter_{tag}"),
        &filter,
        &fields,
    );
    let next_ops = format!("struct {}", filter_mirror::NEXT_OPS_C_NAME);
    field_table(
        &mut c,
        &format!("rustshim_c_next_ops_{tag}"),
        &next_ops,
        filter_mirror::NEXT_OPS_FIELDS,
    );
    c
}

/// `"1.36"` as 36.
fn since_minor(since: &str) -> u32 {
    since
        .split('.')
        .nth(1)
        .and_then(|m| m.parse().ok())
        .expect("a version 1.NN")
}
