//! Compiles `c/layout.c` against the installed `<nbdkit-plugin.h>` so a unit test can compare
//! the shim's mirror of `struct nbdkit_plugin` with the real one. Without the header
//! (package nbdkit-plugin-dev) the build still works, and that test fails saying so.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(rustshim_nbdkit_header)");
    println!("cargo:rerun-if-changed=c/layout.c");
    let header = std::path::Path::new("/usr/include/nbdkit-plugin.h");
    println!("cargo:rerun-if-changed={}", header.display());
    if header.exists() {
        cc::Build::new()
            .file("c/layout.c")
            .compile("rustshim_layout");
        println!("cargo:rustc-cfg=rustshim_nbdkit_header");
    }
}
