//! Measures `struct nbdkit_plugin` in the installed `<nbdkit-plugin.h>` so a unit test can
//! compare the shim's mirror of it with the real one: the field names come from the mirror's own
//! declaration (`src/nbdkit_c/plugin_struct.rs`), and the C compiler gives each one's offset.
//! Without the header (package nbdkit-plugin-dev) the build still works, and that test fails
//! saying so.

use std::fmt::Write;

/// The mirror's declaration, reduced to what the C side needs: the C struct's name and the
/// field names.
mod mirror {
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

fn main() {
    // The shim runs as a program for trial loads of plugin files (`src/probe.rs`): its entry.
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if arch == "x86_64" || arch == "aarch64" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-e,rustshim_probe_entry");
    }
    println!("cargo::rustc-check-cfg=cfg(rustshim_nbdkit_header)");
    println!("cargo:rerun-if-changed=src/nbdkit_c/plugin_struct.rs");
    let header = std::path::Path::new("/usr/include/nbdkit-plugin.h");
    println!("cargo:rerun-if-changed={}", header.display());
    if !header.exists() {
        return;
    }
    let c_struct = format!("struct {}", mirror::C_NAME);
    let mut c = format!(
        "/* Written by build.rs from src/nbdkit_c/plugin_struct.rs. */\n\
         #include <stddef.h>\n\
         #define NBDKIT_API_VERSION 2\n\
         #include <nbdkit-plugin.h>\n\
         struct rustshim_c_field {{ const char *name; size_t offset; }};\n\
         const size_t rustshim_c_plugin_size = sizeof ({c_struct});\n\
         const struct rustshim_c_field rustshim_c_plugin_fields[] = {{\n"
    );
    for field in mirror::FIELDS {
        writeln!(c, "  {{ \"{field}\", offsetof ({c_struct}, {field}) }},").unwrap();
    }
    writeln!(
        c,
        "}};\nconst size_t rustshim_c_plugin_field_count = {};",
        mirror::FIELDS.len()
    )
    .unwrap();
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let file = out.join("layout.c");
    std::fs::write(&file, c).expect("writing layout.c");
    cc::Build::new().file(&file).compile("rustshim_layout");
    println!("cargo:rustc-cfg=rustshim_nbdkit_header");
}
